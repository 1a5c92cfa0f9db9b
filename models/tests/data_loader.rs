//! Batching: normalisation values, batch boundaries, shuffling determinism, augmentation
//! and clean shutdown of the worker threads.

use std::collections::HashSet;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use models::data::{
    epoch_batches, Augmentation, Batch, DataError, LoaderConfig, Normalization, Split,
};

const PLANE: usize = 1024;

/// `n` images whose first two red bytes encode the image index, the rest a pattern;
/// label = index % 10.
fn numbered_split(n: usize) -> Split {
    let mut images = Vec::with_capacity(n * 3072);
    for i in 0..n {
        let mut px: Vec<u8> = (0..3072).map(|j| ((j * 5 + i * 11) % 256) as u8).collect();
        px[0] = (i % 256) as u8;
        px[1] = (i / 256) as u8;
        images.extend(px);
    }
    Split {
        images,
        labels: (0..n).map(|i| (i % 10) as u8).collect(),
    }
}

/// Recovers the image index from a batch image normalised with `Normalization::IDENTITY`.
fn index_of(image: &[f32]) -> usize {
    let lo = (image[0] * 255.0).round() as usize;
    let hi = (image[1] * 255.0).round() as usize;
    hi * 256 + lo
}

fn config(batch_size: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size,
        normalization: Normalization::IDENTITY,
        ..LoaderConfig::default()
    }
}

fn all(split: &Arc<Split>, config: &LoaderConfig, epoch: u64) -> Vec<Batch> {
    epoch_batches(Arc::clone(split), config, epoch).collect()
}

fn order(batches: &[Batch]) -> Vec<usize> {
    batches
        .iter()
        .flat_map(|b| b.images.chunks_exact(3072).map(index_of))
        .collect()
}

#[test]
fn normalization_by_hand() {
    // One image: red all 255, green all 0, blue all 51.
    let mut px = vec![255u8; PLANE];
    px.extend(vec![0u8; PLANE]);
    px.extend(vec![51u8; PLANE]);
    let split = Arc::new(Split {
        images: px,
        labels: vec![7],
    });
    let notebook = LoaderConfig {
        batch_size: 1,
        ..LoaderConfig::default()
    };
    let b = epoch_batches(Arc::clone(&split), &notebook, 0)
        .next()
        .unwrap();
    assert_eq!(b.images.len(), 3072);
    assert_eq!(b.labels, vec![7u32]);
    assert!(b.images[..PLANE].iter().all(|&v| v == 1.0));
    assert!(b.images[PLANE..2 * PLANE].iter().all(|&v| v == -1.0));
    // 51/255 = 0.2; (0.2 - 0.5) / 0.5 = -0.6
    assert!(b.images[2 * PLANE..]
        .iter()
        .all(|&v| (v + 0.6).abs() < 1e-6));

    let stats = LoaderConfig {
        normalization: Normalization::CIFAR10,
        ..notebook
    };
    let b = epoch_batches(split, &stats, 0).next().unwrap();
    let red = (1.0 - 0.4913) / 0.2452; // 2.074633
    let green = -0.4821 / 0.2428; // -1.985585
    let blue = (0.2 - 0.4465) / 0.2606; // -0.945894
    assert!((b.images[5] - red).abs() < 1e-5, "{}", b.images[5]);
    assert!((b.images[PLANE + 5] - green).abs() < 1e-5);
    assert!((b.images[2 * PLANE + 5] - blue).abs() < 1e-5);
    assert_eq!(Normalization::NOTEBOOK.apply(0, 255), 1.0);
    assert_eq!(Normalization::NOTEBOOK.apply(2, 0), -1.0);
}

#[test]
fn nchw_layout_and_file_order_without_shuffle() {
    let split = Arc::new(numbered_split(5));
    let batches = all(
        &split,
        &LoaderConfig {
            shuffle: false,
            ..config(5)
        },
        3,
    );
    assert_eq!(batches.len(), 1);
    let b = &batches[0];
    for i in 0..5 {
        let image = &b.images[i * 3072..(i + 1) * 3072];
        let raw = split.image(i);
        for j in 0..3072 {
            assert_eq!(image[j], raw[j] as f32 / 255.0, "image {i}, element {j}");
        }
        assert_eq!(b.labels[i], (i % 10) as u32);
    }
}

