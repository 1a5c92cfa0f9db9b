#!/usr/bin/env python3
"""Fits the polynomial coefficients of the f32 normal cdf behind GELU (kernels/src/gelu/normal.rs).

Each piece is fitted in f64 by Lawson's iteration (iteratively reweighted least squares, which
converges to the minimax fit) on Chebyshev nodes against mpmath's 50-digit erf/erfc, then
rounded to f32. Prints the coefficients as Rust arrays and each fit's maximum error.

    pip install numpy mpmath && python3 scripts/fit_normal_cdf.py

The pieces, with z = x / sqrt(2) and t = |z|:
  - ERF_SMALL, t <= 1:   erf(z) / z   = P(z^2)                (relative error)
  - LOG_ERFC, 1 < t <= 4: ln erfc(t)   = Q(t - 2.5)            (absolute error)
  - ERFC_TAIL, t > 4:    erfc(t) e^(t^2) t = R(1/t)            (relative error)
  - EXP, |r| <= ln2/2:   e^r          = E(r)                  (relative error)
"""
import mpmath
import numpy as np

mpmath.mp.dps = 50


def chebyshev_nodes(lo, hi, n=6000):
    k = np.arange(n)
    return (lo + hi) / 2 + (hi - lo) / 2 * np.cos((2 * k + 1) * np.pi / (2 * n))


def lawson(x, f, degree, relative, iterations=600):
    basis = np.stack([x**k for k in range(degree + 1)], 1)
    weights = np.ones_like(x)
    for _ in range(iterations):
        scale = np.sqrt(weights) / (np.abs(f) if relative else 1.0)
        coef, *_ = np.linalg.lstsq(basis * scale[:, None], f * scale, rcond=None)
        err = np.abs(basis @ coef - f)
        if relative:
            err = err / np.abs(f)
        weights = weights * err
        weights /= weights.sum()
    return coef, err.max()


def show(name, coef, err, kind):
    values = ", ".join(np.format_float_scientific(np.float32(c), unique=True) if abs(c) < 1e-3 else np.format_float_positional(np.float32(c), unique=True) for c in coef)
    print(f"// max {kind} error of the f64 fit: {err:.3e}")
    print(f"const {name}: [f32; {len(coef)}] = [{values}];")


s = chebyshev_nodes(0.0, 1.0)
z = np.sqrt(s)
f = np.array([float(mpmath.erf(mpmath.mpf(v)) / mpmath.mpf(v)) for v in z])
show("ERF_SMALL", *lawson(s, f, 6, relative=True), "relative")

t = chebyshev_nodes(1.0, 4.0)
f = np.array([float(mpmath.log(mpmath.erfc(mpmath.mpf(v)))) for v in t])
show("LOG_ERFC", *lawson(t - 2.5, f, 8, relative=False), "absolute")

v = chebyshev_nodes(0.1, 0.25)
f = np.array(
    [float(mpmath.erfc(1 / mpmath.mpf(w)) * mpmath.exp(1 / mpmath.mpf(w) ** 2) / mpmath.mpf(w)) for w in v]
)
show("ERFC_TAIL", *lawson(v, f, 5, relative=True), "relative")

r = chebyshev_nodes(-np.log(2) / 2, np.log(2) / 2)
show("EXP", *lawson(r, np.exp(r), 6, relative=True), "relative")
