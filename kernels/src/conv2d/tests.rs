use proptest::prelude::*;

use super::cpu::{self, Path};
use super::*;
use crate::reference::{self, Array4, ConvParams};
use crate::test_util::{assert_close_scaled, values};

fn f64s(values: &[f64]) -> Storage {
    Storage::f64(values.to_vec())
}

fn f32s(values: &[f64]) -> Storage {
    Storage::f32(values.iter().map(|&v| v as f32).collect())
}

/// The values an f32 buffer holds, so the f64 oracle sees exactly the f32 inputs.
fn rounded(values: &[f64]) -> Vec<f64> {
    values.iter().map(|&v| v as f32 as f64).collect()
}

/// The definition, straight from the module docs, in f64: no unrolling, no products.
fn naive_forward(x: &[f64], w: &[f64], b: Option<&[f64]>, g: &Conv2dGeometry) -> Vec<f64> {
    let mut y = vec![0.0; numel(&g.output_shape())];
    for_each_tap(g, |xi, wi, yi, co| {
        y[yi] += x[xi] * w[wi];
        let _ = co;
    });
    if let Some(b) = b {
        for (i, v) in y.iter_mut().enumerate() {
            *v += b[(i / (g.out_h * g.out_w)) % g.out_channels];
        }
    }
    y
}

/// `(dx, dw, db)` of `sum(y * gy)`, from the same definition.
fn naive_backward(
    x: &[f64],
    w: &[f64],
    gy: &[f64],
    g: &Conv2dGeometry,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut gx = vec![0.0; x.len()];
    let mut gw = vec![0.0; w.len()];
    let mut gb = vec![0.0; g.out_channels];
    for_each_tap(g, |xi, wi, yi, _| {
        gx[xi] += w[wi] * gy[yi];
        gw[wi] += x[xi] * gy[yi];
    });
    for (i, v) in gy.iter().enumerate() {
        gb[(i / (g.out_h * g.out_w)) % g.out_channels] += v;
    }
    (gx, gw, gb)
}

