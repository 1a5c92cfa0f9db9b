#!/usr/bin/env bash
# Builds everything scripts/gpu-check.sh runs on the GPU machine, which has no Rust
# toolchain, into gpu-bundle/ (ignored by git):
#
#   gpu-bundle/bin/cli                      the release binary (train, bench-step, ...)
#   gpu-bundle/tests/<package>-<target>     the release test executables holding GPU tests
#   gpu-bundle/cifar-10-jpeg.pack           the 18 MB dataset pack, and
#   gpu-bundle/unpack_jpeg.py               the script that rebuilds the .bin files from it
#
# all stripped, and checks that the whole folder is under 64 MiB (what can travel to the GPU
# machine beside the working tree). Building needs no CUDA toolkit: the driver, NVRTC and
# cuBLAS are loaded at run time, from the GPU machine's own CUDA 13 installation.
#
#   scripts/build-gpu-bundle.sh     then run scripts/gpu-check.sh there, carrying gpu-bundle
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bundle="$root/gpu-bundle"
shared="${SHARED_DATA:-$root/../shared/data}"
limit=$((64 * 1024 * 1024))

for file in cifar-10-jpeg.pack unpack_jpeg.py; do
    if [ ! -f "$shared/$file" ]; then
        echo "build-gpu-bundle: $shared/$file is missing (set SHARED_DATA to the folder holding it)" >&2
        exit 1
    fi
done

rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/tests"

echo "build-gpu-bundle: building the release cli" >&2
cargo build --release --locked -p cli
# Where cargo put it: $CARGO_TARGET_DIR or build.target-dir when set, ./target otherwise.
target_dir="$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
cp "$target_dir/release/cli" "$bundle/bin/cli"

# The test targets with GPU tests: the kernels unit tests (cuda::tests, conv2d::cuda), the
# per-op parity tests, the whole network on CUDA, and the cli's --device cuda run.
targets=(
    "kernels --lib"
    "kernels --test cuda_parity"
    "kernels --test cuda_bf16"
    "models --test cuda"
    "cli --test cuda"
)
for target in "${targets[@]}"; do
    read -r package selector name <<<"$target"
    echo "build-gpu-bundle: building the tests of $package $selector ${name:-}" >&2
    # shellcheck disable=SC2086
    cargo test --release --locked --no-run --message-format=json -p "$package" $selector ${name:-} \
        >"$bundle/cargo-$package.json"
    python3 - "$bundle/cargo-$package.json" "$bundle/tests" "$package" <<'EOF'
import json, shutil, sys
messages, dest, package = sys.argv[1], sys.argv[2], sys.argv[3]
copied = 0
for line in open(messages):
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
        continue
    if not msg.get("profile", {}).get("test"):
        continue
    target = msg["target"]["name"]
    name = f"{package}-{'lib' if 'lib' in msg['target']['kind'] else target}"
    shutil.copy(msg["executable"], f"{dest}/{name}")
    copied += 1
if copied == 0:
    sys.exit(f"build-gpu-bundle: cargo built no test executable for {package}")
EOF
    rm "$bundle/cargo-$package.json"
done

strip "$bundle/bin/cli" "$bundle"/tests/*
cp "$shared/cifar-10-jpeg.pack" "$shared/unpack_jpeg.py" "$bundle/"

size=$(du -sb "$bundle" | cut -f1)
ls -l "$bundle/bin" "$bundle/tests" "$bundle"/*.pack >&2
printf 'build-gpu-bundle: %s is %.1f MiB (limit 64 MiB)\n' "$bundle" "$(echo "$size / 1048576" | bc -l)"
if [ "$size" -ge "$limit" ]; then
    echo "build-gpu-bundle: too large to travel to the GPU machine" >&2
    exit 1
fi
