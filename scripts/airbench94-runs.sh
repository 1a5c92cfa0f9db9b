#!/usr/bin/env bash
# airbench94's whole recipe, ours (`cli train --model airbench94`) and the PyTorch port
# (scripts/airbench94_pytorch.py) side by side, N seeds each, on the CPU: one table
# of test accuracy with and without TTA, the recipe's time (whitening, training steps, TTA
# evaluation; reading the data excluded, as the port times it), the process's wall time
# and its peak RSS (both from /usr/bin/time -v).
#
# usage: scripts/airbench94-runs.sh [--seeds N] [--threads T] [--data PATH]
#                                   [--steps S] [--limit L] [--test-limit L] [--no-pytorch]
#                                   [--precision f32|bf16] [--first-seed K]
#   --seeds N      N seeds (default 3): K..K+N-1
#   --first-seed K the first seed (default 0), to add seeds to an earlier table
#   --threads T    threads for both (default 2: RAYON_NUM_THREADS for ours,
#                  torch.set_num_threads + OMP/MKL_NUM_THREADS for PyTorch)
#   --data PATH    CIFAR-10 (default: $CIFAR10_PATH, else the shared archive)
#   --steps S      stop both after S steps (quick checks; the schedule still spans the run)
#   --limit L      ours only: train on the first L images (the port has no such flag, so
#                  PyTorch is left out of such a run)
#   --test-limit L ours only, likewise: test on the first L test images
#   --no-pytorch   ours only
#   --precision P  f32 (default) or bf16: ours `--precision bf16`, PyTorch
#                  `torch.autocast("cpu", dtype=torch.bfloat16)` (needs AMX or AVX512-BF16)
#
# A whole run takes about half an hour per seed and side on 2 cores: run it on a quiet
# machine (the load average is printed before and after) and record the table in
# docs/results.md with the date and machine. Seeds alternate which side runs first, so
# drift in the machine's load falls on both. Run folders and logs stay in $OUT_DIR
# (default: a new folder under /tmp, printed at the end).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${VENV:-$root/.venv}"

seeds=3
first_seed=0
threads=2
data="${CIFAR10_PATH:-$root/../../shared/data/cifar-10-binary.tar.gz}"
[ -e "$data" ] || data="/work/shared/data/cifar-10-binary.tar.gz"
steps=""
limit=""
test_limit=""
pytorch=1
precision=f32
usage="usage: scripts/airbench94-runs.sh [--seeds N] [--threads T] [--data PATH] [--steps S] [--limit L] [--test-limit L] [--no-pytorch] [--precision f32|bf16] [--first-seed K]"
number() { # FLAG VALUE
    if ! [[ "$2" =~ ^[1-9][0-9]*$ ]]; then
        echo "airbench94-runs: $1 needs a positive integer, got '$2'" >&2
        echo "$usage" >&2
        exit 2
    fi
}
while [ $# -gt 0 ]; do
    case "$1" in
        --seeds | --first-seed | --threads | --steps | --limit | --test-limit | --data | --precision)
            if [ $# -lt 2 ]; then
                echo "airbench94-runs: $1 needs a value" >&2
                exit 2
            fi
            case "$1" in
                --seeds) number "$1" "$2"; seeds=$2 ;;
                --first-seed)
                    [[ "$2" =~ ^[0-9]+$ ]] || { echo "airbench94-runs: --first-seed needs a seed (0, 1, ...), got '$2'" >&2; exit 2; }
                    first_seed=$2
                    ;;
                --threads) number "$1" "$2"; threads=$2 ;;
                --steps) number "$1" "$2"; steps=$2 ;;
                --limit) number "$1" "$2"; limit=$2 ;;
                --test-limit) number "$1" "$2"; test_limit=$2 ;;
                --data) data=$2 ;;
                --precision)
                    case "$2" in
                        f32 | bf16) precision=$2 ;;
                        *)
                            echo "airbench94-runs: --precision is f32 or bf16, got '$2'" >&2
                            exit 2
                            ;;
                    esac
                    ;;
            esac
            shift 2
            ;;
        --no-pytorch)
            pytorch=0
            shift
            ;;
        -h | --help)
            echo "$usage"
            exit 0
            ;;
        *)
            echo "airbench94-runs: unknown argument '$1'" >&2
            echo "$usage" >&2
            exit 2
            ;;
    esac
done
if [ ! -e "$data" ]; then
    echo "airbench94-runs: no CIFAR-10 at $data (give --data)" >&2
    exit 2
fi
if [ -n "$limit$test_limit" ] && [ "$pytorch" = 1 ]; then
    echo "airbench94-runs: --limit and --test-limit are for ours only (the port reads the whole set); PyTorch is left out" >&2
    pytorch=0
fi
if [ ! -x /usr/bin/time ]; then
    echo "airbench94-runs: needs GNU time at /usr/bin/time (apt-get install time) for the peak RSS" >&2
    exit 2
fi

if [ "$pytorch" = 1 ]; then
    # shellcheck source=scripts/pytorch-venv.sh
    . "$root/scripts/pytorch-venv.sh"
    torch_works || install_torch
fi
cargo build --release --quiet -p cli
# Where cargo put it: $CARGO_TARGET_DIR or build.target-dir when set, ./target otherwise.
target_dir="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
cli="$target_dir/release/cli"
out="${OUT_DIR:-$(mktemp -d /tmp/airbench94-runs.XXXXXX)}"
mkdir -p "$out"
results="$out/results.jsonl"
: >"$results"

# /usr/bin/time -v's wall time (h:mm:ss or m:ss.ss) in seconds and peak RSS in MiB.
time_fields() { # TIME_LOG
    python3 - "$1" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", text).group(1)
seconds = 0.0
for part in wall.split(":"):
    seconds = seconds * 60 + float(part)
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
print(seconds, rss / 1024)
EOF
}

