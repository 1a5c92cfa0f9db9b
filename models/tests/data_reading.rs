//! Reading CIFAR-10 from folders and archives, and every error a user can hit.

mod data_support;

use std::path::Path;

use data_support::*;
use models::data::{ensure_dataset, locate, Cifar10, DataError, DatasetSource, Split, CLASSES};

fn check_small(data: &Cifar10) {
    let train = expected_train();
    assert_eq!(data.train.len(), 12);
    assert_eq!(data.train.images.len(), 12 * 3072);
    for (i, (label, px)) in train.iter().enumerate() {
        assert_eq!(data.train.labels[i], *label, "train label {i}");
        assert_eq!(data.train.image(i), px.as_slice(), "train image {i}");
    }
    let test = expected_test();
    assert_eq!(data.test.len(), 5);
    for (i, (label, px)) in test.iter().enumerate() {
        assert_eq!(data.test.labels[i], *label);
        assert_eq!(data.test.image(i), px.as_slice());
    }
    assert_eq!(data.class_names, CLASSES);
}

fn message(result: Result<Cifar10, DataError>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn reads_the_unpacked_folder_itself() {
    let tmp = tempfile::tempdir().unwrap();
    write_files(tmp.path(), &small_dataset());
    check_small(&Cifar10::load(tmp.path()).unwrap());
}

#[test]
fn reads_a_folder_holding_cifar_10_batches_bin() {
    let tmp = tempfile::tempdir().unwrap();
    write_files(&tmp.path().join("cifar-10-batches-bin"), &small_dataset());
    assert_eq!(
        locate(tmp.path()).unwrap(),
        DatasetSource::Folder(tmp.path().join("cifar-10-batches-bin"))
    );
    check_small(&Cifar10::load(tmp.path()).unwrap());
}

#[test]
fn streams_the_archive_and_a_folder_holding_it() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("cifar-10-binary.tar.gz");
    std::fs::write(&archive, tar_gz(&small_dataset(), "cifar-10-batches-bin/")).unwrap();
    check_small(&Cifar10::load(&archive).unwrap());
    check_small(&Cifar10::load(tmp.path()).unwrap());
    // Nothing was unpacked next to it.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn an_archive_failing_the_gzip_check_is_refused() {
    // Stored (uncompressed) deflate blocks: a flipped pixel byte still decodes, and only
    // gzip's CRC-32 over the whole stream — what `gzip -t` checks — can tell.
    let files = small_dataset();
    let intact = tar_gz_with(&files, "cifar-10-batches-bin/", flate2::Compression::none());
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("cifar-10-binary.tar.gz");
    std::fs::write(&archive, &intact).unwrap();
    check_small(&Cifar10::load(&archive).unwrap());

    let first_image = &files[0].1[1..3073];
    let at = intact
        .windows(first_image.len())
        .position(|w| w == first_image)
        .expect("stored blocks hold the pixels as they are");
    let n = intact.len();
    // A pixel of the first image; the CRC-32; the length; the trailer cut short.
    let damaged: Vec<Vec<u8>> = vec![
        flip(&intact, at + 100),
        flip(&intact, n - 7),
        flip(&intact, n - 2),
        intact[..n - 3].to_vec(),
    ];
    for (i, bytes) in damaged.into_iter().enumerate() {
        std::fs::write(&archive, bytes).unwrap();
        let err = Cifar10::load(&archive).unwrap_err();
        assert!(
            matches!(err, DataError::CorruptArchive { .. }),
            "case {i}: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("cifar-10-binary.tar.gz") && msg.contains("CRC-32"),
            "case {i}: {msg}"
        );
    }
}

fn flip(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    bytes[at] ^= 0x10;
    bytes
}

#[test]
fn archive_members_in_any_order_still_give_batches_1_to_5() {
    let mut files = small_dataset();
    files.reverse();
    files.swap(1, 4);
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("x.tar.gz");
    std::fs::write(&archive, tar_gz(&files, "./cifar-10-batches-bin/")).unwrap();
    check_small(&Cifar10::load(&archive).unwrap());
}

#[test]
fn class_names_default_without_meta_file_and_come_from_it_when_present() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = small_dataset();
    files.pop();
    write_files(tmp.path(), &files);
    assert_eq!(Cifar10::load(tmp.path()).unwrap().class_names, CLASSES);

    let renamed: String = (0..10).map(|i| format!("c{i}\n")).collect();
    std::fs::write(tmp.path().join("batches.meta.txt"), renamed).unwrap();
    let names = Cifar10::load(tmp.path()).unwrap().class_names;
    assert_eq!(names[0], "c0");
    assert_eq!(names[9], "c9");
}

