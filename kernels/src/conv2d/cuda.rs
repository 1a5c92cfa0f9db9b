//! 2-D convolution on the GPU: the CPU code's lowering, with the products in cuBLAS and
//! the layout work in conv2d.cu.
//!
//! ```text
//! forward:  col = im2col(x)  ->  wide = W * col  ->  y = cnp_to_ncp(wide) + b
//! backward: gy_wide = ncp_to_cnp(gy);  dW += gy_wide * col^T;
//!           gcol = W^T * gy_wide  ->  dx = col2im(gcol);  db = bias_grad(gy)
//! ```
//!
//! The batch is lowered a slice of images at a time so that the unrolled `col` stays
//! under [`COL_BUDGET`] elements (the notebook's network at batch 128 fits in one slice;
//! bigger batches or images are cut into several).

use super::{numel, Conv2dGeometry, Conv2dGrads, OP};
use crate::cuda::{
    launch_into_new, to_i32, wrap, Arg, CudaBackend, CudaBuffer, CudaStorage, DeviceValues,
};
use crate::{Result, Storage};

const FILE: &str = "conv2d.cu";

/// The f32 lowering's `im2col`.
const IM2COL: &str = "conv2d_im2col";

/// Most elements of one unrolled `col` buffer (512 MiB of f32).
pub(super) const COL_BUDGET: usize = 1 << 27;

/// The sizes of the lowering, with the batch cut into slices of `chunk` images.
pub(super) struct Lowering {
    /// `C_in * KH * KW`, the rows of `col`.
    pub ckk: usize,
    /// `OH * OW`, the columns of `col` per image.
    pub pixels: usize,
    /// Images per slice.
    pub chunk: usize,
    /// `C_out`, the rows of the products' outputs.
    c_out: usize,
    /// `C_in * H * W`, the elements of one input image.
    image_len: usize,
    /// `images, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW` without the leading `images`.
    geometry: Vec<Arg>,
}

impl Lowering {
    pub(super) fn new(g: &Conv2dGeometry, budget: usize) -> Result<Lowering> {
        let ckk = g.in_channels * g.kernel[0] * g.kernel[1];
        let pixels = g.out_h * g.out_w;
        let per_image = ckk.max(g.out_channels) * pixels;
        let chunk = (budget / per_image.max(1)).clamp(1, g.batch.max(1));
        to_i32(OP, "images per slice x output pixels", chunk * pixels)?;
        to_i32(OP, "output channels", g.out_channels)?;
        let geometry = [
            ("input channels", g.in_channels),
            ("input height", g.in_h),
            ("input width", g.in_w),
            ("kernel height", g.kernel[0]),
            ("kernel width", g.kernel[1]),
            ("stride", g.stride[0]),
            ("stride", g.stride[1]),
            ("padding", g.padding[0]),
            ("padding", g.padding[1]),
            ("output height", g.out_h),
            ("output width", g.out_w),
        ]
        .into_iter()
        .map(|(what, v)| to_i32(OP, what, v).map(Arg::I32))
        .collect::<Result<Vec<_>>>()?;
        Ok(Lowering {
            ckk,
            pixels,
            chunk,
            c_out: g.out_channels,
            image_len: g.in_channels * g.in_h * g.in_w,
            geometry,
        })
    }

