use super::*;
use crate::test_util::{assert_close_abs, pseudo_random};
use crate::DType;

fn values(s: &Storage) -> Vec<f64> {
    s.to_vec_f64().unwrap()
}

// ---------------------------------------------------------------------------------- SGD

fn sgd_cfg(lr: f64, momentum: f64, dampening: f64, weight_decay: f64, nesterov: bool) -> SgdConfig {
    SgdConfig {
        lr,
        momentum,
        dampening,
        weight_decay,
        nesterov,
    }
}

/// Runs `steps` SGD steps on `p0` with the constant gradient `grad`, returning (p, buf)
/// after each step.
fn run_sgd(
    p0: Vec<f64>,
    grad: Vec<f64>,
    cfg: &SgdConfig,
    steps: usize,
) -> Vec<(Vec<f64>, Option<Vec<f64>>)> {
    let mut p = Storage::f64(p0);
    let g = Storage::f64(grad);
    let mut buf = None;
    (0..steps)
        .map(|_| {
            sgd_step(&mut p, &g, &mut buf, cfg).unwrap();
            (values(&p), buf.as_ref().map(values))
        })
        .collect()
}

/// lr 0.1, momentum 0.9, dampening 0.5, weight decay 0.1; p0 = 1, grad = 1 every step.
/// step 1: g = 1 + 0.1*1 = 1.1;        buf = g = 1.1 (first step: no dampening);
///         p = 1 - 0.1*1.1 = 0.89
/// step 2: g = 1 + 0.1*0.89 = 1.089;   buf = 0.9*1.1 + 0.5*1.089 = 0.99 + 0.5445 = 1.5345;
///         p = 0.89 - 0.15345 = 0.73655
/// step 3: g = 1 + 0.073655 = 1.073655; buf = 0.9*1.5345 + 0.5*1.073655
///         = 1.38105 + 0.5368275 = 1.9178775; p = 0.73655 - 0.19178775 = 0.54476225
/// The second element mirrors the first (p0 = -1, grad = -1): every quantity negates.
#[test]
fn sgd_momentum_dampening_and_weight_decay_match_hand_values() {
    let cfg = sgd_cfg(0.1, 0.9, 0.5, 0.1, false);
    let steps = run_sgd(vec![1.0, -1.0], vec![1.0, -1.0], &cfg, 3);
    let want = [(0.89, 1.1), (0.73655, 1.5345), (0.54476225, 1.9178775)];
    for ((p, buf), (wp, wb)) in steps.iter().zip(want) {
        assert_close_abs(p, &[wp, -wp], 1e-15);
        assert_close_abs(buf.as_ref().unwrap(), &[wb, -wb], 1e-15);
    }
}

/// lr 0.1, Nesterov momentum 0.9, dampening 0, weight decay 0.1; p0 = 1, grad = 1.
/// step 1: g = 1.1; buf = 1.1; step = g + 0.9*buf = 2.09; p = 1 - 0.209 = 0.791
/// step 2: g = 1 + 0.0791 = 1.0791; buf = 0.9*1.1 + 1.0791 = 2.0691;
///         step = 1.0791 + 0.9*2.0691 = 1.0791 + 1.86219 = 2.94129; p = 0.791 - 0.294129 = 0.496871
/// step 3: g = 1 + 0.0496871 = 1.0496871; buf = 0.9*2.0691 + 1.0496871 = 2.9118771;
///         step = 1.0496871 + 2.62068939 = 3.67037649; p = 0.496871 - 0.367037649 = 0.129833351
#[test]
fn sgd_nesterov_matches_hand_values() {
    let cfg = sgd_cfg(0.1, 0.9, 0.0, 0.1, true);
    let steps = run_sgd(vec![1.0], vec![1.0], &cfg, 3);
    let want = [(0.791, 1.1), (0.496871, 2.0691), (0.129833351, 2.9118771)];
    for ((p, buf), (wp, wb)) in steps.iter().zip(want) {
        assert_close_abs(p, &[wp], 1e-15);
        assert_close_abs(buf.as_ref().unwrap(), &[wb], 1e-15);
    }
}