#[test]
fn split_helpers() {
    let mut split = Split {
        images: (0..4 * 3072).map(|i| (i / 3072) as u8).collect(),
        labels: vec![3, 3, 7, 0],
    };
    assert_eq!(split.len(), 4);
    assert!(!split.is_empty());
    assert!(split.image(2).iter().all(|&b| b == 2));
    let mut counts = [0; 10];
    counts[3] = 2;
    counts[7] = 1;
    counts[0] = 1;
    assert_eq!(split.class_counts(), counts);
    split.truncate(10);
    assert_eq!(split.len(), 4);
    split.truncate(1);
    assert_eq!(split.len(), 1);
    assert_eq!(split.images.len(), 3072);
    split.truncate(0);
    assert!(split.is_empty() && split.images.is_empty());
}

#[test]
fn missing_path_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("nowhere");
    let msg = message(Cifar10::load(&path));
    assert!(
        msg.contains("nowhere") && msg.contains("no such file"),
        "{msg}"
    );
}

#[test]
fn empty_folder_lists_what_was_looked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Cifar10::load(tmp.path()).unwrap_err();
    assert!(matches!(err, DataError::NoDataset { .. }), "{err:?}");
    let msg = err.to_string();
    for wanted in [
        "data_batch_1.bin",
        "test_batch.bin",
        "cifar-10-batches-bin",
        "cifar-10-binary.tar.gz",
        "--data",
        "CIFAR10_PATH",
    ] {
        assert!(msg.contains(wanted), "{wanted} not in: {msg}");
    }
}

#[test]
fn missing_batch_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let files: Vec<_> = small_dataset()
        .into_iter()
        .filter(|(n, _)| n != "data_batch_3.bin" && n != "test_batch.bin")
        .collect();
    write_files(tmp.path(), &files);
    let msg = message(Cifar10::load(tmp.path()));
    assert!(
        msg.contains("data_batch_3.bin") && msg.contains("test_batch.bin"),
        "{msg}"
    );
    assert!(!msg.contains("data_batch_2.bin,"), "{msg}");
}

#[test]
fn truncated_file_reports_name_and_size() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = small_dataset();
    files[2].1.truncate(3073 + 100); // data_batch_3.bin
    write_files(tmp.path(), &files);
    let msg = message(Cifar10::load(tmp.path()));
    assert!(msg.contains("data_batch_3.bin"), "{msg}");
    assert!(msg.contains("3173 bytes"), "{msg}");
    assert!(msg.contains("3073"), "{msg}");
}

#[test]
fn empty_batch_file_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = small_dataset();
    files[5].1.clear();
    write_files(tmp.path(), &files);
    let msg = message(Cifar10::load(tmp.path()));
    assert!(
        msg.contains("test_batch.bin") && msg.contains("no records"),
        "{msg}"
    );
}

#[test]
fn label_above_9_reports_file_and_record() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = small_dataset();
    files[1].1[RECORD] = 10; // record 1 of data_batch_2.bin
    write_files(tmp.path(), &files);
    let msg = message(Cifar10::load(tmp.path()));
    assert!(msg.contains("data_batch_2.bin"), "{msg}");
    assert!(
        msg.contains("record 1 ") && msg.contains("label 10"),
        "{msg}"
    );

    // Same check through the archive.
    let archive = tmp.path().join("bad.tar.gz");
    std::fs::write(&archive, tar_gz(&files, "cifar-10-batches-bin/")).unwrap();
    let msg = message(Cifar10::load(&archive));
    assert!(
        msg.contains("bad.tar.gz") && msg.contains("data_batch_2.bin") && msg.contains("record 1 "),
        "{msg}"
    );
}

#[test]
fn truncated_member_inside_archive_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = small_dataset();
    files[0].1.pop();
    let archive = tmp.path().join("a.tar.gz");
    std::fs::write(&archive, tar_gz(&files, "cifar-10-batches-bin/")).unwrap();
    let msg = message(Cifar10::load(&archive));
    assert!(
        msg.contains("data_batch_1.bin") && msg.contains("9218 bytes"),
        "{msg}"
    );
}

#[test]
fn non_gzip_archive_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("cifar-10-binary.tar.gz");
    std::fs::write(&archive, b"<html>Not Found</html>").unwrap();
    let err = Cifar10::load(&archive).unwrap_err();
    assert!(matches!(err, DataError::NotGzip { .. }), "{err:?}");
    assert!(err.to_string().contains("not a gzip archive"), "{err}");

    std::fs::write(&archive, b"").unwrap();
    let msg = message(Cifar10::load(tmp.path()));
    assert!(msg.contains("empty"), "{msg}");
}

