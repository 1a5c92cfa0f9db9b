#!/usr/bin/env python3
"""The PyTorch side of scripts/compare-pytorch.sh: the notebook's `Net` on the CPU.

Modes:
  train BATCH  warm-up, then timed training steps (zero_grad, forward, cross-entropy, backward,
               Adam lr 1e-3 -- the notebook's loop) on one random batch;
  infer BATCH  warm-up, then timed evaluation-mode forwards under torch.no_grad();
  --layers     where one training step's time goes, layer by layer (batch 32 by default),
               laid out like `cargo run --release -p benches --bin profile -- 32`.

train/infer print one JSON line with the fields benches/src/bin/step_bench.rs prints for our
stack (img_per_s over the timed steps, per-step times, peak RSS = VmHWM of this process), so
the two can be put side by side. --channels-last converts the model and the input to
torch.channels_last (oneDNN's preferred layout on x86). Threads: --threads (default 2) goes to
torch.set_num_threads; the caller sets OMP_NUM_THREADS to match before Python starts.

--bf16 runs the forward and the loss under torch.autocast("cpu", dtype=torch.bfloat16).

usage: pytorch_cpu_bench.py {train,infer} BATCH [--warmup W] [--steps S] [--channels-last] [--bf16]
       pytorch_cpu_bench.py --layers [--batch 32] [--channels-last]
"""
import argparse
import json
import os
import statistics
import sys
import time
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim

# nn.Dropout2d on the [N, features] activations of layer_fc warns on every call (the notebook
# uses it there; on 2-D input it drops single features, like nn.Dropout).
warnings.filterwarnings("ignore", message="dropout2d: Received a 2-D input")


class Net(nn.Module):
    """The notebook's network, verbatim (section 3.1)."""

    def __init__(self):
        super(Net, self).__init__()
        self.layer1 = nn.Sequential(
            nn.Conv2d(3, 64, 3, padding=1),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.MaxPool2d(2, 2),
            nn.BatchNorm2d(64),
            nn.ReLU()
        )

        self.layer2 = nn.Sequential(
            nn.Conv2d(64, 128, 3, padding=1),
            nn.Conv2d(128, 128, 3, padding=1),
            nn.MaxPool2d(2, 2, padding=1),
            nn.BatchNorm2d(128),
            nn.ReLU()
        )

        self.layer3 = nn.Sequential(
            nn.Conv2d(128, 128, 3, padding=1),
            nn.Conv2d(128, 128, 3, padding=1),
            nn.Conv2d(128, 128, 1, padding=1),
            nn.MaxPool2d(2, 2, padding=1),
            nn.BatchNorm2d(128),
            nn.ReLU()
        )

        self.layer4 = nn.Sequential(
            nn.Conv2d(128, 256, 3, padding=1),
            nn.Conv2d(256, 256, 1, padding=1),
            nn.MaxPool2d(2, 2, padding=1),
            nn.BatchNorm2d(256),
            nn.ReLU()
        )

        self.layer5 = nn.Sequential(
            nn.Conv2d(256, 512, 3, padding=1),
            nn.Conv2d(512, 512, 1, padding=1),
            nn.MaxPool2d(2, 2, padding=1),
            nn.BatchNorm2d(512),
            nn.ReLU()
        )

        self.layer_fc = nn.Sequential(
            nn.Linear(512*4*4, 1024),
            nn.ReLU(),
            nn.Dropout2d(),
            nn.Linear(1024, 128),
            nn.ReLU(),
            nn.Dropout2d(),
            nn.Linear(128, 10)
        )

    def forward(self, x):
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.layer5(x)
        x = x.view(-1, 512*4*4)
        logits = self.layer_fc(x)

        return logits


class ChannelsLastNet(Net):
    """Net for channels_last tensors: the flatten before layer_fc must be a reshape (a copy
    into NCHW order), since `view` cannot flatten NHWC memory in NCHW order."""

    def forward(self, x):
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.layer5(x)
        x = x.reshape(-1, 512*4*4)
        return self.layer_fc(x)


def peak_rss_mib():
    """VmHWM of this process in MiB (the same source as step_bench), None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def random_batch(batch, seed):
    """Images uniform in [-1, 1) (the notebook normalises to that range) and labels."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, 32, 32, generator=g) * 2 - 1
    labels = torch.randint(0, 10, (batch,), generator=g)
    return images, labels