    /// `(first image, images)` of each slice of a batch of `batch`.
    pub(super) fn slices(&self, batch: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..batch)
            .step_by(self.chunk)
            .map(move |start| (start, self.chunk.min(batch - start)))
    }

    /// `im2col` of images `start..start + images` into the first `ckk * images * pixels`
    /// elements of `col`, by `kernel`: `conv2d_im2col` (f32 to f32) or one of its bf16
    /// entry points, which take the same parameters.
    ///
    /// # Safety
    ///
    /// `x` must point at the batch's first image (of the element type `kernel` reads) and
    /// `col` at a buffer of at least `ckk * chunk * pixels` elements of the type it writes.
    pub(super) unsafe fn im2col(
        &self,
        gpu: &CudaBackend,
        kernel: &'static str,
        (x, col): (DeviceValues, Arg),
        (start, images): (usize, usize),
    ) -> Result<()> {
        let mut args = vec![
            x.arg_at(start * self.image_len),
            col,
            Arg::I32(images as i32),
        ];
        args.extend(&self.geometry);
        // SAFETY: conv2d_im2col*(const T* x, U* col, int images, int C, int H, int W,
        // int KH, int KW, int SH, int SW, int PH, int PW, int OH, int OW) reads `images`
        // images from `start` (inside the batch) and writes ckk * images * pixels elements,
        // which fit in col (sized for `chunk` images, the caller's contract).
        unsafe {
            gpu.launch(
                OP,
                (FILE, kernel),
                gpu.grid_stride_config(self.ckk * images * self.pixels),
                &args,
            )
        }
    }

    /// The products' `[C_out, images * pixels]` result `wide` into images `start..start +
    /// images` of the NCHW output `y`, plus `bias` when there is one, by `kernel`:
    /// `conv2d_cnp_to_ncp` (an f32 `y`) or `conv2d_cnp_to_ncp_bf16` (a bf16 one, each value
    /// rounded once).
    ///
    /// # Safety
    ///
    /// `wide` must hold the slice's `C_out * images * pixels` sums, `y` the whole batch's
    /// outputs in the type `kernel` writes, and `bias` `C_out` values.
    pub(super) unsafe fn to_ncp(
        &self,
        gpu: &CudaBackend,
        kernel: &'static str,
        (wide, bias, y): (&CudaBuffer<f32>, Option<&CudaStorage>, Arg),
        images: usize,
    ) -> Result<()> {
        // The bias pointer is not read when has_bias is 0; any valid address will do.
        let bias_arg = bias.map_or(Arg::ptr(wide, 0), |b| b.arg());
        // SAFETY: conv2d_cnp_to_ncp[_bf16](const float* src, const float* bias,
        // int has_bias, T* dst, int N, int C, int P) reads C_out * images * pixels elements
        // of wide and writes the slice's outputs inside y (the caller's contract); bias
        // holds C_out elements.
        unsafe {
            gpu.launch(
                OP,
                (FILE, kernel),
                gpu.grid_stride_config(self.c_out * images * self.pixels),
                &[
                    Arg::ptr(wide, 0),
                    bias_arg,
                    Arg::I32(bias.is_some() as i32),
                    y,
                    Arg::I32(images as i32),
                    Arg::I32(self.c_out as i32),
                    Arg::I32(self.pixels as i32),
                ],
            )
        }
    }

    /// Images `start..start + images` of the NCHW output gradient `gy` into the products'
    /// `[C_out, images * pixels]` layout `gy_wide`, by `kernel`: `conv2d_ncp_to_cnp` (f32
    /// to f32) or one of its bf16 entry points (f32 or bf16 to bf16).
    ///
    /// # Safety
    ///
    /// `gy` must hold the whole batch's gradient in the type `kernel` reads, and `gy_wide`
    /// at least `C_out * chunk * pixels` elements of the type it writes.
    pub(super) unsafe fn to_cnp(
        &self,
        gpu: &CudaBackend,
        kernel: &'static str,
        (gy, gy_wide): (DeviceValues, Arg),
        (start, images): (usize, usize),
    ) -> Result<()> {
        let per_image = self.c_out * self.pixels;
        // SAFETY: conv2d_ncp_to_cnp*(const T* src, U* dst, int N, int C, int P) reads the
        // slice's C_out * images * pixels gradients inside gy and writes as many to
        // gy_wide (sized for a full slice, the caller's contract).
        unsafe {
            gpu.launch(
                OP,
                (FILE, kernel),
                gpu.grid_stride_config(per_image * images),
                &[
                    gy.arg_at(start * per_image),
                    gy_wide,
                    Arg::I32(images as i32),
                    Arg::I32(self.c_out as i32),
                    Arg::I32(self.pixels as i32),
                ],
            )
        }
    }

    /// The input gradient of images `start..start + images` from the slice's unrolled
    /// gradient `gcol` (`ckk x images * pixels`, f32 sums), gathered by `kernel`:
    /// `conv2d_col2im` (an f32 `dx`) or `conv2d_col2im_to_bf16` (a bf16 one, rounded once).
    ///
    /// # Safety
    ///
    /// `gcol` must hold the slice's `ckk * images * pixels` sums and `dx` point at the
    /// whole batch's input gradient in the type `kernel` writes.
    pub(super) unsafe fn col2im(
        &self,
        gpu: &CudaBackend,
        kernel: &'static str,
        (gcol, dx): (&CudaBuffer<f32>, Arg),
        images: usize,
    ) -> Result<()> {
        let mut args = vec![Arg::ptr(gcol, 0), dx, Arg::I32(images as i32)];
        args.extend(&self.geometry);
        // SAFETY: conv2d_col2im*(const float* col, T* dx, int images, <11 ints as im2col>)
        // reads ckk * images * pixels elements of gcol and writes the slice's images
        // inside dx (the caller's contract).
        unsafe {
            gpu.launch(
                OP,
                (FILE, kernel),
                gpu.grid_stride_config(images * self.image_len),
                &args,
            )
        }
    }
}

pub(super) fn forward(
    x: &CudaStorage,
    weight: &Storage,
    bias: Option<&Storage>,
    g: &Conv2dGeometry,
) -> Result<Storage> {
    forward_in_slices(x, weight, bias, g, COL_BUDGET)
}

