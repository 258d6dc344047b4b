#!/usr/bin/env bash
# Create .venv and install vqstack with its test tools and optional extras (parquet export, Ray engine). Safe to run again (it only adds what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch/torchvision are pinned in pyproject.toml; pip takes them from the local wheel cache when present.
.venv/bin/python -m pip install -q -e '.[dev,parquet,distributed]'
.venv/bin/python -c "import vqstack, torch, decord, av, h5py; print('vqstack', vqstack.__version__, '| torch', torch.__version__)"
