#!/usr/bin/env python3
"""airbench94 in PyTorch, the reference our `train --model airbench94` is compared with.

A faithful port of Keller Jordan's airbench94.py ("94% on CIFAR-10 in 3.29 Seconds on a
Single GPU", arXiv 2404.00498): the same network, data pipeline, optimiser, schedule,
lookahead and test-time augmentation, with two changes only: the data is read from the
official binary layout (the .tar.gz or the cifar-10-batches-bin folder) instead of a torch
file, and the device and precision are choices (`--device cpu|cuda`, `--precision f32|bf16|fp16`;
the original is fp16 on CUDA). On the CPU the model and batches are channels_last (oneDNN's
faster layout) and bf16 means `torch.autocast("cpu", dtype=torch.bfloat16)`.

Timed like the original: whitening initialisation, the 476 training steps and the TTA
evaluation; loading and decoding the data is not. Prints one JSON line at the end:
accuracy with and without TTA, seconds per phase, median step time, peak RSS.

usage: airbench94_pytorch.py --data PATH [--seed 0] [--device cpu] [--precision f32]
                             [--threads 2] [--steps N] [--save-state FILE.safetensors]

--steps N stops training early (for quick checks; the schedule still assumes the full run).
--save-state writes the final state_dict (PyTorch names, float32) for `cli eval`.
"""
import argparse
import io
import json
import math
import os
import resource
import statistics
import sys
import tarfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HYP = {
    "opt": {
        "train_epochs": 9.9,
        "batch_size": 1024,
        "lr": 11.5,  # learning rate per 1024 examples
        "momentum": 0.85,
        "weight_decay": 0.0153,  # per 1024 examples, decoupled from the learning rate
        "bias_scaler": 64.0,  # scales the lr (not the decay) of the BatchNorm biases
        "label_smoothing": 0.2,
        "whiten_bias_epochs": 3,  # epochs the whitening layer's bias trains before freezing
    },
    "aug": {"flip": True, "translate": 2},
    "net": {
        "widths": {"block1": 64, "block2": 256, "block3": 256},
        "batchnorm_momentum": 0.6,
        "scaling_factor": 1 / 9,
        "tta_level": 2,
    },
}

CIFAR_MEAN = torch.tensor((0.4914, 0.4822, 0.4465))
CIFAR_STD = torch.tensor((0.2470, 0.2435, 0.2616))
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILE = "test_batch.bin"


# ------------------------------------------------------------------------------------------
# Data: the official binary records, 1 label byte then 3072 CHW pixel bytes.


def read_records(blobs):
    data = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(-1, 3073)
    labels = torch.from_numpy(data[:, 0].astype(np.int64))
    images = torch.from_numpy(data[:, 1:].reshape(-1, 3, 32, 32).copy())
    return images, labels


def load_cifar10(path):
    """(train_images, train_labels, test_images, test_labels), images uint8 NCHW."""
    files = {}
    if os.path.isdir(path):
        folder = path
        if os.path.isdir(os.path.join(path, "cifar-10-batches-bin")):
            folder = os.path.join(path, "cifar-10-batches-bin")
        for name in TRAIN_FILES + [TEST_FILE]:
            with open(os.path.join(folder, name), "rb") as f:
                files[name] = f.read()
    else:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar.getmembers():
                name = os.path.basename(member.name)
                if name in TRAIN_FILES or name == TEST_FILE:
                    files[name] = tar.extractfile(member).read()
    train = read_records([files[name] for name in TRAIN_FILES])
    test = read_records([files[TEST_FILE]])
    return train + test


def batch_flip_lr(inputs):
    flip_mask = (torch.rand(len(inputs), device=inputs.device) < 0.5).view(-1, 1, 1, 1)
    return torch.where(flip_mask, inputs.flip(-1), inputs)


def batch_crop(images, crop_size):
    r = (images.size(-1) - crop_size) // 2
    shifts = torch.randint(-r, r + 1, size=(len(images), 2), device=images.device)
    images_out = torch.empty(
        (len(images), 3, crop_size, crop_size), device=images.device, dtype=images.dtype
    )
    for sy in range(-r, r + 1):
        for sx in range(-r, r + 1):
            mask = (shifts[:, 0] == sy) & (shifts[:, 1] == sx)
            images_out[mask] = images[
                mask, :, r + sy : r + sy + crop_size, r + sx : r + sx + crop_size
            ]
    return images_out