/// Calls `tap(input index, weight index, output index, output channel)` for every
/// product term of the convolution that reads a real (non-padding) pixel.
fn for_each_tap(g: &Conv2dGeometry, mut tap: impl FnMut(usize, usize, usize, usize)) {
    let ([kh, kw], [sh, sw], [ph, pw]) = (g.kernel, g.stride, g.padding);
    for n in 0..g.batch {
        for co in 0..g.out_channels {
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    let yi = ((n * g.out_channels + co) * g.out_h + oy) * g.out_w + ox;
                    for ci in 0..g.in_channels {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * sh + ky) as isize - ph as isize;
                                let ix = (ox * sw + kx) as isize - pw as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= g.in_h as isize
                                    || ix >= g.in_w as isize
                                {
                                    continue;
                                }
                                let xi = ((n * g.in_channels + ci) * g.in_h + iy as usize) * g.in_w
                                    + ix as usize;
                                let wi = ((co * g.in_channels + ci) * kh + ky) * kw + kx;
                                tap(xi, wi, yi, co);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Runs forward and backward in f64 and f32 and compares them with the naive loops.
fn check_against_naive(g: &Conv2dGeometry, seed: u64, with_bias: bool) {
    let x = values(numel(&g.input_shape()), seed);
    let w = values(numel(&g.weight_shape()), seed + 1);
    let b = values(g.out_channels, seed + 2);
    let gy = values(numel(&g.output_shape()), seed + 3);
    let bias = with_bias.then_some(&b[..]);

    let y = forward(&f64s(&x), &f64s(&w), bias.map(f64s).as_ref(), g).unwrap();
    assert_close_scaled("f64 y", &y, &naive_forward(&x, &w, bias, g), 1e-10);
    let grads = backward(&f64s(&x), &f64s(&w), &f64s(&gy), g, with_bias, true).unwrap();
    let (gx, gw, gb) = naive_backward(&x, &w, &gy, g);
    assert_close_scaled("f64 dx", grads.input.as_ref().unwrap(), &gx, 1e-10);
    assert_close_scaled("f64 dw", &grads.weight, &gw, 1e-10);
    assert_eq!(grads.bias.is_some(), with_bias);
    if with_bias {
        assert_close_scaled("f64 db", grads.bias.as_ref().unwrap(), &gb, 1e-10);
    }

    let (x32, w32, b32, gy32) = (rounded(&x), rounded(&w), rounded(&b), rounded(&gy));
    let bias32 = with_bias.then_some(&b32[..]);
    let y = forward(&f32s(&x), &f32s(&w), bias.map(f32s).as_ref(), g).unwrap();
    assert_eq!(y.dtype(), crate::DType::F32);
    assert_close_scaled("f32 y", &y, &naive_forward(&x32, &w32, bias32, g), 1e-5);
    let grads = backward(&f32s(&x), &f32s(&w), &f32s(&gy), g, with_bias, false).unwrap();
    assert!(grads.input.is_none());
    let (_, gw, gb) = naive_backward(&x32, &w32, &gy32, g);
    assert_close_scaled("f32 dw", &grads.weight, &gw, 1e-5);
    if with_bias {
        assert_close_scaled("f32 db", grads.bias.as_ref().unwrap(), &gb, 1e-5);
    }
}

/// PyTorch `[C_out, C_in, f, f]` weights as the notebook's `(f, f, C_in, C_out)`.
fn weight_to_reference(w: &[f64], g: &Conv2dGeometry) -> Array4 {
    let [c_out, c_in, f, _] = g.weight_shape();
    let mut out = Array4::zeros([f, f, c_in, c_out]);
    for co in 0..c_out {
        for ci in 0..c_in {
            for dy in 0..f {
                for dx in 0..f {
                    out.set([dy, dx, ci, co], w[((co * c_in + ci) * f + dy) * f + dx]);
                }
            }
        }
    }
    out
}

fn weight_from_reference(w: &Array4) -> Vec<f64> {
    let [f, _, c_in, c_out] = w.shape;
    let mut out = Vec::with_capacity(w.data.len());
    for co in 0..c_out {
        for ci in 0..c_in {
            for dy in 0..f {
                for dx in 0..f {
                    out.push(w.get([dy, dx, ci, co]));
                }
            }
        }
    }
    out
}

/// Compares forward and backward with the notebook's reference (square kernel, NHWC).
fn check_against_reference(g: &Conv2dGeometry, seed: u64) {
    let x = values(numel(&g.input_shape()), seed);
    let w = values(numel(&g.weight_shape()), seed + 1);
    let b = values(g.out_channels, seed + 2);
    let gy = values(numel(&g.output_shape()), seed + 3);
    let hp = ConvParams {
        stride: g.stride[0],
        pad: g.padding[0],
    };
    let x_ref = Array4::from_nchw(g.input_shape(), &x);
    let w_ref = weight_to_reference(&w, g);
    let y_ref = reference::conv_forward(&x_ref, &w_ref, &b, hp).to_nchw();
    let grads_ref = reference::conv_backward(
        &Array4::from_nchw(g.output_shape(), &gy),
        &x_ref,
        &w_ref,
        hp,
    );
    let (gx_ref, gw_ref) = (
        grads_ref.da_prev.to_nchw(),
        weight_from_reference(&grads_ref.dw),
    );

    let y = forward(&f64s(&x), &f64s(&w), Some(&f64s(&b)), g).unwrap();
    assert_close_scaled("f64 y vs reference", &y, &y_ref, 1e-10);
    let grads = backward(&f64s(&x), &f64s(&w), &f64s(&gy), g, true, true).unwrap();
    assert_close_scaled(
        "f64 dx vs reference",
        grads.input.as_ref().unwrap(),
        &gx_ref,
        1e-10,
    );
    assert_close_scaled("f64 dw vs reference", &grads.weight, &gw_ref, 1e-10);
    assert_close_scaled(
        "f64 db vs reference",
        grads.bias.as_ref().unwrap(),
        &grads_ref.db,
        1e-10,
    );

    // f32 inputs are the f64 ones rounded; the reference is exact on those up to the
    // rounding of the inputs, which the relative tolerance absorbs.
    let y = forward(&f32s(&x), &f32s(&w), Some(&f32s(&b)), g).unwrap();
    assert_close_scaled("f32 y vs reference", &y, &y_ref, 1e-4);
    let grads = backward(&f32s(&x), &f32s(&w), &f32s(&gy), g, true, true).unwrap();
    assert_close_scaled(
        "f32 dx vs reference",
        grads.input.as_ref().unwrap(),
        &gx_ref,
        1e-4,
    );
    assert_close_scaled("f32 dw vs reference", &grads.weight, &gw_ref, 1e-4);
    assert_close_scaled(
        "f32 db vs reference",
        grads.bias.as_ref().unwrap(),
        &grads_ref.db,
        1e-4,
    );
}

fn geometry(
    input: [usize; 4],
    weight: [usize; 4],
    stride: [usize; 2],
    padding: [usize; 2],
) -> Conv2dGeometry {
    Conv2dGeometry::new(&input, &weight, stride, padding).unwrap()
}

#[test]
fn hand_computed_2x2_kernel_on_3x3_image() {
    // x = [1 2 3; 4 5 6; 7 8 9], w = [1 2; 3 4], b = 1
    let g = geometry([1, 1, 3, 3], [1, 1, 2, 2], [1, 1], [0, 0]);
    assert_eq!(g.output_shape(), [1, 1, 2, 2]);
    let x = Storage::f64((1..=9).map(f64::from).collect());
    let w = Storage::f64(vec![1.0, 2.0, 3.0, 4.0]);
    let y = forward(&x, &w, Some(&Storage::f64(vec![1.0])), &g).unwrap();
    assert_eq!(y, Storage::f64(vec![38.0, 48.0, 68.0, 78.0]));

    let grads = backward(&x, &w, &Storage::f64(vec![1.0; 4]), &g, true, true).unwrap();
    // Each weight sees the sum of the 2x2 block it slides over.
    assert_eq!(grads.weight, Storage::f64(vec![12.0, 16.0, 24.0, 28.0]));
    assert_eq!(grads.bias, Some(Storage::f64(vec![4.0])));
    // Each pixel receives the weights of the windows covering it.
    assert_eq!(
        grads.input,
        Some(Storage::f64(vec![
            1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 3.0, 7.0, 4.0
        ]))
    );
}

#[test]
fn hand_computed_stride_2_with_padding() {
    // x = [1 2; 3 4] padded by 1 to 4x4, 2x2 kernel of ones, stride 2: each output is
    // the single real pixel in its window.
    let g = geometry([1, 1, 2, 2], [1, 1, 2, 2], [2, 2], [1, 1]);
    assert_eq!(g.output_shape(), [1, 1, 2, 2]);
    let x = Storage::f32(vec![1.0, 2.0, 3.0, 4.0]);
    let w = Storage::f32(vec![1.0; 4]);
    let y = forward(&x, &w, None, &g).unwrap();
    assert_eq!(y, Storage::f32(vec![1.0, 2.0, 3.0, 4.0]));
    let grads = backward(
        &x,
        &w,
        &Storage::f32(vec![1.0, 2.0, 3.0, 4.0]),
        &g,
        false,
        true,
    )
    .unwrap();
    assert_eq!(grads.input, Some(Storage::f32(vec![1.0, 2.0, 3.0, 4.0])));
    // Only the tap that lands on a real pixel (kernel position (1,1), (1,0), (0,1), (0,0)
    // for the four windows) collects x*gy.
    assert_eq!(grads.weight, Storage::f32(vec![16.0, 9.0, 4.0, 1.0]));
    assert_eq!(grads.bias, None);
}

#[test]
fn one_by_one_kernel_with_padding_grows_the_output_by_a_zero_border() {
    // The notebook's `Conv2d(c, c, 1, padding=1)`: border outputs are just the bias.
    let g = geometry([1, 2, 2, 3], [1, 2, 1, 1], [1, 1], [1, 1]);
    assert_eq!(g.output_shape(), [1, 1, 4, 5]);
    let x = Storage::f64(vec![
        1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0,
    ]);
    let w = Storage::f64(vec![1.0, 0.5]);
    let y = forward(&x, &w, Some(&Storage::f64(vec![-1.0])), &g).unwrap();
    #[rustfmt::skip]
    let want = vec![
        -1.0, -1.0, -1.0, -1.0, -1.0,
        -1.0,  5.0, 11.0, 17.0, -1.0,
        -1.0, 23.0, 29.0, 35.0, -1.0,
        -1.0, -1.0, -1.0, -1.0, -1.0,
    ];
    assert_eq!(y, Storage::f64(want));
    check_against_naive(
        &geometry([3, 5, 4, 6], [7, 5, 1, 1], [1, 1], [1, 1]),
        11,
        true,
    );
    // Only the unpadded image is multiplied; uneven padding and no bias (border of zeros).
    check_against_naive(
        &geometry([2, 16, 5, 5], [24, 16, 1, 1], [1, 1], [2, 1]),
        12,
        false,
    );
}

#[test]
fn one_by_one_kernel_without_padding_is_a_plain_product() {
    // Large enough (23x23 = 529 pixels) for the one-image-per-product path.
    check_against_naive(
        &geometry([3, 4, 23, 23], [5, 4, 1, 1], [1, 1], [0, 0]),
        21,
        true,
    );
    // Small images take the several-images-per-product path.
    check_against_naive(
        &geometry([5, 3, 3, 4], [2, 3, 1, 1], [1, 1], [0, 0]),
        22,
        false,
    );
}

#[test]
fn a_single_large_image_uses_a_parallel_product() {
    check_against_naive(
        &geometry([1, 8, 24, 26], [9, 8, 3, 3], [1, 1], [1, 1]),
        31,
        true,
    );
}

#[test]
fn large_images_are_cut_into_bands_of_output_rows() {
    // 20x40 outputs: more columns than one product takes, so each image is multiplied
    // in bands of rows (12 + 8), with stride, padding and a non-square kernel.
    let g = geometry([3, 2, 40, 37], [3, 2, 3, 2], [2, 1], [1, 2]);
    assert_eq!(g.output_shape(), [3, 3, 20, 40]);
    check_against_naive(&g, 91, true);
    // "Same" convolutions (stride 1, output as wide as the input) unroll whole runs of
    // rows at once: in bands, several images at once, and with non-square kernels.
    check_against_naive(
        &geometry([2, 2, 30, 30], [3, 2, 3, 3], [1, 1], [1, 1]),
        92,
        true,
    );
    check_against_naive(
        &geometry([5, 2, 6, 7], [3, 2, 3, 5], [1, 1], [1, 2]),
        93,
        true,
    );
    check_against_naive(
        &geometry([2, 1, 27, 25], [2, 1, 5, 5], [1, 1], [2, 2]),
        94,
        false,
    );
}

#[test]
fn a_batch_larger_than_the_thread_count_with_tiny_images() {
    check_against_naive(
        &geometry([9, 3, 5, 4], [4, 3, 3, 2], [1, 2], [1, 0]),
        41,
        true,
    );
}

#[test]
fn kernel_as_large_as_the_padded_input_gives_one_output() {
    let g = geometry([2, 3, 3, 4], [2, 3, 5, 6], [1, 1], [1, 1]);
    assert_eq!(g.output_shape(), [2, 2, 1, 1]);
    check_against_naive(&g, 51, true);
    // Strides so large that some kernel taps never land on a real pixel.
    check_against_naive(
        &geometry([1, 1, 1, 1], [1, 1, 1, 1], [1, 3], [0, 1]),
        52,
        false,
    );
    check_against_reference(&geometry([1, 1, 1, 1], [1, 1, 3, 3], [3, 3], [1, 1]), 53);
}

#[test]
fn notebook_layers_match_the_reference() {
    // Conv2d(3, 8, 3, padding=1) on a few 8x8 images, and a 1x1 with padding 1.
    check_against_reference(&geometry([3, 3, 8, 8], [8, 3, 3, 3], [1, 1], [1, 1]), 61);
    check_against_reference(&geometry([2, 8, 5, 5], [8, 8, 1, 1], [1, 1], [1, 1]), 62);
}

#[test]
fn notebook_example_shapes_match_the_reference() {
    // Notebook 4.3: A_prev (10, 5, 7, 4), W (3, 3, 4, 8), stride 2, pad 1.
    let g = geometry([10, 4, 5, 7], [8, 4, 3, 3], [2, 2], [1, 1]);
    assert_eq!(g.output_shape(), [10, 8, 3, 4]);
    check_against_reference(&g, 71);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn matches_naive_loops_on_random_geometries(
        batch in 1usize..=4,
        c_in in 1usize..=3,
        c_out in 1usize..=4,
        in_h in 1usize..=8,
        in_w in 1usize..=8,
        kernel in (1usize..=5, 1usize..=5),
        stride in (1usize..=3, 1usize..=3),
        padding in (0usize..=2, 0usize..=2),
        with_bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let kh = kernel.0.min(in_h + 2 * padding.0);
        let kw = kernel.1.min(in_w + 2 * padding.1);
        let g = geometry(
            [batch, c_in, in_h, in_w],
            [c_out, c_in, kh, kw],
            [stride.0, stride.1],
            [padding.0, padding.1],
        );
        check_against_naive(&g, seed, with_bias);
    }

    #[test]
    fn matches_the_reference_on_random_geometries(
        batch in 1usize..=3,
        c_in in 1usize..=3,
        c_out in 1usize..=3,
        in_h in 1usize..=7,
        in_w in 1usize..=7,
        f in 1usize..=4,
        stride in 1usize..=3,
        pad in 0usize..=2,
        seed in any::<u64>(),
    ) {
        let f = f.min(in_h.min(in_w) + 2 * pad);
        let g = geometry([batch, c_in, in_h, in_w], [c_out, c_in, f, f], [stride; 2], [pad; 2]);
        check_against_reference(&g, seed);
    }
}

/// Asserts that `g` runs its forward pass by `path`, and that its input gradient is a
/// convolution of its own that takes `input_grad_path` (so the tests below cover the
/// Winograd code they are named for, whatever the thresholds in `cpu/mod.rs` become).
fn assert_paths(g: &Conv2dGeometry, path: Path, input_grad_path: Path) {
    assert_eq!(cpu::path_for(g), path, "forward path of {g:?}");
    let gt = cpu::input_grad_geometry(g)
        .unwrap_or_else(|| panic!("the input gradient of {g:?} is not a convolution"));
    assert_eq!(
        cpu::path_for(&gt),
        input_grad_path,
        "input-gradient path of {g:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    // Enough input channels for Winograd's F(2x2, 3x3) (3x3, stride 1), forward and the
    // input gradient (a 3x3 stride-1 convolution of its own), on odd and even sizes, every
    // padding it takes, uneven padding, and images smaller than a tile. No more output
    // channels than input channels: below the weight gradient's width a widening layer
    // folds its input gradient back with col2im instead (see `cpu::input_grad_geometry`).
    #[test]
    fn winograd_matches_naive_loops(
        batch in 1usize..=3,
        c_in in 16usize..=19,
        c_out in 16usize..=19,
        in_h in 1usize..=11,
        in_w in 1usize..=14,
        padding in (0usize..=2, 0usize..=2),
        with_bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        prop_assume!(in_h + 2 * padding.0 >= 3 && in_w + 2 * padding.1 >= 3);
        let c_out = c_out.min(c_in);
        let g = geometry(
            [batch, c_in, in_h, in_w],
            [c_out, c_in, 3, 3],
            [1, 1],
            [padding.0, padding.1],
        );
        assert_paths(&g, Path::WinogradF2x2, Path::WinogradF2x2);
        check_against_naive(&g, seed, with_bias);
    }

    // The weight gradient by F(2x2, 3x3) too: outputs 12 to 16 wide, where the input
    // gradient of widening layers is a Winograd convolution as well.
    #[test]
    fn winograd_weight_gradient_matches_naive_loops(
        batch in 1usize..=2,
        c_in in 16usize..=17,
        c_out in 16usize..=18,
        out_h in 1usize..=9,
        out_w in 12usize..=16,
        padding in (0usize..=2, 0usize..=2),
        with_bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let in_h = (out_h + 2).saturating_sub(2 * padding.0);
        prop_assume!(in_h >= 1);
        let g = geometry(
            [batch, c_in, in_h, out_w + 2 - 2 * padding.1],
            [c_out, c_in, 3, 3],
            [1, 1],
            [padding.0, padding.1],
        );
        assert_paths(&g, Path::WinogradF2x2, Path::WinogradF2x2);
        assert_eq!(cpu::weight_grad_path_for(&g), Path::WinogradF2x2, "{g:?}");
        check_against_naive(&g, seed, with_bias);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    // Outputs and inputs 32 and more in both directions take F(4x4, 3x3), forward, weight
    // gradient and input gradient (F(4x4, 3x3) again): every padding, sizes around
    // multiples of 4.
    #[test]
    fn winograd_4x4_matches_naive_loops(
        batch in 1usize..=2,
        c_in in 16usize..=17,
        c_out in 16usize..=18,
        in_h in 32usize..=37,
        in_w in 32usize..=37,
        padding in (0usize..=2, 0usize..=2),
        with_bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        prop_assume!(in_h + 2 * padding.0 >= 34 && in_w + 2 * padding.1 >= 34);
        let g = geometry(
            [batch, c_in, in_h, in_w],
            [c_out, c_in, 3, 3],
            [1, 1],
            [padding.0, padding.1],
        );
        assert_paths(&g, Path::WinogradF4x4, Path::WinogradF4x4);
        assert_eq!(cpu::weight_grad_path_for(&g), Path::WinogradF4x4, "{g:?}");
        check_against_naive(&g, seed, with_bias);
    }
}

#[test]
fn winograd_layers_match_the_reference() {
    // Shapes of layer1.1 (F(4x4, 3x3)), layer2.1 and layer3.0 (F(2x2, 3x3)), few images,
    // and airbench94's 15x15 layers at a large batch (F(4x4, 3x3) on 4x4 tiles that
    // overhang the output), against the notebook's conv_forward.
    let cases = [
        ([1, 16, 32, 32], [16, 16, 3, 3], Path::WinogradF4x4),
        ([2, 32, 16, 16], [24, 32, 3, 3], Path::WinogradF2x2),
        ([3, 16, 9, 9], [16, 16, 3, 3], Path::WinogradF2x2),
        (
            [cpu::F4X4_LARGE_BATCH, 16, 15, 15],
            [16, 16, 3, 3],
            Path::WinogradF4x4,
        ),
    ];
    for (seed, (input, weight, path)) in (80..).zip(cases) {
        let g = geometry(input, weight, [1, 1], [1, 1]);
        assert_eq!(cpu::path_for(&g), path, "{g:?}");
        check_against_reference(&g, seed);
    }
}

fn message(err: Error) -> String {
    err.to_string()
}

#[test]
fn rejects_a_channel_mismatch() {
    let err = Conv2dGeometry::new(&[2, 3, 8, 8], &[4, 2, 3, 3], [1, 1], [1, 1]).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "conv2d", .. }), "{err}");
    let msg = message(err);
    assert!(
        msg.contains("[2, 3, 8, 8]") && msg.contains("[4, 2, 3, 3]"),
        "{msg}"
    );
}

#[test]
fn rejects_a_kernel_larger_than_the_padded_input() {
    let err = Conv2dGeometry::new(&[2, 1, 1, 1], &[1, 1, 5, 5], [1, 1], [1, 1]).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "conv2d", .. }), "{err}");
    let msg = message(err);
    assert!(
        msg.starts_with("conv2d: kernel 5x5 is larger than the padded input 3x3")
            && msg.contains("[2, 1, 1, 1]")
            && msg.contains("[1, 1, 5, 5]"),
        "{msg}"
    );
    // Only one side too large is still too large.
    assert!(Conv2dGeometry::new(&[1, 1, 4, 2], &[1, 1, 3, 3], [1, 1], [0, 0]).is_err());
}

