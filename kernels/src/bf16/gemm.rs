//! `C = A * B` (or `C += A * B`) with f32 operands rounded to bf16 and f32 accumulation
//! (inside the crate, operands may also be bf16 already: a linear layer's input under
//! autocast).
//!
//! Both operands are packed once (`pack.rs`) and the product is cut into 32x32 blocks of
//! `C`, each one call of the micro-kernel. The work is split into one contiguous range of
//! panels per rayon thread, along whichever of `M` and `N` has more. Within a thread, k is
//! taken [`K_CHUNK`] at a time so that the A and B blocks in use stay in the L1 and L2
//! caches, and blocks inside `C` (with unit column stride) are accumulated in `C` itself
//! by the tiles; blocks on its edges, or of a `C` stored transposed, go through a
//! 32x32 scratch block.

use rayon::prelude::*;

use super::lanes::transpose16;
use super::microkernel::{self, Block, Init, Step, ADJACENT, BLOCK, DEPTH};
use super::pack::{Packed, BLOCK_BYTES};
use super::source::View;
use super::{Cpu, Isa};
use crate::{Error, Result};

const OP: &str = "bf16 gemm";

/// k per pass over the blocks of `C`: 16 steps, so that one A panel's blocks in use
/// (32 KiB) stay in the L1 cache while a group of B panels streams from L2.
const K_CHUNK: usize = 512;
/// B panels visited per A panel: 4 x 32 KiB of B stay in L2 while the A panels pass.
const PANEL_GROUP: usize = 4;

/// A read-only f32 matrix: element `(r, c)` is `data[r * row_stride + c * col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows x cols` matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Result<MatRef<'a>> {
        Self::strided(data, rows, cols, cols, 1)
    }

    /// Any strides; the transpose of a row-major `cols x rows` matrix is
    /// `strided(data, rows, cols, 1, rows)`.
    pub fn strided(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<MatRef<'a>> {
        check_fits(data.len(), rows, cols, row_stride, col_stride)?;
        Ok(MatRef {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        })
    }

    /// The transpose, without copying.
    pub fn t(self) -> MatRef<'a> {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn row_stride(&self) -> usize {
        self.row_stride
    }

    pub fn col_stride(&self) -> usize {
        self.col_stride
    }

    pub fn data(&self) -> &'a [f32] {
        self.data
    }
}

