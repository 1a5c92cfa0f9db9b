//! The bf16 lowering of convolutions and linear layers on the GPU (`conv2d/cuda_bf16.rs`,
//! `linear/cuda_bf16.rs`), run by the CPU emulator with the products computed on the host
//! in place of cuBLAS.
//!
//! Each bf16 entry point must do exactly what its f32 kernel does, with the values it
//! reads widened and the values it writes rounded once: so each is checked bit for bit
//! against the f32 kernel's output rounded by the CPU (`half::bf16::from_f32`). The
//! pipeline as a whole is then checked against the CPU's f64 convolution of the
//! bf16-rounded operands, within f32 accumulation plus one bf16 rounding of the output.

use super::emulated_bf16_tests::{assert_same_bf16, bf16_bits, bf16_storage};
use super::emulated_tests::{emulator, input, output, product, Arg, Emulator, Lcg, BLOCK};
use crate::{conv2d, Storage};

/// The value of each bf16 (exact).
fn widened(bits: &[u16]) -> Vec<f32> {
    bits.iter()
        .map(|&b| f32::from_bits(u32::from(b) << 16))
        .collect()
}

/// Runs `kernel` on `(src, dst)` followed by `rest`, for an output of `len` values of
/// `U`, and returns the output.
fn run<S, U: Clone + Default>(
    emu: &Emulator,
    kernel: &str,
    src: &[S],
    len: usize,
    rest: &[Arg],
) -> Vec<U> {
    let mut dst = vec![U::default(); len];
    let args: Vec<Arg> = [input(src), output(&mut dst)]
        .into_iter()
        .chain(rest.iter().copied())
        .collect();
    emu.launch(kernel, 4, BLOCK, &args);
    dst
}