#[test]
fn rejects_a_zero_stride_and_an_empty_kernel() {
    let err = Conv2dGeometry::new(&[1, 1, 4, 4], &[1, 1, 3, 3], [1, 0], [0, 0]).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument { op: "conv2d", .. }),
        "{err}"
    );
    let msg = message(err);
    assert!(
        msg.contains("stride") && msg.contains("[1, 1, 4, 4]") && msg.contains("[1, 1, 3, 3]"),
        "{msg}"
    );
    let err = Conv2dGeometry::new(&[1, 1, 4, 4], &[1, 1, 0, 3], [1, 1], [0, 0]).unwrap_err();
    assert!(message(err).starts_with("conv2d: kernel 0x3"));
}

#[test]
fn rejects_shapes_that_are_not_4d() {
    let err = Conv2dGeometry::new(&[1, 4, 4], &[1, 1, 3, 3], [1, 1], [0, 0]).unwrap_err();
    assert!(message(err).contains("conv2d: input must be 4-D"));
    let err = Conv2dGeometry::new(&[1, 1, 4, 4], &[1, 3, 3], [1, 1], [0, 0]).unwrap_err();
    assert!(message(err).contains("conv2d: weight must be 4-D"));
}

#[test]
fn rejects_sizes_that_overflow() {
    let err =
        Conv2dGeometry::new(&[usize::MAX, 2, 4, 4], &[1, 2, 3, 3], [1, 1], [0, 0]).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument { op: "conv2d", .. }),
        "{err}"
    );
    assert!(Conv2dGeometry::new(&[1, 1, 4, 4], &[1, 1, 3, 3], [1, 1], [usize::MAX, 0]).is_err());
}

