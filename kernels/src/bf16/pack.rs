//! Matrices (f32 rounded to bf16, or bf16) cut into the panels the micro-kernel reads.
//!
//! `A` (`M x K`) becomes panels of 32 rows, `B` (`K x N`) panels of 32 columns; each panel
//! is a run of 2 KiB blocks, one per 32 values of k, in `microkernel`'s layouts:
//!
//! ```text
//! A block (panel i, k-block kb): 32 rows x 32 bf16, row r = A[32i + r][32kb .. 32kb + 32]
//! B block (panel j, k-block kb): 16 rows x 32 VNNI pairs, row p, column n =
//!                                (B[32kb + 2p][32j + n], B[32kb + 2p + 1][32j + n])
//! ```
//!
//! Rows, columns and k past the matrix are zeros, so every block is whole. Either operand
//! may be stored either way round: a run of 32 values along the stored rows is one or two
//! vector loads (`View::run32`, which rounds f32 runs), and the orientation the layout
//! wants is reached with a 16x16 transpose of 32-bit pairs (`lanes::transpose16`).

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use half::bf16;
use rayon::prelude::*;

use super::lanes::{pairs, transpose16};
use super::microkernel::{BLOCK, DEPTH};
use super::source::View;
use super::Cpu;

/// 64 bytes on a cache line of their own: the unit of packed storage (a tile row).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Line(pub [bf16; 32]);

/// Lines in one 2 KiB block.
const BLOCK_LINES: usize = 32;
/// Bytes in one block.
pub(crate) const BLOCK_BYTES: usize = BLOCK_LINES * 64;

/// One operand, in bf16 and packed.
pub(crate) struct Packed {
    lines: Vec<Line>,
    /// Panels of 32 rows (A) or columns (B).
    pub panels: usize,
    /// Blocks of 32 along k in each panel.
    pub k_blocks: usize,
}

/// Which operand a matrix is packed as.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    A,
    B,
}

impl Packed {
    /// Packs `src` (`M x K`) as the left operand.
    pub fn a(cpu: Cpu, src: &View, parallel: bool) -> Packed {
        Self::pack(cpu, src, Role::A, parallel)
    }

    /// Packs `src` (`K x N`) as the right operand.
    pub fn b(cpu: Cpu, src: &View, parallel: bool) -> Packed {
        Self::pack(cpu, src, Role::B, parallel)
    }

    /// The first byte of block `k_block` of panel `panel`; the panel's later blocks follow
    /// it, [`BLOCK_BYTES`] apart.
    pub fn block(&self, panel: usize, k_block: usize) -> *const u8 {
        assert!(panel < self.panels && k_block < self.k_blocks);
        self.lines[(panel * self.k_blocks + k_block) * BLOCK_LINES..]
            .as_ptr()
            .cast()
    }

    fn pack(cpu: Cpu, src: &View, role: Role, parallel: bool) -> Packed {
        let (panels, k_blocks) = role.blocks(src);
        let len = panels * k_blocks * BLOCK_LINES;
        let mut lines: Vec<Line> = Vec::with_capacity(len);
        pack_into(
            cpu,
            src,
            role,
            &mut lines.spare_capacity_mut()[..len],
            parallel,
        );
        // SAFETY: pack_into wrote all `len` lines.
        unsafe { lines.set_len(len) };
        Packed {
            lines,
            panels,
            k_blocks,
        }
    }
}

impl Role {
    /// Panels and k-blocks of `src` packed in this role.
    pub fn blocks(self, src: &View) -> (usize, usize) {
        let (outer, depth) = match self {
            Role::A => (src.rows(), src.cols()),
            Role::B => (src.cols(), src.rows()),
        };
        (outer.div_ceil(BLOCK), depth.div_ceil(DEPTH))
    }

    /// Lines `src` takes packed in this role.
    pub fn lines(self, src: &View) -> usize {
        let (panels, k_blocks) = self.blocks(src);
        panels * k_blocks * BLOCK_LINES
    }
}