#[test]
fn emulated_bf16_convolution_lowering_rounds_exactly_what_the_f32_one_computes() {
    let Some(emu) = emulator() else { return };
    let mut rng = Lcg(21);
    let cases = [
        ([2, 3, 8, 8], [4, 3, 3, 3], [1, 1], [1, 1]),
        ([3, 2, 9, 7], [5, 2, 3, 2], [2, 1], [1, 0]),
        ([2, 4, 5, 5], [3, 4, 1, 1], [1, 1], [0, 0]),
    ];
    for (case, (xs, ws, stride, padding)) in cases.into_iter().enumerate() {
        let what = |part: &str| format!("bf16 conv case {case} {part}");
        let g = conv2d::Conv2dGeometry::new(&xs, &ws, stride, padding).unwrap();
        let (n, c_out, p) = (g.batch, g.out_channels, g.out_h * g.out_w);
        let ckk = g.in_channels * g.kernel[0] * g.kernel[1];
        let cols = n * p;
        let geometry: Vec<Arg> = [
            n,
            g.in_channels,
            g.in_h,
            g.in_w,
            g.kernel[0],
            g.kernel[1],
            g.stride[0],
            g.stride[1],
            g.padding[0],
            g.padding[1],
            g.out_h,
            g.out_w,
        ]
        .map(|d| Arg::I32(d as i32))
        .to_vec();
        let ncp: Vec<Arg> = [n, c_out, p].map(|d| Arg::I32(d as i32)).to_vec();
        let x = rng.values(xs.iter().product(), 3.0);
        let w = rng.values(ws.iter().product(), 1.0);
        let bias = rng.values(c_out, 1.0);
        let gy = rng.values(n * c_out * p, 2.0);

        // im2col: from an f32 input (rounded as it is unrolled) and from a bf16 one.
        let col_f32: Vec<f32> = run(emu, "conv2d_im2col", &x, ckk * cols, &geometry);
        let col: Vec<u16> = run(emu, "conv2d_im2col_f32_to_bf16", &x, ckk * cols, &geometry);
        assert_same_bf16(&what("im2col from f32"), &col, &bf16_bits(&col_f32));
        let x16 = bf16_bits(&x);
        let from_bf16: Vec<u16> = run(emu, "conv2d_im2col_bf16", &x16, ckk * cols, &geometry);
        assert_same_bf16(&what("im2col from bf16"), &from_bf16, &col);

        // The forward: cuBLAS's f32 sums of bf16 products, stood in for by the host.
        let w16 = bf16_bits(&w);
        let wide = product(
            c_out,
            cols,
            ckk,
            &widened(&w16),
            false,
            &widened(&col),
            false,
        );
        let to_ncp = |kernel: &str| -> (Vec<f32>, Vec<u16>) {
            let mut y32 = vec![0.0f32; n * c_out * p];
            let mut y16 = vec![0u16; n * c_out * p];
            let head = [input(&wide), input(&bias), Arg::I32(1)];
            let args: Vec<Arg> = head
                .iter()
                .copied()
                .chain([output(&mut y32)])
                .chain(ncp.iter().copied())
                .collect();
            emu.launch("conv2d_cnp_to_ncp", 4, BLOCK, &args);
            let args: Vec<Arg> = head
                .into_iter()
                .chain([output(&mut y16)])
                .chain(ncp.iter().copied())
                .collect();
            emu.launch(kernel, 4, BLOCK, &args);
            (y32, y16)
        };
        let (y32, y16) = to_ncp("conv2d_cnp_to_ncp_bf16");
        assert_same_bf16(&what("bf16 output"), &y16, &bf16_bits(&y32));

        // Against the f64 convolution of the rounded operands: f32 sums of ckk exact
        // products (relative error up to ckk * 2^-24 of the sum of magnitudes) plus one
        // rounding to bf16 (2^-8 relative).
        let x64 = Storage::f64(widened(&x16).iter().map(|&v| f64::from(v)).collect());
        let w64 = Storage::f64(widened(&w16).iter().map(|&v| f64::from(v)).collect());
        let b64 = Storage::f64(bias.iter().map(|&v| f64::from(v)).collect());
        let abs =
            |v: &Storage| Storage::f64(v.to_vec_f64().unwrap().iter().map(|v| v.abs()).collect());
        let want = conv2d::forward(&x64, &w64, Some(&b64), &g)
            .unwrap()
            .to_vec_f64()
            .unwrap();
        let magnitude = conv2d::forward(&abs(&x64), &abs(&w64), Some(&abs(&b64)), &g)
            .unwrap()
            .to_vec_f64()
            .unwrap();
        for (i, ((&got, &want), &mag)) in
            widened(&y16).iter().zip(&want).zip(&magnitude).enumerate()
        {
            let bound = (ckk + 1) as f64 * 2f64.powi(-24) * mag + 2f64.powi(-8) * want.abs();
            assert!(
                (f64::from(got) - want).abs() <= bound * 1.01,
                "{}: y[{i}] = {got}, f64 gives {want} (bound {bound:e})",
                what("forward")
            );
        }

        // The backward: the output gradient into the products' layout, from f32 and bf16.
        let gy_wide_f32: Vec<f32> = run(emu, "conv2d_ncp_to_cnp", &gy, c_out * cols, &ncp);
        let gy_wide: Vec<u16> = run(
            emu,
            "conv2d_ncp_to_cnp_f32_to_bf16",
            &gy,
            c_out * cols,
            &ncp,
        );
        assert_same_bf16(
            &what("gy layout from f32"),
            &gy_wide,
            &bf16_bits(&gy_wide_f32),
        );
        let gy16 = bf16_bits(&gy);
        let from_bf16: Vec<u16> = run(emu, "conv2d_ncp_to_cnp_bf16", &gy16, c_out * cols, &ncp);
        assert_same_bf16(&what("gy layout from bf16"), &from_bf16, &gy_wide);

        // The input gradient, rounded once from the f32 col2im of the same sums.
        let gcol = product(
            ckk,
            cols,
            c_out,
            &widened(&w16),
            true,
            &widened(&gy_wide),
            false,
        );
        let gx32: Vec<f32> = run(emu, "conv2d_col2im", &gcol, x.len(), &geometry);
        let gx16: Vec<u16> = run(emu, "conv2d_col2im_to_bf16", &gcol, x.len(), &geometry);
        assert_same_bf16(&what("input grad"), &gx16, &bf16_bits(&gx32));

        // The bias gradient from a bf16 gy: the f32 kernel's sums of the widened values.
        let gb = |kernel: &str, gy_arg: Arg| {
            let mut gb = vec![0.0f32; c_out];
            let args: Vec<Arg> = [gy_arg]
                .into_iter()
                .chain(ncp.iter().copied())
                .chain([output(&mut gb)])
                .collect();
            emu.launch(kernel, 2, BLOCK, &args);
            gb
        };
        let widened_gy = widened(&gy16);
        let want = gb("conv2d_bias_grad", input(&widened_gy));
        let got = gb("conv2d_bias_grad_bf16", input(&gy16));
        assert_eq!(got, want, "{}", what("bias grad"));
        // And the CPU's bf16 bias gradient agrees with it.
        let cpu = conv2d::bias_grad(&bf16_storage(&gy16), &g)
            .unwrap()
            .to_vec_f32()
            .unwrap();
        for (i, (a, b)) in got.iter().zip(&cpu).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "{}[{i}]",
                what("bias grad vs CPU")
            );
        }
    }
}

#[test]
fn emulated_bf16_linear_bias_gradient_sums_the_widened_values() {
    let Some(emu) = emulator() else { return };
    let mut rng = Lcg(22);
    let (rows, cols) = (45usize, 37usize);
    let gy16 = bf16_bits(&rng.values(rows * cols, 4.0));
    let widened_gy = widened(&gy16);
    let (r, c) = (Arg::I32(rows as i32), Arg::I32(cols as i32));
    let sums = |kernel: &str, gy: Arg| {
        let mut gb = vec![0.0f32; cols];
        emu.launch(kernel, 1, (32, 8), &[gy, r, c, output(&mut gb)]);
        gb
    };
    let want = sums("linear_bias_grad", input(&widened_gy));
    assert_eq!(sums("linear_bias_grad_bf16", input(&gy16)), want);
}
