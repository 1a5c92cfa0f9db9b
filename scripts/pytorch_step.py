#!/usr/bin/env python3
"""PyTorch eager's side of the per-step timing in scripts/gpu-check.sh: the notebook's Net
(section 3.1, verbatim) trained on one fixed random batch, the same measurement as
`cli bench-step`: each step is zero_grad, forward, cross-entropy, backward and an Adam step
(lr 1e-3), and reads the loss back with loss.item() as the notebook's loop does, so every
step waits for the device like ours.

TF32 is off unless --tf32 is given, for the matrix products *and* cuDNN's convolutions
(PyTorch lets cuDNN use TF32 by default; this turns it off to compare plain f32 with plain
f32). cuDNN autotuning stays at PyTorch's default (off), as in the notebook. --bf16 runs the
forward and the loss under torch.autocast(dtype=torch.bfloat16), the one line a PyTorch user
adds for mixed precision (ours: `cli bench-step --precision bf16`). --model airbench94 times the
port's network instead (scripts/airbench94_pytorch.py: channels_last, cross-entropy with label
smoothing 0.2 summed, SGD with Nesterov momentum), as `cli bench-step --model airbench94` does.

Prints one line:
  pytorch-step: net cuda f32 batch 32 steps 50 tf32 off: 4.21 ms/step, 7600 images/s (last loss 2.30)

usage: pytorch_step.py [--batch-size N] [--steps S] [--warmup W] [--tf32] [--bf16]
                       [--device cuda|cpu] [--model net|airbench94]
"""
import argparse
import os
import sys
import time

import torch
import torch.nn as nn
import torch.optim as optim

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no scripts/__pycache__ in the checkout
from pytorch_cpu_bench import Net  # noqa: E402  (the notebook's module, verbatim; silences Dropout2d's warning)


def set_tf32(enabled):
    """TF32 for matmuls and cuDNN convolutions, on or off (new API where it exists)."""
    matmul = torch.backends.cuda.matmul
    conv = getattr(torch.backends.cudnn, "conv", None)
    if hasattr(matmul, "fp32_precision") and conv is not None and hasattr(conv, "fp32_precision"):
        precision = "tf32" if enabled else "ieee"
        matmul.fp32_precision = precision
        conv.fp32_precision = precision
    else:
        matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--tf32", action="store_true")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", default="net", choices=["net", "airbench94"])
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("pytorch_step: torch.cuda.is_available() is False")
        set_tf32(args.tf32)
    torch.manual_seed(0)
    x = (torch.rand(args.batch_size, 3, 32, 32) * 2 - 1).to(device)
    if args.model == "airbench94":
        from airbench94_pytorch import make_net  # noqa: E402  (the port, beside this script)

        model = make_net(device, "bf16" if args.bf16 else "f32")
        smoothed = nn.CrossEntropyLoss(label_smoothing=0.2, reduction="sum")
        criterion = lambda outputs, labels: smoothed(outputs.float(), labels)  # noqa: E731
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = optim.SGD(params, lr=1e-4, momentum=0.85, nesterov=True)
        x = x.contiguous(memory_format=torch.channels_last)
    else:
        model = Net().to(device)
        criterion = nn.CrossEntropyLoss()
        optimizer = optim.Adam(model.parameters(), lr=0.001)
    model.train()
    y = (torch.arange(args.batch_size) % 10).to(device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            outputs = model(x)
            loss = criterion(outputs, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    loss = 0.0
    for _ in range(args.steps):
        loss = step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    ms = 1e3 * seconds / args.steps
    rate = args.batch_size * args.steps / seconds
    tf32 = "on" if args.tf32 else "off"
    precision = "bf16 autocast" if args.bf16 else "f32"
    print(
        f"pytorch-step: {args.model} {device.type} {precision} batch {args.batch_size} "
        f"steps {args.steps} "
        f"tf32 {tf32}: "
        f"{ms:.2f} ms/step, {rate:.0f} images/s (last loss {loss:.4f})"
    )


if __name__ == "__main__":
    main()
