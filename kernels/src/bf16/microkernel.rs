//! The one operation both instruction sets implement: a 32x32 f32 block of `C` plus a sum
//! of products of bf16 operands read straight from memory, in the layouts AMX tiles load.
//!
//! ```text
//! C (32 x 32 f32)  = [C +] sum over steps s of  A_s (32 x 32 bf16) * B_s (32 x 32 bf16)
//!
//! A_s row r        = 32 bf16 (k = 0..32)         at  a + s.a + r * a_stride
//! B_s row p, half h = 16 (k = 2p, 2p+1) pairs    at  b + s.b + p * b_stride + 64 h
//!                    for columns 16h..16h+16 ("VNNI" layout: each 32-bit word holds
//!                    B[2p][n] in its low half and B[2p + 1][n] in its high half)
//! C row r          = 32 f32                      at  c + r * c_stride
//! ```
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

/// Where one block's operands and result live (strides in bytes).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Block {
    pub a: *const u8,
    pub a_stride: usize,
    pub b: *const u8,
    pub b_stride: usize,
    pub c: *mut f32,
    pub c_stride: usize,
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
/// For every step, the 32 rows of `A_s` (64 bytes each) and the 16 rows of `B_s`
/// (128 bytes each, from `b + s.b + p * b_stride`) must be readable, and the 32 rows of
/// `C` (128 bytes each) readable and writable and not aliased by the operands. The
/// session must have been started on this thread.
#[inline]
pub(crate) unsafe fn run(session: &Session, block: &Block, steps: &[Step], accumulate: bool) {
    match session {
        // SAFETY: forwarded from the caller; the tiles are configured on this thread.
        Session::Amx(tiles) => unsafe { amx::block(tiles, block, steps, accumulate) },
        // SAFETY: forwarded from the caller; a Session::Avx512Bf16 exists only where
        // `Session::start`'s caller checked that AVX512-BF16 is available.
        Session::Avx512Bf16 => unsafe { avx512::block(block, steps, accumulate) },
    }
}
