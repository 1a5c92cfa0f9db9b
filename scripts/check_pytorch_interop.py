#!/usr/bin/env python3
"""Loads one of our checkpoints into real PyTorch and shows what it predicts, for comparison.

RUN_DIR/model.safetensors (a run folder of `cli train`, or the file itself) is read with
safetensors.torch and loaded into the notebook's `Net` with a strict load_state_dict: every
parameter, running statistic and num_batches_tracked counter must be there with PyTorch's
name, shape and dtype, and nothing else. Then, in evaluation mode, the network runs on one
fixed 32x32 RGB test image, normalized as the checkpoint's metadata records, and the script
prints the logits and the top-3 classes in the format of `cli predict`. With --png it also
writes that image, so our side can be run on exactly the same input:

    .venv/bin/python scripts/check_pytorch_interop.py RUN_DIR --png /tmp/fixed.png
    cargo run --release -p cli -- predict --device cpu --checkpoint RUN_DIR /tmp/fixed.png

The two top-3 lines should agree to the printed precision. (A 32x32 image is passed through
`predict`'s resize unchanged.)

Needs torch and safetensors: scripts/compare-pytorch.sh installs both into .venv/.
usage: check_pytorch_interop.py RUN_DIR [--png OUT.png]
"""
import argparse
import os
import struct
import sys
import zlib

import torch
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no scripts/__pycache__ in the checkout
from pytorch_cpu_bench import Net  # noqa: E402  (the notebook's module, verbatim)

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# models::data::Normalization, by the name `cli train` records in the metadata.
NORMALIZATIONS = {
    "notebook": ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
    "dataset": ([0.4913, 0.4821, 0.4465], [0.2452, 0.2428, 0.2606]),
}
SIDE = 32


def fixed_image():
    """A deterministic 32x32 RGB image (rows of bytes): gradients and a diagonal stripe, so
    that every channel and position carries a different value."""
    rows = []
    for y in range(SIDE):
        row = bytearray()
        for x in range(SIDE):
            stripe = 120 if abs(x - y) < 4 else 0
            row += bytes([(8 * x + stripe) % 256, (8 * y + 3 * x) % 256, (255 - 7 * y + stripe) % 256])
        rows.append(bytes(row))
    return rows


def write_png(path, rows):
    """An 8-bit RGB PNG, uncompressed filter 0 rows in one zlib stream: no imaging library."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", SIDE, SIDE, 8, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rows)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def to_input(rows, mean, std):
    """[1, 3, 32, 32] float32, (v / 255 - mean) / std per channel, as our loader computes it."""
    values = torch.tensor([list(r) for r in rows], dtype=torch.float32).view(SIDE, SIDE, 3)
    chw = values.permute(2, 0, 1) / 255.0
    mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return ((chw - mean) / std).unsqueeze(0).contiguous()


def main():
    parser = argparse.ArgumentParser(
        description="Strict-load our model.safetensors into PyTorch's Net and print its logits.")
    parser.add_argument("run_dir", metavar="RUN_DIR",
                        help="a run folder holding model.safetensors, or the file itself")
    parser.add_argument("--png", metavar="OUT.png",
                        help="also write the fixed input image, for `cli predict`")
    args = parser.parse_args()

    path = args.run_dir
    if os.path.isdir(path):
        path = os.path.join(path, "model.safetensors")
    if not os.path.isfile(path):
        sys.exit(f"check_pytorch_interop: no checkpoint at {path}")

    state = load_file(path)
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata() or {}
    model = Net()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        sys.exit(f"check_pytorch_interop: strict load_state_dict of {path} failed:\n{e}")
    print(f"strict load_state_dict: OK ({len(state)} entries, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters) from {path}")
    dtypes = sorted({str(t.dtype) for t in state.values()})
    print(f"dtypes in the file: {', '.join(dtypes)}")

    name = metadata.get("normalization", "notebook")
    if name not in NORMALIZATIONS:
        sys.exit(f"check_pytorch_interop: unknown normalization {name!r} in the metadata "
                 f"(expected one of {sorted(NORMALIZATIONS)})")
    rows = fixed_image()
    if args.png:
        write_png(args.png, rows)
        print(f"fixed input written to {args.png}")

    model.eval()
    with torch.no_grad():
        logits = model(to_input(rows, *NORMALIZATIONS[name]))[0]
    print(f"normalization: {name}")
    print("logits: [" + ", ".join(f"{v:.6f}" for v in logits.tolist()) + "]")
    probabilities = torch.softmax(logits.double(), dim=0)
    top = torch.argsort(probabilities, descending=True)[:3].tolist()
    label = args.png or "fixed input"
    print(f"{label}: " + ", ".join(f"{CLASSES[c]} {100 * probabilities[c]:.1f}%" for c in top))


if __name__ == "__main__":
    main()
