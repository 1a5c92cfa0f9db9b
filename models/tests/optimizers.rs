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

fn close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 1e-12,
        "{actual} vs {expected} (by hand)"
    );
}

#[test]
fn sgd_groups_step_each_with_its_own_hyper_parameters_like_pytorch() {
    use models::optim::{ParamGroup, Sgd, SgdConfig};
    // Group A: Nesterov, momentum 0.9, weight decay 0.5; group B: plain momentum 0.5.
    let (a, b, idle) = (scalar(1.0), scalar(-1.0), scalar(7.0));
    let group_a = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        dampening: 0.0,
        weight_decay: 0.5,
        nesterov: true,
    };
    let group_b = SgdConfig {
        lr: 1.0,
        momentum: 0.5,
        dampening: 0.0,
        weight_decay: 0.0,
        nesterov: false,
    };
    let mut sgd = Sgd::with_groups(vec![
        ParamGroup {
            params: vec![("a".into(), a.clone())],
            config: group_a,
        },
        ParamGroup {
            params: vec![("b".into(), b.clone()), ("idle".into(), idle.clone())],
            config: group_b,
        },
    ])
    .unwrap();
    let backward = || {
        a.zero_grad();
        b.zero_grad();
        // d/da = 2, d/db = 3; `idle` takes no part and gets no gradient.
        let loss = a.scale(2.0).unwrap().add(&b.scale(3.0).unwrap()).unwrap();
        loss.sum().unwrap().backward().unwrap();
    };

    // Step 1 (factor 1). a: g = 2 + 0.5 * 1 = 2.5, buf = 2.5, Nesterov g + 0.9 buf = 4.75,
    // a = 1 - 0.1 * 4.75 = 0.525.  b: buf = 3, b = -1 - 1 * 3 = -4.
    backward();
    sgd.step().unwrap();
    close(value(&a), 0.525);
    close(value(&b), -4.0);

    // Step 2 at LambdaLR factor 0.5 (lr 0.05 and 0.5; the decay is not scaled).
    // a: g = 2 + 0.5 * 0.525 = 2.2625, buf = 0.9 * 2.5 + 2.2625 = 4.5125,
    //    step = 2.2625 + 0.9 * 4.5125 = 6.32375, a = 0.525 - 0.05 * 6.32375 = 0.2088125.
    // b: buf = 0.5 * 3 + 3 = 4.5, b = -4 - 0.5 * 4.5 = -6.25.
    sgd.set_lr_factor(0.5).unwrap();
    assert_eq!(sgd.lr(0), Some(0.05));
    backward();
    sgd.step().unwrap();
    close(value(&a), 0.2088125);
    close(value(&b), -6.25);

    // The parameter that never had a gradient was skipped entirely: no decay, no buffer.
    assert_eq!(value(&idle), 7.0);
    let names: Vec<String> = sgd.state().tensors.into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["momentum_buffer.a", "momentum_buffer.b"]);
}

#[test]
fn sgd_groups_reject_a_parameter_twice_and_bad_factors() {
    use models::optim::{ParamGroup, Sgd, SgdConfig};
    let a = scalar(1.0);
    let config = SgdConfig {
        lr: 0.1,
        momentum: 0.0,
        dampening: 0.0,
        weight_decay: 0.0,
        nesterov: false,
    };
    let group = || ParamGroup {
        params: vec![("a".into(), a.clone())],
        config,
    };
    let err = Sgd::with_groups(vec![group(), group()]).err().unwrap();
    assert!(err.to_string().contains("more than one group"), "{err}");
    let mut sgd = Sgd::with_groups(vec![group()]).unwrap();
    assert!(sgd.set_lr_factor(-1.0).is_err());
    assert!(sgd.set_lr_factor(f64::NAN).is_err());
}

#[test]
fn airbench_schedule_is_lambdalr_of_its_triangle() {
    use models::optim::LrSchedule;
    let schedule = LrSchedule::airbench(476);
    // warmup_steps = int(476 * 0.23) = int(109.48) = 109; warmdown 367 steps.
    close(schedule.factor(0), 0.2);
    // 0.2 (1 - 50/109) + 50/109
    close(schedule.factor(50), 0.5669724770642202);
    close(schedule.factor(109), 1.0);
    // 1 - 0.93 * 191/367
    close(schedule.factor(300), 0.5159945504087193);
    // The last step (475): 1 - 0.93 * 366/367.
    close(schedule.factor(475), 0.07253405994550413);
    assert_eq!(LrSchedule::Constant.factor(12345), 1.0);
}

#[test]
fn lookahead_decay_is_airbenchs_alpha_schedule() {
    use models::optim::lookahead_decay;
    // 0.95^5 (step / 476)^3, as Python computes it.
    close(lookahead_decay(0, 476), 0.0);
    close(lookahead_decay(5, 476), 8.9682391605462e-07);
    close(lookahead_decay(240, 476), 0.09918155052431249);
    close(lookahead_decay(475, 476), 0.7689144050273297);
    close(lookahead_decay(476, 476), 0.7737809374999998);
}