class CifarLoader:
    """airbench's loader: normalise once; flip and reflect-pad once; per epoch a random
    crop per image, the whole set mirrored on odd epochs, reshuffled, last batch dropped."""

    def __init__(self, images, labels, batch_size, train, device, dtype):
        self.images = (images.to(device, dtype) / 255).contiguous(
            memory_format=torch.channels_last
        )
        self.labels = labels.to(device)
        self.mean = CIFAR_MEAN.to(device, dtype).view(1, 3, 1, 1)
        self.std = CIFAR_STD.to(device, dtype).view(1, 3, 1, 1)
        self.proc_images = {}
        self.epoch = 0
        self.aug = HYP["aug"] if train else {}
        self.batch_size = batch_size
        self.drop_last = train
        self.shuffle = train

    def normalize(self, x):
        return (x - self.mean) / self.std

    def __len__(self):
        if self.drop_last:
            return len(self.images) // self.batch_size
        return math.ceil(len(self.images) / self.batch_size)

    def __iter__(self):
        if self.epoch == 0:
            images = self.proc_images["norm"] = self.normalize(self.images)
            if self.aug.get("flip", False):
                images = self.proc_images["flip"] = batch_flip_lr(images)
            pad = self.aug.get("translate", 0)
            if pad > 0:
                self.proc_images["pad"] = F.pad(images, (pad,) * 4, "reflect")
        if self.aug.get("translate", 0) > 0:
            images = batch_crop(self.proc_images["pad"], self.images.shape[-2])
        elif self.aug.get("flip", False):
            images = self.proc_images["flip"]
        else:
            images = self.proc_images["norm"]
        if self.aug.get("flip", False) and self.epoch % 2 == 1:
            images = images.flip(-1)
        self.epoch += 1
        indices = (torch.randperm if self.shuffle else torch.arange)(
            len(images), device=images.device
        )
        for i in range(len(self)):
            idxs = indices[i * self.batch_size : (i + 1) * self.batch_size]
            yield images[idxs].contiguous(memory_format=torch.channels_last), self.labels[idxs]


# ------------------------------------------------------------------------------------------
# Network


class Flatten(nn.Module):
    def forward(self, x):
        return x.view(x.size(0), -1)