def make_model(channels_last):
    torch.manual_seed(0)
    if channels_last:
        return ChannelsLastNet().to(memory_format=torch.channels_last)
    return Net()


def to_format(x, channels_last):
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def bench(args):
    model = make_model(args.channels_last)
    images, labels = random_batch(args.batch, 1)
    images = to_format(images, args.channels_last)

    # torch.autocast("cpu", dtype=torch.bfloat16) around the forward and the loss (backward
    # outside it, as PyTorch's documentation recommends); a no-op context for f32.
    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16)

    if args.mode == "train":
        model.train()
        criterion = nn.CrossEntropyLoss()
        optimizer = optim.Adam(model.parameters(), lr=0.001)

        def step():
            optimizer.zero_grad()
            with autocast():
                outputs = model(images)
                loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            # Our train_step also reads the loss and counts correct predictions.
            loss.item()
            (outputs.argmax(1) == labels).sum().item()
    else:
        model.eval()

        def step():
            with torch.no_grad(), autocast():
                model(images)

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)

    print(json.dumps({
        "impl": "pytorch",
        "format": "channels_last" if args.channels_last else "nchw",
        "mode": args.mode,
        "batch": args.batch,
        "warmup": args.warmup,
        "steps": args.steps,
        "threads": torch.get_num_threads(),
        "img_per_s": round(args.batch * args.steps / sum(times), 2),
        "median_step_ms": round(statistics.median(times) * 1e3, 3),
        "step_ms": [round(t * 1e3, 3) for t in times],
        "peak_rss_mib": None if peak_rss_mib() is None else round(peak_rss_mib(), 1),
        "torch": torch.__version__,
        "precision": "bf16" if args.bf16 else "f32",
    }))


# --- per-layer profile ----------------------------------------------------------------------

MIN_TIME = 0.2
MIN_REPS = 3
MAX_REPS = 100


def time_call(f):
    """Median seconds of f() over >= MIN_REPS calls and MIN_TIME s (after one warm-up call),
    and its last result: the rule benches/src/bin/profile.rs uses."""
    out = f()
    samples = []
    start = time.perf_counter()
    while len(samples) < MIN_REPS or (time.perf_counter() - start < MIN_TIME
                                      and len(samples) < MAX_REPS):
        t = time.perf_counter()
        out = f()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples), out


def flops_rate(flops, t):
    return f"{flops / t / 1e9:7.1f} GF/s"


def traffic_rate(elements, t):
    """Compulsory traffic: each f32 tensor read or written counted once, as profile.rs."""
    return f"{elements * 4 / t / 1e9:7.1f} GB/s"


def fmt_ms(t):
    v = t * 1e3
    if v >= 100:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    if v >= 0.01:
        return f"{v:.3f}"
    return f"{v:.4f}"


def layer_label(name, module, x):
    """profile.rs's row names: convolutions `layer3.2_1x1_128x9x9`, pool/BN/ReLU
    `layer1.2_64x32x32` (input CxHxW), linear `layer_fc.0_8192x1024`, fc ReLU/dropout
    `layer_fc.1_1024`."""
    if isinstance(module, nn.Conv2d):
        k = module.kernel_size[0]
        return f"{name}_{k}x{k}_{x.shape[1]}x{x.shape[2]}x{x.shape[3]}"
    if isinstance(module, nn.Linear):
        return f"{name}_{module.in_features}x{module.out_features}"
    if x.dim() == 4:
        return f"{name}_{x.shape[1]}x{x.shape[2]}x{x.shape[3]}"
    return f"{name}_{x.shape[1]}"


KINDS = [(nn.Conv2d, "conv"), (nn.MaxPool2d, "max_pool"), (nn.BatchNorm2d, "batch_norm"),
         (nn.ReLU, "relu"), (nn.Linear, "linear"), (nn.Dropout2d, "dropout")]


def kind_of(module):
    return next(kind for cls, kind in KINDS if isinstance(module, cls))


