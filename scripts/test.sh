#!/usr/bin/env bash
# The whole test suite, as CI runs it: every crate's unit, property, integration and doc tests.
#
# NVRTC (to check that every .cu kernel compiles) comes from scripts/install-nvrtc.sh; when it
# has been installed into .nvrtc/, its folder is put on LD_LIBRARY_PATH here.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
nvrtc_lib="$root/.nvrtc/nvidia/cu13/lib"
if [ -d "$nvrtc_lib" ]; then
    export LD_LIBRARY_PATH="$nvrtc_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
exec cargo test --workspace --locked "$@"