class Mul(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return x * self.scale


class BatchNorm(nn.BatchNorm2d):
    def __init__(self, num_features, momentum, eps=1e-12, weight=False, bias=True):
        super().__init__(num_features, eps=eps, momentum=1 - momentum)
        self.weight.requires_grad = weight
        self.bias.requires_grad = bias


class Conv(nn.Conv2d):
    def __init__(self, in_channels, out_channels, kernel_size=3, padding="same", bias=False):
        super().__init__(in_channels, out_channels, kernel_size=kernel_size, padding=padding, bias=bias)

    def reset_parameters(self):
        super().reset_parameters()
        if self.bias is not None:
            self.bias.data.zero_()
        w = self.weight.data
        torch.nn.init.dirac_(w[: w.size(1)])


class ConvGroup(nn.Module):
    def __init__(self, channels_in, channels_out, batchnorm_momentum):
        super().__init__()
        self.conv1 = Conv(channels_in, channels_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = BatchNorm(channels_out, batchnorm_momentum)
        self.conv2 = Conv(channels_out, channels_out)
        self.norm2 = BatchNorm(channels_out, batchnorm_momentum)
        self.activ = nn.GELU()

    def forward(self, x):
        x = self.conv1(x)
        x = self.pool(x)
        x = self.norm1(x)
        x = self.activ(x)
        x = self.conv2(x)
        x = self.norm2(x)
        x = self.activ(x)
        return x


def make_net(device, precision):
    widths = HYP["net"]["widths"]
    momentum = HYP["net"]["batchnorm_momentum"]
    whiten_kernel_size = 2
    whiten_width = 2 * 3 * whiten_kernel_size**2
    net = nn.Sequential(
        Conv(3, whiten_width, whiten_kernel_size, padding=0, bias=True),
        nn.GELU(),
        ConvGroup(whiten_width, widths["block1"], momentum),
        ConvGroup(widths["block1"], widths["block2"], momentum),
        ConvGroup(widths["block2"], widths["block3"], momentum),
        nn.MaxPool2d(3),
        Flatten(),
        nn.Linear(widths["block3"], 10, bias=False),
        Mul(HYP["net"]["scaling_factor"]),
    )
    net[0].weight.requires_grad = False
    if precision == "fp16":
        net = net.half()
    net = net.to(device).to(memory_format=torch.channels_last)
    for mod in net.modules():
        if isinstance(mod, BatchNorm):
            mod.float()
    return net


# ------------------------------------------------------------------------------------------
# Whitening initialisation, lookahead, TTA


def get_patches(x, patch_shape):
    c, (h, w) = x.shape[1], patch_shape
    return x.unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c, h, w).float()


def get_whitening_parameters(patches):
    n, c, h, w = patches.shape
    patches_flat = patches.view(n, -1)
    est_patch_covariance = (patches_flat.T @ patches_flat) / n
    eigenvalues, eigenvectors = torch.linalg.eigh(est_patch_covariance, UPLO="U")
    return eigenvalues.flip(0).view(-1, 1, 1, 1), eigenvectors.T.reshape(c * h * w, c, h, w).flip(0)


def init_whitening_conv(layer, train_set, eps=5e-4):
    patches = get_patches(train_set, patch_shape=layer.weight.data.shape[2:])
    eigenvalues, eigenvectors = get_whitening_parameters(patches)
    eigenvectors_scaled = eigenvectors / torch.sqrt(eigenvalues + eps)
    layer.weight.data[:] = torch.cat((eigenvectors_scaled, -eigenvectors_scaled))


class LookaheadState:
    def __init__(self, net):
        self.net_ema = {k: v.clone() for k, v in net.state_dict().items()}

    def update(self, net, decay):
        for ema_param, net_param in zip(self.net_ema.values(), net.state_dict().values()):
            if net_param.dtype in (torch.half, torch.float):
                ema_param.lerp_(net_param, 1 - decay)
                net_param.copy_(ema_param)


def infer(model, loader, tta_level, autocast):
    def infer_basic(inputs, net):
        return net(inputs).clone()

    def infer_mirror(inputs, net):
        return 0.5 * net(inputs) + 0.5 * net(inputs.flip(-1))

    def infer_mirror_translate(inputs, net):
        logits = infer_mirror(inputs, net)
        pad = 1
        padded_inputs = F.pad(inputs, (pad,) * 4, "reflect")
        inputs_translate_list = [
            padded_inputs[:, :, 0:32, 0:32],
            padded_inputs[:, :, 2:34, 2:34],
        ]
        logits_translate_list = [
            infer_mirror(inputs_translate, net) for inputs_translate in inputs_translate_list
        ]
        logits_translate = torch.stack(logits_translate_list).mean(0)
        return 0.5 * logits + 0.5 * logits_translate

    model.eval()
    test_images = loader.normalize(loader.images)
    infer_fn = [infer_basic, infer_mirror, infer_mirror_translate][tta_level]
    with torch.no_grad(), autocast():
        return torch.cat(
            [
                infer_fn(inputs.contiguous(memory_format=torch.channels_last), model).float()
                for inputs in test_images.split(2000)
            ]
        )


def evaluate(model, loader, tta_level, autocast):
    logits = infer(model, loader, tta_level, autocast)
    return (logits.argmax(1) == loader.labels).float().mean().item()


# ------------------------------------------------------------------------------------------


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="f32", choices=["f32", "bf16", "fp16"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--save-state", default=None)
    args = parser.parse_args()
    if args.precision == "fp16" and args.device != "cuda":
        parser.error("--precision fp16 is the original's CUDA setting; on the cpu use f32 or bf16")

    torch.manual_seed(args.seed)
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.half if args.precision == "fp16" else torch.float
    if args.precision == "bf16":
        def autocast():
            return torch.autocast(args.device, dtype=torch.bfloat16)
    else:
        import contextlib

        autocast = contextlib.nullcontext

    def sync():
        if args.device == "cuda":
            torch.cuda.synchronize()

    train_images, train_labels, test_images, test_labels = load_cifar10(args.data)
    batch_size = HYP["opt"]["batch_size"]
    train_loader = CifarLoader(train_images, train_labels, batch_size, True, device, dtype)
    test_loader = CifarLoader(test_images, test_labels, 2000, False, device, dtype)

    epochs = HYP["opt"]["train_epochs"]
    momentum = HYP["opt"]["momentum"]
    kilostep_scale = 1024 * (1 + 1 / (1 - momentum))
    lr = HYP["opt"]["lr"] / kilostep_scale
    wd = HYP["opt"]["weight_decay"] * batch_size / kilostep_scale
    lr_biases = lr * HYP["opt"]["bias_scaler"]
    loss_fn = nn.CrossEntropyLoss(label_smoothing=HYP["opt"]["label_smoothing"], reduction="none")
    total_train_steps = math.ceil(len(train_loader) * epochs)
    last_step = min(total_train_steps, args.steps or total_train_steps)

    model = make_net(device, args.precision)
    norm_biases = [p for k, p in model.named_parameters() if "norm" in k and p.requires_grad]
    other_params = [p for k, p in model.named_parameters() if "norm" not in k and p.requires_grad]
    param_configs = [
        dict(params=norm_biases, lr=lr_biases, weight_decay=wd / lr_biases),
        dict(params=other_params, lr=lr, weight_decay=wd / lr),
    ]
    optimizer = torch.optim.SGD(param_configs, momentum=momentum, nesterov=True)

    def get_lr(step):
        warmup_steps = int(total_train_steps * 0.23)
        warmdown_steps = total_train_steps - warmup_steps
        if step < warmup_steps:
            frac = step / warmup_steps
            return 0.2 * (1 - frac) + 1.0 * frac
        frac = (step - warmup_steps) / warmdown_steps
        return 1.0 * (1 - frac) + 0.07 * frac

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, get_lr)
    alpha_schedule = 0.95**5 * (torch.arange(total_train_steps + 1) / total_train_steps) ** 3
    lookahead_state = LookaheadState(model)

    sync()
    start = time.perf_counter()
    whiten_images = train_loader.normalize(train_loader.images[:5000])
    init_whitening_conv(model[0], whiten_images)
    sync()
    whiten_seconds = time.perf_counter() - start

    step_seconds = []
    epoch_lines = []
    current_steps = 0
    train_seconds = 0.0
    for epoch in range(math.ceil(epochs)):
        model[0].bias.requires_grad = epoch < HYP["opt"]["whiten_bias_epochs"]
        model.train()
        sync()
        epoch_start = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        for inputs, labels in train_loader:
            step_start = time.perf_counter()
            with autocast():
                outputs = model(inputs)
                loss = loss_fn(outputs.float(), labels).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            current_steps += 1
            if current_steps % 5 == 0:
                lookahead_state.update(model, decay=alpha_schedule[current_steps].item())
            if current_steps >= last_step:
                lookahead_state.update(model, decay=1.0)
            loss_sum += loss.item()
            correct += (outputs.argmax(1) == labels).sum().item()
            seen += len(labels)
            sync()
            step_seconds.append(time.perf_counter() - step_start)
            if current_steps >= last_step:
                break
        sync()
        train_seconds += time.perf_counter() - epoch_start
        line = {
            "epoch": epoch + 1,
            "steps": current_steps,
            "train_loss": loss_sum / max(seen, 1),
            "train_accuracy": 100 * correct / max(seen, 1),
            "seconds": train_seconds,
        }
        epoch_lines.append(line)
        print(json.dumps(line), file=sys.stderr, flush=True)
        if current_steps >= last_step:
            break

    sync()
    start = time.perf_counter()
    tta_accuracy = evaluate(model, test_loader, HYP["net"]["tta_level"], autocast)
    sync()
    tta_seconds = time.perf_counter() - start
    plain_accuracy = evaluate(model, test_loader, 0, autocast)

    if args.save_state:
        from safetensors.torch import save_file

        state = {k: (v.float() if v.is_floating_point() else v).contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, args.save_state)

    print(
        json.dumps(
            {
                "framework": f"pytorch {torch.__version__}",
                "device": args.device,
                "precision": args.precision,
                "threads": args.threads if args.device == "cpu" else None,
                "seed": args.seed,
                "steps": current_steps,
                "tta_accuracy": 100 * tta_accuracy,
                "accuracy": 100 * plain_accuracy,
                "whiten_seconds": whiten_seconds,
                "train_seconds": train_seconds,
                "tta_seconds": tta_seconds,
                "total_seconds": whiten_seconds + train_seconds + tta_seconds,
                "median_step_seconds": statistics.median(step_seconds) if step_seconds else None,
                "peak_rss_mib": peak_rss_mib(),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
