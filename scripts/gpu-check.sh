#!/usr/bin/env bash
# The whole GPU check, in one run on the GPU machine (CUDA 13 driver, PyTorch and numpy, no
# Rust toolchain), from the repository root with the gpu-bundle/ folder that
# scripts/build-gpu-bundle.sh builds (carry it along). Within one deadline (520 s, or
# $GPU_CHECK_SECONDS) it
#
#   1. finds CUDA 13's libnvrtc and libcublas (the toolkit's lib64 folder, or the nvidia
#      packages beside PyTorch) and puts their folders on LD_LIBRARY_PATH;
#   2. rebuilds CIFAR-10 from the bundled JPEG pack into /tmp/cifar/cifar-10-batches-bin
#      with its unpack_jpeg.py (numpy and Pillow; about 10 s), or uses $CIFAR_DIR;
#   3. runs the bundled test executables' GPU tests with --nocapture and REQUIRE_CUDA=1 (so
#      a test that cannot reach the GPU fails instead of printing SKIPPED), one test at a
#      time with KERNELS_CUDA_SYNC=1, so that a kernel that faults is named by its own
#      launch instead of failing every later test in the binary;
#   4. runs the CUDA parity tests once more under compute-sanitizer's memcheck (one case
#      per op), where compute-sanitizer is installed;
#   5. trains one epoch on CUDA (`cli train --device cuda ... --epochs 1 --eval-every-epoch`);
#   6. times training steps (forward, loss, backward, Adam) of ours and of PyTorch eager on
#      the same GPU, at batch 32 and 128, TF32 off on both sides, then on, then in bf16
#      (ours --precision bf16, PyTorch torch.autocast bf16); then airbench94's step at batch
#      1,024 against the PyTorch port's, f32 (TF32 off) and bf16;
#
# and prints a compact summary table last, whatever happened: each step's timeout is its
# own cap or what is left before the deadline, whichever is less, and a step with no time
# left is reported as skipped. Exits non-zero when a step failed.
#
# Logs go to /tmp/gpu-check; where $OUT is set (the device tool's output folder) they are
# also packed into $OUT/gpu-check-logs.tar.gz after every step, beside
# $OUT/gpu-check-summary.txt.
#
#   scripts/gpu-check.sh            BUNDLE=path to use another bundle folder
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bundle="${BUNDLE:-$root/gpu-bundle}"
data="${CIFAR_DIR:-/tmp/cifar/cifar-10-batches-bin}"
logs=/tmp/gpu-check
rm -rf "$logs"
mkdir -p "$logs"
started=$SECONDS
deadline=$((started + ${GPU_CHECK_SECONDS:-520}))
# Kept back from every step for the summary and the log tarball.
reserve=10
declare -a summary=()
declare -a timings=()
gpu_name=""
failed=0

note() { echo "== gpu-check [$((SECONDS - started)) s]: $*"; }
record() { summary+=("$(printf '%-34s %s' "$1" "$2")"); }
fail() {
    record "$1" "FAILED: $2"
    failed=1
}

# Seconds the next step may run: its cap ($1), or what is left before the deadline less
# the reserve, whichever is less (0 when nothing is left).
allow() {
    local cap=$1 left=$((deadline - reserve - SECONDS))
    ((left < cap)) && cap=$left
    ((cap < 0)) && cap=0
    echo "$cap"
}

# limited CAP COMMAND...: COMMAND under a timeout from allow; 124 when it was stopped
# there, 125 when no time was left to start it.
limited() {
    local seconds
    seconds="$(allow "$1")"
    shift
    if ((seconds < 5)); then
        echo "gpu-check: no time left before the deadline for: $*" >&2
        return 125
    fi
    timeout -k 5 "$seconds" "$@"
}

# What a status from limited means, for the summary.
why() {
    case "$1" in
        124 | 137) echo "stopped at its time limit" ;;
        125) echo "skipped: no time left before the deadline" ;;
        *) echo "exit $1" ;;
    esac
}

save_logs() {
    [ -n "${OUT:-}" ] || return 0
    printf '%s\n' "${summary[@]}" >"$logs/summary.txt"
    tar -czf "$OUT/gpu-check-logs.tar.gz.part" -C "$(dirname "$logs")" "$(basename "$logs")" 2>/dev/null &&
        mv "$OUT/gpu-check-logs.tar.gz.part" "$OUT/gpu-check-logs.tar.gz"
}

print_summary() {
    echo
    echo "================ gpu-check summary: ${gpu_name:-unknown GPU}, $((SECONDS - started)) s ================"
    printf '%s\n' "${summary[@]}"
    echo
    echo "training step (forward, loss, backward, optimizer: Adam for the net, SGD for airbench94), images/s, same GPU:"
    printf '%9s  %-4s %12s %12s %10s\n' batch mode ours pytorch ours/torch
    printf '%s\n' "${timings[@]}"
    echo "logs: $logs${OUT:+ (packed into $OUT/gpu-check-logs.tar.gz)}"
}

