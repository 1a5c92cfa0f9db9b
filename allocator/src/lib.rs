//! The global allocator of the binaries (`cli`, and the benches' `profile` and
//! `step_bench`, so that they time the allocator that trains): mimalloc, kept in one place.
//!
//! A binary that uses this crate gets mimalloc as its global allocator; it calls
//! [`keep_freed_memory`] as the first thing `main` does:
//!
//! ```no_run
//! // The first line of `main`:
//! allocator::keep_freed_memory();
//! ```
//!
//! The libraries (`kernels`, `autograd`, `models`) do not depend on this crate: whoever links
//! them picks the allocator.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A training step frees and re-allocates the same multi-megabyte activations and
/// gradients every step. Memory handed back to the OS comes back as fresh pages, one page
/// fault per 4 KiB (about 10,000 per step at batch 32, 56,000 at batch 128 with glibc's
/// malloc): keep it instead, and back large blocks with 2 MiB pages where the kernel
/// allows (fewer faults and TLB misses in the matrix products).
///
/// Call it before any other thread exists (first thing in `main`).
pub fn keep_freed_memory() {
    // Numbers of `mi_option_t` in mimalloc.h, the same in mimalloc 2.x and 3.x.
    const ALLOW_LARGE_OS_PAGES: i32 = 6;
    const PURGE_DELAY: i32 = 15;
    // SAFETY: plain option setters; the caller runs this before any other thread exists.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, -1);
        libmimalloc_sys::mi_option_set(ALLOW_LARGE_OS_PAGES, 1);
    }
}
