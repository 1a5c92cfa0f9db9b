//! Bounded fuzzing, run in CI: mutated CIFAR-10 archives and record folders, and mutated
//! checkpoint files, must each give a value or an error — never a panic, an abort or an
//! allocation beyond [`LARGEST_ALLOCATION`]. Each test prints how many inputs it ran;
//! `CIFAR_RS_FUZZ_CASES=N` runs N per test instead of the default, for longer sessions.

mod checkpoint_support;
mod data_support;
mod fuzz_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use checkpoint_support::{progress, small_model};
use data_support::*;
use fuzz_support::{mutate, mutation};
use models::checkpoint::{
    load_model, load_training_state, save_checkpoint, Checkpoint, MODEL_FILE, TRAINING_STATE_FILE,
};
use models::data::Cifar10;
use proptest::prelude::*;

/// No single allocation may be larger: the readers must not trust what a header claims
/// (the inputs here are well under a megabyte).
const LARGEST_ALLOCATION: usize = 64 << 20;

/// The system allocator, remembering the largest request it was asked for.
struct Watched;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes straight to `System` with the same arguments; the only addition
// is an atomic maximum, which neither allocates nor touches the memory handed out.
unsafe impl GlobalAlloc for Watched {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: the caller's contract for `realloc` is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Watched = Watched;

/// [`fuzz_support::fuzz`], then the allocation bound, and how many inputs ran.
fn fuzz<S: Strategy>(what: &str, default: u32, strategy: S, check: impl Fn(S::Value)) {
    let inputs = fuzz_support::fuzz(default, strategy, check);
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest <= LARGEST_ALLOCATION,
        "{what}: an allocation of {largest} bytes"
    );
    eprintln!("fuzzed {what} with {inputs} mutated inputs (largest allocation {largest} bytes)");
}

#[test]
fn mutated_archives_load_or_fail_cleanly() {
    let files = small_dataset();
    // Stored blocks expose the tar headers to the mutations; compressed ones the deflate
    // stream.
    let seeds = [
        tar_gz_with(&files, "cifar-10-batches-bin/", flate2::Compression::none()),
        tar_gz(&files, "cifar-10-batches-bin/"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cifar-10-binary.tar.gz");
    fuzz(
        "the CIFAR-10 archive reader",
        1_000,
        (0..seeds.len(), mutation()),
        |(seed, edits)| {
            std::fs::write(&path, mutate(seeds[seed].clone(), edits)).unwrap();
            let _ = Cifar10::load(&path);
        },
    );
}

#[test]
fn a_member_claiming_a_huge_size_is_not_allocated_up_front() {
    // A tar header saying data_batch_1.bin holds 100,000 records (307 MB), followed by
    // a few kilobytes: the reader must not reserve what the header claims.
    let mut header = tar::Header::new_gnu();
    header
        .set_path("cifar-10-batches-bin/data_batch_1.bin")
        .unwrap();
    header.set_size(100_000 * 3073);
    header.set_mode(0o644);
    header.set_cksum();
    let mut tar = header.as_bytes().to_vec();
    tar.extend(std::iter::repeat_n(7u8, 8192));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("claims.tar.gz");
    std::fs::write(&path, gz.finish().unwrap()).unwrap();
    assert!(Cifar10::load(&path).is_err());
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest <= LARGEST_ALLOCATION,
        "an allocation of {largest} bytes"
    );
}

#[test]
fn mutated_record_folders_load_or_fail_cleanly() {
    let files = small_dataset();
    let dir = tempfile::tempdir().unwrap();
    fuzz(
        "the CIFAR-10 folder reader",
        1_000,
        (0..files.len(), mutation()),
        |(file, edits)| {
            let mut mutated = files.clone();
            mutated[file].1 = mutate(mutated[file].1.clone(), edits);
            write_files(dir.path(), &mutated);
            if let Ok(data) = Cifar10::load(dir.path()) {
                // Whatever loads keeps the split's invariant.
                assert_eq!(data.train.images.len(), data.train.len() * 3072);
            }
        },
    );
}

#[test]
fn mutated_checkpoints_load_or_fail_cleanly() {
    let seed_dir = tempfile::tempdir().unwrap();
    let (mut model, optimizer) = small_model(1);
    save_checkpoint(
        seed_dir.path(),
        &mut model,
        &optimizer,
        HashMap::new(),
        &progress(1),
    )
    .unwrap();
    let read = |name: &str| std::fs::read(seed_dir.path().join(name)).unwrap();
    let seeds = [read(MODEL_FILE), read(TRAINING_STATE_FILE)];

    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let load_all = |folder: &Path| {
        let (mut model, mut optimizer) = small_model(2);
        let _ = load_model(&mut model, &folder.join(MODEL_FILE));
        let _ = load_training_state(
            &folder.join(TRAINING_STATE_FILE),
            &mut model,
            &mut optimizer,
        );
        let _ = models::checkpoint::read_progress(&folder.join(TRAINING_STATE_FILE));
        if let Ok(checkpoint) = Checkpoint::open(folder) {
            let _ = checkpoint.restore(&mut model, &mut optimizer);
        }
    };
    fuzz(
        "the safetensors checkpoint loader",
        1_000,
        (0..seeds.len(), mutation()),
        |(which, edits)| {
            std::fs::write(path(MODEL_FILE), &seeds[0]).unwrap();
            std::fs::write(path(TRAINING_STATE_FILE), &seeds[1]).unwrap();
            let name = [MODEL_FILE, TRAINING_STATE_FILE][which];
            std::fs::write(path(name), mutate(seeds[which].clone(), edits)).unwrap();
            load_all(dir.path());
        },
    );
}