finish() {
    print_summary | tee "$logs/summary.txt"
    if [ -n "${OUT:-}" ]; then
        cp "$logs/summary.txt" "$OUT/gpu-check-summary.txt"
        save_logs
    fi
}
trap finish EXIT
trap 'record "gpu-check" "INTERRUPTED"; exit 130' INT TERM

if [ ! -x "$bundle/bin/cli" ]; then
    echo "gpu-check: $bundle/bin/cli is missing: run scripts/build-gpu-bundle.sh on the build machine and carry gpu-bundle/" >&2
    fail "bundle" "$bundle/bin/cli is missing"
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
save_logs

# --- 2. dataset ----------------------------------------------------------------------------
note "rebuilding CIFAR-10 from the JPEG pack"
if [ -f "$data/test_batch.bin" ] && [ -f "$data/data_batch_5.bin" ]; then
    echo "already there: $data"
    record "dataset" "ok ($data, already there)"
elif ! python3 -c 'import numpy, PIL' 2>/dev/null; then
    fail "dataset" "unpack_jpeg.py needs numpy and Pillow, which python3 lacks (or set CIFAR_DIR to a cifar-10-batches-bin folder)"
else
    limited 90 python3 "$bundle/unpack_jpeg.py" "$bundle/cifar-10-jpeg.pack" "$data" >"$logs/unpack.log" 2>&1
    rc=$?
    if [ "$rc" = 0 ]; then
        tail -1 "$logs/unpack.log"
        record "dataset" "ok ($(tail -1 "$logs/unpack.log" | grep -o '(.*)'))"
    else
        cat "$logs/unpack.log"
        fail "dataset" "unpack_jpeg.py: $(why "$rc") (see unpack.log)"
    fi
fi
save_logs

# --- 3. GPU tests ----------------------------------------------------------------------------
# The kernels unit-test binary also holds CPU tests that read the source tree at its build
# path: run only its GPU tests there. The others are GPU tests (and a few device-free ones).
# One test at a time, each kernel launch waited for: a fault is reported by the launch and
# the test that caused it.
export REQUIRE_CUDA=1 CLI_BIN="$bundle/bin/cli"
run_tests() {
    local name="$1" cap="$2"
    shift 2
    local exe="$bundle/tests/$name"
    note "tests: $name $*"
    if [ ! -x "$exe" ]; then
        fail "tests $name" "executable missing from the bundle"
        return
    fi
    KERNELS_CUDA_SYNC=1 limited "$cap" "$exe" --nocapture --test-threads=1 "$@" 2>&1 | tee "$logs/$name.log"
    local rc=${PIPESTATUS[0]}
    local result
    result="$(grep -E '^test result:' "$logs/$name.log" | tail -1 | sed 's/^test result: //; s/; [0-9]* ignored.*//')"
    local skipped
    skipped="$(grep -c '^SKIPPED' "$logs/$name.log")"
    if [ "$rc" = 0 ]; then
        record "tests $name" "${result:-ok}, $skipped skipped"
    else
        fail "tests $name" "$(why "$rc") (${result:-no result line}; see $name.log)"
    fi
    save_logs
}
run_tests kernels-lib 90 cuda::tests::gpu_ cuda::tests::every_kernel_file_compiles \
    cuda::tests::the_cubin_cache_serves conv2d::cuda::
run_tests kernels-cuda_parity 120
run_tests kernels-cuda_bf16 60
run_tests models-cuda 90
run_tests cli-cuda 90

# --- 4. memcheck -----------------------------------------------------------------------------
sanitizer="$(command -v compute-sanitizer ||
    compgen -G "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer" ||
    compgen -G "/usr/local/cuda*/bin/compute-sanitizer" | head -1 || true)"
if [ -z "$sanitizer" ]; then
    record "compute-sanitizer memcheck" "not run: compute-sanitizer is not installed here"
elif [ ! -x "$bundle/tests/kernels-cuda_parity" ]; then
    record "compute-sanitizer memcheck" "not run: kernels-cuda_parity is missing from the bundle"