/// lr 0.1, no momentum, weight decay 0.5; p0 = 2, grad = 1: p -= 0.1 * (1 + 0.5 p):
/// 2 - 0.2 = 1.8; 1.8 - 0.19 = 1.61; 1.61 - 0.1805 = 1.4295. No buffer is created.
#[test]
fn sgd_without_momentum_matches_hand_values_and_keeps_no_buffer() {
    let cfg = sgd_cfg(0.1, 0.0, 0.0, 0.5, false);
    let steps = run_sgd(vec![2.0], vec![1.0], &cfg, 3);
    for ((p, buf), wp) in steps.iter().zip([1.8, 1.61, 1.4295]) {
        assert_close_abs(p, &[wp], 1e-15);
        assert!(buf.is_none());
    }
}

/// Momentum m = 0.5 without dampening or decay and a constant gradient g: the buffer is
/// the geometric sum buf_t = g (1 + m + ... + m^(t-1)) = g, 1.5 g, 1.75 g, so after three
/// steps p = p0 - lr g (1 + 1.5 + 1.75) = p0 - 0.425 g for lr = 0.1. 100003 elements (not a
/// multiple of the block size) exercise the parallel path, in f32 and f64.
#[test]
fn sgd_on_a_large_buffer_matches_the_closed_form() {
    let n = 100_003;
    let p0: Vec<f64> = (0..n).map(|i| (i % 11) as f64 - 5.0).collect();
    let g: Vec<f64> = (0..n).map(|i| (i % 5) as f64 - 2.0).collect();
    let want: Vec<f64> = p0.iter().zip(&g).map(|(p, g)| p - 0.425 * g).collect();
    let want_buf: Vec<f64> = g.iter().map(|g| 1.75 * g).collect();
    let cfg = sgd_cfg(0.1, 0.5, 0.0, 0.0, false);
    for dtype in [DType::F32, DType::F64] {
        let mut p = Storage::f64(p0.clone()).to_dtype(dtype).unwrap();
        let grad = Storage::f64(g.clone()).to_dtype(dtype).unwrap();
        let mut buf = None;
        for _ in 0..3 {
            sgd_step(&mut p, &grad, &mut buf, &cfg).unwrap();
        }
        assert_eq!(p.dtype(), dtype);
        assert_close_abs(&values(&p), &want, 1e-6);
        assert_close_abs(&values(buf.as_ref().unwrap()), &want_buf, 1e-6);
    }
}

#[test]
fn sgd_f32_agrees_with_f64() {
    let n = 64;
    let cfg = sgd_cfg(0.05, 0.9, 0.1, 0.01, false);
    let p32 = Storage::f32(pseudo_random(n, 1).iter().map(|&v| v as f32).collect());
    let mut p64 = p32.to_dtype(DType::F64).unwrap();
    let mut p32 = p32;
    let (mut b32, mut b64) = (None, None);
    for seed in 0..3 {
        let g32 = Storage::f32(
            pseudo_random(n, 10 + seed)
                .iter()
                .map(|&v| v as f32)
                .collect(),
        );
        let g64 = g32.to_dtype(DType::F64).unwrap();
        sgd_step(&mut p32, &g32, &mut b32, &cfg).unwrap();
        sgd_step(&mut p64, &g64, &mut b64, &cfg).unwrap();
    }
    assert_close_abs(&values(&p32), &values(&p64), 1e-5);
    assert_close_abs(
        &values(b32.as_ref().unwrap()),
        &values(b64.as_ref().unwrap()),
        1e-5,
    );
}