#[test]
fn rejects_buffers_that_disagree_with_the_geometry() {
    let g = geometry([2, 3, 4, 4], [5, 3, 3, 3], [1, 1], [1, 1]);
    let x = Storage::f32(vec![0.0; 2 * 3 * 16]);
    let w = Storage::f32(vec![0.0; 5 * 3 * 9]);
    let short = Storage::f32(vec![0.0; 7]);
    let err = forward(&short, &w, None, &g).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "conv2d", .. }), "{err}");
    assert!(forward(&x, &short, None, &g).is_err());
    let err = forward(&x, &w, Some(&Storage::f32(vec![0.0; 4])), &g).unwrap_err();
    assert!(message(err).contains("bias has 4 elements"));
    let err = backward(&x, &w, &short, &g, true, true).unwrap_err();
    assert!(message(err).contains("grad_out"));
    let err = forward(&x, &Storage::f64(vec![0.0; 5 * 3 * 9]), None, &g).unwrap_err();
    assert!(matches!(err, Error::Mismatch { op: "conv2d", .. }), "{err}");
    let err = forward(&x, &w, Some(&Storage::f64(vec![0.0; 5])), &g).unwrap_err();
    assert!(matches!(err, Error::Mismatch { op: "conv2d", .. }), "{err}");
}