else
    note "compute-sanitizer memcheck of the CUDA parity tests (one case per op)"
    CUDA_PARITY_CASES=1 limited 90 "$sanitizer" --tool memcheck --error-exitcode 3 \
        "$bundle/tests/kernels-cuda_parity" --test-threads=1 cuda_matches_cpu \
        >"$logs/memcheck.log" 2>&1
    rc=$?
    summary_line="$(grep -E '^========= ERROR SUMMARY' "$logs/memcheck.log" | tail -1 | sed 's/^========= //')"
    tail -5 "$logs/memcheck.log"
    if [ "$rc" = 0 ]; then
        record "compute-sanitizer memcheck" "ok (${summary_line:-no summary line})"
    else
        fail "compute-sanitizer memcheck" "$(why "$rc") (${summary_line:-no summary line}; see memcheck.log)"
    fi
fi
save_logs

# --- 5. one epoch on CUDA -----------------------------------------------------------------
note "training one epoch on CUDA"
run_dir=/tmp/gpu-check-run
rm -rf "$run_dir"
if [ ! -f "$data/test_batch.bin" ]; then
    echo "no dataset at $data: the training run will fail (see the dataset step)"
fi
train_started=$SECONDS
limited 240 "$bundle/bin/cli" train --device cuda --data "$data" --no-download --epochs 1 \
    --eval-every-epoch --no-progress --workers 4 --out "$run_dir" 2>&1 | tee "$logs/train.log"
rc=${PIPESTATUS[0]}
train_seconds=$((SECONDS - train_started))
cp "$run_dir/metrics.jsonl" "$logs/" 2>/dev/null
if [ "$rc" = 0 ]; then
    loss="$(grep -o 'train loss [0-9.]*' "$logs/train.log" | tail -1)"
    accuracy="$(grep -o 'test accuracy: [0-9.]*' "$logs/train.log" | tail -1 | grep -o '[0-9.]*$')"
    rate="$(grep -o '"images_per_sec":[0-9.]*' "$run_dir/metrics.jsonl" 2>/dev/null | tail -1 | cut -d: -f2)"
    record "train 1 epoch (batch 32, cuda)" "ok: ${loss}, test accuracy ${accuracy}%, ${train_seconds} s in all, $(printf '%.0f' "${rate:-0}") img/s training"
else
    fail "train 1 epoch (batch 32, cuda)" "$(why "$rc") after ${train_seconds} s (see train.log)"
fi
save_logs

# --- 6. per-step timing, ours vs PyTorch eager ----------------------------------------------
note "per-step timing, ours vs PyTorch eager"
rate_of() { grep -o '[0-9.]* images/s' "$1" | tail -1 | cut -d' ' -f1; }
# Modes: plain f32 ("off"), TF32 products ("on"), and autocast bf16 ("bf16", TF32 off).
for tf32 in off on bf16; do
    ours_flag=()
    torch_flag=()
    [ "$tf32" = on ] && ours_flag=(--tf32) && torch_flag=(--tf32)
    [ "$tf32" = bf16 ] && ours_flag=(--precision bf16) && torch_flag=(--bf16)
    for batch in 32 128 a1024; do
        model=net
        if [ "$batch" = a1024 ]; then
            # airbench94 at its batch, f32 (TF32 off) and bf16 only.
            [ "$tf32" = on ] && continue
            model=airbench94
            batch=1024
        fi
        steps=$((batch == 32 ? 60 : 25))
        limited 60 "$bundle/bin/cli" bench-step --device cuda --model "$model" --batch-size "$batch" \
            --steps "$steps" --warmup 5 "${ours_flag[@]}" >"$logs/ours-$batch-$tf32.log" 2>&1
        ours_rc=$?
        cat "$logs/ours-$batch-$tf32.log"
        limited 60 python3 scripts/pytorch_step.py --model "$model" --batch-size "$batch" \
            --steps "$steps" --warmup 5 "${torch_flag[@]}" >"$logs/torch-$batch-$tf32.log" 2>&1
        torch_rc=$?
        tail -1 "$logs/torch-$batch-$tf32.log"
        ours="$(rate_of "$logs/ours-$batch-$tf32.log")"
        torch="$(rate_of "$logs/torch-$batch-$tf32.log")"
        ratio="-"
        if [ -n "$ours" ] && [ -n "$torch" ]; then
            ratio="$(awk -v a="$ours" -v b="$torch" 'BEGIN { printf "%.2f", a / b }')"
        elif [ "$ours_rc" != 125 ] || [ "$torch_rc" != 125 ]; then
            failed=1
        fi
        # A run that had no time left is "no time", one that ran without a rate "FAILED".
        [ "$ours_rc" = 125 ] && ours="no time"
        [ "$torch_rc" = 125 ] && torch="no time"
        label="$batch"
        [ "$model" = airbench94 ] && label="ab94 $batch"
        timings+=("$(printf '%9s  %-4s %12s %12s %10s' "$label" "$tf32" "${ours:-FAILED}" "${torch:-FAILED}" "$ratio")")
        save_logs
    done
done

exit "$failed"
