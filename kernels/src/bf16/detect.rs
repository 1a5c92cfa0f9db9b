//! Which bf16 product instructions this process may run: AMX, else AVX512-BF16.
//!
//! AMX needs three things: the CPU (CPUID leaf 7: AMX-TILE and AMX-BF16), an operating
//! system that saves the tile registers on a context switch (XCR0 bits 17 and 18), and, on
//! Linux, the process's permission, which the kernel grants only on request
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`; a tile instruction without it
//! dies with SIGILL). The request is made once per process, the first time anything asks
//! which instructions exist, and the answer (or the refusal) is kept.

use std::sync::OnceLock;

use crate::{Error, Result};

/// The instruction set a bf16 product runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Intel AMX: `TDPBF16PS` on 16x16 f32 tiles (Sapphire Rapids and later Xeons).
    Amx,
    /// `VDPBF16PS` on AVX-512 registers (Cooper Lake, Sapphire Rapids, AMD Zen 4 and later).
    Avx512Bf16,
}

/// Environment variable that caps the instruction set, as `ONEDNN_MAX_CPU_ISA` does for
/// oneDNN: `avx512-bf16` runs the AVX512-BF16 kernels on an AMX machine.
pub const ISA_ENV: &str = "KERNELS_BF16_ISA";

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Amx => "amx",
            Isa::Avx512Bf16 => "avx512-bf16",
        }
    }

    /// The fastest instruction set this process can run (capped by `KERNELS_BF16_ISA`),
    /// or an error naming what the CPU or the operating system lacks.
    pub fn best() -> Result<Isa> {
        let support = support();
        let cap = match std::env::var(ISA_ENV) {
            Err(_) => Isa::Amx,
            Ok(v) if v == Isa::Amx.name() => Isa::Amx,
            Ok(v) if v == Isa::Avx512Bf16.name() => Isa::Avx512Bf16,
            Ok(v) => {
                return Err(Error::invalid(
                    "bf16",
                    format!("{ISA_ENV}={v:?} is not one of \"amx\", \"avx512-bf16\""),
                ))
            }
        };
        if cap == Isa::Amx && support.amx.is_ok() {
            return Ok(Isa::Amx);
        }
        if support.avx512_bf16.is_ok() {
            return Ok(Isa::Avx512Bf16);
        }
        Err(Error::missing_cpu_feature(
            "bf16",
            format!(
                "bf16 products need AMX (amx_tile, amx_bf16) or AVX512-BF16 (avx512_bf16), \
                 and this machine has neither: AMX: {}; AVX512-BF16: {}",
                reason(&support.amx),
                reason(&support.avx512_bf16)
            ),
        ))
    }

    /// Every instruction set this process can run, fastest first (ignores the cap).
    pub fn available() -> Vec<Isa> {
        [Isa::Amx, Isa::Avx512Bf16]
            .into_iter()
            .filter(|isa| isa.check().is_ok())
            .collect()
    }

    /// Ok when this process can run `self`, else the reason it cannot.
    pub fn check(self) -> Result<()> {
        let support = support();
        let status = match self {
            Isa::Amx => &support.amx,
            Isa::Avx512Bf16 => &support.avx512_bf16,
        };
        status.clone().map_err(|why| {
            Error::missing_cpu_feature("bf16", format!("{} is not available: {why}", self.name()))
        })
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn reason(status: &std::result::Result<(), String>) -> &str {
    status.as_ref().err().map_or("available", String::as_str)
}

/// What was found, with the reason for each instruction set that is missing.
struct Support {
    amx: std::result::Result<(), String>,
    avx512_bf16: std::result::Result<(), String>,
}

fn support() -> &'static Support {
    static SUPPORT: OnceLock<Support> = OnceLock::new();
    SUPPORT.get_or_init(|| {
        let avx512_bf16 = avx512_bf16();
        // The AMX path packs its operands with AVX512-BF16 conversions.
        let amx = amx().and_then(|()| {
            avx512_bf16
                .clone()
                .map_err(|why| format!("its operand packing needs avx512_bf16 ({why})"))
        });
        Support { amx, avx512_bf16 }
    })
}

#[cfg(target_arch = "x86_64")]
fn avx512_bf16() -> std::result::Result<(), String> {
    let missing: Vec<&str> = [
        ("avx512f", is_x86_feature_detected!("avx512f")),
        ("avx512bw", is_x86_feature_detected!("avx512bw")),
        ("avx512vl", is_x86_feature_detected!("avx512vl")),
        ("avx512_bf16", is_x86_feature_detected!("avx512bf16")),
    ]
    .into_iter()
    .filter_map(|(name, present)| (!present).then_some(name))
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("the CPU lacks {}", missing.join(", ")))
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512_bf16() -> std::result::Result<(), String> {
    Err("not an x86-64 CPU".into())
}

#[cfg(target_arch = "x86_64")]
fn amx() -> std::result::Result<(), String> {
    use std::arch::x86_64::{__cpuid, __cpuid_count, _xgetbv};

    // `is_x86_feature_detected!("amx-tile")` is still unstable: read CPUID ourselves.
    if __cpuid(0).eax < 7 {
        return Err("the CPU lacks amx_tile, amx_bf16 (no CPUID leaf 7)".into());
    }
    let edx = __cpuid_count(7, 0).edx;
    let missing: Vec<&str> = [("amx_bf16", 22), ("amx_tile", 24)]
        .into_iter()
        .filter_map(|(name, bit)| (edx & (1 << bit) == 0).then_some(name))
        .collect();
    if !missing.is_empty() {
        return Err(format!("the CPU lacks {}", missing.join(", ")));
    }
    // XGETBV exists when CPUID.1:ECX.OSXSAVE (bit 27) is set.
    if __cpuid(1).ecx & (1 << 27) == 0 {
        return Err("the operating system has not enabled XSAVE".into());
    }
    // SAFETY: OSXSAVE is set (checked above), so XGETBV is available and reading XCR0
    // (register 0) is always allowed.
    let xcr0 = unsafe { _xgetbv(0) };
    const XTILECFG_AND_XTILEDATA: u64 = (1 << 17) | (1 << 18);
    if xcr0 & XTILECFG_AND_XTILEDATA != XTILECFG_AND_XTILEDATA {
        return Err(
            "the operating system does not save the tile state (XCR0 bits 17-18 clear; \
             Linux 5.16 or newer is needed)"
                .into(),
        );
    }
    request_tile_permission()
}

#[cfg(not(target_arch = "x86_64"))]
fn amx() -> std::result::Result<(), String> {
    Err("not an x86-64 CPU".into())
}

/// Asks Linux for the AMX tile data state for this process (all its threads, present and
/// future). Called once, from [`support`]'s `OnceLock`, so concurrent first uses wait for
/// the one request.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_permission() -> std::result::Result<(), String> {
    // From the kernel's arch/x86/include/uapi/asm/prctl.h and asm/fpu/types.h.
    const ARCH_GET_XCOMP_PERM: libc::c_long = 0x1022;
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with these codes only reads its integer arguments and updates
    // the process's permitted xfeatures; no memory is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        )
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        return Err(format!(
            "Linux refused the tile state (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA): \
             {err})"
        ));
    }
    let mut permitted: u64 = 0;
    // SAFETY: ARCH_GET_XCOMP_PERM writes one u64 bitmask to the address given, which
    // points at `permitted`, alive and writable for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_GET_XCOMP_PERM,
            &mut permitted as *mut u64,
        )
    };
    if rc != 0 || permitted & (1 << XFEATURE_XTILEDATA) == 0 {
        return Err("Linux did not grant the tile state (ARCH_GET_XCOMP_PERM)".into());
    }
    Ok(())
}

/// Other systems that enable the tile state in XCR0 hand it to every process.
#[cfg(all(target_arch = "x86_64", not(target_os = "linux")))]
fn request_tile_permission() -> std::result::Result<(), String> {
    Ok(())
}