#[test]
fn rejects_a_hand_built_geometry_whose_fields_disagree() {
    let mut g = geometry([2, 3, 4, 4], [5, 3, 3, 3], [1, 1], [1, 1]);
    g.out_h = 9;
    let x = Storage::f32(vec![0.0; 2 * 3 * 16]);
    let w = Storage::f32(vec![0.0; 5 * 3 * 9]);
    let err = forward(&x, &w, None, &g).unwrap_err();
    assert!(message(err).contains("inconsistent geometry"));
    g.out_h = 4;
    g.stride = [0, 1];
    assert!(forward(&x, &w, None, &g).is_err());
}

#[test]
fn empty_batch_and_zero_input_channels() {
    let g = geometry([0, 3, 4, 4], [5, 3, 3, 3], [1, 1], [1, 1]);
    let w = values(5 * 3 * 9, 1);
    let y = forward(&Storage::f64(vec![]), &f64s(&w), None, &g).unwrap();
    assert!(y.is_empty());
    let grads = backward(
        &Storage::f64(vec![]),
        &f64s(&w),
        &Storage::f64(vec![]),
        &g,
        true,
        true,
    )
    .unwrap();
    assert_eq!(grads.weight, Storage::f64(vec![0.0; 5 * 27]));
    assert_eq!(grads.bias, Some(Storage::f64(vec![0.0; 5])));

    // No input channels: the output is just the bias.
    let g = geometry([2, 0, 3, 3], [2, 0, 2, 2], [1, 1], [0, 0]);
    let y = forward(
        &Storage::f32(vec![]),
        &Storage::f32(vec![]),
        Some(&Storage::f32(vec![1.0, 2.0])),
        &g,
    )
    .unwrap();
    assert_eq!(y, Storage::f32([[1.0; 4], [2.0; 4]].concat().repeat(2)));
    // No output channels: nothing to compute, nothing to propagate.
    let g = geometry([2, 3, 3, 3], [0, 3, 2, 2], [1, 1], [0, 0]);
    let x = Storage::f32(vec![1.0; 54]);
    assert!(forward(&x, &Storage::f32(vec![]), None, &g)
        .unwrap()
        .is_empty());
    let grads = backward(
        &x,
        &Storage::f32(vec![]),
        &Storage::f32(vec![]),
        &g,
        true,
        true,
    )
    .unwrap();
    assert_eq!(grads.input, Some(Storage::f32(vec![0.0; 54])));
}