#[test]
fn sgd_rejects_bad_hyper_parameters_naming_the_value() {
    let ok = sgd_cfg(0.1, 0.9, 0.0, 0.0, true);
    assert!(ok.validate().is_ok());
    for (cfg, needle) in [
        (SgdConfig { lr: -0.5, ..ok }, "-0.5"),
        (SgdConfig { lr: f64::NAN, ..ok }, "NaN"),
        (
            SgdConfig {
                momentum: -0.25,
                nesterov: false,
                ..ok
            },
            "-0.25",
        ),
        (
            SgdConfig {
                weight_decay: -3.0,
                ..ok
            },
            "-3",
        ),
        (
            SgdConfig {
                dampening: f64::INFINITY,
                nesterov: false,
                ..ok
            },
            "inf",
        ),
        (
            SgdConfig {
                momentum: 0.0,
                ..ok
            },
            "momentum 0",
        ),
        (
            SgdConfig {
                dampening: 0.125,
                ..ok
            },
            "dampening 0.125",
        ),
    ] {
        let err = cfg.validate().unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument { op: "sgd", .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains(needle),
            "{err} should mention {needle}"
        );
        // The step refuses too, and leaves the parameter alone.
        let mut p = Storage::f32(vec![1.0]);
        assert!(sgd_step(&mut p, &Storage::f32(vec![1.0]), &mut None, &cfg).is_err());
        assert_eq!(p, Storage::f32(vec![1.0]));
    }
}

#[test]
fn sgd_rejects_bad_lengths_and_dtypes_without_touching_the_parameter() {
    let cfg = sgd_cfg(0.1, 0.9, 0.0, 0.0, false);
    let mut p = Storage::f32(vec![1.0; 4]);
    let err = sgd_step(&mut p, &Storage::f32(vec![1.0; 3]), &mut None, &cfg).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "sgd", .. }), "{err}");
    assert!(
        err.to_string().contains('3') && err.to_string().contains('4'),
        "{err}"
    );
    let mut buf = Some(Storage::f32(vec![0.0; 5]));
    let err = sgd_step(&mut p, &Storage::f32(vec![1.0; 4]), &mut buf, &cfg).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "sgd", .. }), "{err}");
    assert!(err.to_string().contains("momentum buffer has 5"), "{err}");
    let mut buf = Some(Storage::f64(vec![0.0; 4]));
    let err = sgd_step(&mut p, &Storage::f32(vec![1.0; 4]), &mut buf, &cfg).unwrap_err();
    assert!(matches!(err, Error::Mismatch { op: "sgd", .. }), "{err}");
    let err = sgd_step(&mut p, &Storage::f64(vec![1.0; 4]), &mut None, &cfg).unwrap_err();
    assert!(matches!(err, Error::Mismatch { op: "sgd", .. }), "{err}");
    assert_eq!(p, Storage::f32(vec![1.0; 4]));
}

// --------------------------------------------------------------------------------- Adam

/// With a constant gradient g and zero initial moments the moments are geometric sums:
/// m_t = (1 - b1) g (1 + b1 + ... + b1^(t-1)) = (1 - b1^t) g, and likewise
/// v_t = (1 - b2^t) g^2. Dividing by the bias corrections gives exactly g and g^2, so each
/// step moves p by lr * g / (|g| + eps), and after t steps p = p0 - t lr g / (|g| + eps).
/// A zero gradient leaves p where it is (0 / (0 + eps) = 0).
#[test]
fn adam_with_constant_gradients_matches_the_closed_form() {
    let cfg = AdamConfig::default();
    let p0 = [1.0, -2.0, 0.5, 3.0, 0.0];
    let g = [0.5, -0.25, 0.0, 4.0, 1e-3];
    for dtype in [DType::F64, DType::F32] {
        let tol = if dtype == DType::F64 { 1e-13 } else { 1e-6 };
        let mut p = Storage::f64(p0.to_vec()).to_dtype(dtype).unwrap();
        let grad = Storage::f64(g.to_vec()).to_dtype(dtype).unwrap();
        let mut m = Storage::zeros(p0.len(), dtype, p.device()).unwrap();
        let mut v = m.clone();
        for t in 1..=5u64 {
            adam_step(&mut p, &grad, &mut m, &mut v, t, &cfg).unwrap();
            let tf = t as f64;
            let want_p: Vec<f64> = p0
                .iter()
                .zip(&g)
                .map(|(p0, g)| p0 - tf * cfg.lr * g / (g.abs() + cfg.eps))
                .collect();
            let want_m: Vec<f64> = g
                .iter()
                .map(|g| (1.0 - 0.9f64.powi(t as i32)) * g)
                .collect();
            let want_v: Vec<f64> = g
                .iter()
                .map(|g| (1.0 - 0.999f64.powi(t as i32)) * g * g)
                .collect();
            assert_close_abs(&values(&p), &want_p, tol);
            assert_close_abs(&values(&m), &want_m, tol);
            assert_close_abs(&values(&v), &want_v, tol);
        }
    }
}

