#!/usr/bin/env bash
# bf16 kernels beside PyTorch's autocast on the CPU: GEMM ceiling and per-layer tables.
#
# usage: scripts/bf16-bench.sh [--rounds R] [--threads T] [--only gemm|layers] [--clock wall|cpu]
#        (defaults: 2 rounds, 2 threads, everything, wall clock)
#
# Ours: benches/src/bin/bf16_bench.rs (kernels::bf16, AMX or AVX512-BF16, f32 in and out).
# PyTorch: scripts/bf16_bench.py (torch.mm on bf16 tensors and under autocast;
# convolutions and linear layers under torch.autocast("cpu", dtype=torch.bfloat16) in
# channels_last). Measured:
#   - the dot-product instruction's peak (ours, 1 thread and all threads) and the clock;
#   - GEMMs at the networks' product shapes;
#   - every conv / linear layer, forward and backward, of the notebook's network at
#     batch 32 and 128 (forward also at 256, the inference batch), and of airbench94 at
#     batch 1024.
# Ours and PyTorch's processes alternate, the order flipping each round; each figure is
# the median over the rounds (the least, with --clock cpu). Each call is timed by the wall clock (median of the calls), or
# with --clock cpu by the process's CPU time (the least of the calls): on a shared machine,
# the least disturbed call, without the time spent waiting for a core. Use --clock cpu with
# --threads 1: with more, the threads' waits for one another (PyTorch's OpenMP threads spin)
# would count. PyTorch comes from .venv/ (scripts/compare-pytorch.sh
# installs it). The load average is printed before and after: on a shared machine
# compare the ratios of one run, not absolute times across runs.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${VENV:-$root/.venv}"
rounds=2
threads=2
only=""
clock=wall
usage="usage: scripts/bf16-bench.sh [--rounds R] [--threads T] [--only gemm|layers] [--clock wall|cpu]"
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds | --threads)
            if [ $# -lt 2 ] || ! [[ "$2" =~ ^[1-9][0-9]*$ ]]; then
                echo "bf16-bench: $1 needs a positive integer" >&2
                exit 2
            fi
            [ "$1" = --rounds ] && rounds=$2 || threads=$2
            shift 2
            ;;
        --only)
            if [ $# -lt 2 ] || ! [[ "$2" =~ ^(gemm|layers)$ ]]; then
                echo "bf16-bench: --only takes gemm or layers" >&2
                exit 2
            fi
            only=$2
            shift 2
            ;;
        --clock)
            if [ $# -lt 2 ] || ! [[ "$2" =~ ^(wall|cpu)$ ]]; then
                echo "bf16-bench: --clock takes wall or cpu" >&2
                exit 2
            fi
            clock=$2
            shift 2
            ;;
        -h | --help)
            echo "$usage"
            exit 0
            ;;
        *)
            echo "bf16-bench: unknown argument '$1'" >&2
            echo "$usage" >&2
            exit 2
            ;;
    esac
done

if ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
    echo "bf16-bench: no PyTorch in $venv; run scripts/compare-pytorch.sh once to install it" >&2
    exit 1
fi
cargo build --release --quiet -p benches --bin bf16_bench
ours_bin="$root/target/release/bf16_bench"
results="$(mktemp)"
specs="$(mktemp)"
trap 'rm -f "$results" "$specs"' EXIT

ours() {
    BF16_BENCH_CLOCK=$clock RAYON_NUM_THREADS=$threads "$ours_bin" "$@" >>"$results"
}

theirs() { # MODE < specs
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS="$threads" \
        MKL_NUM_THREADS="$threads" "$venv/bin/python" "$root/scripts/bf16_bench.py" "$1" \
        --threads "$threads" --clock "$clock" <"$specs" >>"$results"
}

pair() { # ROUND SPEC-COMMAND... : ours then PyTorch on odd rounds, the other way on even
    local round=$1 mode=$2
    shift 2
    if [ "$mode" = gemm ]; then
        "$ours_bin" gemm-shapes >"$specs"
    else
        "$ours_bin" list "$@" >"$specs"
    fi
    if [ $((round % 2)) -eq 1 ]; then
        ours "$mode" "$@"
        theirs "$mode"
    else
        theirs "$mode"
        ours "$mode" "$@"
    fi
}

load_before="$(cut -d' ' -f1 /proc/loadavg)"
RAYON_NUM_THREADS=$threads "$ours_bin" peak >>"$results"
for round in $(seq 1 "$rounds"); do
    if [ "$only" != layers ]; then
        pair "$round" gemm
    fi
    if [ "$only" != gemm ]; then
        pair "$round" layers notebook 32
        pair "$round" layers notebook 128
        pair "$round" layers notebook 256 fwd
        # On one thread by CPU time, airbench's layers at batch 256: the same shapes a
        # quarter as often (the time per image is what is compared).
        if [ "$clock" = cpu ]; then
            pair "$round" layers airbench 256
        else
            pair "$round" layers airbench 1024
        fi
    fi
    echo "bf16-bench: round $round/$rounds done" >&2
