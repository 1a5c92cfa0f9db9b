//! The AMX micro-kernel: a 32x32 block of `C` held in four tile registers.
//!
//! Eight tiles of 16 rows x 64 bytes: `tmm0..tmm3` hold the four 16x16 f32 quarters of
//! `C`, `tmm4`/`tmm5` the two 16-row halves of `A_s`, `tmm6`/`tmm7` the two 16-column halves
//! of `B_s`. Each step is four tile loads (4 KiB) and four `TDPBF16PS` (16x16x32
//! multiply-adds each, 32,768 in all); a `TDPBF16PS` issues every 16 cycles, so the loads
//! have 64 cycles to arrive.
//!
//! The tile instructions' intrinsics (`_tile_loadd`, `_tile_dpbf16ps`...) and the
//! `amx-tile` target feature are unstable in Rust 1.95, hence inline assembly. The
//! compiler never uses tile registers itself (it is not told the CPU has them), so values
//! left in `tmm0..tmm7` by one `asm!` block are still there in the next.

use std::arch::asm;
use std::marker::PhantomData;

use super::microkernel::{Block, Init, Step};

/// `LDTILECFG`'s 64-byte operand: palette 1, tiles 0-7 of 16 rows x 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

const fn tile_config() -> TileConfig {
    let mut bytes = [0u8; 64];
    bytes[0] = 1; // palette 1: 8 tiles of up to 16 rows x 64 bytes
    let mut tile = 0;
    while tile < 8 {
        bytes[16 + 2 * tile] = 64; // colsb, a little-endian u16 per tile
        bytes[48 + tile] = 16; // rows, a u8 per tile
        tile += 1;
    }
    TileConfig(bytes)
}

static CONFIG: TileConfig = tile_config();

/// Proof that this thread's tiles are configured; releases them (`TILERELEASE`) when
/// dropped, so that a thread which has finished its products does not carry 8 KiB of
/// tile state through every context switch.
pub(crate) struct Tiles {
    /// Tile configuration is per thread: the guard must not move to another one.
    _this_thread: PhantomData<*const ()>,
}

impl Tiles {
    /// # Safety
    /// AMX must be available and permitted to this process (`Isa::Amx.check()` is `Ok`).
    pub unsafe fn configure() -> Tiles {
        // SAFETY: AMX is available (caller's contract); CONFIG is a valid palette-1
        // configuration, 64 bytes, aligned, and only read.
        unsafe {
            asm!("ldtilecfg [{cfg}]", cfg = in(reg) CONFIG.0.as_ptr(), options(nostack, readonly));
        }
        Tiles {
            _this_thread: PhantomData,
        }
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: a Tiles exists only after a successful LDTILECFG on this thread, so AMX is
        // available; TILERELEASE touches no memory.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}

/// One block: see `microkernel::run`, whose safety contract this inherits.
#[inline]
pub(super) unsafe fn block(_tiles: &Tiles, block: &Block, steps: &[Step], init: Init) {
    let (c, cs) = (block.c.cast::<u8>(), block.c_stride);
    let c1 = c.wrapping_offset(block.c_half);
    let (c_low, c1_low) = (c.wrapping_add(16 * cs), c1.wrapping_add(16 * cs));
    // SAFETY (every asm! below): the tiles are configured (`_tiles`); the caller guarantees
    // that each row these loads and stores touch lies in readable (for C, also writable)
    // memory; the instructions touch no registers but the named ones and tmm0-tmm7.
    unsafe {
        match init {
            Init::Zero => asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            ),
            Init::Accumulate => asm!(
                "tileloadd tmm0, [{c} + {cs}*1]",
                "tileloadd tmm1, [{c1} + {cs}*1]",
                "tileloadd tmm2, [{cl} + {cs}*1]",
                "tileloadd tmm3, [{c1l} + {cs}*1]",
                c = in(reg) c,
                c1 = in(reg) c1,
                cl = in(reg) c_low,
                c1l = in(reg) c1_low,
                cs = in(reg) cs,
                options(nostack, readonly),
            ),
            Init::Rows(rows) => asm!(
                "tileloadd tmm0, [{r} + {s}*1]",
                "tileloadd tmm1, [{r} + {s}*1]",
                "tileloadd tmm2, [{r} + {s}*1 + 1024]",
                "tileloadd tmm3, [{r} + {s}*1 + 1024]",
                r = in(reg) rows,
                s = in(reg) 64usize,
                options(nostack, readonly),
            ),
        }
        let (sa, sb, bh) = (block.a_stride, block.b_stride, block.b_half);
        for step in steps {
            let a = block.a.wrapping_offset(step.a);
            let b = block.b.wrapping_offset(step.b);
            asm!(
                "tileloadd tmm4, [{a} + {sa}*1]",
                "tileloadd tmm6, [{b} + {sb}*1]",
                "tileloadd tmm7, [{b1} + {sb}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tileloadd tmm5, [{a2} + {sa}*1]",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a = in(reg) a,
                a2 = in(reg) a.wrapping_add(16 * sa),
                b = in(reg) b,
                b1 = in(reg) b.wrapping_offset(bh),
                sa = in(reg) sa,
                sb = in(reg) sb,
                options(nostack, readonly),
            );
        }
        asm!(
            "tilestored [{c} + {cs}*1], tmm0",
            "tilestored [{c1} + {cs}*1], tmm1",
            "tilestored [{cl} + {cs}*1], tmm2",
            "tilestored [{c1l} + {cs}*1], tmm3",
            c = in(reg) c,
            c1 = in(reg) c1,
            cl = in(reg) c_low,
            c1l = in(reg) c1_low,
            cs = in(reg) cs,
            options(nostack),
        );
    }
}
