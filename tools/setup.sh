#!/usr/bin/env bash
# Install what the project needs into the current Python environment.
#   bash tools/setup.sh         runtime requirements (bundles, shared module, tools)
#   bash tools/setup.sh --dev   the same plus the test requirements
# A torch that is already installed is kept. Without one, the CPU build torch==2.13.0 is installed first, so that
# requirements.txt's `torch>=2.8` does not pull a multi-GB CUDA build. Set TORCH_SPEC to choose another build.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if ! "$python" -c "import torch" >/dev/null 2>&1; then
    "$python" -m pip install --quiet "${TORCH_SPEC:-torch==2.13.0}"
fi
requirements=requirements.txt
[ "${1:-}" = "--dev" ] && requirements=requirements-dev.txt
"$python" -m pip install --quiet -r "$requirements"
"$python" -c "import torch, monai; print(f'torch {torch.__version__}, monai {monai.__version__}: ready')"