#[test]
fn last_partial_batch_is_kept() {
    let split = Arc::new(numbered_split(10));
    let iter = epoch_batches(Arc::clone(&split), &config(4), 0);
    assert_eq!(iter.len(), 3);
    let sizes: Vec<usize> = iter.map(|b| b.len()).collect();
    assert_eq!(sizes, vec![4, 4, 2]);
    assert_eq!(config(4).num_batches(10), 3);
    assert_eq!(config(5).num_batches(10), 2);

    let mut iter = epoch_batches(split, &config(4), 0);
    iter.next();
    assert_eq!(iter.len(), 2);
}

#[test]
fn every_image_exactly_once_per_epoch_with_matching_labels() {
    let split = Arc::new(numbered_split(1003));
    for epoch in 0..3 {
        let batches = all(&split, &config(64), epoch);
        assert_eq!(batches.len(), 16);
        let seen = order(&batches);
        assert_eq!(seen.len(), 1003);
        assert_eq!(seen.iter().copied().collect::<HashSet<_>>().len(), 1003);
        let labels: Vec<u32> = batches.iter().flat_map(|b| b.labels.clone()).collect();
        for (idx, label) in seen.iter().zip(labels) {
            assert_eq!(label, (idx % 10) as u32);
        }
    }
}

#[test]
fn epochs_and_seeds_give_different_orders_and_shuffle_off_keeps_file_order() {
    let split = Arc::new(numbered_split(200));
    let e0 = order(&all(&split, &config(16), 0));
    let e1 = order(&all(&split, &config(16), 1));
    let other_seed = order(&all(
        &split,
        &LoaderConfig {
            seed: 9,
            ..config(16)
        },
        0,
    ));
    assert_ne!(e0, e1);
    assert_ne!(e0, other_seed);
    assert_ne!(e0, (0..200).collect::<Vec<_>>());

    let plain = LoaderConfig {
        shuffle: false,
        ..config(16)
    };
    for epoch in 0..2 {
        assert_eq!(
            order(&all(&split, &plain, epoch)),
            (0..200).collect::<Vec<_>>()
        );
    }
}

#[test]
fn same_seed_and_epoch_give_identical_batches_whatever_the_threading() {
    let split = Arc::new(numbered_split(300));
    let base = LoaderConfig {
        batch_size: 7,
        seed: 42,
        augmentation: Augmentation::STANDARD,
        normalization: Normalization::CIFAR10,
        workers: 0,
        ..LoaderConfig::default()
    };
    let reference = all(&split, &base, 5);
    for (workers, prefetch) in [(1, 1), (2, 4), (3, 0), (8, 2), (100, 100)] {
        let cfg = LoaderConfig {
            workers,
            prefetch,
            ..base.clone()
        };
        for _ in 0..2 {
            assert_eq!(all(&split, &cfg, 5), reference, "workers {workers}");
        }
    }
    assert_ne!(all(&split, &base, 6), reference);
}

/// Independent reference for crop-then-flip: build the zero-padded image explicitly,
/// cut the window, mirror it.
fn reference_transform(raw: &[u8], pad: usize, dy: usize, dx: usize, flip: bool) -> Vec<u8> {
    let side = 32 + 2 * pad;
    let mut out = Vec::with_capacity(3072);
    for c in 0..3 {
        let mut padded = vec![0u8; side * side];
        for y in 0..32 {
            for x in 0..32 {
                padded[(y + pad) * side + x + pad] = raw[c * PLANE + y * 32 + x];
            }
        }
        for y in 0..32 {
            let mut row: Vec<u8> = (0..32).map(|x| padded[(y + dy) * side + x + dx]).collect();
            if flip {
                row.reverse();
            }
            out.extend(row);
        }
    }
    out
}

fn as_bytes(image: &[f32]) -> Vec<u8> {
    image.iter().map(|v| (v * 255.0).round() as u8).collect()
}