fn forward_in_slices(
    x: &CudaStorage,
    weight: &Storage,
    bias: Option<&Storage>,
    g: &Conv2dGeometry,
    budget: usize,
) -> Result<Storage> {
    let device = x.device();
    let gpu = x.backend();
    let w = weight.cuda(OP, "weight", device)?;
    let bias = bias.map(|b| b.cuda(OP, "bias", device)).transpose()?;
    let low = Lowering::new(g, budget)?;
    let c_out = g.out_channels;
    let y = gpu.alloc::<f32>(numel(&g.output_shape()))?;
    let col = gpu.alloc::<f32>(low.ckk * low.chunk * low.pixels)?;
    let mut wide = gpu.alloc::<f32>(c_out * low.chunk * low.pixels)?;
    for (start, images) in low.slices(g.batch) {
        let cols = images * low.pixels;
        let slice = (start, images);
        // SAFETY: x is an f32 batch and col holds ckk * chunk * pixels f32.
        unsafe {
            low.im2col(
                gpu,
                IM2COL,
                (DeviceValues::F32(x), Arg::ptr(&col, 0)),
                slice,
            )?
        };
        gpu.sgemm(
            c_out,
            cols,
            low.ckk,
            &w.buffer().view(),
            false,
            &col.view().slice(0..low.ckk * cols),
            false,
            &mut wide.view_mut().slice_mut(0..c_out * cols),
            false,
        )?;
        let y_at = Arg::ptr(&y, start * c_out * low.pixels);
        // SAFETY: wide holds the slice's sums, y the batch's f32 outputs, bias c_out values.
        unsafe { low.to_ncp(gpu, "conv2d_cnp_to_ncp", (&wide, bias, y_at), images)? };
    }
    // Keep the scratch buffers alive (and out of the free list) until the last kernel
    // that uses them has been queued.
    drop((col, wide));
    Ok(wrap(gpu, y))
}

/// `dL/db`: each output channel's sum of `gy` (the backward's, or alone for a frozen layer),
/// f32 or bf16 (autocast's), accumulated in f64 either way; an f32 result.
pub(super) fn bias_grad(gy: DeviceValues, g: &Conv2dGeometry) -> Result<Storage> {
    let gpu = gy.backend();
    let batch = to_i32(OP, "batch", g.batch)?;
    let c_out = g.out_channels;
    let pixels = to_i32(OP, "pixels", g.out_h * g.out_w)?;
    let kernel = match gy {
        DeviceValues::F32(_) => "conv2d_bias_grad",
        DeviceValues::Bf16(_) => "conv2d_bias_grad_bf16",
    };
    // SAFETY: conv2d_bias_grad[_bf16](const T* gy, int N, int C, int P, float* gb) reads
    // the whole N * c_out * pixels gradient (of gy's type) and writes the c_out sums.
    unsafe {
        launch_into_new(
            gpu,
            OP,
            (FILE, kernel),
            gpu.block_per_item_config(c_out),
            c_out,
            |gb| {
                vec![
                    gy.arg_at(0),
                    Arg::I32(batch),
                    Arg::I32(c_out as i32),
                    Arg::I32(pixels),
                    gb,
                ]
            },
        )
    }
}

pub(super) fn backward(
    x: &CudaStorage,
    weight: &Storage,
    grad_out: &Storage,
    g: &Conv2dGeometry,
    has_bias: bool,
    need_input_grad: bool,
) -> Result<Conv2dGrads> {
    backward_in_slices(
        x,
        weight,
        grad_out,
        g,
        (has_bias, need_input_grad),
        COL_BUDGET,
    )
}

