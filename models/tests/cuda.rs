//! The notebook's network on CUDA against the same network on the CPU: a training step
//! (forward, loss, backward, Adam), evaluation, and checkpoints written from the GPU.
//!
//! These need a GPU. Without one each test prints `SKIPPED: no CUDA device (<reason>)`
//! and returns (run with `--nocapture` to see it); with `REQUIRE_CUDA=1`, as
//! `scripts/gpu-check.sh` sets on the GPU machine, a missing device fails instead.

use std::collections::HashMap;
use std::sync::Arc;

use models::checkpoint::{load_model, save_model};
use models::data::{epoch_batches, Batch, LoaderConfig, Normalization, Split};
use models::layers::{Module, StateEntry};
use models::optim::{Adam, AdamConfig, Optimizer};
use models::train::{evaluate, images_tensor, train_step};
use models::{autocast, no_grad, CudaDevice, DType, Device, Net, Precision};

fn cuda_or_skip(test: &str) -> Option<Device> {
    CudaDevice::open_or_skip(test).map(|gpu| gpu.device())
}

fn batch(seed: u32, len: usize) -> Batch {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_mul(1664525).wrapping_add(1013904223);
        (state >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
    };
    Batch {
        images: (0..len * 3072).map(|_| next()).collect(),
        labels: (0..len as u32).map(|i| (i * 7 + seed) % 10).collect(),
    }
}

/// Every parameter and buffer of the network, by name, on the host.
fn state(net: &mut Net) -> Vec<(String, Vec<f64>)> {
    let mut values = Vec::new();
    net.visit_state(&mut |name, entry| {
        if let StateEntry::Parameter(t) | StateEntry::Buffer(t) = entry {
            values.push((name.to_string(), t.to_vec_f64().unwrap()));
        }
    });
    values
}

fn relative_difference(a: &[f64], b: &[f64]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let norm: f64 = b.iter().map(|y| y * y).sum();
    if norm == 0.0 {
        diff.sqrt()
    } else {
        (diff / norm).sqrt()
    }
}

/// Two training steps of the whole network (batch norm in training mode, dropout, Adam)
/// on each device: the losses, the gradients of the first step and the weights after
/// both agree to f32 accuracy (differences come only from the order of f32 sums).
#[test]
fn training_steps_on_cuda_match_the_cpu_or_skips() {
    let Some(gpu) = cuda_or_skip("training_steps_on_cuda_match_the_cpu") else {
        return;
    };
    let mut results = Vec::new();
    for device in [Device::Cpu, gpu] {
        let mut net = Net::new(3, device).unwrap();
        assert!(net.parameters().iter().all(|(_, p)| p.device() == device));
        let mut optimizer =
            Optimizer::Adam(Adam::new(net.parameters(), AdamConfig::default()).unwrap());
        net.set_training(true);
        let first = batch(1, 8);
        let logits = net
            .forward(&images_tensor(&first, device).unwrap())
            .unwrap();
        assert_eq!(logits.device(), device);
        let loss = logits.cross_entropy(&first.labels).unwrap();
        loss.backward().unwrap();
        let grads: Vec<(String, Vec<f64>)> = net
            .parameters()
            .into_iter()
            .map(|(name, p)| (name, p.grad().unwrap().to_vec_f64().unwrap()))
            .collect();
        optimizer.step().unwrap();
        let second = train_step(&mut net, &mut optimizer, &batch(2, 8), device).unwrap();
        results.push((loss.item().unwrap(), second.loss, grads, state(&mut net)));
    }
    let (cpu, cuda) = (&results[0], &results[1]);
    let loss_diff = |a: f64, b: f64| (a - b).abs() / b.abs();
    assert!(
        loss_diff(cuda.0, cpu.0) < 1e-5,
        "first loss {} vs {}",
        cuda.0,
        cpu.0
    );
    assert!(
        loss_diff(cuda.1, cpu.1) < 1e-4,
        "second loss {} vs {}",
        cuda.1,
        cpu.1
    );
    for ((name, g), (_, want)) in cuda.2.iter().zip(&cpu.2) {
        let rel = relative_difference(g, want);
        assert!(rel < 1e-4, "gradient of {name} differs by {rel:e}");
    }
    for ((name, v), (_, want)) in cuda.3.iter().zip(&cpu.3) {
        let rel = relative_difference(v, want);
        assert!(rel < 1e-3, "{name} after two steps differs by {rel:e}");
    }
}

