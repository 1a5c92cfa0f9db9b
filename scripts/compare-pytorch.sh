#!/usr/bin/env bash
# CPU speed of our stack beside PyTorch on the notebook's network: one table.
#
# usage: scripts/compare-pytorch.sh [--rounds R] [--warmup W] [--steps S] [--threads T]
#                                   [--precision f32|bf16|both]
#        (defaults: 3 rounds, 3 warm-up and 10 timed steps per measurement, 2 threads, both)
#
# Measurements on the CPU: a training step (forward, cross-entropy, backward, Adam
# lr 1e-3) at batch 32 and 128, and inference at batch 256; in f32, PyTorch in both NCHW and
# channels_last, the ratio taken against PyTorch's better layout; in bf16, ours with
# `--precision bf16` (autograd::autocast) against PyTorch under
# torch.autocast("cpu", dtype=torch.bfloat16) in channels_last (its better layout for bf16,
# where oneDNN's AMX kernels run); and the peak resident memory (VmHWM, whole process) of
# the batch-128 training run of each.
#
# Every measurement is its own process (benches/src/bin/step_bench.rs for ours,
# scripts/pytorch_cpu_bench.py for PyTorch), so peak memory is per configuration. Ours and
# PyTorch's runs alternate, the order flipping each round so that drift in the machine's load
# falls on both; each figure is the median over the rounds. Threads: RAYON_NUM_THREADS for
# ours; torch.set_num_threads plus OMP_NUM_THREADS/MKL_NUM_THREADS for PyTorch.
# OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE (set on some machines for older OpenBLAS builds) are
# removed for the PyTorch process only.
#
# PyTorch comes from PyPI into .venv/ (ignored by git; override with VENV=path) on first use,
# about 4.4 GB: PyPI's Linux torch wheel is a CUDA build whose libtorch links the CUDA
# libraries, so `import torch` needs the nvidia-* wheels even on a CPU-only machine. The
# Python packages it never imports on the CPU (triton, cuda-bindings) are left out.
#
# For reference, PyTorch 2.15 (oneDNN) measured earlier on a 2-core machine of this kind:
# training batch 32 / 128, inference 256 = NCHW 115 / 143 / 390 img/s, channels_last
# 137 / 184 / 564 img/s.
#
# The run takes a few minutes and keeps both cores busy: other work on the machine slows
# both sides and makes the figures noisy (the load average is printed before and after).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${VENV:-$root/.venv}"

rounds=3
warmup=3
steps=10
threads=2
precision=both
usage="usage: scripts/compare-pytorch.sh [--rounds R] [--warmup W] [--steps S] [--threads T] [--precision f32|bf16|both]"
while [ $# -gt 0 ]; do
    case "$1" in
        --precision)
            if [ $# -lt 2 ] || ! [[ "$2" =~ ^(f32|bf16|both)$ ]]; then
                echo "compare-pytorch: --precision takes f32, bf16 or both" >&2
                echo "$usage" >&2
                exit 2
            fi
            precision=$2
            shift 2
            ;;
        --rounds | --warmup | --steps | --threads)
            if [ $# -lt 2 ] || ! [[ "$2" =~ ^[0-9]+$ ]]; then
                echo "compare-pytorch: $1 needs a non-negative integer" >&2
                echo "$usage" >&2
                exit 2
            fi
            case "$1" in
                --rounds) rounds=$2 ;;
                --warmup) warmup=$2 ;;
                --steps) steps=$2 ;;
                --threads) threads=$2 ;;
            esac
            shift 2
            ;;
        -h | --help)
            echo "$usage"
            exit 0
            ;;
        *)
            echo "compare-pytorch: unknown argument '$1'" >&2
            echo "$usage" >&2
            exit 2
            ;;
    esac
done
if [ "$rounds" -lt 1 ] || [ "$steps" -lt 1 ] || [ "$threads" -lt 1 ]; then
    echo "compare-pytorch: --rounds, --steps and --threads must be at least 1" >&2
    exit 2
fi

# shellcheck source=scripts/pytorch-venv.sh
. "$root/scripts/pytorch-venv.sh"
torch_works || install_torch

cargo build --release --quiet -p benches --bin step_bench
# Where cargo put it: $CARGO_TARGET_DIR or build.target-dir when set, ./target otherwise.
target_dir="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
ours_bin="$target_dir/release/step_bench"
results="$(mktemp)"
trap 'rm -f "$results"' EXIT

ours() { # MODE BATCH [PRECISION]
    RAYON_NUM_THREADS=$threads "$ours_bin" "$1" "$2" "$warmup" "$steps" "${3:-f32}" >>"$results"
}

theirs() { # MODE BATCH [--channels-last] [--bf16]
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" \
        "$venv/bin/python" "$root/scripts/pytorch_cpu_bench.py" "$1" "$2" \
        --warmup "$warmup" --steps "$steps" --threads "$threads" "${@:3}" >>"$results"
}

f32=false
bf16=false
case "$precision" in
    f32) f32=true ;;
    bf16) bf16=true ;;
    both) f32=true bf16=true ;;
esac

