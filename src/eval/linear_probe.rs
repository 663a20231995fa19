//! `linear_probe`: freeze the backbone, pool the output of a block, and train a linear
//! classifier on it. Features are computed once (evaluation mode, no augmentation), so
//! each probe trains on cached features in seconds.

use tch::{nn, Kind, Tensor};

use super::{ensure_unchanged, EvalContext, EvalResult, Init};
use crate::data::augment::Augmenter;
use crate::data::ImageSet;
use crate::error::Result;
use crate::models::{checksums, Head, Network, NetworkConfig};
use crate::train::fit;
use crate::train::objectives::{FeatureObjective, EVAL_BATCH};

/// Side of the adaptive average pooling before the probe, unless the spec sets `pool`.
pub const DEFAULT_POOL: i64 = 4;

/// Probes every block that evaluation `index` names (all blocks by default).
pub fn run(ctx: &EvalContext, index: usize, init: Init) -> Result<Vec<EvalResult>> {
    let eval = &ctx.spec.eval[index];
    let all_blocks: Vec<String> = ctx
        .spec
        .model
        .blocks
        .iter()
        .map(|b| b.name.clone())
        .collect();
    let names = eval.blocks.clone().unwrap_or(all_blocks);
    let mut indices: Vec<usize> = names.iter().map(|name| ctx.block_index(name)).collect();
    indices.sort_unstable();
    indices.dedup();
    let depth = indices.last().map_or(1, |last| last + 1);
    let pool = eval.pool.unwrap_or(DEFAULT_POOL);

    tch::manual_seed(ctx.spec.experiment.seed as i64);
    let config = NetworkConfig {
        model: &ctx.spec.model,
        in_channels: ctx.in_channels(),
        frozen_count: depth,
        depth,
        device: ctx.device,
        channels_last: ctx.spec.device.channels_last,
    };
    let mut network = Network::new(&config, |path, channels| {
        Head::global_pool_linear(path, channels, 1)
    });
    if init == Init::Pretrained {
        let frozen: Vec<&str> = ctx.spec.model.blocks[..depth]
            .iter()
            .map(|b| b.name.as_str())
            .collect();
        network.load_blocks(ctx.pretrained, &frozen)?;
    }
    let before = checksums(&network.frozen_store);

    let labelled = ctx
        .splits
        .train
        .labelled_subset(eval.labels_per_class, ctx.spec.experiment.seed);
    let train_labels = labelled.labels.to_device(ctx.device);
    let test_labels = ctx.splits.test.labels.to_device(ctx.device);

    // One block's features at a time, so that peak memory holds one feature matrix
    // (50,000 x 2,048 floats is 400 MB) instead of all of them.
    let mut results = Vec::new();
    for &block_index in &indices {
        let block = &ctx.spec.model.blocks[block_index].name;
        let train_features = pooled_features(&network, &labelled, ctx.augmenter, block_index, pool);
        let test_features =
            pooled_features(&network, &ctx.splits.test, ctx.augmenter, block_index, pool);
        tch::manual_seed(ctx.spec.experiment.seed as i64);
        let store = nn::VarStore::new(ctx.device);
        let features = train_features.size()[1];
        let channels = features / (pool * pool);
        let head = Head::probe(&(store.root() / "probe"), channels, pool, ctx.classes());
        let mut objective = FeatureObjective {
            head: &head,
            store: &store,
            train_features: &train_features,
            train_labels: &train_labels,
            test_features: &test_features,
            test_labels: &test_labels,
        };
        let stage = ctx.stage(eval, index, &[init.name(), block]);
        let summary = fit(&stage, &store, &mut objective)?;
        results.push(EvalResult {
            protocol: eval.protocol.clone(),
            eval: eval.stage_name().into(),
            block: block.clone(),
            labels_per_class: eval.labels_per_class,
            init: init.name().into(),
            test_accuracy: summary.test_accuracy,
            seconds: summary.seconds,
            stage_dir: format!("{}/{}/{block}", eval.stage_name(), init.name()),
        });
    }
    ensure_unchanged(eval.stage_name(), &before, &network)?;
    Ok(results)
}

/// Pooled features `[images, channels * pool * pool]` of block `block_index`.
fn pooled_features(
    network: &Network,
    set: &ImageSet,
    augmenter: &Augmenter,
    block_index: usize,
    pool: i64,
) -> Tensor {
    // The result is allocated once and filled batch by batch. Keeping one small tensor per
    // batch instead splits the large freed activation buffers in the heap, which took a
    // CIFAR-10 probe on conv1 from 0.6 GB to 2.5 GB of resident memory.
    let count = set.len() as i64;
    let mut output: Option<Tensor> = None;
    let mut start = 0i64;
    while start < count {
        let length = (EVAL_BATCH as i64).min(count - start);
        let inputs = augmenter.eval(&set.images.narrow(0, start, length));
        for features in network.features_at(&inputs, &[block_index]) {
            let pooled = features
                .adaptive_avg_pool2d([pool, pool])
                .flatten(1, -1)
                .to_kind(Kind::Float);
            let output = output.get_or_insert_with(|| {
                Tensor::zeros([count, pooled.size()[1]], (Kind::Float, pooled.device()))
            });
            output.narrow(0, start, length).copy_(&pooled);
        }
        start += length;
    }
    output.unwrap_or_else(|| Tensor::zeros([0, 0], (Kind::Float, tch::Device::Cpu)))
}