done
load_after="$(cut -d' ' -f1 /proc/loadavg)"

"$venv/bin/python" - "$results" "$rounds" "$threads" "$load_before" "$load_after" "$clock" <<'EOF'
import json
import statistics
import sys

path, rounds, threads, load_before, load_after, clock = sys.argv[1:]
runs = [json.loads(line) for line in open(path) if line.strip()]


def med(rows, field):
    values = [r[field] for r in rows if r.get(field) is not None]
    if not values:
        return float("nan")
    return min(values) if clock == "cpu" else statistics.median(values)


torch_version = next((r["torch"] for r in runs if r["impl"] == "pytorch"), "?")
print(f"bf16 on the CPU, {threads} thread(s): ours vs PyTorch {torch_version} autocast; "
      f"median of {rounds} round(s); load average {load_before} before, {load_after} after")
print("times: " + ("least process CPU time of any call" if clock == "cpu"
                   else "median wall time of the calls"))
peaks = [r for r in runs if r["what"] == "peak"]
for p in peaks:
    print(f"peak of {p['isa']}'s dot-product instruction: {p['gflops_1']:.0f} GFLOP/s on 1 "
          f"thread, {p['gflops']:.0f} on {p['threads']} (clock {p['clock_ghz']:.2f} GHz "
          f"measured beside it)")
peak = max((p["gflops"] for p in peaks), default=float("nan"))

gemms = [r for r in runs if r["what"] == "gemm"]
if gemms:
    print()
    print(f"{'GEMM (f32 in, bf16 products, f32 out)':<42} {'m':>5} {'n':>7} {'k':>5} "
          f"{'ours':>8} {'%peak':>6} {'mm bf16':>8} {'autocast':>9} {'ours/ac':>8}")
    for label in dict.fromkeys(r["label"] for r in gemms):
        o = [r for r in gemms if r["label"] == label and r["impl"] == "ours"]
        t = [r for r in gemms if r["label"] == label and r["impl"] == "pytorch"]
        g, pure, auto = med(o, "gflops"), med(t, "gflops"), med(t, "autocast_gflops")
        r0 = o[0] if o else t[0]
        print(f"{label:<42} {r0['m']:>5} {r0['n']:>7} {r0['k']:>5} {g:>8.0f} "
              f"{100 * g / peak:>5.0f}% {pure:>8.0f} {auto:>9.0f} {g / auto:>7.2f}x")
    print("(GFLOP/s; ours/ac: ours over PyTorch's autocast torch.mm on the same f32 operands)")

layers = [r for r in runs if r["what"] == "layer"]
for net, batch in dict.fromkeys((r["net"], r["batch"]) for r in layers):
    rows = [r for r in layers if r["net"] == net and r["batch"] == batch]
    names = list(dict.fromkeys(r["name"] for r in rows))
    inference = all(r.get("forward_only") for r in rows)
    print()
    print(f"{net}, batch {batch}" + (" (inference: forward only)" if inference else "")
          + ": ms, PyTorch autocast channels_last / ours")
    print(f"{'layer':<16} {'fwd ours':>9} {'torch':>8} {'ratio':>6}"
          + ("" if inference else f" {'bwd ours':>9} {'torch':>8} {'ratio':>6}"))
    tot = {"of": 0.0, "tf": 0.0, "ob": 0.0, "tb": 0.0}
    for name in names:
        o = [r for r in rows if r["name"] == name and r["impl"] == "ours"]
        t = [r for r in rows if r["name"] == name and r["impl"] == "pytorch"]
        of, tf, ob, tb = med(o, "fwd_ms"), med(t, "fwd_ms"), med(o, "bwd_ms"), med(t, "bwd_ms")
        for key, v in zip(("of", "tf", "ob", "tb"), (of, tf, ob, tb)):
            tot[key] += 0.0 if inference and key in ("ob", "tb") else v
        line = f"{name:<16} {of:>9.2f} {tf:>8.2f} {tf / of:>5.2f}x"
        if not inference:
            line += f" {ob:>9.2f} {tb:>8.2f} {tb / ob:>5.2f}x"
        print(line)
    line = f"{'all':<16} {tot['of']:>9.2f} {tot['tf']:>8.2f} {tot['tf'] / tot['of']:>5.2f}x"
    if not inference:
        line += f" {tot['ob']:>9.2f} {tot['tb']:>8.2f} {tot['tb'] / tot['ob']:>5.2f}x"
        s_o, s_t = tot["of"] + tot["ob"], tot["tf"] + tot["tb"]
        line += f"   fwd+bwd {s_o:.1f} vs {s_t:.1f} ms = {s_t / s_o:.2f}x"
    print(line)
print()
print("ratio: PyTorch's time / ours (above 1: ours is faster).")
if clock == "wall" and (float(load_before) > 1.0 or float(load_after) > int(threads) + 1.0):
    print("WARNING: other processes were using the cores (see the load average): figures are "
          "low and noisy, PyTorch's most; rerun on a quiet machine.")
EOF