/// A writable f32 matrix whose elements do not overlap: element `(r, c)` is
/// `data[r * row_stride + c * col_stride]`.
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatMut<'a> {
    /// A row-major `rows x cols` matrix.
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize) -> Result<MatMut<'a>> {
        Self::strided(data, rows, cols, cols, 1)
    }

    /// Any strides under which no two elements share memory (rows apart by at least a
    /// row's span, or columns apart by at least a column's).
    pub fn strided(
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<MatMut<'a>> {
        check_fits(data.len(), rows, cols, row_stride, col_stride)?;
        let disjoint = rows <= 1 && (cols <= 1 || col_stride >= 1)
            || cols <= 1 && row_stride >= 1
            || col_stride >= 1 && row_stride >= cols * col_stride
            || row_stride >= 1 && col_stride >= rows * row_stride;
        if !disjoint {
            return Err(Error::invalid(
                OP,
                format!(
                    "a {rows}x{cols} destination with strides ({row_stride}, {col_stride}) \
                     would write some elements twice"
                ),
            ));
        }
        Ok(MatMut {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }
}

/// Ok when a `rows x cols` matrix with strides `(rs, cs)` fits in `len` elements.
pub(super) fn check_fits(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> Result<()> {
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let last = (rows - 1)
        .checked_mul(rs)
        .and_then(|r| (cols - 1).checked_mul(cs).and_then(|c| r.checked_add(c)));
    match last {
        Some(last) if last < len => Ok(()),
        _ => Err(Error::shape(
            OP,
            format!(
                "a {rows}x{cols} matrix with strides ({rs}, {cs}) does not fit in {len} elements"
            ),
        )),
    }
}

/// `c = a * b`, or `c += a * b` when `accumulate`, on the fastest bf16 instructions this
/// CPU has ([`Isa::best`]): `a` and `b` are rounded to bf16 (to nearest, ties to even)
/// and the products summed in f32, as PyTorch's autocast does for `torch.mm`.
///
/// ```
/// use kernels::bf16::{gemm, MatMut, MatRef};
/// # if kernels::bf16::Isa::best().is_err() { return; }
/// let (a, b) = ([1.0f32, 2.0, 3.0, 4.0], [5.0f32, 6.0, 7.0, 8.0]);
/// let mut c = [0.0f32; 4];
/// gemm(
///     MatRef::new(&a, 2, 2).unwrap(),
///     MatRef::new(&b, 2, 2).unwrap(),
///     MatMut::new(&mut c, 2, 2).unwrap(),
///     false,
/// )
/// .unwrap();
/// assert_eq!(c, [19.0, 22.0, 43.0, 50.0]); // small integers are exact in bf16
/// ```
pub fn gemm(a: MatRef, b: MatRef, c: MatMut, accumulate: bool) -> Result<()> {
    gemm_with(Isa::best()?, a, b, c, accumulate)
}

/// [`gemm`] on the given instruction set (an error if this CPU lacks it).
pub fn gemm_with(isa: Isa, a: MatRef, b: MatRef, c: MatMut, accumulate: bool) -> Result<()> {
    gemm_views(isa, &View::matrix(a), &View::matrix(b), c, accumulate)
}

/// [`gemm_with`] on views, whose values may be bf16 (packed as they are).
pub(crate) fn gemm_views(
    isa: Isa,
    a: &View,
    b: &View,
    mut c: MatMut,
    accumulate: bool,
) -> Result<()> {
    if a.cols() != b.rows() || c.rows != a.rows() || c.cols != b.cols() {
        return Err(Error::shape(
            OP,
            format!(
                "cannot multiply {}x{} by {}x{} into {}x{}",
                a.rows(),
                a.cols(),
                b.rows(),
                b.cols(),
                c.rows,
                c.cols
            ),
        ));
    }
    let cpu = Cpu::new(isa)?;
    let work = a.rows() as f64 * b.cols() as f64 * a.cols() as f64;
    let parallel = work >= (1 << 20) as f64;
    let packed_a = Packed::a(cpu, a, parallel);
    let packed_b = Packed::b(cpu, b, parallel);
    product(
        cpu,
        &packed_a,
        &packed_b,
        a.cols(),
        &mut c,
        accumulate,
        parallel,
    );
    Ok(())
}

/// The destination's pointer, shared by the threads that each write their own blocks.
#[derive(Clone, Copy)]
struct Dest {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

// SAFETY: the threads of one product write disjoint blocks of the destination (their
// panel ranges do not overlap, and MatMut's strides map distinct elements to distinct
// memory), and the MatMut it came from is borrowed mutably until they have all finished.
unsafe impl Send for Dest {}
// SAFETY: as for Send.
unsafe impl Sync for Dest {}

/// `c (+)= A * B` for packed operands of depth `k`; `c` is `a.panels x b.panels` blocks
/// trimmed to its own size.
pub(crate) fn product(
    cpu: Cpu,
    a: &Packed,
    b: &Packed,
    k: usize,
    c: &mut MatMut,
    accumulate: bool,
    parallel: bool,
) {
    let (m, n) = (c.rows, c.cols);
    if m == 0 || n == 0 {
        return;
    }
    let dest = Dest {
        ptr: c.data.as_mut_ptr(),
        rows: m,
        cols: n,
        row_stride: c.row_stride,
        col_stride: c.col_stride,
    };
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                for col in 0..n {
                    c.data[r * c.row_stride + col * c.col_stride] = 0.0;
                }
            }
        }
        return;
    }
    let threads = if parallel {
        rayon::current_num_threads()
    } else {
        1
    };
    let by_rows = a.panels >= b.panels;
    let split = if by_rows { a.panels } else { b.panels };
    let parts = threads.min(split).max(1);
    let run = |part: usize| {
        let range = split * part / parts..split * (part + 1) / parts;
        let (rows, cols) = if by_rows {
            (range, 0..b.panels)
        } else {
            (0..a.panels, range)
        };
        // SAFETY: the caller's Cpu proves the instruction set is available; the blocks
        // below read whole packed blocks and write blocks inside `dest` (or the scratch).
        unsafe { blocks(cpu, a, b, dest, rows, cols, accumulate) };
    };
    if parts > 1 {
        (0..parts).into_par_iter().for_each(run);
    } else {
        run(0);
    }
}

