//! The one operation both instruction sets implement: a 32x32 f32 block of `C` plus a sum
//! of products of bf16 operands read straight from memory, in the layouts AMX tiles load.
//!
//! ```text
//! C (32 x 32 f32)  = [C +] sum over steps s of  A_s (32 x 32 bf16) * B_s (32 x 32 bf16)
//!
//! A_s row r        = 32 bf16 (k = 0..32)         at  a + s.a + r * a_stride
//! B_s row p, half h = 16 (k = 2p, 2p+1) pairs    at  b + s.b + p * b_stride + h * b_half
//!                    for columns 16h..16h+16 ("VNNI" layout: each 32-bit word holds
//!                    B[2p][n] in its low half and B[2p + 1][n] in its high half)
//! C row r, half h  = 16 f32                      at  c + r * c_stride + h * c_half
//! ```
//!
//! The halves are usually adjacent (`b_half = c_half = 64` bytes); the convolutions
//! point them at two rows of an image instead. `C` starts from zero, from its own
//! contents, or from 32 rows of 16 values repeated in both halves (a bias).
//!
//! Everything above it (the GEMM's packed panels, the convolution's image layouts) only
//! arranges memory so that a list of steps covers its product; [`run`] sends the block to
//! the AMX kernel ([`super::amx`]) or the AVX512-BF16 one ([`super::avx512`]).

use super::{amx, avx512, Isa};

/// One 32-deep slice of the sum: byte offsets of `A_s` and `B_s` from the block's bases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    pub a: isize,
    pub b: isize,
}

/// Where one block's operands and result live (strides and offsets in bytes).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Block {
    pub a: *const u8,
    pub a_stride: usize,
    pub b: *const u8,
    pub b_stride: usize,
    pub b_half: isize,
    pub c: *mut f32,
    pub c_stride: usize,
    pub c_half: isize,
}

/// Adjacent halves: columns 16..32 right after columns 0..16.
pub(crate) const ADJACENT: isize = 64;

/// What `C` holds before the products are added.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Init {
    Zero,
    /// `C`'s own contents.
    Accumulate,
    /// 32 rows of 16 f32, 64 bytes apart, each row's values for every column of both
    /// halves (a bias per output channel).
    Rows(*const f32),
}

/// Rows and columns of a block.
pub(crate) const BLOCK: usize = 32;
/// Depth (k) of one step.
pub(crate) const DEPTH: usize = 32;

/// The per-thread state an instruction set needs while blocks run: AMX's tile
/// configuration. Create one per thread (per rayon task) and pass it to [`run`].
pub(crate) enum Session {
    Amx(amx::Tiles),
    Avx512Bf16,
}

impl Session {
    /// # Safety
    /// `isa` must be available to this process ([`Isa::check`] returned `Ok`).
    pub unsafe fn start(isa: Isa) -> Session {
        match isa {
            // SAFETY: the caller checked that AMX is available, permission included.
            Isa::Amx => Session::Amx(unsafe { amx::Tiles::configure() }),
            Isa::Avx512Bf16 => Session::Avx512Bf16,
        }
    }
}

/// Computes one block (see the module's description).
///
/// # Safety
/// For every step, the 32 rows of `A_s` (64 bytes each) and both halves of the 16 rows
/// of `B_s` (64 bytes each) must be readable, the two halves of the 32 rows of `C`
/// (64 bytes each) writable (and readable for `Init::Accumulate`) and not aliased by
/// the operands, and `Init::Rows` must point at 32 readable rows of 16 f32, 64 bytes
/// apart. The session must have been started on this thread.
#[inline]
pub(crate) unsafe fn run(session: &Session, block: &Block, steps: &[Step], init: Init) {
    match session {
        // SAFETY: forwarded from the caller; the tiles are configured on this thread.
        Session::Amx(tiles) => unsafe { amx::block(tiles, block, steps, init) },
        // SAFETY: forwarded from the caller; a Session::Avx512Bf16 exists only where
        // `Session::start`'s caller checked that AVX512-BF16 is available.
        Session::Avx512Bf16 => unsafe { avx512::block(block, steps, init) },
    }
}
