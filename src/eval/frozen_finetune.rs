//! `frozen_finetune`: keep the blocks up to `frozen_until` frozen, re-initialise the blocks
//! after it up to `retrain_until` (dropping the rest), and train them with a linear
//! classifier on the labelled images. This is the semi-supervised protocol of Gidaris et
//! al., "Unsupervised Representation Learning by Predicting Image Rotations" (ICLR 2018).

use super::{ensure_unchanged, EvalContext, EvalResult, Init};
use crate::error::Result;
use crate::models::{checksums, Head, Network, NetworkConfig};
use crate::train::fit;
use crate::train::objectives::ImageObjective;

pub fn run(ctx: &EvalContext, index: usize, init: Init) -> Result<Vec<EvalResult>> {
    let eval = &ctx.spec.eval[index];
    let frozen_until = eval
        .frozen_until
        .as_deref()
        .expect("frozen_until is checked when the spec is loaded");
    let frozen_count = ctx.block_index(frozen_until) + 1;
    let depth = match &eval.retrain_until {
        Some(block) => ctx.block_index(block) + 1,
        None => ctx.spec.model.blocks.len(),
    };

    tch::manual_seed(ctx.spec.experiment.seed as i64);
    let config = NetworkConfig {
        model: &ctx.spec.model,
        in_channels: ctx.in_channels(),
        frozen_count,
        depth,
        device: ctx.device,
        channels_last: ctx.spec.device.channels_last,
    };
    let classes = ctx.classes();
    let mut network = Network::new(&config, |path, channels| {
        Head::global_pool_linear(path, channels, classes)
    });
    if init == Init::Pretrained {
        let frozen: Vec<&str> = ctx.spec.model.blocks[..frozen_count]
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
    let mut objective = ImageObjective {
        network: &network,
        train: &labelled,
        test: &ctx.splits.test,
        augmenter: ctx.augmenter,
        pretext: None,
        device: ctx.device,
    };
    let stage = ctx.stage(eval, index, &[init.name()]);
    let summary = fit(&stage, &network.trainable_store, &mut objective)?;
    ensure_unchanged(eval.stage_name(), &before, &network)?;
    Ok(vec![EvalResult {
        protocol: eval.protocol.clone(),
        eval: eval.stage_name().into(),
        block: frozen_until.into(),
        labels_per_class: eval.labels_per_class,
        init: init.name().into(),
        test_accuracy: summary.test_accuracy,
        seconds: summary.seconds,
        stage_dir: format!("{}/{}", eval.stage_name(), init.name()),
    }])
}
