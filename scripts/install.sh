#!/usr/bin/env bash
# Install vlserve with everything its tests need into ./.venv (idempotent).
# torch==2.13.0 comes first: on CPU-only machines that pin resolves to the local CPU wheel,
# while any looser spec would pull gigabytes of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
pip install -q "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
pip install -q -e ".[all]" 2>&1 | grep -v "^WARNING: Location" || true
python -c "import vlserve, torch, transformers; print('vlserve', vlserve.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
