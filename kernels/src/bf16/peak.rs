//! The dot-product instructions' own peak on this machine, measured: the ceiling a bf16
//! GEMM is compared with (`benches/src/bin/bf16_bench.rs`).
//!
//! Operands stay in registers (tiles for AMX, zmm for AVX512-BF16) and independent
//! accumulators hide the instructions' latency, so the loop runs at the issue rate:
//! on Sapphire Rapids one `TDPBF16PS` (16 x 16 x 32 multiply-adds) per 16 cycles, i.e.
//! 1,024 FLOP per cycle per core, and two `VDPBF16PS` (16 x 2 each) per cycle, 128 FLOP.

use std::time::Duration;

use super::{Cpu, Isa};
use crate::Result;

/// FLOP per second (two per multiply-add) that one thread reaches running `isa`'s
/// dot-product instruction back to back for about `duration` of its own CPU time:
/// seconds in which other processes hold the core do not count, so a shared machine
/// gives the same figure as an idle one (at whatever clock the core runs).
pub fn instruction_peak(isa: Isa, duration: Duration) -> Result<f64> {
    let cpu = Cpu::new(isa)?;
    let session = cpu.session();
    let mut rounds = 1u64 << 10;
    loop {
        let start = thread_cpu_time();
        // SAFETY: the Cpu proves the instruction set; the session configured the tiles.
        let flop = unsafe {
            match isa {
                Isa::Amx => amx_rounds(rounds),
                Isa::Avx512Bf16 => avx512_rounds(rounds),
            }
        };
        let elapsed = thread_cpu_time() - start;
        if elapsed >= duration.as_secs_f64() || rounds >= 1 << 40 {
            drop(session);
            return Ok(flop / elapsed.max(1e-9));
        }
        rounds *= 2;
    }
}

/// `rounds` x 4 `TDPBF16PS` into four independent accumulators; returns the FLOP done.
///
/// # Safety
/// AMX available and the tiles configured (16 rows x 64 bytes) on this thread.
unsafe fn amx_rounds(rounds: u64) -> f64 {
    let ones = [0x3f80_3f80u32; 256]; // bf16 pairs (1.0, 1.0)
                                      // SAFETY: per the contract; the loads read the 1 KiB `ones` with a 64-byte stride.
    unsafe {
        std::arch::asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "tileloadd tmm4, [{p} + {s}*1]",
            "tileloadd tmm6, [{p} + {s}*1]",
            "2:",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm6",
            "tdpbf16ps tmm2, tmm4, tmm6",
            "tdpbf16ps tmm3, tmm4, tmm6",
            "dec {n}",
            "jnz 2b",
            p = in(reg) ones.as_ptr(),
            s = in(reg) 64usize,
            n = inout(reg) rounds.max(1) => _,
            options(nostack, readonly),
        );
    }
    (rounds.max(1) * 4 * 16 * 16 * 32 * 2) as f64
}

/// `rounds` x 16 `VDPBF16PS` into sixteen independent accumulators; returns the FLOP done.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
fn avx512_rounds(rounds: u64) -> f64 {
    use std::arch::x86_64::*;
    // SAFETY: same-size plain-bits transmute.
    let a: __m512bh =
        unsafe { std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(0x3f80_3f80)) };
    let b = std::hint::black_box(a);
    let mut acc = [_mm512_setzero_ps(); 16];
    for _ in 0..rounds {
        for acc in acc.iter_mut() {
            *acc = _mm512_dpbf16_ps(*acc, a, b);
        }
    }
    std::hint::black_box(acc);
    (rounds * 16 * 16 * 2 * 2) as f64
}

/// Seconds of CPU time this thread has used.
pub fn thread_cpu_time() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to the address given, which points at
    // `t`, alive and writable for the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID is available on every Linux");
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}
