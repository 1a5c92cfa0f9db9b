//! What the packing code reads: a strided matrix, a batch of image planes seen as a
//! matrix, or the unrolled receptive fields (`im2col`) of a convolution's input, each
//! possibly transposed. The packers ask for runs of 32 values along a row or a column;
//! each kind answers from memory directly, so no f32 copy of a lowered matrix is made.

use std::arch::x86_64::*;

use super::gemm::MatRef;
use super::lanes::first;
use crate::conv2d::Conv2dGeometry;

/// A matrix to pack, and whether it is used transposed.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    kind: Kind<'a>,
    transposed: bool,
}

#[derive(Clone, Copy)]
enum Kind<'a> {
    Matrix(MatRef<'a>),
    Planes(Planes<'a>),
    Im2col(Im2col<'a>),
}

/// `images` images of `channels` planes, each `full[0] x full[1]`, seen as the matrix
/// `channels x (image, y, x)` over the window `y in top..top + size[0]`,
/// `x in left..left + size[1]` of every plane.
#[derive(Clone, Copy)]
pub(crate) struct Planes<'a> {
    pub data: &'a [f32],
    pub images: usize,
    pub channels: usize,
    pub full: [usize; 2],
    pub origin: [usize; 2],
    pub size: [usize; 2],
}

impl Planes<'_> {
    fn pixels(&self) -> usize {
        self.size[0] * self.size[1]
    }

    fn plane(&self) -> usize {
        self.full[0] * self.full[1]
    }
}

/// The unrolled receptive fields of the `g.batch` images of `x`: row `(ci, ky, kx)`,
/// column `(image, oy, ox)` holds `x[image, ci, oy*sh + ky - ph, ox*sw + kx - pw]`, zero in
/// the padding.
#[derive(Clone, Copy)]
pub(crate) struct Im2col<'a> {
    pub x: &'a [f32],
    pub g: Conv2dGeometry,
}

impl<'a> View<'a> {
    pub fn matrix(m: MatRef<'a>) -> View<'a> {
        View {
            kind: Kind::Matrix(m),
            transposed: false,
        }
    }

    /// # Panics
    /// If `data` is shorter than the planes or the window leaves them: callers build
    /// planes from validated geometry.
    pub fn planes(p: Planes<'a>) -> View<'a> {
        assert!(
            p.origin[0] + p.size[0] <= p.full[0]
                && p.origin[1] + p.size[1] <= p.full[1]
                && p.data.len() >= p.images * p.channels * p.plane(),
            "planes view out of bounds"
        );
        View {
            kind: Kind::Planes(p),
            transposed: false,
        }
    }

    /// # Panics
    /// If `x` is shorter than the geometry's input: callers pass validated buffers.
    pub fn im2col(c: Im2col<'a>) -> View<'a> {
        assert!(c.x.len() >= c.g.input_shape().iter().product::<usize>());
        View {
            kind: Kind::Im2col(c),
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
            Kind::Matrix(m) => (m.rows(), m.cols()),
            Kind::Planes(p) => (p.channels, p.images * p.pixels()),
            Kind::Im2col(c) => (
                c.g.in_channels * c.g.kernel[0] * c.g.kernel[1],
                c.g.batch * c.g.out_h * c.g.out_w,
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
            Kind::Matrix(m) => m.row_stride() == 1 && m.col_stride() != 1,
            // Along the pixels (the stored columns) is the cheap direction of both.
            Kind::Planes(_) | Kind::Im2col(_) => false,
        };
        stored != self.transposed
    }

    /// 32 values from `(row, col)` onward down the column (`down`) or along the row, zero
    /// past the matrix's edge.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub fn run32(&self, row: usize, col: usize, down: bool) -> [__m512; 2] {
        let (row, col, down) = if self.transposed {
            (col, row, !down)
        } else {
            (row, col, down)
        };
        let (rows, cols) = self.stored_shape();
        if row >= rows || col >= cols {
            return [_mm512_setzero_ps(); 2];
        }
        let n = if down { rows - row } else { cols - col }.min(32);
        if let Kind::Matrix(m) = &self.kind {
            let stride = if down { m.row_stride() } else { m.col_stride() };
            let start = row * m.row_stride() + col * m.col_stride();
            if stride == 1 {
                return load_contiguous(&m.data()[start..], n);
            }
            if stride.saturating_mul(31) <= i32::MAX as usize {
                return gather(&m.data()[start..], stride, n);
            }
        }
        let mut buf = [0f32; 32];
        match &self.kind {
            Kind::Matrix(m) => {
                let stride = if down { m.row_stride() } else { m.col_stride() };
                let start = row * m.row_stride() + col * m.col_stride();
                for (i, v) in buf[..n].iter_mut().enumerate() {
                    *v = m.data()[start + i * stride];
                }
            }
            Kind::Planes(p) if down => {
                let (image, pixel) = (col / p.pixels(), col % p.pixels());
                let (y, x) = (pixel / p.size[1], pixel % p.size[1]);
                let at = (p.origin[0] + y) * p.full[1] + p.origin[1] + x;
                let base = (image * p.channels + row) * p.plane() + at;
                for (i, v) in buf[..n].iter_mut().enumerate() {
                    *v = p.data[base + i * p.plane()];
                }
            }
            Kind::Planes(p) => planes_along(p, row, col, &mut buf[..n]),
            Kind::Im2col(c) if down => im2col_down(c, row, col, &mut buf[..n]),
            Kind::Im2col(c) => im2col_along(c, row, col, &mut buf[..n]),
        }
        load_contiguous(&buf, 32)
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

/// Pixels `col..col + out.len()` of channel `channel`, crossing window rows and images.
fn planes_along(p: &Planes, channel: usize, col: usize, out: &mut [f32]) {
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
        out[done..done + len].copy_from_slice(&p.data[at..at + len]);
        done += len;
    }
}

/// Row `row = (ci, ky, kx)` of the unrolled matrix, columns `col..col + out.len()`.
fn im2col_along(c: &Im2col, row: usize, col: usize, out: &mut [f32]) {
    let g = &c.g;
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
        let src = &c.x[((image * g.in_channels + ci) * g.in_h + iy) * g.in_w..][..g.in_w];
        for (i, d) in dst.iter_mut().enumerate() {
            let ix = ((ox0 + i) * sw + kx).wrapping_sub(pw);
            if ix < g.in_w {
                *d = src[ix];
            }
        }
    }
}

/// Column `col = (image, oy, ox)` of the unrolled matrix, rows `row..row + out.len()`.
fn im2col_down(c: &Im2col, row: usize, col: usize, out: &mut [f32]) {
    let g = &c.g;
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
            *d = c.x[((image * g.in_channels + ci) * g.in_h + iy) * g.in_w + ix];
        }
    }
}
