#!/usr/bin/env bash
# Install what the project needs into the current Python environment.
#   bash tools/setup.sh          runtime requirements (bundles, shared module, tools)
#   bash tools/setup.sh --dev    the same plus the test requirements, at the versions CI tests (constraints.txt)
#   bash tools/setup.sh --cuda   on a machine without torch: PyPI's CUDA build of torch instead of the CPU build
#
# A torch that is already installed is kept. Without one, torch $TORCH_VERSION (default 2.13.0) is installed:
# - by default the CPU build, from PyTorch's CPU index ($TORCH_INDEX_URL, default https://download.pytorch.org/whl/cpu),
#   so that no NVIDIA package (several GB) is installed; if that index cannot be reached, from the default index,
#   and the script says which build it got (a PyPI mirror gives a CUDA build there);
# - with --cuda, from the default index (PyPI's build is the CUDA one), or set TORCH_INDEX_URL to a CUDA index,
#   e.g. https://download.pytorch.org/whl/cu128;
# - TORCH_PIP_ARGS adds pip options for the torch install (e.g. "--extra-index-url ..." or "--proxy ...").
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
dev=false
cuda=false
for arg in "$@"; do
    case "$arg" in
        --dev) dev=true ;;
        --cuda) cuda=true ;;
        *) echo "tools/setup.sh: unknown option $arg (use --dev, --cuda)" >&2; exit 2 ;;
    esac
done
torch_spec="torch==${TORCH_VERSION:-2.13.0}"
# shellcheck disable=SC2086  # TORCH_PIP_ARGS holds several words on purpose
if ! "$python" -c "import torch" >/dev/null 2>&1; then
    if $cuda; then
        "$python" -m pip install --quiet ${TORCH_PIP_ARGS:-} ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$torch_spec"
    elif ! "$python" -m pip install --quiet --timeout 15 --retries 1 ${TORCH_PIP_ARGS:-} \
            --index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}" "$torch_spec" 2>/dev/null; then
        echo "tools/setup.sh: PyTorch's CPU index cannot be reached; installing $torch_spec from the default index" >&2
        "$python" -m pip install --quiet ${TORCH_PIP_ARGS:-} "$torch_spec"
    fi
fi
if $dev; then
    "$python" -m pip install --quiet -r requirements-dev.txt -c constraints.txt
else
    "$python" -m pip install --quiet -r requirements.txt
fi
"$python" -c "import torch, monai; build = 'CUDA ' + torch.version.cuda if torch.version.cuda else 'CPU'; \
print(f'torch {torch.__version__} ({build} build), monai {monai.__version__}: ready')"
