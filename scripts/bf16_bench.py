"""PyTorch's side of scripts/bf16-bench.sh: bf16 matrix products and layers on the CPU.

usage: bf16_bench.py gemm   --threads T  < shapes    (JSON lines with label, m, n, k)
       bf16_bench.py layers --threads T  < layers    (JSON lines from `bf16_bench list`)

gemm: torch.mm on bf16 tensors (the kernel alone: oneDNN's AMX path on Sapphire Rapids),
and under torch.autocast on f32 tensors (the rounding of both operands included, as in
ours, whose operands are f32).

layers: each convolution / linear layer under torch.autocast("cpu", dtype=torch.bfloat16)
in channels_last (oneDNN's preferred layout for AMX convolutions): the forward under
no_grad, and the backward alone (torch.autograd.grad of the output with a given gradient,
the graph retained between calls), giving the gradients of the f32 input (when the layer
needs it) and of the f32 weight.

Times are medians of at least 3 calls and 0.3 s after a warm-up call; with --clock cpu,
the least process CPU time of any one call over at least 5 calls and 0.6 s (as
BF16_BENCH_CLOCK=cpu does for ours). One JSON
line per measurement on stdout.
"""

import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

MIN_TIME = 0.3
CPU_CLOCK = False


def median_secs(f):
    f()
    samples = []
    start = time.perf_counter()
    least, limit = (5, 2 * MIN_TIME) if CPU_CLOCK else (3, MIN_TIME)
    while len(samples) < least or (time.perf_counter() - start < limit and len(samples) < 200):
        t, c = time.perf_counter(), time.process_time()
        f()
        samples.append(time.process_time() - c if CPU_CLOCK else time.perf_counter() - t)
    return min(samples) if CPU_CLOCK else statistics.median(samples)


def gemm(shapes, threads):
    for s in shapes:
        m, n, k = s["m"], s["n"], s["k"]
        a32, b32 = torch.rand(m, k) * 2 - 1, torch.rand(k, n) * 2 - 1
        a16, b16 = a32.bfloat16(), b32.bfloat16()
        pure = median_secs(lambda: torch.mm(a16, b16))

        def autocast_mm():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return torch.mm(a32, b32)

        auto = median_secs(autocast_mm)
        flop = 2.0 * m * n * k
        print(json.dumps({"impl": "pytorch", "what": "gemm", "torch": torch.__version__,
                          "threads": threads, "label": s["label"], "m": m, "n": n, "k": k,
                          "ms": pure * 1e3, "gflops": flop / pure / 1e9,
                          "autocast_ms": auto * 1e3, "autocast_gflops": flop / auto / 1e9}),
              flush=True)


def layer(spec, threads):
    b = spec["batch"]
    cl = torch.channels_last
    if spec["kind"] == "conv":
        c_in, c_out, k, pad, hw = spec["c_in"], spec["c_out"], spec["k"], spec["pad"], spec["hw"]
        x = (torch.rand(b, c_in, hw, hw) * 2 - 1).to(memory_format=cl)
        w = (torch.rand(c_out, c_in, k, k) * 2 - 1).to(memory_format=cl)
        bias = torch.rand(c_out) * 2 - 1 if spec["bias"] else None

        def run(x, w, bias):
            return F.conv2d(x, w, bias, padding=pad)
    else:
        x = torch.rand(b, spec["in"]) * 2 - 1
        w = torch.rand(spec["out"], spec["in"]) * 2 - 1
        bias = torch.rand(spec["out"]) * 2 - 1 if spec["bias"] else None

        def run(x, w, bias):
            return F.linear(x, w, bias)

    def forward():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return run(x, w, bias)

    fwd = median_secs(forward)
    out = {"impl": "pytorch", "what": "layer", "torch": torch.__version__, "threads": threads,
           "format": "channels_last", "fwd_ms": fwd * 1e3, "bwd_ms": None}
    out.update(spec)
    if spec.get("forward_only"):
        print(json.dumps(out), flush=True)
        return
    x.requires_grad_(spec["input_grad"])
    w.requires_grad_(True)
    if bias is not None:
        bias.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = run(x, w, bias)
    gy = (torch.rand(y.shape, dtype=y.dtype) * 2 - 1)
    if gy.dim() == 4:
        gy = gy.contiguous(memory_format=cl)
    inputs = [t for t in (x, w, bias) if t is not None and t.requires_grad]
    out["bwd_ms"] = median_secs(lambda: torch.autograd.grad(y, inputs, gy, retain_graph=True)) * 1e3
    print(json.dumps(out), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["gemm", "layers"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    args = parser.parse_args()
    global CPU_CLOCK
    CPU_CLOCK = args.clock == "cpu"
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    specs = [json.loads(line) for line in sys.stdin if line.strip()]
    for spec in specs:
        if args.mode == "gemm":
            gemm([spec], args.threads)
        else:
            layer(spec, args.threads)


if __name__ == "__main__":
    main()
