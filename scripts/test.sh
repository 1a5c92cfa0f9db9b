#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting and lints first (failing fast, before the
# long test run), then every crate's unit, property, integration and doc tests. Arguments
# go to `cargo test`.
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
echo "test.sh: cargo fmt --check" >&2
cargo fmt --all --check
echo "test.sh: cargo clippy --workspace --all-targets -- -D warnings" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "test.sh: cargo test --workspace" >&2
exec cargo test --workspace --locked "$@"