load_before="$(cut -d' ' -f1 /proc/loadavg)"
configs=("train 32" "train 128" "infer 256")
for round in $(seq 1 "$rounds"); do
    for config in "${configs[@]}"; do
        # $config is "MODE BATCH", split on purpose.
        # shellcheck disable=SC2086
        if [ $((round % 2)) -eq 1 ]; then
            if $f32; then
                ours $config
                theirs $config
                theirs $config --channels-last
            fi
            if $bf16; then
                ours $config bf16
                theirs $config --channels-last --bf16
            fi
        else
            if $bf16; then
                theirs $config --channels-last --bf16
                ours $config bf16
            fi
            if $f32; then
                theirs $config --channels-last
                theirs $config
                ours $config
            fi
        fi
    done
    echo "compare-pytorch: round $round/$rounds done" >&2
done
load_after="$(cut -d' ' -f1 /proc/loadavg)"

"$venv/bin/python" - "$results" "$rounds" "$warmup" "$steps" "$threads" \
    "$load_before" "$load_after" "$(nproc)" <<'EOF'
import json
import statistics
import sys

path, rounds, warmup, steps, threads, load_before, load_after, cpus = sys.argv[1:]
runs = [json.loads(line) for line in open(path) if line.strip()]
torch_version = next(r["torch"] for r in runs if r["impl"] == "pytorch")


def median(impl, mode, batch, field, fmt=None, precision="f32"):
    values = [r[field] for r in runs
              if r["impl"] == impl and r["mode"] == mode and r["batch"] == batch
              and r.get("format") == fmt and r.get("precision", "f32") == precision
              and r[field] is not None]
    return statistics.median(values) if values else float("nan")


def measured(precision):
    return any(r.get("precision", "f32") == precision for r in runs)


CONFIGS = [("train", 32, "training step, batch 32"),
           ("train", 128, "training step, batch 128"),
           ("infer", 256, "inference, batch 256")]

print(f"notebook Net on the CPU, {threads} threads: ours vs PyTorch {torch_version}")
print(f"median of {rounds} round(s), each {warmup} warm-up + {steps} timed steps per process; "
      f"load average {load_before} before, {load_after} after, on {cpus} cores")
if measured("f32"):
    print()
    print("f32")
    head = ("measurement", "ours", "torch NCHW", "torch ch_last", "ours/best")
    print(f"{head[0]:<33} {head[1]:>8} {head[2]:>11} {head[3]:>14} {head[4]:>10}")
    for mode, batch, label in CONFIGS:
        ours = median("ours", mode, batch, "img_per_s")
        nchw = median("pytorch", mode, batch, "img_per_s", "nchw")
        cl = median("pytorch", mode, batch, "img_per_s", "channels_last")
        best = max(nchw, cl)
        print(f"{label + ' (img/s)':<33} {ours:>8.1f} {nchw:>11.1f} {cl:>14.1f} "
              f"{ours / best:>9.2f}x")
    ours = median("ours", "train", 128, "peak_rss_mib")
    nchw = median("pytorch", "train", 128, "peak_rss_mib", "nchw")
    cl = median("pytorch", "train", 128, "peak_rss_mib", "channels_last")
    print(f"{'peak RSS, train 128 (MiB)':<33} {ours:>8.0f} {nchw:>11.0f} {cl:>14.0f} "
          f"{ours / min(nchw, cl):>9.2f}x")
if measured("bf16"):
    print()
    print("bf16: ours --precision bf16 vs PyTorch autocast bf16 (channels_last)")
    head = ("measurement", "ours bf16", "torch bf16 ch_last", "ours/torch")
    print(f"{head[0]:<33} {head[1]:>10} {head[2]:>19} {head[3]:>10}")
    for mode, batch, label in CONFIGS:
        ours = median("ours", mode, batch, "img_per_s", precision="bf16")
        cl = median("pytorch", mode, batch, "img_per_s", "channels_last", "bf16")
        print(f"{label + ' (img/s)':<33} {ours:>10.1f} {cl:>19.1f} {ours / cl:>9.2f}x")
    ours = median("ours", "train", 128, "peak_rss_mib", precision="bf16")
    cl = median("pytorch", "train", 128, "peak_rss_mib", "channels_last", "bf16")
    print(f"{'peak RSS, train 128 (MiB)':<33} {ours:>10.0f} {cl:>19.0f} {ours / cl:>9.2f}x")
print()
print("img/s ratio: ours / PyTorch's faster layout in f32, / PyTorch's channels_last in bf16\n"
      "(above 1: ours is faster).\n"
      "memory ratio: ours / PyTorch's smaller peak (below 1: ours uses less); PyTorch's peak\n"
      "includes the Python interpreter and libtorch's loaded code.")
# The run itself keeps `threads` cores busy, so only load beyond that means company.
if float(load_before) > 1.0 or float(load_after) > int(threads) + 1.0:
    print("WARNING: other processes were using the cores (see the load average), so every "
          "figure\nis low and noisy, PyTorch's most (its OpenMP threads wait for each other at "
          "every layer);\nrerun on a quiet machine.")
EOF
