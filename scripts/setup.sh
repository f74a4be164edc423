#!/usr/bin/env bash
# Creates .venv and installs statesync with every extra and the dev tools.
# Strict editable mode gives type checkers and editors the installed layout, where
# connectors/ and adapters/ appear as statesync.connectors and statesync.adapters.
# Re-run after adding a module (strict mode links the files that existed at install).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
# Several shells may set up at once (parallel sessions); pip must not race itself.
exec 9>.venv/.setup.lock
flock 9
.venv/bin/python -m pip install -q --upgrade pip 2>/dev/null || true
.venv/bin/python -m pip install -q -e '.[dev]' --config-settings editable_mode=strict
# A third-party connector package (its own pyproject and entry point) for the plugin tests.
.venv/bin/python -m pip install -q -e tests/plugin_pkg --no-deps