/// The same two steps under bf16 autocast: the GPU's bf16 kernels against the CPU's
/// (skipped where the CPU has no bf16 instructions). Both round the same f32 sums to bf16,
/// but sums taken in another order round differently now and then, one bf16 step (2^-8)
/// at a time, and those differences travel through the network: the bounds are a few
/// such steps, far below what a wrong kernel gives (differences of order one).
#[test]
fn bf16_training_steps_on_cuda_match_the_cpu_or_skips() {
    let Some(gpu) = cuda_or_skip("bf16_training_steps_on_cuda_match_the_cpu") else {
        return;
    };
    if let Err(err) = Precision::Bf16.check(Device::Cpu) {
        println!("SKIPPED: the CPU side needs bf16 instructions ({err})");
        return;
    }
    let _bf16 = autocast(Precision::Bf16);
    let mut results = Vec::new();
    for device in [Device::Cpu, gpu] {
        let mut net = Net::new(3, device).unwrap();
        let mut optimizer =
            Optimizer::Adam(Adam::new(net.parameters(), AdamConfig::default()).unwrap());
        net.set_training(true);
        let first = batch(1, 16);
        let logits = net
            .forward(&images_tensor(&first, device).unwrap())
            .unwrap();
        assert_eq!((logits.device(), logits.dtype()), (device, DType::F32));
        let loss = logits.cross_entropy(&first.labels).unwrap();
        loss.backward().unwrap();
        let grads: Vec<(String, Vec<f64>)> = net
            .parameters()
            .into_iter()
            .map(|(name, p)| {
                let grad = p.grad().unwrap();
                assert_eq!(grad.dtype(), DType::F32, "{name}'s gradient");
                (name, grad.to_vec_f64().unwrap())
            })
            .collect();
        optimizer.step().unwrap();
        let second = train_step(&mut net, &mut optimizer, &batch(2, 16), device).unwrap();
        results.push((loss.item().unwrap(), second.loss, grads));
    }
    let (cpu, cuda) = (&results[0], &results[1]);
    let loss_diff = |a: f64, b: f64| (a - b).abs() / b.abs();
    assert!(
        loss_diff(cuda.0, cpu.0) < 1e-2,
        "first loss {} vs {}",
        cuda.0,
        cpu.0
    );
    assert!(
        loss_diff(cuda.1, cpu.1) < 2e-2,
        "second loss {} vs {}",
        cuda.1,
        cpu.1
    );
    for ((name, g), (_, want)) in cuda.2.iter().zip(&cpu.2) {
        let rel = relative_difference(g, want);
        assert!(rel < 5e-2, "bf16 gradient of {name} differs by {rel:e}");
    }
}

/// A checkpoint written from CUDA tensors is the file the CPU would write, and loads
/// into a network on either device.
#[test]
fn checkpoints_move_between_cuda_and_the_cpu_or_skips() {
    let Some(gpu) = cuda_or_skip("checkpoints_move_between_cuda_and_the_cpu") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let mut trained = Net::new(5, gpu).unwrap();
    let mut optimizer =
        Optimizer::Adam(Adam::new(trained.parameters(), AdamConfig::default()).unwrap());
    train_step(&mut trained, &mut optimizer, &batch(3, 4), gpu).unwrap();
    save_model(&mut trained, &path, HashMap::new()).unwrap();
    for device in [Device::Cpu, gpu] {
        let mut loaded = Net::new(6, device).unwrap();
        load_model(&mut loaded, &path).unwrap();
        assert!(loaded
            .parameters()
            .iter()
            .all(|(_, p)| p.device() == device));
        assert_eq!(
            state(&mut loaded),
            state(&mut trained),
            "loaded on {device}"
        );
    }
}

