#!/usr/bin/env bash
# The whole GPU check, in one run on the GPU machine (CUDA 13 driver, PyTorch and numpy, no
# Rust toolchain), from the repository root with the gpu-bundle/ folder that
# scripts/build-gpu-bundle.sh builds (carry it along). About 3-5 minutes:
#
#   1. finds CUDA 13's libnvrtc and libcublas (the toolkit's lib64 folder, or the nvidia
#      packages beside PyTorch) and puts their folders on LD_LIBRARY_PATH;
#   2. rebuilds CIFAR-10 from the bundled JPEG pack into /tmp/cifar/cifar-10-batches-bin
#      with its unpack_jpeg.py (numpy and Pillow; about 10 s), or uses $CIFAR_DIR;
#   3. runs the bundled test executables' GPU tests with --nocapture and REQUIRE_CUDA=1 (so
#      a test that cannot reach the GPU fails instead of printing SKIPPED);
#   4. trains one epoch on CUDA (`cli train --device cuda ... --epochs 1 --eval-every-epoch`);
#   5. times training steps (forward, loss, backward, Adam) of ours and of PyTorch eager on
#      the same GPU, at batch 32 and 128, TF32 off on both sides, then on;
#
# and prints a compact summary table last. Exits non-zero when a step failed.
#
#   scripts/gpu-check.sh            BUNDLE=path to use another bundle folder
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bundle="${BUNDLE:-$root/gpu-bundle}"
data="${CIFAR_DIR:-/tmp/cifar/cifar-10-batches-bin}"
logs=/tmp/gpu-check
mkdir -p "$logs"
started=$SECONDS
declare -a summary=()
failed=0

note() { echo "== gpu-check [$((SECONDS - started)) s]: $*"; }
record() { summary+=("$(printf '%-34s %s' "$1" "$2")"); }
fail() {
    record "$1" "FAILED: $2"
    failed=1
}

if [ ! -x "$bundle/bin/cli" ]; then
    echo "gpu-check: $bundle/bin/cli is missing: run scripts/build-gpu-bundle.sh on the build machine and carry gpu-bundle/" >&2
    exit 2
fi

# --- 1. CUDA libraries -------------------------------------------------------------------
note "GPU and driver"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -4
gpu_name="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"

# Folders holding a CUDA 13 library, best candidates first: $CUDA_HOME, the toolkit, then
# the nvidia-* wheels (site-packages/nvidia/cu13/lib or nvidia/<lib>/lib) beside PyTorch.
site_packages="$(python3 -c 'import site, sys; print(" ".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null)"
find_lib() {
    local pattern="$1" dir
    for dir in ${CUDA_HOME:+"$CUDA_HOME/lib64"} /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 \
        /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
        if compgen -G "$dir/$pattern" >/dev/null; then
            echo "$dir"
            return 0
        fi
    done
    for dir in $site_packages; do
        [ -d "$dir/nvidia" ] || continue
        local hit
        hit="$(find "$dir/nvidia" "$dir/torch/lib" -maxdepth 4 -name "$pattern" 2>/dev/null | sort | head -1)"
        if [ -n "$hit" ]; then
            dirname "$hit"
            return 0
        fi
    done
    return 1
}
libs_ok=1
lib_dirs=()
for lib in nvrtc cublas; do
    if dir="$(find_lib "lib$lib.so.13*")"; then
        echo "lib$lib (CUDA 13): $dir"
        lib_dirs+=("$dir")
    else
        other="$(find_lib "lib$lib.so.*" || true)"
        echo "gpu-check: CUDA 13's lib$lib.so.13 was not found (looked in \$CUDA_HOME/lib64, /usr/local/cuda*/lib64 and the nvidia packages under $site_packages)${other:+; only another version in $other, which the CUDA 13 build cannot use}" >&2
        libs_ok=0
    fi
done
if [ "$libs_ok" = 1 ]; then
    LD_LIBRARY_PATH="$(printf '%s:' "${lib_dirs[@]}" | awk -v RS=: '!seen[$0]++ && NF' | paste -sd:)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LD_LIBRARY_PATH
    record "CUDA 13 libnvrtc + libcublas" "found (${lib_dirs[*]})"
else
    fail "CUDA 13 libnvrtc + libcublas" "missing: install CUDA 13.0 or pip nvidia-cuda-nvrtc / nvidia-cublas (cu13)"
fi

# --- 2. dataset ----------------------------------------------------------------------------
note "rebuilding CIFAR-10 from the JPEG pack"
if [ -f "$data/test_batch.bin" ] && [ -f "$data/data_batch_5.bin" ]; then
    echo "already there: $data"
    record "dataset" "ok ($data, already there)"
elif ! python3 -c 'import numpy, PIL' 2>/dev/null; then
    fail "dataset" "unpack_jpeg.py needs numpy and Pillow, which python3 lacks (or set CIFAR_DIR to a cifar-10-batches-bin folder)"
elif timeout 120 python3 "$bundle/unpack_jpeg.py" "$bundle/cifar-10-jpeg.pack" "$data" >"$logs/unpack.log" 2>&1; then
    tail -1 "$logs/unpack.log"
    record "dataset" "ok ($(tail -1 "$logs/unpack.log" | grep -o '(.*)'))"