def layers(args):
    """Each module of one training step timed on its own: forward with autograd recording (as
    in training), backward as torch.autograd.grad of that module's output with respect to its
    input and parameters, fed the real gradient flowing back from the loss. The first
    convolution computes no input gradient (its input is the data), as in our profile."""
    batch = args.batch
    layout = "channels_last" if args.channels_last else "NCHW"
    print(f"training step of the notebook's network in PyTorch {torch.__version__}, "
          f"batch {batch}, f32, {layout}, {torch.get_num_threads()} threads")
    print(f"(median of >= {MIN_REPS} runs and {int(MIN_TIME * 1000)} ms per call; "
          "rates: GF/s = GFLOP/s, GB/s = compulsory traffic)")
    print_load("before")
    print(flush=True)
    model = make_model(args.channels_last)
    model.train()
    images, labels = random_batch(batch, 1)
    x = to_format(images, args.channels_last)

    rows = []  # dicts: op, kind, fwd (t, rate), bwd (t, rate)
    graph = []  # (row index, module, input leaf, output) for the backward pass
    first = True
    for seq_name in ["layer1", "layer2", "layer3", "layer4", "layer5", "layer_fc"]:
        seq = getattr(model, seq_name)
        if seq_name == "layer_fc":
            # The view to [N, 8192]; for channels_last it copies (NHWC order differs).
            x = x.reshape(-1, 512 * 4 * 4)
        for i, module in enumerate(seq):
            name = f"{seq_name}.{i}"
            x_in = x.detach().requires_grad_(not first)
            t, y = time_call(lambda: module(x_in))
            kind = kind_of(module)
            if kind == "conv":
                c_out, c_in, kh, kw = module.weight.shape
                flops = 2.0 * y.numel() * c_in * kh * kw
                rate = flops_rate(flops, t)
                bwd_work = ("flops", flops * (1 if first else 2))
            elif kind == "linear":
                flops = 2.0 * batch * module.in_features * module.out_features
                rate = flops_rate(flops, t)
                bwd_work = ("flops", 2 * flops)
            elif kind == "max_pool":
                rate = traffic_rate(x_in.numel() + y.numel(), t)
                bwd_work = ("traffic", 2 * x_in.numel() + y.numel())
            elif kind == "batch_norm":
                rate = traffic_rate(2 * x_in.numel(), t)
                bwd_work = ("traffic", 3 * x_in.numel())
            elif kind == "relu":
                rate = traffic_rate(2 * x_in.numel(), t)
                bwd_work = ("traffic", 3 * x_in.numel())
            else:  # dropout
                rate = traffic_rate(2 * x_in.numel(), t)
                bwd_work = ("traffic", 2 * x_in.numel())
            rows.append({"op": layer_label(name, module, x_in), "kind": kind,
                         "fwd": (t, rate), "bwd": None})
            graph.append((len(rows) - 1, module, x_in, y, bwd_work, first))
            first = False
            x = y

    logits = x.detach().requires_grad_(True)
    t, loss = time_call(lambda: F.cross_entropy(logits, labels))
    rows.append({"op": "cross_entropy_10", "kind": "loss", "fwd": (t, ""), "bwd": None})
    t, (gy,) = time_call(lambda: torch.autograd.grad(loss, [logits], retain_graph=True))
    rows[-1]["bwd"] = (t, "")

    for row, module, x_in, y, (work_kind, work), is_first in reversed(graph):
        # Undoes the flatten between layer5 and layer_fc.
        gy = gy.reshape(y.shape)
        params = [p for p in module.parameters()]
        inputs = params if is_first else [x_in] + params
        t, grads = time_call(
            lambda: torch.autograd.grad(y, inputs, gy, retain_graph=True))
        rate = flops_rate(work, t) if work_kind == "flops" else traffic_rate(work, t)
        rows[row]["bwd"] = (t, rate)
        for p, g in zip(params, grads[len(inputs) - len(params):]):
            p.grad = g
        if not is_first:
            gy = grads[0]

    params = list(model.parameters())
    optimizer = optim.Adam(params, lr=0.001)
    t, _ = time_call(optimizer.step)
    total = sum(p.numel() for p in params)
    rows.append({"op": f"adam_{len(params)}_tensors_{total}", "kind": "adam", "fwd": None,
                 "bwd": (t, traffic_rate(7 * total, t))})

    print_layers(rows, batch, args)