#[test]
fn flip_gives_original_or_mirror_and_both_occur() {
    let split = Arc::new(numbered_split(64));
    let cfg = LoaderConfig {
        shuffle: false,
        augmentation: Augmentation {
            random_crop_padding: 0,
            horizontal_flip: true,
        },
        ..config(64)
    };
    let b = &all(&split, &cfg, 0)[0];
    let mut flipped = 0;
    for i in 0..64 {
        let got = as_bytes(&b.images[i * 3072..(i + 1) * 3072]);
        let raw = split.image(i);
        if got == reference_transform(raw, 0, 0, 0, true) {
            flipped += 1;
        } else {
            assert_eq!(got, raw, "image {i} is neither original nor mirrored");
        }
    }
    assert!((10..=54).contains(&flipped), "{flipped} of 64 flipped");
}

#[test]
fn crop_gives_a_padded_window_and_varies() {
    let split = Arc::new(numbered_split(40));
    let cfg = LoaderConfig {
        shuffle: false,
        augmentation: Augmentation::STANDARD,
        ..config(40)
    };
    let b = &all(&split, &cfg, 2)[0];
    let mut windows = HashSet::new();
    for i in 0..40 {
        let got = as_bytes(&b.images[i * 3072..(i + 1) * 3072]);
        let raw = split.image(i);
        let found = (0..=8)
            .flat_map(|dy| (0..=8).map(move |dx| (dy, dx)))
            .flat_map(|(dy, dx)| [(dy, dx, false), (dy, dx, true)])
            .find(|&(dy, dx, flip)| got == reference_transform(raw, 4, dy, dx, flip));
        let window = found.unwrap_or_else(|| panic!("image {i} is not a crop/flip of its source"));
        windows.insert(window);
    }
    assert!(
        windows.len() > 10,
        "only {} distinct transforms",
        windows.len()
    );
    // The label follows its image.
    assert_eq!(b.labels, (0..40).map(|i| i % 10).collect::<Vec<u32>>());
}

#[test]
fn augmentation_is_off_by_default() {
    assert_eq!(
        LoaderConfig::default().augmentation,
        Augmentation::default()
    );
    assert_eq!(Augmentation::default(), Augmentation::NONE);
    let split = Arc::new(numbered_split(20));
    let b = &all(
        &split,
        &LoaderConfig {
            shuffle: false,
            ..config(20)
        },
        0,
    )[0];
    for i in 0..20 {
        assert_eq!(
            as_bytes(&b.images[i * 3072..(i + 1) * 3072]),
            split.image(i)
        );
    }
}

#[test]
fn dropping_early_stops_the_workers() {
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let split = Arc::new(numbered_split(2000));
        for (workers, prefetch, take) in [(3, 1, 2), (2, 8, 0), (1, 1, 1), (4, 4, 30)] {
            let cfg = LoaderConfig {
                workers,
                prefetch,
                augmentation: Augmentation::STANDARD,
                ..config(8)
            };
            let mut iter = epoch_batches(Arc::clone(&split), &cfg, 0);
            for _ in 0..take {
                assert!(iter.next().is_some());
            }
            drop(iter);
        }
        done_tx.send(()).unwrap();
    });
    done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("dropping a half-used BatchIter hung or panicked");
}

#[test]
fn empty_split_and_more_workers_than_batches() {
    let empty = Arc::new(Split::default());
    assert_eq!(epoch_batches(empty, &config(4), 0).count(), 0);
    let split = Arc::new(numbered_split(3));
    let cfg = LoaderConfig {
        workers: 16,
        ..config(2)
    };
    assert_eq!(order(&all(&split, &cfg, 0)).len(), 3);
}

#[test]
fn invalid_configs_are_reported() {
    let zero = LoaderConfig {
        batch_size: 0,
        ..LoaderConfig::default()
    };
    let err = zero.validate().unwrap_err();
    assert!(matches!(err, DataError::InvalidConfig(_)));
    assert!(err.to_string().contains("batch_size"), "{err}");

    let bad_std = LoaderConfig {
        normalization: Normalization {
            mean: [0.5; 3],
            std: [0.5, 0.0, 0.5],
        },
        ..LoaderConfig::default()
    };
    assert!(bad_std.validate().is_err());
    assert!(LoaderConfig::default().validate().is_ok());
    assert!(LoaderConfig::eval(100).validate().is_ok());
    assert!(!LoaderConfig::eval(100).shuffle);
}