/// Evaluation (batch norm with running statistics, no dropout) gives the CPU's
/// predictions, but for images whose two highest logits are so close that f32 sums taken in
/// another order may swap them.
#[test]
fn evaluation_on_cuda_matches_the_cpu_or_skips() {
    let Some(gpu) = cuda_or_skip("evaluation_on_cuda_matches_the_cpu") else {
        return;
    };
    let mut state = 7u32;
    let mut images = Vec::new();
    for _ in 0..40 * 3072 {
        state = state.wrapping_mul(1664525).wrapping_add(1013904223);
        images.push((state >> 24) as u8);
    }
    let split = Arc::new(Split {
        images,
        labels: (0..40).map(|i| (i % 10) as u8).collect(),
    });
    let config = LoaderConfig {
        batch_size: 16,
        normalization: Normalization::NOTEBOOK,
        workers: 1,
        ..LoaderConfig::eval(16)
    };
    let mut results = Vec::new();
    let mut logits = Vec::new();
    for device in [Device::Cpu, gpu] {
        let mut net = Net::new(9, device).unwrap();
        results.push(evaluate(&mut net, split.clone(), &config, device, 10).unwrap());
        logits.push(eval_logits(&mut net, split.clone(), &config, device));
    }
    let (cpu, cuda) = (&results[0], &results[1]);
    assert!((cuda.loss - cpu.loss).abs() < 1e-4 * cpu.loss.abs());
    // Every image predicted differently is a near tie on the CPU, and the confusion
    // matrices differ by those images alone (each moves one count within its row).
    let mut flips = 0;
    for (image, (c, g)) in logits[0].iter().zip(&logits[1]).enumerate() {
        if argmax(c) != argmax(g) {
            let gap = top_two_gap(c);
            let scale = c.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            assert!(
                gap <= NEAR_TIE * scale,
                "image {image}: class {} on the CPU, {} on CUDA, though the top two CPU logits \
                 are {gap:e} apart: {c:?} vs {g:?}",
                argmax(c),
                argmax(g)
            );
            flips += 1;
        }
    }
    let moved: u64 = cpu
        .confusion
        .iter()
        .flatten()
        .zip(cuda.confusion.iter().flatten())
        .map(|(a, b)| a.abs_diff(*b))
        .sum();
    assert!(
        moved <= 2 * flips,
        "confusion matrices differ by {moved} counts, more than {flips} near-tie flips explain: \
         {:?} vs {:?}",
        cpu.confusion,
        cuda.confusion
    );
    if flips > 0 {
        println!("{flips} near-tie prediction(s) differ between the CPU and CUDA");
    }
}

/// Largest gap between an image's two highest logits, relative to its largest logit (at
/// least 1), for which the CPU and CUDA may predict different classes: their logits agree to
/// about 1e-5 of the norm (the parity tests' tolerance), so closer calls may swap.
const NEAR_TIE: f64 = 1e-4;

/// Every image's logits, in the loader's order, from the network in evaluation mode.
fn eval_logits(
    net: &mut Net,
    split: Arc<Split>,
    config: &LoaderConfig,
    device: Device,
) -> Vec<Vec<f64>> {
    net.set_training(false);
    let _guard = no_grad();
    let mut rows = Vec::new();
    for batch in epoch_batches(split, config, 0) {
        let logits = net
            .forward(&images_tensor(&batch, device).unwrap())
            .unwrap();
        let classes = *logits.shape().last().unwrap();
        let values = logits.to_vec_f64().unwrap();
        rows.extend(values.chunks(classes).map(<[f64]>::to_vec));
    }
    rows
}

/// The index of the first largest value, as `models::train::predictions` picks it.
fn argmax(row: &[f64]) -> usize {
    (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best })
}

/// The largest value minus the second largest.
fn top_two_gap(row: &[f64]) -> f64 {
    let best = argmax(row);
    let second = (0..row.len())
        .filter(|&i| i != best)
        .map(|i| row[i])
        .fold(f64::NEG_INFINITY, f64::max);
    row[best] - second
}
