#!/usr/bin/env bash
# CPU speed of our stack beside PyTorch on the notebook's network: one table.
#
# usage: scripts/compare-pytorch.sh [--rounds R] [--warmup W] [--steps S] [--threads T]
#        (defaults: 3 rounds, 3 warm-up and 10 timed steps per measurement, 2 threads)
#
# Measurements, f32 on the CPU: a training step (forward, cross-entropy, backward, Adam
# lr 1e-3) at batch 32 and 128, and inference at batch 256; PyTorch in both NCHW and
# channels_last, the ratio taken against PyTorch's better layout; and the peak resident
# memory (VmHWM, whole process) of the batch-128 training run of each.
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

TORCH_VERSION=2.15.0
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${VENV:-$root/.venv}"

rounds=3
warmup=3
steps=10
threads=2
usage="usage: scripts/compare-pytorch.sh [--rounds R] [--warmup W] [--steps S] [--threads T]"
while [ $# -gt 0 ]; do
    case "$1" in
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

torch_works() {
    [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "
import torch, safetensors.torch
assert torch.__version__.split('+')[0] == '$TORCH_VERSION', torch.__version__
torch.nn.functional.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 3, 3))
" >/dev/null 2>&1
}

install_torch() {
    echo "compare-pytorch: installing PyTorch $TORCH_VERSION (CPU use) into $venv ..." >&2
    local start=$SECONDS
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --no-deps "torch==$TORCH_VERSION"
    # torch's own requirements for this platform, less the Python packages the CPU never
    # imports (triton compiles GPU kernels; cuda-bindings drives CUDA from Python). The
    # nvidia-*/cuda-toolkit ones stay: libtorch_cuda.so, which `import torch` loads, links them.
    local deps
    deps="$("$venv/bin/python" - <<'EOF'
import re
from importlib.metadata import requires
skip = {"triton", "cuda-bindings"}
for req in requires("torch") or []:
    spec, _, marker = req.partition(";")
    if "extra ==" in marker:
        continue
    name = re.split(r"[\[<>=~! ]", spec.strip(), maxsplit=1)[0].lower()
    if name not in skip:
        print(spec.strip())
EOF
)"
    mapfile -t deps_array <<<"$deps"
    "$venv/bin/pip" install --quiet "${deps_array[@]}" numpy safetensors
    echo "compare-pytorch: (pip's note that triton and cuda-bindings are missing is expected)" >&2
    echo "compare-pytorch: installed in $((SECONDS - start)) s, $(du -sh "$venv" | cut -f1)" >&2
    torch_works || {
        echo "compare-pytorch: PyTorch in $venv still does not import; see the pip output above" >&2
        exit 1
    }
}

torch_works || install_torch

cargo build --release --quiet -p benches --bin step_bench
# Where cargo put it: $CARGO_TARGET_DIR or build.target-dir when set, ./target otherwise.
target_dir="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
ours_bin="$target_dir/release/step_bench"
results="$(mktemp)"
trap 'rm -f "$results"' EXIT

ours() { # MODE BATCH
    RAYON_NUM_THREADS=$threads "$ours_bin" "$1" "$2" "$warmup" "$steps" >>"$results"
}

theirs() { # MODE BATCH [--channels-last]
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" \
        "$venv/bin/python" "$root/scripts/pytorch_cpu_bench.py" "$1" "$2" \
        --warmup "$warmup" --steps "$steps" --threads "$threads" ${3:+"$3"} >>"$results"
}

load_before="$(cut -d' ' -f1 /proc/loadavg)"
configs=("train 32" "train 128" "infer 256")
for round in $(seq 1 "$rounds"); do
    for config in "${configs[@]}"; do
        # $config is "MODE BATCH", split on purpose.
        # shellcheck disable=SC2086
        if [ $((round % 2)) -eq 1 ]; then
            ours $config
            theirs $config
            theirs $config --channels-last
        else
            theirs $config --channels-last
            theirs $config
            ours $config
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


def median(impl, mode, batch, field, fmt=None):
    values = [r[field] for r in runs
              if r["impl"] == impl and r["mode"] == mode and r["batch"] == batch
              and r.get("format") == fmt and r[field] is not None]
    return statistics.median(values) if values else float("nan")


print(f"notebook Net on the CPU, f32, {threads} threads: ours vs PyTorch {torch_version}")
print(f"median of {rounds} round(s), each {warmup} warm-up + {steps} timed steps per process; "
      f"load average {load_before} before, {load_after} after, on {cpus} cores")
print()
head = ("measurement", "ours", "torch NCHW", "torch ch_last", "ours/best")
print(f"{head[0]:<33} {head[1]:>8} {head[2]:>11} {head[3]:>14} {head[4]:>10}")
for mode, batch, label in [("train", 32, "training step, batch 32"),
                           ("train", 128, "training step, batch 128"),
                           ("infer", 256, "inference, batch 256")]:
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
print()
print("img/s ratio: ours / PyTorch's faster layout (above 1: ours is faster).\n"
      "memory ratio: ours / PyTorch's smaller peak (below 1: ours uses less); PyTorch's peak\n"
      "includes the Python interpreter and libtorch's loaded code.")
# The run itself keeps `threads` cores busy, so only load beyond that means company.
if float(load_before) > 1.0 or float(load_after) > int(threads) + 1.0:
    print("WARNING: other processes were using the cores (see the load average), so every "
          "figure\nis low and noisy, PyTorch's most (its OpenMP threads wait for each other at "
          "every layer);\nrerun on a quiet machine.")
EOF
