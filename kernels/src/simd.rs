//! Loops compiled three times: for AVX-512 where the CPU has it, for AVX2 with FMA (most
//! x86-64 CPUs since 2013 without AVX-512), and for baseline x86-64.
//!
//! The memory-bound kernels (pooling, Winograd's transforms) are plain loops the compiler
//! vectorises; built for the baseline target they get 4-wide SSE at best, and an explicit
//! `mul_add` (GELU's polynomials) becomes a call into libm.

/// Whether the CPU runs AVX-512. The crate is compiled for baseline x86-64, where plain
/// loops handle one or four elements per instruction; [`wide_loop`] compiles them again
/// for sixteen f32 lanes (and for eight, with AVX2).
pub(crate) fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the CPU runs AVX2 and FMA (checked once by std, then a cached load).
#[inline]
pub(crate) fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `fn name<T>(wide: bool, args..) [-> R]` running `body` compiled for AVX-512 when
/// `wide` (the caller checked [`has_avx512`]); otherwise for AVX2 and FMA where the CPU has
/// them, for baseline x86-64 where it does not. Each copy is a function of its own, so its
/// `&mut` slices keep their no-alias guarantee, which the loop vectoriser needs. The copies
/// give the same bits: none of them fuses a multiply and an add unless the body asks
/// (`mul_add`, correctly rounded in all three).
macro_rules! wide_loop {
    ($(#[$attr:meta])* $vis:vis fn $name:ident<T: $bound:path>($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$attr])*
        $vis fn $name<T: $bound>(wide: bool, $($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body<T: $bound>($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
            unsafe fn avx512<T: $bound>($($arg: $ty),*) $(-> $ret)? {
                body($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2<T: $bound>($($arg: $ty),*) $(-> $ret)? {
                body($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            if wide {
                // SAFETY: `wide` is only set where `has_avx512()` holds.
                return unsafe { avx512($($arg),*) };
            }
            #[cfg(target_arch = "x86_64")]
            if $crate::simd::has_avx2_fma() {
                // SAFETY: the CPU runs AVX2 and FMA, checked on the line above.
                return unsafe { avx2($($arg),*) };
            }
            let _ = wide;
            body($($arg),*)
        }
    };
}

pub(crate) use wide_loop;
