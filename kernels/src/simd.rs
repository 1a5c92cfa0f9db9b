//! Loops compiled twice: for baseline x86-64, and for AVX-512 where the CPU has it.
//!
//! The memory-bound kernels (pooling, Winograd's transforms) are plain loops the compiler
//! vectorises; built for the baseline target they get 4-wide SSE at best.

/// Whether the CPU runs AVX-512. The crate is compiled for baseline x86-64, where plain
/// loops handle one or four elements per instruction; [`wide_loop`] compiles them a second
/// time for sixteen f32 lanes.
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

/// Defines `fn name<T>(wide: bool, args..) [-> R]` running `body` compiled for AVX-512 when
/// `wide` (the caller checked [`has_avx512`]), for baseline x86-64 otherwise. Each copy is a
/// function of its own, so its `&mut` slices keep their no-alias guarantee, which the loop
/// vectoriser needs.
macro_rules! wide_loop {
    ($(#[$attr:meta])* fn $name:ident<T: $bound:path>($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$attr])*
        fn $name<T: $bound>(wide: bool, $($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body<T: $bound>($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
            unsafe fn avx512<T: $bound>($($arg: $ty),*) $(-> $ret)? {
                body($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            if wide {
                // SAFETY: `wide` is only set where `has_avx512()` holds.
                return unsafe { avx512($($arg),*) };
            }
            let _ = wide;
            body($($arg),*)
        }
    };
}

pub(crate) use wide_loop;
