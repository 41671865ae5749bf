#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install cmh-bench into it.
#   VENV: $CMH_BENCH_VENV, default .venv in the repository; extras: $CMH_BENCH_EXTRAS (default: all of them).
# Dependencies are installed with requirements/pins.txt as constraints; the venv records the hash of
# the pins and pyproject.toml and is re-synced only when they change. Prints the venv path last.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CMH_BENCH_VENV:-$repo/.venv}"
python="${PYTHON:-python3}"
extras="${CMH_BENCH_EXTRAS:-extract,test,ray,slurm}"
stamp_value="$(cat "$repo/requirements/pins.txt" "$repo/pyproject.toml" | sha256sum | cut -c1-16) $extras"

if [ ! -x "$venv/bin/python" ]; then
    echo "creating virtual environment $venv" >&2
    "$python" -m venv "$venv"
fi
if [ "$(cat "$venv/.cmh-bench-deps" 2>/dev/null)" != "$stamp_value" ]; then
    echo "installing dependencies into $venv (pinned by requirements/pins.txt; torch is large, this takes a few minutes once)" >&2
    "$venv/bin/python" -m pip install -q -c "$repo/requirements/pins.txt" "setuptools>=68"
    "$venv/bin/python" -m pip install -q -c "$repo/requirements/pins.txt" -e "$repo[$extras]"
    echo "$stamp_value" > "$venv/.cmh-bench-deps"
else
    # The dependencies are current; (re)point the editable install at this checkout (cheap).
    "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$repo"
fi
echo "$venv"
