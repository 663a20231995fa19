//! Frozen means frozen: a stage leaves the parameters and batch-norm statistics of frozen
//! blocks unchanged, and changes the trainable ones.

use runner::data::augment::Augmenter;
use runner::data::image_set_from_bytes;
use runner::logging::progress::ProgressMode;
use runner::models::{checksums, Head, Network, NetworkConfig};
use runner::spec::{AugmentSpec, ModelSpec, TrainSpec};
use runner::train::objectives::ImageObjective;
use runner::train::{fit, Stage};
use tch::Device;

#[test]
fn frozen_blocks_keep_checksums() {
    tch::manual_seed(11);
    let pixels: Vec<u8> = (0..64 * 3 * 32 * 32)
        .map(|i| ((i * 7919) % 251) as u8)
        .collect();
    let labels: Vec<i64> = (0..64).map(|i| i % 10).collect();
    let classes: Vec<String> = (0..10).map(|c| c.to_string()).collect();
    let set = image_set_from_bytes(pixels, labels, [3, 32, 32], classes);
    let augmenter = Augmenter::new(&AugmentSpec::default(), &[0.5; 3], &[0.25; 3], Device::Cpu);

    let model = ModelSpec::default();
    let config = NetworkConfig {
        model: &model,
        in_channels: 3,
        frozen_count: 2,
        depth: 3,
        device: Device::Cpu,
        channels_last: true,
    };
    let network = Network::new(&config, |path, channels| {
        Head::global_pool_linear(path, channels, 10)
    });
    let frozen_before = checksums(&network.frozen_store);
    let trainable_before = checksums(&network.trainable_store);
    assert!(
        frozen_before
            .keys()
            .any(|name| name.ends_with("running_mean")),
        "{frozen_before:?}"
    );
    assert!(frozen_before
        .keys()
        .all(|name| name.starts_with("backbone.conv1.") || name.starts_with("backbone.conv2.")));

    let train = TrainSpec {
        batch_size: 16,
        epochs: 2,
        log_every: 1,
        ..TrainSpec::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let stage = Stage {
        name: "frozen".into(),
        dir: dir.path().join("frozen"),
        train: &train,
        lr_key: "train.lr".into(),
        progress: ProgressMode::Lines,
        device: Device::Cpu,
        seed: 0,
    };
    let mut objective = ImageObjective {
        network: &network,
        train: &set,
        test: &set,
        augmenter: &augmenter,
        pretext: None,
        device: Device::Cpu,
    };
    let summary = fit(&stage, &network.trainable_store, &mut objective).unwrap();
    assert_eq!(summary.steps, 8);

    assert_eq!(
        checksums(&network.frozen_store),
        frozen_before,
        "frozen variables changed"
    );
    let trainable_after = checksums(&network.trainable_store);
    for (name, before) in &trainable_before {
        if name.ends_with("num_batches_tracked") {
            continue;
        }
        assert_ne!(
            trainable_after[name], *before,
            "trainable `{name}` did not change"
        );
    }
    for (name, tensor) in network.frozen_store.variables() {
        assert!(!tensor.requires_grad(), "frozen `{name}` requires grad");
    }
}
