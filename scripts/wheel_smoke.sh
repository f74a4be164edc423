#!/usr/bin/env bash
# The package as users install it: builds the sdist, and the wheel from it, then installs
# the wheel into fresh virtual environments, run outside the repository:
#   base only  every public module imports; a backend used without its extra raises
#              MissingExtraError naming it (scripts/wheel_smoke.py base)
#   [demo]     `statesync demo` runs and exits 0
#   [all]      `--help` of every CLI command
# pip's cache keeps the installs to seconds after the first run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# Environments without their own pip (seeding one costs ~10 s each): the dev venv's pip
# installs into them. This machine's pip configuration names local indexes that may be
# absent: not news.
new_venv() { "$PY" -m venv --without-pip "$1"; }
pip_install() {
  "$ROOT/.venv/bin/python" -m pip --python "$1/bin/python" install -q \
    --disable-pip-version-check "${@:2}" \
    2> >(grep -v "^WARNING: Location '.*' is ignored" >&2)
}

step() { printf '\nwheel smoke: %s (%ss)\n' "$1" "$SECONDS"; }

step "build"
if ! .venv/bin/python -m build --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1; then
  cat "$WORK/build.log"
  exit 1
fi
SDIST=$(ls "$WORK"/dist/statesync-*.tar.gz)
WHEEL=$(ls "$WORK"/dist/statesync-*.whl)
"$PY" - "$SDIST" "$WHEEL" <<'EOF'
import sys, tarfile, zipfile
from pathlib import Path

sdist, wheel = sys.argv[1:]
with tarfile.open(sdist) as tar:
    names = tar.getnames()
assert any(n.endswith("/LICENSE") for n in names), "LICENSE missing from the sdist"
with zipfile.ZipFile(wheel) as whl:
    names = whl.namelist()
assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "LICENSE missing from the wheel"
for mapped in ("statesync/connectors/rest.py", "statesync/adapters/local.py", "statesync/py.typed"):
    assert mapped in names, f"{mapped} missing from the wheel"
assert not [n for n in names if n.startswith(("tests/", "connectors/", "adapters/"))], "stray files"
print(f"wheel {Path(wheel).name}: {Path(wheel).stat().st_size / 1024:.0f} KiB, {len(names)} files;"
      f" sdist {Path(sdist).stat().st_size / 1024:.0f} KiB")
EOF

cd "$WORK"  # never the repository root: ./statesync there would shadow the install

step "base install"
new_venv base
pip_install base "$WHEEL"
base/bin/python "$ROOT/scripts/wheel_smoke.py" base
base/bin/statesync --help >/dev/null
# The emulator is its own extra: the command says which, and does not start.
if timeout 30 base/bin/statesync sandbox >"$WORK/sandbox.log" 2>&1 ||
  ! grep -q "statesync\[sandbox\]" "$WORK/sandbox.log"; then
  cat "$WORK/sandbox.log"; echo "wheel smoke: base statesync sandbox did not name its extra"; exit 1
fi

step "[demo] install"
new_venv demo
pip_install demo "$WHEEL[demo]"
timeout 300 demo/bin/statesync demo --db "$WORK/demo.db" >"$WORK/demo.log" 2>&1 ||
  { tail -40 "$WORK/demo.log"; echo "wheel smoke: statesync demo failed"; exit 1; }
tail -3 "$WORK/demo.log"

step "[all] install"
new_venv all
pip_install all "$WHEEL[all]"
all/bin/statesync --help >/dev/null
count=0
while read -r -a command; do
  all/bin/statesync "${command[@]}" --help >/dev/null ||
    { echo "wheel smoke: statesync ${command[*]} --help failed"; exit 1; }
  count=$((count + 1))
done < <(all/bin/python "$ROOT/scripts/wheel_smoke.py" commands)
echo "--help of $count commands"

step "done"