/// One thread's share: blocks `rows x cols` (in panels) of the destination.
///
/// # Safety
/// `dest` must describe memory this call may write (no other thread touches these
/// blocks) and `a`, `b` must have the same number of k-blocks.
unsafe fn blocks(
    cpu: Cpu,
    a: &Packed,
    b: &Packed,
    dest: Dest,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    accumulate: bool,
) {
    let chunk = K_CHUNK / DEPTH;
    let steps: Vec<Step> = (0..chunk as isize)
        .map(|i| Step {
            a: i * BLOCK_BYTES as isize,
            b: i * BLOCK_BYTES as isize,
        })
        .collect();
    let mut scratch = Scratch([0.0; BLOCK * BLOCK]);
    let session = cpu.session();
    let k_blocks = a.k_blocks.min(b.k_blocks);
    for kb in (0..k_blocks).step_by(chunk) {
        let steps = &steps[..chunk.min(k_blocks - kb)];
        let add = accumulate || kb > 0;
        for group in cols.clone().step_by(PANEL_GROUP) {
            let group = group..(group + PANEL_GROUP).min(cols.end);
            for i in rows.clone() {
                for j in group.clone() {
                    let (m0, n0) = (i * BLOCK, j * BLOCK);
                    let inside =
                        dest.col_stride == 1 && m0 + BLOCK <= dest.rows && n0 + BLOCK <= dest.cols;
                    let (c, c_stride) = if inside {
                        // SAFETY: (m0, n0) is inside the destination.
                        let c = unsafe { dest.ptr.add(m0 * dest.row_stride + n0) };
                        (c, dest.row_stride * 4)
                    } else {
                        (scratch.0.as_mut_ptr(), BLOCK * 4)
                    };
                    let block = Block {
                        a: a.block(i, kb),
                        a_stride: 64,
                        b: b.block(j, kb),
                        b_stride: 128,
                        b_half: ADJACENT,
                        c,
                        c_stride,
                        c_half: ADJACENT,
                    };
                    let init = if add && inside {
                        Init::Accumulate
                    } else {
                        Init::Zero
                    };
                    // SAFETY: the steps stay inside panels i and j (kb + steps.len() <=
                    // k_blocks); an inside block's 32 rows of 32 f32 are in the
                    // destination (row stride >= 32 since the columns are disjoint), the
                    // scratch holds 32x32; this thread's session is live.
                    unsafe { microkernel::run(&session, &block, steps, init) };
                    if !inside {
                        let whole = m0 + BLOCK <= dest.rows && n0 + BLOCK <= dest.cols;
                        // SAFETY: both write only elements of the block inside the
                        // destination; the Cpu proves AVX-512 for the transposing one.
                        unsafe {
                            if whole && dest.row_stride == 1 {
                                write_transposed(&scratch, dest, m0, n0, add);
                            } else {
                                write_edge(&scratch, dest, m0, n0, add);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A 32x32 f32 block, aligned for the tile stores.
#[repr(C, align(64))]
struct Scratch([f32; BLOCK * BLOCK]);

/// Copies (or adds) the part of `scratch` that lies inside the destination at `(m0, n0)`.
///
/// # Safety
/// `dest` must be writable by this thread at the block's elements.
unsafe fn write_edge(scratch: &Scratch, dest: Dest, m0: usize, n0: usize, add: bool) {
    let rows = (dest.rows - m0).min(BLOCK);
    let cols = (dest.cols - n0).min(BLOCK);
    for r in 0..rows {
        let src = &scratch.0[r * BLOCK..][..cols];
        for (j, &v) in src.iter().enumerate() {
            let at = (m0 + r) * dest.row_stride + (n0 + j) * dest.col_stride;
            // SAFETY: (m0 + r, n0 + j) is inside the destination (caller's contract).
            unsafe {
                let p = dest.ptr.add(at);
                *p = if add { *p + v } else { v };
            }
        }
    }
}

/// [`write_edge`] for a whole block of a destination stored column-major (row stride 1):
/// each 16x16 quarter is transposed in registers so that a column of `C` is one store.
///
/// # Safety
/// As for [`write_edge`], with the whole block inside the destination and `row_stride`
/// 1 (a column of the block is 32 contiguous f32); AVX-512 must be available.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn write_transposed(scratch: &Scratch, dest: Dest, m0: usize, n0: usize, add: bool) {
    use std::arch::x86_64::*;
    for (qr, qc) in [(0, 0), (0, 16), (16, 0), (16, 16)] {
        let mut rows: [__m512i; 16] = std::array::from_fn(|r| {
            // SAFETY: row qr + r of the 32x32 scratch has 16 f32 from column qc.
            unsafe { _mm512_loadu_si512(scratch.0[(qr + r) * BLOCK + qc..].as_ptr().cast()) }
        });
        transpose16(&mut rows);
        // Row j now holds column qc + j of the quarter: rows qr..qr + 16 of C's column.
        for (j, column) in rows.into_iter().enumerate() {
            let at = (m0 + qr) + (n0 + qc + j) * dest.col_stride;
            // SAFETY: column n0 + qc + j, rows m0 + qr .. + 16 are inside the destination
            // and contiguous (row stride 1), per the caller's contract.
            unsafe {
                let p = dest.ptr.add(at);
                let v = _mm512_castsi512_ps(column);
                let v = if add {
                    _mm512_add_ps(_mm512_loadu_ps(p), v)
                } else {
                    v
                };
                _mm512_storeu_ps(p, v);
            }
        }
    }
}