fn backward_in_slices(
    x: &CudaStorage,
    weight: &Storage,
    grad_out: &Storage,
    g: &Conv2dGeometry,
    (has_bias, need_input_grad): (bool, bool),
    budget: usize,
) -> Result<Conv2dGrads> {
    let device = x.device();
    let gpu = x.backend();
    let w = weight.cuda(OP, "weight", device)?;
    let gy = grad_out.cuda(OP, "grad_out", device)?;
    let low = Lowering::new(g, budget)?;
    let (c_out, ckk) = (g.out_channels, low.ckk);
    let image_len = g.in_channels * g.in_h * g.in_w;
    let cols_max = low.chunk * low.pixels;
    let col = gpu.alloc::<f32>(ckk * cols_max)?;
    let gy_wide = gpu.alloc::<f32>(c_out * cols_max)?;
    let mut gcol = if need_input_grad {
        Some(gpu.alloc::<f32>(ckk * cols_max)?)
    } else {
        None
    };
    let gx = if need_input_grad {
        Some(gpu.alloc::<f32>(g.batch * image_len)?)
    } else {
        None
    };
    // An empty batch contributes nothing: the weight gradient is zero.
    let mut gw = if g.batch == 0 {
        gpu.alloc_zeros::<f32>(c_out * ckk)?
    } else {
        gpu.alloc::<f32>(c_out * ckk)?
    };
    for (start, images) in low.slices(g.batch) {
        let cols = images * low.pixels;
        let slice = (start, images);
        let (x, gy) = (DeviceValues::F32(x), DeviceValues::F32(gy));
        // SAFETY: x and gy are the batch's f32 input and output gradient; col and gy_wide
        // hold ckk and c_out rows of chunk * pixels f32.
        unsafe {
            low.im2col(gpu, IM2COL, (x, Arg::ptr(&col, 0)), slice)?;
            low.to_cnp(gpu, "conv2d_ncp_to_cnp", (gy, Arg::ptr(&gy_wide, 0)), slice)?;
        }
        gpu.sgemm(
            c_out,
            ckk,
            cols,
            &gy_wide.view().slice(0..c_out * cols),
            false,
            &col.view().slice(0..ckk * cols),
            true,
            &mut gw.view_mut(),
            start > 0,
        )?;
        if let (Some(gcol), Some(gx)) = (gcol.as_mut(), gx.as_ref()) {
            gpu.sgemm(
                ckk,
                cols,
                c_out,
                &w.buffer().view(),
                true,
                &gy_wide.view().slice(0..c_out * cols),
                false,
                &mut gcol.view_mut().slice_mut(0..ckk * cols),
                false,
            )?;
            let dx_at = Arg::ptr(gx, start * image_len);
            // SAFETY: gcol holds the slice's sums; gx the batch's f32 input gradient.
            unsafe { low.col2im(gpu, "conv2d_col2im", (gcol, dx_at), images)? };
        }
    }
    let gb = if has_bias {
        Some(bias_grad(DeviceValues::F32(gy), g)?)
    } else {
        None
    };
    drop((col, gy_wide, gcol));
    Ok(Conv2dGrads {
        input: gx.map(|gx| wrap(gpu, gx)),
        weight: wrap(gpu, gw),
        bias: gb,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Device;

    /// Slices of 1 and 2 images (and a last, shorter slice) give the whole-batch result.
    /// Needs a GPU: skipped (with the reason printed) where none opens.
    #[test]
    fn a_batch_lowered_in_slices_matches_the_cpu_or_skips() {
        if crate::cuda::open_or_skip("conv2d slices").is_none() {
            return;
        }
        let g = Conv2dGeometry::new(&[5, 3, 9, 7], &[4, 3, 3, 2], [2, 1], [1, 1]).unwrap();
        let values = |n: usize, salt: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (((i * 7919 + salt * 104_729) % 2001) as f32 - 1000.0) / 1000.0)
                .collect()
        };
        let x = values(numel(&g.input_shape()), 1);
        let w = values(numel(&g.weight_shape()), 2);
        let b = values(4, 3);
        let gy = values(numel(&g.output_shape()), 4);
        let cpu = |v: &[f32]| Storage::f32(v.to_vec());
        let dev = |v: &[f32]| Storage::from_host(v.to_vec(), Device::Cuda(0)).unwrap();
        let want_y = super::super::forward(&cpu(&x), &cpu(&w), Some(&cpu(&b)), &g).unwrap();
        let want = super::super::backward(&cpu(&x), &cpu(&w), &cpu(&gy), &g, true, true).unwrap();
        let Storage::Cuda(xd) = dev(&x) else {
            unreachable!()
        };
        let per_image = 3 * 3 * 2 * g.out_h * g.out_w;
        for images in [1, 2] {
            let budget = images * per_image;
            let y = forward_in_slices(&xd, &dev(&w), Some(&dev(&b)), &g, budget).unwrap();
            let grads =
                backward_in_slices(&xd, &dev(&w), &dev(&gy), &g, (true, true), budget).unwrap();
            for (what, got, want) in [
                ("forward", &y, &want_y),
                ("weight", &grads.weight, &want.weight),
                (
                    "input",
                    grads.input.as_ref().unwrap(),
                    want.input.as_ref().unwrap(),
                ),
                (
                    "bias",
                    grads.bias.as_ref().unwrap(),
                    want.bias.as_ref().unwrap(),
                ),
            ] {
                let (got, want) = (got.to_vec_f64().unwrap(), want.to_vec_f64().unwrap());
                let diff: f64 = got.iter().zip(&want).map(|(a, b)| (a - b).powi(2)).sum();
                let norm: f64 = want.iter().map(|b| b * b).sum();
                assert!(
                    (diff / norm).sqrt() < 1e-5,
                    "{what} with {images} image(s) per slice"
                );
            }
        }
    }
}
