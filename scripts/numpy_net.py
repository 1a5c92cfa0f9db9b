#!/usr/bin/env python3
"""An independent NumPy implementation of the notebook's `Net` (evaluation mode).

Writes two safetensors files:
  WEIGHTS: a state_dict with PyTorch's names, shapes and dtypes (float32 weights and batch-norm
           running statistics, int64 num_batches_tracked) -- what
           `safetensors.torch.save_file(Net().state_dict(), ...)` produces for the notebook's module;
  CASE:    `input` (2x3x32x32) and the `logits` this implementation computes for it.

The Rust test models/tests/pytorch_interop.rs loads WEIGHTS into our Net and must reproduce the
logits. Nothing here shares code with the Rust side.

usage: numpy_net.py WEIGHTS CASE [SEED]
"""
import sys

import numpy as np
from safetensors.numpy import save_file

# (name, in, out, kernel, padding) of the convolutions; each block ends with
# MaxPool2d(2, 2, pool_padding), BatchNorm2d(channels), ReLU.
BLOCKS = [
    ("layer1", [(3, 64, 3, 1), (64, 64, 3, 1)], 0, 3),
    ("layer2", [(64, 128, 3, 1), (128, 128, 3, 1)], 1, 3),
    ("layer3", [(128, 128, 3, 1), (128, 128, 3, 1), (128, 128, 1, 1)], 1, 4),
    ("layer4", [(128, 256, 3, 1), (256, 256, 1, 1)], 1, 3),
    ("layer5", [(256, 512, 3, 1), (512, 512, 1, 1)], 1, 3),
]
FC = [(0, 8192, 1024), (3, 1024, 128), (6, 128, 10)]


def make_state(rng):
    state = {}
    for name, convs, _, bn_index in BLOCKS:
        for i, (cin, cout, k, _) in enumerate(convs):
            bound = 1.0 / np.sqrt(cin * k * k)
            state[f"{name}.{i}.weight"] = rng.uniform(-bound, bound, (cout, cin, k, k))
            state[f"{name}.{i}.bias"] = rng.uniform(-bound, bound, (cout,))
        c = convs[-1][1]
        state[f"{name}.{bn_index}.weight"] = rng.uniform(0.5, 1.5, (c,))
        state[f"{name}.{bn_index}.bias"] = rng.uniform(-0.5, 0.5, (c,))
        state[f"{name}.{bn_index}.running_mean"] = rng.uniform(-0.2, 0.2, (c,))
        state[f"{name}.{bn_index}.running_var"] = rng.uniform(0.5, 2.0, (c,))
    for i, fan_in, fan_out in FC:
        bound = 1.0 / np.sqrt(fan_in)
        state[f"layer_fc.{i}.weight"] = rng.uniform(-bound, bound, (fan_out, fan_in))
        state[f"layer_fc.{i}.bias"] = rng.uniform(-bound, bound, (fan_out,))
    state = {k: v.astype(np.float32) for k, v in state.items()}
    for name, _, _, bn_index in BLOCKS:
        state[f"{name}.{bn_index}.num_batches_tracked"] = np.array(1234, dtype=np.int64)
    return state


def conv2d(x, w, b, pad):
    n, _, h, wd = x.shape
    cout, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = h + 2 * pad - k + 1, wd + 2 * pad - k + 1
    out = np.zeros((n, cout, ho, wo))
    for i in range(k):
        for j in range(k):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i:i + ho, j:j + wo], w[:, :, i, j])
    return out + b[None, :, None, None]


def max_pool(x, k, s, pad):
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
    ho, wo = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
    out = np.full((n, c, ho, wo), -np.inf)
    for i in range(k):
        for j in range(k):
            out = np.maximum(out, xp[:, :, i:i + s * ho:s, j:j + s * wo:s])
    return out


def forward(state, x):
    x = x.astype(np.float64)
    p = {k: v.astype(np.float64) for k, v in state.items()}
    for name, convs, pool_pad, bn in BLOCKS:
        for i, (_, _, _, pad) in enumerate(convs):
            x = conv2d(x, p[f"{name}.{i}.weight"], p[f"{name}.{i}.bias"], pad)
        x = max_pool(x, 2, 2, pool_pad)
        mean, var = p[f"{name}.{bn}.running_mean"], p[f"{name}.{bn}.running_var"]
        gamma, beta = p[f"{name}.{bn}.weight"], p[f"{name}.{bn}.bias"]
        x = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
        x = np.maximum(x * gamma[None, :, None, None] + beta[None, :, None, None], 0.0)
    x = x.reshape(-1, 512 * 4 * 4)
    for i, _, _ in FC:
        x = x @ p[f"layer_fc.{i}.weight"].T + p[f"layer_fc.{i}.bias"]
        if i != 6:
            x = np.maximum(x, 0.0)  # dropout is the identity in evaluation
    return x


def main():
    weights_path, case_path = sys.argv[1], sys.argv[2]
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    rng = np.random.default_rng(seed)
    state = make_state(rng)
    x = rng.uniform(-1.0, 1.0, (2, 3, 32, 32)).astype(np.float32)
    logits = forward(state, x)
    save_file(state, weights_path)
    save_file({"input": x, "logits": logits.astype(np.float32)}, case_path)


if __name__ == "__main__":
    main()