#[test]
fn corrupt_gzip_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tar_gz(&small_dataset(), "cifar-10-batches-bin/");

    // Cut short.
    let archive = tmp.path().join("cut.tar.gz");
    std::fs::write(&archive, &good[..good.len() / 2]).unwrap();
    let err = Cifar10::load(&archive).unwrap_err();
    assert!(
        matches!(err, DataError::CorruptArchive { .. }),
        "cut archive: {err:?}"
    );
    assert!(err.to_string().contains("cut.tar.gz"), "{err}");

    // Garbage after a valid gzip header.
    let mut garbage = good[..10].to_vec();
    garbage.extend((0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    std::fs::write(&archive, &garbage).unwrap();
    let err = Cifar10::load(&archive).unwrap_err();
    assert!(
        matches!(err, DataError::CorruptArchive { .. }),
        "garbage archive: {err:?}"
    );
}

#[test]
fn archive_without_expected_members_lists_them() {
    let tmp = tempfile::tempdir().unwrap();
    let files: Vec<_> = small_dataset()
        .into_iter()
        .filter(|(n, _)| n != "data_batch_5.bin")
        .collect();
    let archive = tmp.path().join("a.tar.gz");
    std::fs::write(&archive, tar_gz(&files, "cifar-10-batches-bin/")).unwrap();
    let msg = message(Cifar10::load(&archive));
    assert!(
        msg.contains("cifar-10-batches-bin/data_batch_5.bin"),
        "{msg}"
    );
    assert!(!msg.contains("data_batch_4.bin,"), "{msg}");

    let unrelated = vec![("readme.txt".to_string(), b"hello".to_vec())];
    std::fs::write(&archive, tar_gz(&unrelated, "")).unwrap();
    let msg = message(Cifar10::load(&archive));
    assert!(
        msg.contains("data_batch_1.bin") && msg.contains("test_batch.bin"),
        "{msg}"
    );
}

#[test]
fn meta_file_with_wrong_count_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = small_dataset();
    files[6].1 = b"a\nb\nc\n".to_vec();
    write_files(tmp.path(), &files);
    let msg = message(Cifar10::load(tmp.path()));
    assert!(
        msg.contains("batches.meta.txt") && msg.contains("3 class names"),
        "{msg}"
    );
}

#[test]
fn unpacked_folder_wins_over_archive_next_to_it() {
    let tmp = tempfile::tempdir().unwrap();
    write_files(&tmp.path().join("cifar-10-batches-bin"), &small_dataset());
    std::fs::write(tmp.path().join("cifar-10-binary.tar.gz"), b"junk").unwrap();
    check_small(&Cifar10::load(tmp.path()).unwrap());
}

#[test]
fn a_record_file_larger_than_cifar_10_can_be_is_refused_before_reading() {
    let tmp = tempfile::tempdir().unwrap();
    write_files(tmp.path(), &small_dataset());
    // Sparse: the size is what counts, not the bytes.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(tmp.path().join("data_batch_2.bin"))
        .unwrap();
    file.set_len(200_000 * 3073).unwrap();
    let msg = message(Cifar10::load(tmp.path()));
    assert!(
        msg.contains("data_batch_2.bin") && msg.contains("more than a CIFAR-10 record file holds"),
        "{msg}"
    );
}

#[test]
fn ensure_dataset_loads_present_data_and_never_downloads_without_permission() {
    let tmp = tempfile::tempdir().unwrap();
    write_files(tmp.path(), &small_dataset());
    check_small(&ensure_dataset(tmp.path(), false, false).unwrap());

    let empty = tempfile::tempdir().unwrap();
    let err = ensure_dataset(empty.path(), false, false).unwrap_err();
    assert!(matches!(err, DataError::NoDataset { .. }), "{err:?}");
    let missing = empty.path().join("absent");
    let err = ensure_dataset(&missing, false, false).unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
    assert!(!missing.exists());
}

#[test]
fn damaged_data_is_reported_not_downloaded_over() {
    // With download allowed, a truncated file must still be an error (and no network
    // access is attempted, which this offline test machine would turn into a failure
    // with a different message).
    let tmp = tempfile::tempdir().unwrap();
    let mut files = small_dataset();
    files[0].1.truncate(10);
    write_files(tmp.path(), &files);
    let err = ensure_dataset(tmp.path(), true, false).unwrap_err();
    assert!(matches!(err, DataError::Truncated { .. }), "{err:?}");
}

#[test]
fn a_missing_archive_path_is_not_turned_into_a_download_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("cifar-10-binary.tar.gz");
    let err = ensure_dataset(&path, true, false).unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
    assert!(!Path::new(&path).exists());
}