/// Packs `src` into `out`, which must hold exactly `role.lines(src)` lines, panel after
/// panel, each panel's k-blocks in order; every line is written.
pub(crate) fn pack_into(
    cpu: Cpu,
    src: &View,
    role: Role,
    out: &mut [MaybeUninit<Line>],
    parallel: bool,
) {
    let (_, k_blocks) = role.blocks(src);
    assert_eq!(out.len(), role.lines(src), "pack_into: wrong output size");
    let panel_lines = k_blocks * BLOCK_LINES;
    if panel_lines == 0 {
        return;
    }
    let _ = cpu;
    let fill = |(panel, out): (usize, &mut [MaybeUninit<Line>])| {
        for (kb, block) in out.chunks_exact_mut(BLOCK_LINES).enumerate() {
            let block: &mut [MaybeUninit<Line>; BLOCK_LINES] =
                block.try_into().expect("a block is 32 lines");
            // SAFETY: a Cpu exists only where AVX512-BF16 (with F/BW/VL) runs.
            unsafe {
                match role {
                    Role::A => pack_a_block(src, panel * BLOCK, kb * DEPTH, block),
                    Role::B => pack_b_block(src, kb * DEPTH, panel * BLOCK, block),
                }
            }
        }
    };
    if parallel && out.len() * 32 >= crate::PAR_MIN_LEN {
        out.par_chunks_mut(panel_lines).enumerate().for_each(fill);
    } else {
        out.chunks_mut(panel_lines).enumerate().for_each(fill);
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub(super) fn store(line: &mut MaybeUninit<Line>, v: __m512i) {
    // SAFETY: a Line is 64 bytes aligned to 64.
    unsafe { _mm512_store_si512(line.as_mut_ptr().cast(), v) };
}

/// The A block of rows `m0..m0 + 32`, k `k0..k0 + 32`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
fn pack_a_block(src: &View, m0: usize, k0: usize, out: &mut [MaybeUninit<Line>; 32]) {
    if src.cheap_down() {
        // Stored k-major: pair up k for all 32 rows, then transpose each 16x16 of pairs
        // (rows 16 * half + 0..16) into rows.
        let mut words = [[_mm512_setzero_si512(); 16]; 2];
        for pair in 0..16 {
            let even = src.run32(m0, k0 + 2 * pair, true);
            let odd = src.run32(m0, k0 + 2 * pair + 1, true);
            for (half, words) in words.iter_mut().enumerate() {
                words[pair] = pairs(even, odd, half);
            }
        }
        for (half, mut words) in words.into_iter().enumerate() {
            transpose16(&mut words);
            for (row, word) in words.into_iter().enumerate() {
                store(&mut out[16 * half + row], word);
            }
        }
    } else {
        for (r, line) in out.iter_mut().enumerate() {
            store(line, src.run32(m0 + r, k0, false));
        }
    }
}

/// The B block of k `k0..k0 + 32`, columns `n0..n0 + 32`: line `2p + h` holds k-pair
/// `p` of columns `16h..16h + 16`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
fn pack_b_block(src: &View, k0: usize, n0: usize, out: &mut [MaybeUninit<Line>; 32]) {
    if src.cheap_down() {
        // Stored n-major (k contiguous): each column's 32 k are 16 pairs; transpose each
        // 16x16 of pairs so that a line holds one pair of 16 columns.
        for half in 0..2 {
            let mut words = [_mm512_setzero_si512(); 16];
            for (c, word) in words.iter_mut().enumerate() {
                *word = src.run32(k0, n0 + 16 * half + c, true);
            }
            transpose16(&mut words);
            for (pair, word) in words.into_iter().enumerate() {
                store(&mut out[2 * pair + half], word);
            }
        }
    } else {
        for pair in 0..16 {
            let even = src.run32(k0 + 2 * pair, n0, false);
            let odd = src.run32(k0 + 2 * pair + 1, n0, false);
            for half in 0..2 {
                store(&mut out[2 * pair + half], pairs(even, odd, half));
            }
        }
    }
}