#[test]
fn forward_flops_counts_two_per_multiply_add() {
    let g = geometry([2, 3, 8, 8], [4, 3, 3, 3], [1, 1], [1, 1]);
    assert_eq!(g.forward_flops(), 2.0 * 2.0 * 4.0 * 64.0 * 27.0);
}

#[test]
fn reused_scratch_buffers_do_not_leak_into_later_calls() {
    // Poison every thread's scratch with NaN from a larger convolution, then check
    // smaller ones, whose buffers are the poisoned ones cut short.
    let big = geometry([6, 4, 6, 6], [5, 4, 3, 3], [1, 1], [1, 1]);
    let nan = |len| Storage::f64(vec![f64::NAN; len]);
    for _ in 0..4 {
        let x = nan(numel(&big.input_shape()));
        let w = nan(numel(&big.weight_shape()));
        forward(&x, &w, None, &big).unwrap();
        backward(&x, &w, &nan(numel(&big.output_shape())), &big, true, true).unwrap();
        check_against_naive(
            &geometry([4, 3, 5, 4], [2, 3, 2, 3], [2, 1], [1, 2]),
            81,
            false,
        );
    }
}

/// f32 convolutions with whole panels of 8 output channels take the packed AVX-512 path
/// (where the CPU has it), and so do the input gradients computed as convolutions: check
/// forward and all three gradients against the naive loops on ragged column counts,
/// depths over one slice of 128, bands of rows, several images per product, a 1x1 kernel
/// read in place, and a stride.
#[test]
fn packed_f32_path_matches_naive_loops() {
    if !cpu::packed::available() {
        println!(
            "SKIPPED (packed product): this CPU has no AVX-512F, so these shapes were checked \
             on the gemm crate's products instead"
        );
    }
    let cases = [
        ([3, 5, 7, 9], [16, 5, 3, 3], [1, 1], [1, 1]),
        ([2, 4, 20, 20], [8, 4, 3, 3], [1, 1], [1, 1]),
        ([2, 3, 40, 40], [8, 3, 3, 3], [1, 1], [1, 1]),
        ([2, 32, 7, 7], [8, 32, 3, 3], [1, 1], [1, 1]),
        ([2, 16, 6, 6], [8, 16, 1, 1], [1, 1], [0, 0]),
        ([2, 16, 6, 5], [16, 16, 3, 3], [1, 1], [1, 1]),
        ([2, 8, 9, 9], [8, 8, 3, 3], [2, 2], [1, 1]),
        // 3x3 stride-1 layers with 16 or more input channels take Winograd's path; these
        // keep the direct product on deep ragged columns.
        ([2, 32, 7, 7], [8, 32, 5, 5], [1, 1], [2, 2]),
        ([2, 16, 6, 5], [16, 16, 3, 3], [2, 1], [1, 1]),
    ];
    for (seed, (input, weight, stride, padding)) in cases.into_iter().enumerate() {
        let g = geometry(input, weight, stride, padding);
        let seed = 300 + seed as u64;
        let x = rounded(&values(numel(&g.input_shape()), seed));
        let w = rounded(&values(numel(&g.weight_shape()), seed + 1));
        let b = rounded(&values(g.out_channels, seed + 2));
        let gy = rounded(&values(numel(&g.output_shape()), seed + 3));
        for with_bias in [false, true] {
            let bias = with_bias.then_some(&b[..]);
            let y = forward(&f32s(&x), &f32s(&w), bias.map(f32s).as_ref(), &g).unwrap();
            assert_close_scaled("f32 y", &y, &naive_forward(&x, &w, bias, &g), 1e-5);
        }
        let grads = backward(&f32s(&x), &f32s(&w), &f32s(&gy), &g, true, true).unwrap();
        let (gx, gw, gb) = naive_backward(&x, &w, &gy, &g);
        assert_close_scaled("f32 dx", grads.input.as_ref().unwrap(), &gx, 1e-5);
        assert_close_scaled("f32 dw", &grads.weight, &gw, 1e-5);
        assert_close_scaled("f32 db", grads.bias.as_ref().unwrap(), &gb, 1e-5);
    }
}
