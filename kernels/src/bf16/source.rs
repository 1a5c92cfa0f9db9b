//! What the packing code reads: a strided matrix, a batch of image planes seen as a
//! matrix, or the unrolled receptive fields (`im2col`) of a convolution's input, each
//! possibly transposed, over f32 values (rounded to bf16 on the way in) or bf16 values (an
//! activation stored under autocast, taken as it is: half the bytes, no rounding). The
//! packers ask for runs of 32 values along a row or a column; each kind answers from
//! memory directly, so no copy of a lowered matrix is made.

use std::arch::x86_64::*;
use std::ops::Range;

use half::bf16;

use super::gemm::{check_fits, MatRef};
use super::lanes::{first, first32, round32};
use crate::conv2d::Conv2dGeometry;
use crate::{DType, Error, Result, Storage};

/// The values a view reads.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Values<'a> {
    /// Rounded to bf16 (to nearest, ties to even) as they are packed.
    F32(&'a [f32]),
    /// Packed as they are.
    Bf16(&'a [bf16]),
}

impl<'a> Values<'a> {
    /// The host values of `operand`, f32 or bf16; any other dtype, or a device buffer, is
    /// an error naming the operand.
    pub fn of(storage: &'a Storage, op: &'static str, operand: &str) -> Result<Values<'a>> {
        match storage.dtype() {
            DType::F32 => storage.host::<f32>(op, operand).map(Values::F32),
            DType::BF16 => storage.host_bf16(op, operand).map(Values::Bf16),
            DType::F64 => Err(Error::mismatch(
                op,
                format!(
                    "{operand} is f64 on {}, expected f32 or bf16 on cpu",
                    storage.device()
                ),
            )),
        }
    }

    pub fn len(self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::Bf16(v) => v.len(),
        }
    }

    /// The values in `range`.
    ///
    /// # Panics
    /// If `range` leaves the values: callers cut validated buffers.
    pub fn slice(self, range: Range<usize>) -> Values<'a> {
        match self {
            Values::F32(v) => Values::F32(&v[range]),
            Values::Bf16(v) => Values::Bf16(&v[range]),
        }
    }

    /// The values from `start` on.
    pub fn starting_at(self, start: usize) -> Values<'a> {
        self.slice(start..self.len())
    }
}

/// An element type the packers read: f32 (rounded to bf16) or bf16 (as it is).
pub(super) trait Packable: Copy + Default {
    /// The first `n` (at most 32) values of `data` as bf16, halfword `i` holding value `i`,
    /// zero beyond.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL and AVX512-BF16.
    unsafe fn load32(data: &[Self], n: usize) -> __m512i;

    /// `data[0], data[step], ...`, `n` (at most 32) of them, as `load32` returns them, if
    /// a gather instruction can read them.
    ///
    /// # Safety
    /// As for `load32`.
    unsafe fn gather32(data: &[Self], step: usize, n: usize) -> Option<__m512i>;
}

impl Packable for f32 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    unsafe fn load32(data: &[f32], n: usize) -> __m512i {
        let [lo, hi] = load_contiguous(data, n);
        round32(lo, hi)
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    unsafe fn gather32(data: &[f32], step: usize, n: usize) -> Option<__m512i> {
        (step.saturating_mul(31) <= i32::MAX as usize).then(|| {
            let [lo, hi] = gather(data, step, n);
            round32(lo, hi)
        })
    }
}

impl Packable for bf16 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    unsafe fn load32(data: &[bf16], n: usize) -> __m512i {
        assert!(n <= data.len().min(32));
        // SAFETY: the mask enables exactly the first `n` halfwords, all inside `data`.
        unsafe { _mm512_maskz_loadu_epi16(first32(n), data.as_ptr().cast()) }
    }

    /// There is no 16-bit gather: strided bf16 runs are copied element by element.
    #[inline]
    unsafe fn gather32(_: &[bf16], _: usize, _: usize) -> Option<__m512i> {
        None
    }
}

/// A matrix to pack, and whether it is used transposed.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    values: Values<'a>,
    kind: Kind,
    transposed: bool,
}

