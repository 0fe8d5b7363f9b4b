#!/usr/bin/env bash
# Create .venv (if needed) and install the project with its test extras.
# torch is pinned first: `torch==2.13.0` resolves to the local CPU wheel on our machines,
# while a bare `torch` would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
if [ ! -f .venv/.installed ] || [ setup.cfg -nt .venv/.installed ]; then
  python -m pip install -q --upgrade pip
  python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
  python -m pip install -q -e ".[test]"
  touch .venv/.installed
fi
