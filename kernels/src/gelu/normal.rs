//! The standard normal distribution's cdf `Φ` and density `φ`, the two functions GELU is
//! made of, in f64 (from libm's `erfc`, the oracle) and in f32 (below, vectorisable).
//!
//! The f32 versions are straight-line code: no branches, no table lookups, no calls, so a
//! loop over them compiles to 16-lane AVX-512 (see `simd::wide_loop`). The polynomials'
//! steps are fused multiply-adds (`mul_add`: one rounding, half the instructions of a
//! multiply and an add, and a shorter dependency chain); every other operation is a plain
//! f32 multiply or add, never fused. A fused multiply-add is correctly rounded wherever it
//! runs (the FMA instruction, libm's `fmaf` on a CPU without one, CUDA's `fmaf`), so the
//! result is the same bit for bit on every CPU and in the CUDA kernel (`gelu.cu`, compiled
//! with `--fmad=false` so that nothing else is fused), which repeats this code line for
//! line.
//!
//! With `z = x / √2` and `t = |z|`, `Φ(x) = ½ erfc(-z)` is taken from one of three fits,
//! each computed for every input and the right one selected:
//!
//! - `t ≤ 1`: `Φ = ½ + ½ z P(z²)`, `P ≈ erf(z)/z`;
//! - `1 < t ≤ 4`: `½ erfc(t) = ½ exp(Q(t - 2.5))`, `Q ≈ ln erfc(t)`;
//! - `t > 4`: `½ erfc(t) = ½ exp(-t²) R(1/t) / t`, `R ≈ erfc(t) e^(t²) t`;
//!
//! and `Φ = 1 - ½ erfc(t)` for positive `x`, `½ erfc(t)` for negative `x`, so the left tail
//! keeps its relative precision instead of cancelling in `1 + erf`. The coefficients come
//! from `scripts/fit_normal_cdf.py`. Measured against f64 over 6 million points
//! (`tests.rs`): `Φ` within 3 ulp for `x ≥ 0`, relative error under 2e-5 in the far left
//! tail, and GELU within about 1e-7 · max(|x|, 1), like PyTorch's own f32 GELU.

/// `erf(z)/z` as a polynomial in `z²`, for `|z| ≤ 1`. (The first coefficient is the fit's,
/// one f32 ulp below 2/√π.)
#[allow(clippy::approx_constant)]
const ERF_SMALL: [f32; 7] = [
    1.1283791,
    -0.37612626,
    0.112835854,
    -0.026853813,
    0.0051883277,
    -8.0101937e-04,
    7.8538615e-05,
];
/// `ln erfc(t)` as a polynomial in `t - 2.5`, for `1 ≤ t ≤ 4`.
const LOG_ERFC: [f32; 9] = [
    -7.806815,
    -5.3526807,
    -0.9438936,
    -0.010858487,
    0.0021650814,
    -4.2017314e-04,
    7.745493e-05,
    -1.33017065e-05,
    1.5998156e-06,
];
/// `erfc(t) e^(t²) t` as a polynomial in `1/t`, for `t ≥ 4`.
const ERFC_TAIL: [f32; 6] = [
    0.5641868,
    7.857222e-05,
    -0.28270334,
    -0.0027940057,
    0.4947549,
    -0.4389333,
];
/// `e^r` for `|r| ≤ ln(2)/2`.
const EXP: [f32; 7] = [
    1.,
    1.,
    0.4999999,
    0.1666642,
    0.041668225,
    0.008374816,
    0.0013836846,
];

const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// The polynomial with these coefficients (lowest degree first) at `x`, by Horner's rule
/// in fused multiply-adds.
#[inline(always)]
fn horner<const N: usize>(coefficients: &[f32; N], x: f32) -> f32 {
    let mut p = coefficients[N - 1];
    for &c in coefficients[..N - 1].iter().rev() {
        p = p.mul_add(x, c);
    }
    p
}

/// `e^q` in f32, within 2 ulp; 0 below -87 (where f32 would go subnormal).
#[inline(always)]
pub fn exp_f32(q: f32) -> f32 {
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer in plain f32 adds.
    const ROUND: f32 = 12_582_912.0;
    // ln 2 split so that k * LN2_HI is exact for |k| < 2^11.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let clamped = q.clamp(-87.0, 88.0);
    let shifted = clamped * std::f32::consts::LOG2_E + ROUND;
    let k = shifted - ROUND;
    let r = (clamped - k * LN2_HI) - k * LN2_LO;
    // `shifted` lies in [2^23, 2^24), where one unit in the last place is 1, so its bits
    // are ROUND's plus k: 2^k is built from them in integer ops. (`k as i32` gives the
    // same number but does not vectorise, since Rust's float-to-int cast saturates.)
    let biased_exponent = shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127);
    let two_to_k = f32::from_bits(biased_exponent << 23);
    let value = horner(&EXP, r) * two_to_k;
    if q < -87.0 {
        0.0
    } else {
        value
    }
}

/// `Φ(x)`, the probability that a standard normal variable is at most `x`, in f32.
#[inline(always)]
pub fn cdf_f32(x: f32) -> f32 {
    cdf_f32_fits::<true>(x)
}

/// Largest `|x|` for which [`cdf_f32_central`] equals [`cdf_f32`]: the far-tail fit starts
/// at `|x| = 4√2 ≈ 5.657`; this bound stays clear of it whatever the rounding of `x / √2`.
pub const CENTRAL_MAX: f32 = 5.5;

/// [`cdf_f32`], bit for bit, for `|x| ≤ CENTRAL_MAX`, without computing the far-tail fit
/// (its division and second `exp` are a third of the work). Loops over blocks of values
/// that all lie in that range call this instead; anything else (NaN too) needs `cdf_f32`.
#[inline(always)]
pub fn cdf_f32_central(x: f32) -> f32 {
    cdf_f32_fits::<false>(x)
}

/// `Φ(x)` from the fits; `FAR_TAIL = false` leaves out the one for `|x| > 4√2`, for inputs
/// known not to need it.
#[inline(always)]
fn cdf_f32_fits<const FAR_TAIL: bool>(x: f32) -> f32 {
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let t = z.abs();
    let near_zero = 0.5 + 0.5 * (z * horner(&ERF_SMALL, z * z));
    let mid = exp_f32(horner(&LOG_ERFC, t.min(4.0) - 2.5));
    let half_erfc = if FAR_TAIL {
        let far = t.max(4.0);
        let inverse = 1.0 / far;
        let tail = exp_f32(-(far * far)) * (inverse * horner(&ERFC_TAIL, inverse));
        0.5 * if t <= 4.0 { mid } else { tail }
    } else {
        0.5 * mid
    };
    let away = if x > 0.0 { 1.0 - half_erfc } else { half_erfc };
    if t <= 1.0 {
        near_zero
    } else {
        away
    }
}

/// `φ(x) = e^(-x²/2) / √(2π)`, the standard normal density, in f32.
#[inline(always)]
pub fn pdf_f32(x: f32) -> f32 {
    exp_f32(-0.5 * (x * x)) * FRAC_1_SQRT_2PI as f32
}

/// `Φ(x)` in f64, from libm's `erfc` (no cancellation in either tail).
pub fn cdf_f64(x: f64) -> f64 {
    0.5 * libm::erfc(-x * std::f64::consts::FRAC_1_SQRT_2)
}

/// `φ(x)` in f64.
pub fn pdf_f64(x: f64) -> f64 {
    (-0.5 * x * x).exp() * FRAC_1_SQRT_2PI
}