/// beta1 = beta2 = 0.5, lr 0.1, eps 0; p0 = 1 and gradients 2, -2, 4.
/// step 1: m = 0.5*2 = 1;             v = 0.5*4 = 2;           bc1 = bc2 = 1/2
///         m/bc1 = 2, v/bc2 = 4: p -= 0.1 * 2/2 -> p = 0.9
/// step 2: m = 0.5 - 1 = -0.5;        v = 1 + 2 = 3;           bc1 = bc2 = 3/4
///         m/bc1 = -2/3, v/bc2 = 4: p -= 0.1 * (-2/3)/2 -> p = 0.9 + 1/30
/// step 3: m = -0.25 + 2 = 1.75;      v = 1.5 + 8 = 9.5;       bc1 = bc2 = 7/8
///         m/bc1 = 2, v/bc2 = 76/7: p -= 0.2 / sqrt(76/7) -> p = 0.9 + 1/30 - 0.2 sqrt(7/76)
#[test]
fn adam_with_changing_gradients_matches_hand_values() {
    let cfg = AdamConfig {
        lr: 0.1,
        beta1: 0.5,
        beta2: 0.5,
        eps: 0.0,
        weight_decay: 0.0,
    };
    let mut p = Storage::f64(vec![1.0]);
    let (mut m, mut v) = (Storage::f64(vec![0.0]), Storage::f64(vec![0.0]));
    let want = [
        (2.0, 0.9, 1.0, 2.0),
        (-2.0, 0.9 + 1.0 / 30.0, -0.5, 3.0),
        (
            4.0,
            0.9 + 1.0 / 30.0 - 0.2 * (7.0f64 / 76.0).sqrt(),
            1.75,
            9.5,
        ),
    ];
    for (t, (g, wp, wm, wv)) in (1..).zip(want) {
        adam_step(&mut p, &Storage::f64(vec![g]), &mut m, &mut v, t, &cfg).unwrap();
        assert_close_abs(&values(&p), &[wp], 1e-15);
        assert_close_abs(&values(&m), &[wm], 1e-15);
        assert_close_abs(&values(&v), &[wv], 1e-15);
    }
}

