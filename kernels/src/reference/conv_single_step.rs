//! One output neuron of a convolution: a window of the input times one filter, plus bias.

/// `Z = sum(a_slice_prev * w) + b` (notebook 4.1).
///
/// Both slices hold an `(f, f, n_C_prev)` block in the same (C) order; only their
/// element-wise product matters, so they are taken flat.
///
/// # Panics
///
/// If the two slices differ in length.
pub fn conv_single_step(a_slice_prev: &[f64], w: &[f64], b: f64) -> f64 {
    assert_eq!(
        a_slice_prev.len(),
        w.len(),
        "conv_single_step: the input slice has {} values but the filter has {}",
        a_slice_prev.len(),
        w.len()
    );
    let s: f64 = a_slice_prev.iter().zip(w).map(|(a, w)| a * w).sum();
    s + b
}
