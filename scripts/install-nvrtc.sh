#!/usr/bin/env bash
# Installs NVRTC, CUDA's run-time compiler, from its PyPI wheel into .nvrtc/ (ignored by git)
# and prints the folder to put on LD_LIBRARY_PATH:
#
#   export LD_LIBRARY_PATH="$(scripts/install-nvrtc.sh)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
#   cargo test -p kernels cuda::
#
# NVRTC needs neither a CUDA toolkit nor a GPU, so this is how CI and developer machines
# check that every kernels/src/<op>/<op>.cu compiles. The wheel holds libnvrtc.so.13 (the
# name cudarc looks for with its cuda-13000 feature) and libnvrtc-builtins.so.13.0, which
# libnvrtc loads at compile time from the same folder; nothing else is needed.
#
# Pinned to the CUDA 13.0 line, the version the GPU machines' driver (580) supports: PTX
# from a newer NVRTC can be too new for that driver to load.
set -euo pipefail

VERSION="13.0.88"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.nvrtc"
lib="$dest/nvidia/cu13/lib"

if [ ! -d "$dest/nvidia_cuda_nvrtc-$VERSION.dist-info" ] || [ ! -e "$lib/libnvrtc.so.13" ]; then
    python="$(command -v python3 || command -v python || true)"
    if [ -z "$python" ]; then
        echo "install-nvrtc: python3 with pip is needed to install the nvidia-cuda-nvrtc wheel" >&2
        exit 1
    fi
    echo "install-nvrtc: installing nvidia-cuda-nvrtc==$VERSION into $dest" >&2
    rm -rf "$dest"
    "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
        --target "$dest" "nvidia-cuda-nvrtc==$VERSION" >&2
fi

for file in libnvrtc.so.13 libnvrtc-builtins.so.13.0; do
    if [ ! -e "$lib/$file" ]; then
        echo "install-nvrtc: $lib/$file is missing after installing the wheel" >&2
        exit 1
    fi
done

echo "$lib"