/// L2 weight decay is added to the gradient before the moments (Adam, not AdamW).
/// beta1 = beta2 = 0.5, lr 0.1, eps 0, weight decay 0.5, p0 = 2.
/// step 1: grad 1 -> g = 1 + 0.5*2 = 2; m = 1, v = 2; bc = 1/2: m/bc1 = 2, v/bc2 = 4
///         p = 2 - 0.1 * 2/2 = 1.9
/// step 2: grad 0.05 -> g = 0.05 + 0.95 = 1; m = 0.5 + 0.5 = 1; v = 1 + 0.5 = 1.5; bc = 3/4
///         m/bc1 = 4/3, v/bc2 = 2: p = 1.9 - 0.1 (4/3)/sqrt 2 = 1.9 - 0.2 sqrt(2)/3
/// step 3: grad 0.05 + 0.1 sqrt(2)/3, chosen so that g = grad + 0.5 p = 1 again;
///         m = 0.5 + 0.5 = 1; v = 0.75 + 0.5 = 1.25; bc = 7/8: m/bc1 = 8/7, v/bc2 = 10/7
///         p -= 0.1 (8/7) / sqrt(10/7) = 0.8 / sqrt(70)
/// (AdamW would give 1.8 after step 1: it decays p by lr*wd*p = 0.1, then steps by
/// lr * sign(grad) = 0.1.)
#[test]
fn adam_weight_decay_matches_hand_values() {
    let cfg = AdamConfig {
        lr: 0.1,
        beta1: 0.5,
        beta2: 0.5,
        eps: 0.0,
        weight_decay: 0.5,
    };
    let mut p = Storage::f64(vec![2.0]);
    let (mut m, mut v) = (Storage::f64(vec![0.0]), Storage::f64(vec![0.0]));
    let sqrt2 = 2f64.sqrt();
    let p2 = 1.9 - 0.2 * sqrt2 / 3.0;
    let want = [
        (1.0, 1.9, 1.0, 2.0),
        (0.05, p2, 1.0, 1.5),
        (0.05 + 0.1 * sqrt2 / 3.0, p2 - 0.8 / 70f64.sqrt(), 1.0, 1.25),
    ];
    for (t, (g, wp, wm, wv)) in (1..).zip(want) {
        adam_step(&mut p, &Storage::f64(vec![g]), &mut m, &mut v, t, &cfg).unwrap();
        assert_close_abs(&values(&p), &[wp], 1e-14);
        assert_close_abs(&values(&m), &[wm], 1e-14);
        assert_close_abs(&values(&v), &[wv], 1e-14);
    }
}

/// 100003 parameters with per-element constant gradients take the parallel path
/// (including a short last block); the closed form of the constant-gradient test applies.
#[test]
fn adam_on_a_large_buffer_matches_the_closed_form() {
    let n = 100_003;
    let cfg = AdamConfig {
        lr: 0.01,
        ..AdamConfig::default()
    };
    let p0: Vec<f64> = (0..n).map(|i| (i % 13) as f64 * 0.25 - 1.5).collect();
    let g: Vec<f64> = (0..n).map(|i| ((i % 7) as f64 - 3.0) * 0.5).collect();
    let want: Vec<f64> = p0
        .iter()
        .zip(&g)
        .map(|(p0, g)| p0 - 3.0 * cfg.lr * g / (g.abs() + cfg.eps))
        .collect();
    let mut p = Storage::f32(p0.iter().map(|&v| v as f32).collect());
    let grad = Storage::f32(g.iter().map(|&v| v as f32).collect());
    let mut m = Storage::f32(vec![0.0; n]);
    let mut v = Storage::f32(vec![0.0; n]);
    for t in 1..=3 {
        adam_step(&mut p, &grad, &mut m, &mut v, t, &cfg).unwrap();
    }
    assert_close_abs(&values(&p), &want, 1e-6);
}

#[test]
fn adam_f32_agrees_with_f64() {
    let n = 64;
    let cfg = AdamConfig {
        lr: 0.01,
        weight_decay: 0.01,
        ..AdamConfig::default()
    };
    let p32 = Storage::f32(pseudo_random(n, 1).iter().map(|&v| v as f32).collect());
    let mut p64 = p32.to_dtype(DType::F64).unwrap();
    let mut p32 = p32;
    let (mut m32, mut v32) = (Storage::f32(vec![0.0; n]), Storage::f32(vec![0.0; n]));
    let (mut m64, mut v64) = (Storage::f64(vec![0.0; n]), Storage::f64(vec![0.0; n]));
    for t in 1..=4 {
        let g32 = Storage::f32(pseudo_random(n, 20 + t).iter().map(|&v| v as f32).collect());
        let g64 = g32.to_dtype(DType::F64).unwrap();
        adam_step(&mut p32, &g32, &mut m32, &mut v32, t, &cfg).unwrap();
        adam_step(&mut p64, &g64, &mut m64, &mut v64, t, &cfg).unwrap();
    }
    assert_close_abs(&values(&p32), &values(&p64), 1e-5);
    assert_close_abs(&values(&m32), &values(&m64), 1e-5);
    assert_close_abs(&values(&v32), &values(&v64), 1e-5);
}