/// Where each element of the stored matrix is in the values.
#[derive(Clone, Copy)]
enum Kind {
    /// Element `(r, c)` at `r * row_stride + c * col_stride`.
    Matrix {
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    },
    Planes(Planes),
    /// The unrolled receptive fields of the `batch` images of the values: row
    /// `(ci, ky, kx)`, column `(image, oy, ox)` holds
    /// `x[image, ci, oy*sh + ky - ph, ox*sw + kx - pw]`, zero in the padding.
    Im2col(Conv2dGeometry),
}

/// `images` images of `channels` planes, each `full[0] x full[1]`, seen as the matrix
/// `channels x (image, y, x)` over the window `y in top..top + size[0]`,
/// `x in left..left + size[1]` of every plane.
#[derive(Clone, Copy)]
pub(crate) struct Planes {
    pub images: usize,
    pub channels: usize,
    pub full: [usize; 2],
    pub origin: [usize; 2],
    pub size: [usize; 2],
}

impl Planes {
    fn pixels(&self) -> usize {
        self.size[0] * self.size[1]
    }

    fn plane(&self) -> usize {
        self.full[0] * self.full[1]
    }
}

impl<'a> View<'a> {
    pub fn matrix(m: MatRef<'a>) -> View<'a> {
        View {
            values: Values::F32(m.data()),
            kind: Kind::Matrix {
                rows: m.rows(),
                cols: m.cols(),
                row_stride: m.row_stride(),
                col_stride: m.col_stride(),
            },
            transposed: false,
        }
    }

    /// `values` as a row-major `rows x cols` matrix, or a shape error if they are too few.
    pub fn row_major(values: Values<'a>, rows: usize, cols: usize) -> Result<View<'a>> {
        check_fits(values.len(), rows, cols, cols, 1)?;
        Ok(View {
            values,
            kind: Kind::Matrix {
                rows,
                cols,
                row_stride: cols,
                col_stride: 1,
            },
            transposed: false,
        })
    }

    /// # Panics
    /// If `values` are fewer than the planes or the window leaves them: callers build
    /// planes from validated geometry.
    pub fn planes(values: Values<'a>, p: Planes) -> View<'a> {
        assert!(
            p.origin[0] + p.size[0] <= p.full[0]
                && p.origin[1] + p.size[1] <= p.full[1]
                && values.len() >= p.images * p.channels * p.plane(),
            "planes view out of bounds"
        );
        View {
            values,
            kind: Kind::Planes(p),
            transposed: false,
        }
    }

    /// The unrolled receptive fields of the images `x` under `g` (see [`Kind::Im2col`]).
    ///
    /// # Panics
    /// If `x` is shorter than the geometry's input: callers pass validated buffers.
    pub fn im2col(x: Values<'a>, g: Conv2dGeometry) -> View<'a> {
        assert!(x.len() >= g.input_shape().iter().product::<usize>());
        View {
            values: x,
            kind: Kind::Im2col(g),
            transposed: false,
        }
    }

    pub fn t(self) -> View<'a> {
        View {
            transposed: !self.transposed,
            ..self
        }
    }

    fn stored_shape(&self) -> (usize, usize) {
        match &self.kind {
            Kind::Matrix { rows, cols, .. } => (*rows, *cols),
            Kind::Planes(p) => (p.channels, p.images * p.pixels()),
            Kind::Im2col(g) => (
                g.in_channels * g.kernel[0] * g.kernel[1],
                g.batch * g.out_h * g.out_w,
            ),
        }
    }

    pub fn rows(&self) -> usize {
        let (r, c) = self.stored_shape();
        if self.transposed {
            c
        } else {
            r
        }
    }

    pub fn cols(&self) -> usize {
        let (r, c) = self.stored_shape();
        if self.transposed {
            r
        } else {
            c
        }
    }

    /// Whether runs down a column are the cheap direction (contiguous in memory).
    pub fn cheap_down(&self) -> bool {
        let stored = match &self.kind {
            Kind::Matrix {
                row_stride,
                col_stride,
                ..
            } => *row_stride == 1 && *col_stride != 1,
            // Along the pixels (the stored columns) is the cheap direction of both.
            Kind::Planes(_) | Kind::Im2col(_) => false,
        };
        stored != self.transposed
    }

    /// 32 values from `(row, col)` onward down the column (`down`) or along the row, as
    /// bf16 (halfword `i` holding value `i`), zero past the matrix's edge.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub fn run32(&self, row: usize, col: usize, down: bool) -> __m512i {
        match self.values {
            Values::F32(data) => self.run32_of(data, row, col, down),
            Values::Bf16(data) => self.run32_of(data, row, col, down),
        }
    }

    /// [`View::run32`] over the view's values, `data`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    fn run32_of<T: Packable>(&self, data: &[T], row: usize, col: usize, down: bool) -> __m512i {
        let (row, col, down) = if self.transposed {
            (col, row, !down)
        } else {
            (row, col, down)
        };
        let (rows, cols) = self.stored_shape();
        if row >= rows || col >= cols {
            return _mm512_setzero_si512();
        }
        let n = if down { rows - row } else { cols - col }.min(32);
        if let Kind::Matrix {
            row_stride,
            col_stride,
            ..
        } = self.kind
        {
            let stride = if down { row_stride } else { col_stride };
            let start = row * row_stride + col * col_stride;
            // SAFETY (both): the Cpu behind every View user proves AVX512-BF16; the run's
            // n elements, `stride` apart from `start`, are inside the matrix, which fits
            // in `data` (checked when the view was made).
            if stride == 1 {
                return unsafe { T::load32(&data[start..], n) };
            }
            if let Some(v) = unsafe { T::gather32(&data[start..], stride, n) } {
                return v;
            }
        }
        let mut buf = [T::default(); 32];
        match self.kind {
            Kind::Matrix {
                row_stride,
                col_stride,
                ..
            } => {
                let stride = if down { row_stride } else { col_stride };
                let start = row * row_stride + col * col_stride;
                for (i, v) in buf[..n].iter_mut().enumerate() {
                    *v = data[start + i * stride];
                }
            }
            Kind::Planes(p) if down => {
                let (image, pixel) = (col / p.pixels(), col % p.pixels());
                let (y, x) = (pixel / p.size[1], pixel % p.size[1]);
                let at = (p.origin[0] + y) * p.full[1] + p.origin[1] + x;
                let base = (image * p.channels + row) * p.plane() + at;
                for (i, v) in buf[..n].iter_mut().enumerate() {
                    *v = data[base + i * p.plane()];
                }
            }
            Kind::Planes(p) => planes_along(&p, data, row, col, &mut buf[..n]),
            Kind::Im2col(g) if down => im2col_down(&g, data, row, col, &mut buf[..n]),
            Kind::Im2col(g) => im2col_along(&g, data, row, col, &mut buf[..n]),
        }
        // SAFETY: as above; `buf` holds 32 values.
        unsafe { T::load32(&buf, 32) }
    }
}

/// The first `n` (at most 32) values of `data`, zero beyond.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
fn load_contiguous(data: &[f32], n: usize) -> [__m512; 2] {
    assert!(n <= data.len().min(32));
    let ptr = data.as_ptr();
    // SAFETY: the masks enable exactly the first `n` lanes, all inside `data`.
    unsafe {
        let lo = _mm512_maskz_loadu_ps(first(n), ptr);
        let hi = if n > 16 {
            _mm512_maskz_loadu_ps(first(n - 16), ptr.add(16))
        } else {
            _mm512_setzero_ps()
        };
        [lo, hi]
    }
}

/// `data[0], data[step], ...`, `n` (at most 32) of them, zero beyond: two AVX-512
/// gathers (a strided run of a matrix stored the other way round, such as a
/// convolution weight's taps). `31 * step` must fit in an i32 (the gathers' offsets).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub(super) fn gather(data: &[f32], step: usize, n: usize) -> [__m512; 2] {
    assert!(
        step.saturating_mul(31) <= i32::MAX as usize,
        "gather offsets overflow"
    );
    assert!(n <= 32 && (n == 0 || (n - 1) * step < data.len()));
    let step = step as i32;
    let lanes = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    let offsets = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(step));
    let zero = _mm512_setzero_ps();
    // SAFETY: the masks enable lanes i < n, which read data[i * step], inside `data`;
    // the offsets fit in i32 (both asserted above).
    unsafe {
        let lo = _mm512_mask_i32gather_ps::<4>(zero, first(n), offsets, data.as_ptr());
        let hi = if n > 16 {
            let base = data.as_ptr().add(16 * step as usize);
            _mm512_mask_i32gather_ps::<4>(zero, first(n - 16), offsets, base)
        } else {
            zero
        };
        [lo, hi]
    }
}

