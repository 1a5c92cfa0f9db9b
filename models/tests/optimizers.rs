//! Optimizer state as PyTorch keeps it: Adam's step count is per parameter.

use models::optim::{Adam, AdamConfig, Optimizer};
use models::{Device, Tensor};

fn scalar(value: f64) -> Tensor {
    Tensor::from_vec(vec![value], &[1], Device::Cpu)
        .unwrap()
        .requires_grad_()
}

fn value(t: &Tensor) -> f64 {
    t.to_vec_f64().unwrap()[0]
}

/// lr 0.1 and eps 0: Adam's first update of a parameter is exactly -lr * sign(gradient).
fn config() -> AdamConfig {
    AdamConfig {
        lr: 0.1,
        eps: 0.0,
        ..AdamConfig::default()
    }
}

#[test]
fn adam_counts_steps_per_parameter_like_pytorch() {
    let (a, b) = (scalar(1.0), scalar(1.0));
    let mut adam = Adam::new(
        vec![("a".into(), a.clone()), ("b".into(), b.clone())],
        config(),
    )
    .unwrap();

    // Step 1: only `a` has a gradient (3); `b` is skipped and keeps a step count of 0.
    a.scale(3.0).unwrap().sum().unwrap().backward().unwrap();
    adam.step().unwrap();
    assert_eq!(adam.steps(), [1, 0]);
    assert!((value(&a) - 0.9).abs() < 1e-12);
    assert_eq!(value(&b), 1.0);

    // Step 2: both have gradients (3 and 2).
    a.zero_grad();
    let loss = a.scale(3.0).unwrap().add(&b.scale(2.0).unwrap()).unwrap();
    loss.sum().unwrap().backward().unwrap();
    adam.step().unwrap();
    assert_eq!(adam.steps(), [2, 1]);
    // `b`'s first update, bias-corrected as a first step: m^ = 2, v^ = 4, so exactly -lr.
    // (With one shared step of 2 it would move by 0.1 * 0.526 / 0.707 = 0.0744.)
    assert!((value(&b) - 0.9).abs() < 1e-12, "{}", value(&b));
    // `a`'s second step with the same gradient: m = 0.57, m^ = 0.57 / 0.19 = 3;
    // v = 0.017991, v^ = 0.017991 / 0.001999 = 9; the update is again 0.1 * 3 / 3.
    assert!((value(&a) - 0.8).abs() < 1e-12, "{}", value(&a));
}

#[test]
fn adam_state_round_trips_its_step_counts() {
    let (a, b) = (scalar(1.0), scalar(-1.0));
    let params = vec![("a".to_string(), a.clone()), ("b".to_string(), b.clone())];
    let mut adam = Adam::new(params.clone(), config()).unwrap();
    a.scale(2.0).unwrap().sum().unwrap().backward().unwrap();
    adam.step().unwrap();
    adam.step().unwrap();
    let state = Optimizer::Adam(adam).state();
    let counters: Vec<(&str, u64)> = state
        .counters
        .iter()
        .map(|(n, c)| (n.as_str(), *c))
        .collect();
    assert_eq!(counters, [("step.a", 2), ("step.b", 0)]);

    let mut restored = Adam::new(params, config()).unwrap();
    restored.load_state(&state).unwrap();
    assert_eq!(restored.steps(), [2, 0]);

    // Without any step entry the error names what is missing.
    let mut bare = state.clone();
    bare.counters.clear();
    let err = restored.load_state(&bare).unwrap_err().to_string();
    assert!(err.contains("no counter named step.a"), "{err}");
}
