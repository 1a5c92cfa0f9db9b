//! The real CIFAR-10 archive from the shared data folder, if this machine has it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use models::data::{epoch_batches, Cifar10, LoaderConfig, Split, CLASSES};

fn archive() -> Option<PathBuf> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/cifar-10-binary.tar.gz");
    if path.is_file() {
        Some(path)
    } else {
        println!("skipped: {} is absent", path.display());
        None
    }
}

fn channel_means(split: &Split) -> [f64; 3] {
    let mut sums = [0u64; 3];
    for image in split.images.chunks_exact(3072) {
        for (c, plane) in image.chunks_exact(1024).enumerate() {
            sums[c] += plane.iter().map(|&v| v as u64).sum::<u64>();
        }
    }
    let n = (split.len() * 1024) as f64 * 255.0;
    sums.map(|s| s as f64 / n)
}

#[test]
fn real_archive_has_the_published_counts_and_statistics() {
    let Some(path) = archive() else { return };
    let start = Instant::now();
    let data = Cifar10::load(&path).unwrap();
    println!("loaded {} in {:.2?}", path.display(), start.elapsed());

    assert_eq!(data.train.len(), 50_000);
    assert_eq!(data.test.len(), 10_000);
    assert_eq!(data.train.images.len(), 50_000 * 3072);
    assert_eq!(data.train.class_counts(), [5_000; 10]);
    assert_eq!(data.test.class_counts(), [1_000; 10]);
    assert_eq!(data.class_names, CLASSES);

    let means = channel_means(&data.train);
    for (got, want) in means.iter().zip([0.4913, 0.4821, 0.4465]) {
        assert!((got - want).abs() < 5e-4, "channel means {means:?}");
    }

    // One epoch of the test split goes through the loader whole.
    let test = Arc::new(data.test);
    let batches = epoch_batches(Arc::clone(&test), &LoaderConfig::eval(1000), 0);
    assert_eq!(batches.len(), 10);
    let mut counts = [0usize; 10];
    for batch in batches {
        for label in batch.labels {
            counts[label as usize] += 1;
        }
    }
    assert_eq!(counts, [1_000; 10]);
}