def print_load(when):
    """The 1-minute load average, as profile.rs prints it: above the core count, other
    processes shared the cores, and OpenMP's threads then wait for each other at every op."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return
    cpus = os.cpu_count() or 1
    note = (" (above the core count: other processes share the cores, timings are inflated "
            "and noisy)" if load > cpus else "")
    print(f"load average {when}: {load:.2f} on {cpus} cores{note}")


def print_layers(rows, batch, args):

    def total(r):
        return (r["fwd"][0] if r["fwd"] else 0) + (r["bwd"][0] if r["bwd"] else 0)

    step = sum(total(r) for r in rows)
    print(f"{'op':<24} {'fwd ms':>9} {'fwd rate':>12} {'bwd ms':>9} {'bwd rate':>12} "
          f"{'% step':>7}")
    for r in rows:
        f_ms, f_rate = (fmt_ms(r["fwd"][0]), r["fwd"][1]) if r["fwd"] else ("", "")
        b_ms, b_rate = (fmt_ms(r["bwd"][0]), r["bwd"][1]) if r["bwd"] else ("", "")
        print(f"{r['op']:<24} {f_ms:>9} {f_rate:>12} {b_ms:>9} {b_rate:>12} "
              f"{100 * total(r) / step:>6.1f}%")
    fwd = sum(r["fwd"][0] for r in rows if r["fwd"])
    bwd = sum(r["bwd"][0] for r in rows if r["bwd"])
    print(f"{'total (layers only)':<24} {fmt_ms(fwd):>9} {'':>12} {fmt_ms(bwd):>9} {'':>12} "
          f"{100.0:>6.1f}%")
    print(f"step {step * 1e3:.1f} ms = {batch / step:.1f} images/s (sum of the layers, "
          f"batch {batch})")

    print("\nby kind:")
    for kind in dict.fromkeys(r["kind"] for r in rows):
        t = sum(total(r) for r in rows if r["kind"] == kind)
        print(f"  {kind:<12} {t * 1e3:>9.3f} ms {100 * t / step:>6.1f}%")

    # The whole step as the notebook runs it, to show what the layer sum leaves out.
    model = make_model(args.channels_last)
    model.train()
    images, labels = random_batch(batch, 1)
    images = to_format(images, args.channels_last)
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam(model.parameters(), lr=0.001)

    def whole_step():
        optimizer.zero_grad()
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()

    t, _ = time_call(whole_step)
    print(f"\nwhole training step, batch {batch}: {t * 1e3:.1f} ms = {batch / t:.1f} images/s; "
          f"minus the layer sum: {(t - step) * 1e3:+.1f} ms (framework overhead; noise if "
          "negative)")
    print_load("after")


def main():
    parser = argparse.ArgumentParser(
        description="Time the notebook's Net in PyTorch on the CPU (see the module docstring).")
    parser.add_argument("mode", nargs="?", choices=["train", "infer"])
    parser.add_argument("batch_pos", nargs="?", type=int, metavar="BATCH")
    parser.add_argument("--layers", action="store_true",
                        help="per-layer forward/backward times of one training step")
    parser.add_argument("--batch", type=int, default=None,
                        help="batch size for --layers (default 32)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--bf16", action="store_true",
                        help="torch.autocast('cpu', dtype=torch.bfloat16) (train/infer)")
    args = parser.parse_args()

    if args.layers == (args.mode is not None):
        parser.error("give either MODE BATCH or --layers")
    args.batch = args.batch_pos if args.batch_pos is not None else args.batch
    if args.batch is None:
        if args.layers:
            args.batch = 32
        else:
            parser.error("BATCH is required with train/infer")
    min_batch = 1 if args.mode == "infer" else 2
    if args.batch < min_batch:
        parser.error(f"BATCH must be at least {min_batch} (training-mode batch norm needs 2)")
    if args.warmup < 0 or args.steps < 1:
        parser.error("--warmup must be >= 0 and --steps >= 1")
    if args.threads < 1:
        parser.error("--threads must be >= 1")

    torch.set_num_threads(args.threads)
    if args.layers:
        layers(args)
    else:
        bench(args)


if __name__ == "__main__":
    sys.exit(main())