else
    cat "$logs/unpack.log"
    fail "dataset" "unpack_jpeg.py failed (see above)"
fi

# --- 3. GPU tests ----------------------------------------------------------------------------
# The kernels unit-test binary also holds CPU tests that read the source tree at its build
# path: run only its GPU tests there. The others are GPU tests (and a few device-free ones).
export REQUIRE_CUDA=1 CLI_BIN="$bundle/bin/cli"
run_tests() {
    local name="$1"
    shift
    local exe="$bundle/tests/$name"
    note "tests: $name $*"
    if [ ! -x "$exe" ]; then
        fail "tests $name" "executable missing from the bundle"
        return
    fi
    timeout 240 "$exe" --nocapture --test-threads=4 "$@" 2>&1 | tee "$logs/$name.log"
    local rc=${PIPESTATUS[0]}
    local result
    result="$(grep -E '^test result:' "$logs/$name.log" | tail -1 | sed 's/^test result: //; s/; [0-9]* ignored.*//')"
    local skipped
    skipped="$(grep -c '^SKIPPED' "$logs/$name.log")"
    if [ "$rc" = 0 ]; then
        record "tests $name" "${result:-ok}, $skipped skipped"
    else
        fail "tests $name" "exit $rc (${result:-no result line}; see $logs/$name.log)"
    fi
}
run_tests kernels-lib cuda::tests::gpu_ cuda::tests::every_kernel_file_compiles conv2d::cuda::
run_tests kernels-cuda_parity
run_tests models-cuda
run_tests cli-cuda

# --- 4. one epoch on CUDA -----------------------------------------------------------------
note "training one epoch on CUDA"
rm -rf /tmp/gpu-check-run
if [ ! -f "$data/test_batch.bin" ]; then
    echo "no dataset at $data: the training run will fail (see the dataset step)"
fi
train_started=$SECONDS
timeout 300 "$bundle/bin/cli" train --device cuda --data "$data" --no-download --epochs 1 \
    --eval-every-epoch --no-progress --workers 4 --out /tmp/gpu-check-run 2>&1 | tee "$logs/train.log"
rc=${PIPESTATUS[0]}
train_seconds=$((SECONDS - train_started))
if [ "$rc" = 0 ]; then
    loss="$(grep -o 'train loss [0-9.]*' "$logs/train.log" | tail -1)"
    accuracy="$(grep -o 'test accuracy: [0-9.]*' "$logs/train.log" | tail -1 | grep -o '[0-9.]*$')"
    rate="$(grep -o '"images_per_sec":[0-9.]*' /tmp/gpu-check-run/metrics.jsonl 2>/dev/null | tail -1 | cut -d: -f2)"
    record "train 1 epoch (batch 32, cuda)" "ok: ${loss}, test accuracy ${accuracy}%, ${train_seconds} s in all, $(printf '%.0f' "${rate:-0}") img/s training"
else
    fail "train 1 epoch (batch 32, cuda)" "exit $rc (see $logs/train.log)"
fi

# --- 5. per-step timing, ours vs PyTorch eager ----------------------------------------------
note "per-step timing, ours vs PyTorch eager"
declare -a timings=()
rate_of() { grep -o '[0-9.]* images/s' "$1" | tail -1 | cut -d' ' -f1; }
for tf32 in off on; do
    flag=()
    [ "$tf32" = on ] && flag=(--tf32)
    for batch in 32 128; do
        steps=$((batch == 32 ? 60 : 25))
        timeout 120 "$bundle/bin/cli" bench-step --device cuda --batch-size "$batch" --steps "$steps" \
            --warmup 5 "${flag[@]}" >"$logs/ours-$batch-$tf32.log" 2>&1
        cat "$logs/ours-$batch-$tf32.log"
        timeout 120 python3 scripts/pytorch_step.py --batch-size "$batch" --steps "$steps" \
            --warmup 5 "${flag[@]}" >"$logs/torch-$batch-$tf32.log" 2>&1
        tail -1 "$logs/torch-$batch-$tf32.log"
        ours="$(rate_of "$logs/ours-$batch-$tf32.log")"
        torch="$(rate_of "$logs/torch-$batch-$tf32.log")"
        ratio="-"
        if [ -n "$ours" ] && [ -n "$torch" ]; then
            ratio="$(awk -v a="$ours" -v b="$torch" 'BEGIN { printf "%.2f", a / b }')"
        else
            failed=1
        fi
        timings+=("$(printf '%5s  %-4s %12s %12s %10s' "$batch" "$tf32" "${ours:-FAILED}" "${torch:-FAILED}" "$ratio")")
    done
done

# --- summary --------------------------------------------------------------------------------
echo
echo "================ gpu-check summary: ${gpu_name:-unknown GPU}, $((SECONDS - started)) s ================"
printf '%s\n' "${summary[@]}"
echo
echo "training step (forward + cross-entropy + backward + Adam), images/s, same GPU:"
printf '%5s  %-4s %12s %12s %10s\n' batch tf32 ours pytorch ours/torch
printf '%s\n' "${timings[@]}"
echo "logs: $logs"
exit "$failed"
