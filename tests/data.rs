//! Dataset readers on the real CIFAR-10 and MNIST files.

mod common;

use std::path::Path;

use common::data_dir;
use runner::data::{load, ReadRequest};
use runner::spec::DataSpec;

fn spec(kind: &str, root: &str) -> DataSpec {
    DataSpec {
        kind: kind.into(),
        root: root.into(),
        ..DataSpec::default()
    }
}

#[test]
fn cifar10_folder_counts_and_histograms() {
    let splits = load(&spec("cifar10_folder", "cifar10-jpg"), &data_dir(), 0).unwrap();
    assert_eq!(splits.train.len(), 50_000);
    assert_eq!(splits.test.len(), 10_000);
    assert_eq!(splits.train.class_counts(), vec![5_000; 10]);
    assert_eq!(splits.test.class_counts(), vec![1_000; 10]);
    assert_eq!(splits.train.image_shape(), [3, 32, 32]);
    assert_eq!(splits.train.classes[0], "airplane");
    assert_eq!(splits.train.classes[9], "truck");
    let (mean, std) = splits.train.channel_stats();
    // CIFAR-10's training-set channel means are about 0.49, 0.48, 0.45.
    for (channel, expected) in [0.491, 0.482, 0.447].iter().enumerate() {
        assert!((mean[channel] - expected).abs() < 0.01, "mean {mean:?}");
        assert!(std[channel] > 0.2, "std {std:?}");
        assert!(std[channel] < 0.3, "std {std:?}");
    }
}

#[test]
fn mnist_counts_and_histograms() {
    let splits = load(&spec("mnist", "mnist"), &data_dir(), 0).unwrap();
    assert_eq!(splits.train.len(), 60_000);
    assert_eq!(splits.test.len(), 10_000);
    assert_eq!(
        splits.train.class_counts(),
        vec![5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        splits.test.class_counts(),
        vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    assert_eq!(splits.train.image_shape(), [1, 28, 28]);
}

#[test]
fn image_folder_limit_and_subsets() {
    let mut data = spec("image_folder", "cifar10-jpg");
    data.train_limit = 500;
    data.test_limit = 100;
    let splits = load(&data, &data_dir(), 3).unwrap();
    assert_eq!(splits.train.len(), 500);
    assert_eq!(splits.test.len(), 100);
    assert_eq!(splits.train.classes.len(), 10);

    let again = load(&data, &data_dir(), 3).unwrap();
    assert!(
        splits.train.images.equal(&again.train.images),
        "same seed, same subset"
    );

    let labelled = splits.train.labelled_subset(5, 1);
    assert_eq!(labelled.class_counts(), vec![5; 10]);
    let all = splits.train.labelled_subset(0, 1);
    assert_eq!(all.len(), 500);
}

#[test]
fn missing_root_names_paths_and_fix() {
    let data = spec("cifar10_bin", "cifar-10-batches-bin");
    let error = load(&data, Path::new("/nonexistent/data"), 0)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("/nonexistent/data/cifar-10-batches-bin"),
        "{error}"
    );
    assert!(error.contains("RUNNER_DATA_DIR"), "{error}");
    assert!(error.contains("cifar-10-binary.tar.gz"), "{error}");
}

#[test]
fn cifar10_bin_reads_records() {
    let dir = tempfile::tempdir().unwrap();
    let record = |label: u8, value: u8| {
        let mut bytes = vec![label];
        bytes.extend(std::iter::repeat_n(value, 3072));
        bytes
    };
    for index in 1..=5u8 {
        let mut content = record(index, index * 10);
        content.extend(record(0, 1));
        std::fs::write(dir.path().join(format!("data_batch_{index}.bin")), content).unwrap();
    }
    std::fs::write(dir.path().join("test_batch.bin"), record(9, 200)).unwrap();
    let data = spec("cifar10_bin", dir.path().to_str().unwrap());
    let request_root = dir.path();
    let splits = load(&data, request_root, 0).unwrap();
    assert_eq!(splits.train.len(), 10);
    assert_eq!(splits.test.len(), 1);
    assert_eq!(
        splits.train.class_counts(),
        vec![5, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    );
    assert_eq!(splits.test.images.int64_value(&[0, 2, 31, 31]), 200);
    let _ = ReadRequest {
        root: request_root,
        spec: &data,
        seed: 0,
    };
}
