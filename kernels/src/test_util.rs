//! What the kernel tests share: deterministic test values and the three ways they compare
//! results with an oracle.

use crate::Storage;

/// `len` values spread over `[lo, hi)` by a 64-bit LCG (Knuth's MMIX constants) started
/// from `state`: deterministic, and irregular enough that a swapped index shows.
fn lcg(len: usize, mut state: u64, lo: f64, hi: f64) -> Vec<f64> {
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) * (hi - lo) + lo
        })
        .collect()
}

/// `len` deterministic values in `[-1, 1)`, a different sequence for each `seed`.
pub fn values(len: usize, seed: u64) -> Vec<f64> {
    lcg(len, seed ^ 0x9e37_79b9_7f4a_7c15, -1.0, 1.0)
}

/// `len` deterministic values in `[-3, 3)`, spread like logits and gradients.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<f64> {
    lcg(len, seed, -3.0, 3.0)
}

/// `|got - want| <= tol` element by element: for values worked out by hand.
pub fn assert_close_abs(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "element {i}: got {g}, want {w} (tol {tol})"
        );
    }
}

/// `|got - want| <= tol * (1 + |want|)` element by element: relative for large values,
/// absolute near zero.
pub fn assert_close_rel(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "element {i}: got {g}, want {w}\n{got:?}\nvs\n{want:?}"
        );
    }
}

/// `|got - want| <= tol * max(1, max |want|)` element by element: relative to the largest
/// value, the error of sums of many products (convolutions, matrix products). `what`
/// names the buffer in a failure.
pub fn assert_close_scaled(what: &str, got: &Storage, want: &[f64], tol: f64) {
    let got = got.to_vec_f64().unwrap();
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * scale,
            "{what}[{i}]: got {g}, want {w} (tolerance {tol} x {scale})"
        );
    }
}

/// The backward of an elementwise `op` (GELU, ReLU) takes a gradient of its input's dtype
/// and no other: a bf16 input refuses f32 and f64 gradients and an f32 input a bf16 one,
/// each refusal naming `grad_out`; a gradient of another length is a shape error.
pub fn assert_gradients_have_the_input_dtype(
    op: &str,
    backward: impl Fn(&Storage, &Storage) -> crate::Result<Storage>,
) {
    use half::bf16;
    let x = Storage::bf16(vec![bf16::ONE; 2]);
    for grad_out in [Storage::f32(vec![1.0; 2]), Storage::f64(vec![1.0; 2])] {
        let message = format!(
            "{op}: operands disagree: grad_out is {} on cpu, expected bf16 on cpu",
            grad_out.dtype()
        );
        assert_eq!(backward(&x, &grad_out).unwrap_err().to_string(), message);
    }
    let x32 = Storage::f32(vec![1.0; 2]);
    let message = format!("{op}: operands disagree: grad_out is bf16 on cpu, expected f32 on cpu");
    let err = backward(&x32, &Storage::bf16(vec![bf16::ONE; 2])).unwrap_err();
    assert_eq!(err.to_string(), message);
    let err = backward(&x, &Storage::bf16(vec![bf16::ONE; 3])).unwrap_err();
    assert!(
        matches!(err, crate::Error::Shape { op: o, .. } if o == op),
        "{err}"
    );
}
