#!/usr/bin/env bash
# README's second command: set up, then run the whole test suite against real
# servers (Redis on 6379 or a private one, the API emulator over loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/pytest "$@"
