#!/usr/bin/env bash
# README's first command: set up, then sync the built-in emulator's data into
# ./statesync-demo.db. No Redis, no keys, no network.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/statesync demo "$@"