ours() { # SEED
    local run="$out/ours-seed$1"
    local flags=(train --model airbench94 --device cpu --no-progress --data "$data"
        --seed "$1" --out "$run" --overwrite --precision "$precision")
    [ -z "$steps" ] || flags+=(--steps "$steps")
    [ -z "$limit" ] || flags+=(--limit "$limit")
    [ -z "$test_limit" ] || flags+=(--test-limit "$test_limit")
    echo "airbench94-runs: ours, seed $1 -> $run" >&2
    RAYON_NUM_THREADS=$threads /usr/bin/time -v -o "$out/ours-seed$1.time" \
        "$cli" "${flags[@]}" >"$out/ours-seed$1.log"
    read -r wall rss < <(time_fields "$out/ours-seed$1.time")
    python3 - "$run/metrics.jsonl" "$1" "$wall" "$rss" >>"$results" <<'EOF'
import json, sys
path, seed, wall, rss = sys.argv[1:]
records = [json.loads(l) for l in open(path) if l.strip()]
whiten = sum(r["seconds"] for r in records if r["kind"] == "whitening")
train = sum(r["seconds"] for r in records if r["kind"] == "epoch")
test = next(r for r in records if r["kind"] == "test")
print(json.dumps({
    "side": "ours", "seed": int(seed), "steps": test["steps"],
    "tta_accuracy": test["tta_accuracy"], "accuracy": test["test_accuracy"],
    "recipe_seconds": whiten + train + test["tta_seconds"],
    "wall_seconds": float(wall), "peak_rss_mib": float(rss),
}))
EOF
}

theirs() { # SEED
    local flags=(--data "$data" --seed "$1" --threads "$threads" --precision "$precision")
    [ -z "$steps" ] || flags+=(--steps "$steps")
    echo "airbench94-runs: PyTorch, seed $1" >&2
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" \
        /usr/bin/time -v -o "$out/pytorch-seed$1.time" \
        "$venv/bin/python" "$root/scripts/airbench94_pytorch.py" "${flags[@]}" \
        >"$out/pytorch-seed$1.json" 2>"$out/pytorch-seed$1.log"
    read -r wall rss < <(time_fields "$out/pytorch-seed$1.time")
    python3 - "$out/pytorch-seed$1.json" "$wall" "$rss" >>"$results" <<'EOF'
import json, sys
path, wall, rss = sys.argv[1:]
run = json.loads(open(path).read().strip().splitlines()[-1])
print(json.dumps({
    "side": "pytorch", "seed": run["seed"], "steps": run["steps"],
    "tta_accuracy": run["tta_accuracy"], "accuracy": run["accuracy"],
    "recipe_seconds": run["total_seconds"],
    "wall_seconds": float(wall), "peak_rss_mib": float(rss),
}))
EOF
}

load_before="$(cut -d' ' -f1 /proc/loadavg)"
for seed in $(seq "$first_seed" $((first_seed + seeds - 1))); do
    if [ "$pytorch" = 0 ]; then
        ours "$seed"
    elif [ $((seed % 2)) -eq 0 ]; then
        ours "$seed"
        theirs "$seed"
    else
        theirs "$seed"
        ours "$seed"
    fi
done
load_after="$(cut -d' ' -f1 /proc/loadavg)"

python3 - "$results" "$precision" "$threads" "$load_before" "$load_after" "$(nproc)" "${steps:-all}" "${limit:-all}" "${test_limit:-all}" <<'EOF'
import json, statistics, sys
path, precision, threads, before, after, cpus, steps, limit, test_limit = sys.argv[1:]
runs = [json.loads(l) for l in open(path) if l.strip()]
print(f"airbench94 on the CPU, {precision}, {threads} threads; steps: {steps}, training images: {limit}, "
      f"test images: {test_limit}; "
      f"load average {before} before, {after} after, on {cpus} cores")
print()
head = ("side", "seed", "steps", "TTA acc %", "plain acc %", "recipe s", "wall s", "peak RSS MiB")
print(f"{head[0]:<8} {head[1]:>4} {head[2]:>5} {head[3]:>10} {head[4]:>11} {head[5]:>9} {head[6]:>8} {head[7]:>13}")
for side in ("ours", "pytorch"):
    mine = [r for r in runs if r["side"] == side]
    for r in sorted(mine, key=lambda r: r["seed"]):
        print(f"{side:<8} {r['seed']:>4} {r['steps']:>5} {r['tta_accuracy']:>10.2f} {r['accuracy']:>11.2f} "
              f"{r['recipe_seconds']:>9.1f} {r['wall_seconds']:>8.1f} {r['peak_rss_mib']:>13.0f}")
    if len(mine) > 1:
        tta = [r["tta_accuracy"] for r in mine]
        print(f"{side:<8} {'mean':>4} {'':>5} {statistics.mean(tta):>10.2f} "
              f"{statistics.mean(r['accuracy'] for r in mine):>11.2f} "
              f"{statistics.median(r['recipe_seconds'] for r in mine):>9.1f} "
              f"{statistics.median(r['wall_seconds'] for r in mine):>8.1f} "
              f"{max(r['peak_rss_mib'] for r in mine):>13.0f}   (TTA std {statistics.stdev(tta):.2f}; "
              "times median, RSS max)")
print()
print("recipe s: whitening + training steps + TTA evaluation (data loading excluded);\n"
      "wall s and peak RSS: the whole process, from /usr/bin/time -v.")
if float(before) > 1.0 or float(after) > int(threads) + 1.0:
    print("WARNING: other processes were using the cores (see the load average): the times are noisy.")
EOF
echo "runs and logs: $out" >&2