#[test]
fn adam_default_is_pytorchs() {
    let d = AdamConfig::default();
    assert_eq!(
        (d.lr, d.beta1, d.beta2, d.eps, d.weight_decay),
        (1e-3, 0.9, 0.999, 1e-8, 0.0)
    );
    assert!(d.validate().is_ok());
    // PyTorch accepts beta = 0 and eps = 0.
    let edge = AdamConfig {
        beta1: 0.0,
        beta2: 0.0,
        eps: 0.0,
        lr: 0.0,
        ..d
    };
    assert!(edge.validate().is_ok());
}

#[test]
fn adam_rejects_bad_hyper_parameters_and_step_naming_the_value() {
    let ok = AdamConfig::default();
    for (cfg, needle) in [
        (AdamConfig { lr: -0.5, ..ok }, "-0.5"),
        (
            AdamConfig {
                lr: f64::INFINITY,
                ..ok
            },
            "inf",
        ),
        (AdamConfig { beta1: 1.0, ..ok }, "beta1 1"),
        (AdamConfig { beta1: -0.1, ..ok }, "beta1 -0.1"),
        (AdamConfig { beta2: 1.5, ..ok }, "beta2 1.5"),
        (
            AdamConfig {
                beta2: f64::NAN,
                ..ok
            },
            "beta2 NaN",
        ),
        (AdamConfig { eps: -1e-3, ..ok }, "-0.001"),
        (
            AdamConfig {
                weight_decay: -2.0,
                ..ok
            },
            "-2",
        ),
    ] {
        let err = cfg.validate().unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument { op: "adam", .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains(needle),
            "{err} should mention {needle}"
        );
    }
    let mut p = Storage::f32(vec![1.0]);
    let (mut m, mut v) = (Storage::f32(vec![0.0]), Storage::f32(vec![0.0]));
    let err = adam_step(&mut p, &Storage::f32(vec![1.0]), &mut m, &mut v, 0, &ok).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument { op: "adam", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("step 0"), "{err}");
    let bad = AdamConfig { beta1: 1.0, ..ok };
    assert!(adam_step(&mut p, &Storage::f32(vec![1.0]), &mut m, &mut v, 1, &bad).is_err());
    assert_eq!(
        (p, m, v),
        (
            Storage::f32(vec![1.0]),
            Storage::f32(vec![0.0]),
            Storage::f32(vec![0.0])
        )
    );
}

#[test]
fn adam_rejects_bad_lengths_and_dtypes_without_touching_anything() {
    let cfg = AdamConfig::default();
    let mut p = Storage::f32(vec![1.0; 4]);
    let g = Storage::f32(vec![1.0; 4]);
    let zeros = |n| Storage::f32(vec![0.0; n]);
    let cases: [(Storage, Storage, Storage, &str); 4] = [
        (zeros(3), zeros(4), zeros(4), "grad has 3"),
        (g.clone(), zeros(5), zeros(4), "exp_avg has 5"),
        (g.clone(), zeros(4), zeros(2), "exp_avg_sq has 2"),
        (
            g.clone(),
            zeros(4),
            Storage::f64(vec![0.0; 4]),
            "exp_avg_sq is f64",
        ),
    ];
    for (grad, mut m, mut v, needle) in cases {
        let (m0, v0) = (m.clone(), v.clone());
        let err = adam_step(&mut p, &grad, &mut m, &mut v, 1, &cfg).unwrap_err();
        assert!(err.to_string().starts_with("adam"), "{err}");
        assert!(
            err.to_string().contains(needle),
            "{err} should mention {needle}"
        );
        assert_eq!((m, v), (m0, v0));
    }
    let err = adam_step(
        &mut p,
        &Storage::f64(vec![1.0; 4]),
        &mut zeros(4),
        &mut zeros(4),
        1,
        &cfg,
    )
    .unwrap_err();
    assert!(matches!(err, Error::Mismatch { op: "adam", .. }), "{err}");
    assert_eq!(p, Storage::f32(vec![1.0; 4]));
}
