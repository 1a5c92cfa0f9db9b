#!/usr/bin/env python3
"""Where PyTorch's airbench94 training step goes, op kind by op kind: the counterpart of
`cargo run --release -p benches --bin profile -- --model airbench94 [--precision bf16] 1024`.

Runs training steps of the port's network (scripts/airbench94_pytorch.py: channels_last,
the same loss and SGD) on random data under `torch.profiler`, after warm-up steps, and
prints the step time and the self CPU time of each kind of op (convolutions, GELU, batch
norm, max pool, the rest) as a share of it, so the two tables can be read side by side.

usage: airbench94_pytorch_profile.py [--precision f32|bf16] [--threads 2] [--batch 1024]
                                     [--steps 5]
Needs the venv scripts/pytorch-venv.sh makes (PyTorch CPU from PyPI).
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from airbench94_pytorch import make_net  # noqa: E402

# Substrings of aten op names, first match wins: the kinds `profile` prints.
KINDS = [
    ("conv", ("convolution", "conv2d", "mkldnn_conv")),
    ("gelu", ("gelu",)),
    ("batch_norm", ("batch_norm",)),
    ("max_pool", ("max_pool",)),
    ("linear", ("linear", "addmm", "aten::mm", "aten::matmul")),
    ("dtype copies", ("aten::to", "aten::_to_copy", "aten::copy_")),
    ("optimizer", ("sgd", "_foreach", "aten::add_", "aten::mul_", "aten::lerp")),
]


def kind_of(name):
    for kind, keys in KINDS:
        if any(k in name for k in keys):
            return kind
    return "other"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", default="f32", choices=["f32", "bf16"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)

    model = make_net(torch.device("cpu"), args.precision)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-4, momentum=0.85, nesterov=True)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.2, reduction="none")
    inputs = torch.randn(args.batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (args.batch,))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            outputs = model(inputs)
            loss = loss_fn(outputs.float(), labels).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    times = []
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    step_ms = 1e3 * statistics.median(times)

    by_kind = {}
    for event in prof.key_averages():
        kind = kind_of(event.key)
        by_kind[kind] = by_kind.get(kind, 0.0) + event.self_cpu_time_total / 1e3 / args.steps
    print(f"PyTorch {torch.__version__}, airbench94 training step, batch {args.batch}, {args.precision}, "
          f"{args.threads} threads, channels_last")
    print(f"step {step_ms:.1f} ms (median of {args.steps} profiled steps; profiling adds a little)")
    print("self CPU time per step by kind (the profiler's, summed over ops and threads of the op's caller):")
    for kind, ms in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:<14} {ms:9.1f} ms {100 * ms / step_ms:6.1f}%")
    print()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