/// Pixels `col..col + out.len()` of channel `channel` of the planes `data`, crossing
/// window rows and images.
fn planes_along<T: Copy>(p: &Planes, data: &[T], channel: usize, col: usize, out: &mut [T]) {
    let whole_rows = p.size[1] == p.full[1];
    let mut done = 0;
    while done < out.len() {
        let c = col + done;
        let (image, pixel) = (c / p.pixels(), c % p.pixels());
        let (y, x) = (pixel / p.size[1], pixel % p.size[1]);
        // Contiguous to the end of the window row, or of the plane when rows are whole.
        let room = if whole_rows {
            p.pixels() - pixel
        } else {
            p.size[1] - x
        };
        let len = room.min(out.len() - done);
        let at = (image * p.channels + channel) * p.plane()
            + (p.origin[0] + y) * p.full[1]
            + p.origin[1]
            + x;
        out[done..done + len].copy_from_slice(&data[at..at + len]);
        done += len;
    }
}

/// Row `row = (ci, ky, kx)` of the unrolled images `x`, columns `col..col + out.len()`
/// (`out` starts zero: padding entries are left alone).
fn im2col_along<T: Copy>(g: &Conv2dGeometry, x: &[T], row: usize, col: usize, out: &mut [T]) {
    let ([kh, kw], [sh, sw], [ph, pw]) = (g.kernel, g.stride, g.padding);
    let (ci, ky, kx) = (row / (kh * kw), row / kw % kh, row % kw);
    let per_image = g.out_h * g.out_w;
    let mut done = 0;
    while done < out.len() {
        let col = col + done;
        let (image, pixel) = (col / per_image, col % per_image);
        let (oy, ox0) = (pixel / g.out_w, pixel % g.out_w);
        let len = (g.out_w - ox0).min(out.len() - done);
        let dst = &mut out[done..done + len];
        done += len;
        let iy = (oy * sh + ky).wrapping_sub(ph);
        if iy >= g.in_h {
            continue; // a padding row: the buffer is already zero
        }
        let src = &x[((image * g.in_channels + ci) * g.in_h + iy) * g.in_w..][..g.in_w];
        for (i, d) in dst.iter_mut().enumerate() {
            let ix = ((ox0 + i) * sw + kx).wrapping_sub(pw);
            if ix < g.in_w {
                *d = src[ix];
            }
        }
    }
}

/// Column `col = (image, oy, ox)` of the unrolled images `x`, rows `row..row + out.len()`
/// (`out` starts zero).
fn im2col_down<T: Copy>(g: &Conv2dGeometry, x: &[T], row: usize, col: usize, out: &mut [T]) {
    let ([kh, kw], [sh, sw], [ph, pw]) = (g.kernel, g.stride, g.padding);
    let per_image = g.out_h * g.out_w;
    let (image, pixel) = (col / per_image, col % per_image);
    let (oy, ox) = (pixel / g.out_w, pixel % g.out_w);
    for (i, d) in out.iter_mut().enumerate() {
        let r = row + i;
        let (ci, ky, kx) = (r / (kh * kw), r / kw % kh, r % kw);
        let (iy, ix) = (
            (oy * sh + ky).wrapping_sub(ph),
            (ox * sw + kx).wrapping_sub(pw),
        );
        if iy < g.in_h && ix < g.in_w {
            *d = x[((image * g.in_channels + ci) * g.in_h + iy) * g.in_w + ix];
        }
    }
}
