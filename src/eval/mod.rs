//! Evaluation protocols of the learned features, and their baselines.
//!
//! Each protocol runs as its own stages after the pretext stage, once on the pretrained
//! backbone and once per requested baseline. `random_init` runs the same protocol on an
//! untrained backbone, and `supervised` trains the whole network end-to-end on the same
//! labels.

pub mod frozen_finetune;
pub mod linear_probe;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tch::Device;

use crate::data::augment::Augmenter;
use crate::data::Splits;
use crate::error::{Error, Result};
use crate::logging::progress::ProgressMode;
use crate::models::{checksums, Network};
use crate::registry;
use crate::spec::{EvalSpec, Spec};
use crate::train::objectives::ImageObjective;
use crate::train::{fit, Stage};

/// Source of the backbone weights of an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// Weights learned by the pretext task.
    Pretrained,
    /// Untrained weights (the `random_init` baseline).
    RandomInit,
}

impl Init {
    pub fn name(self) -> &'static str {
        match self {
            Init::Pretrained => "pretrained",
            Init::RandomInit => "random_init",
        }
    }
}

/// One row of the results: a protocol's test accuracy for one block and initialisation.
#[derive(Debug, Clone, Serialize)]
pub struct EvalResult {
    pub protocol: String,
    /// Stage name of the evaluation entry (its `name`, or the protocol).
    pub eval: String,
    /// Probed block, or the last frozen block for `frozen_finetune`.
    pub block: String,
    /// Labelled training images per class (0: all).
    pub labels_per_class: usize,
    /// `pretrained`, `random_init` or `supervised`.
    pub init: String,
    pub test_accuracy: f64,
    pub seconds: f64,
    /// Stage folder, relative to the run folder.
    pub stage_dir: String,
}

/// Run state shared by every protocol: spec, data, device and the pretrained checkpoint.
pub struct EvalContext<'a> {
    pub spec: &'a Spec,
    pub run_dir: &'a Path,
    pub splits: &'a Splits,
    pub augmenter: &'a Augmenter,
    pub device: Device,
    pub progress: ProgressMode,
    /// Variables of the pretext stage's checkpoint, by name.
    pub pretrained: &'a crate::models::Checkpoint,
    /// Supervised baselines already trained in this run, by labels per class and training
    /// settings, so two protocols with the same labels share one.
    pub supervised_done: RefCell<HashMap<String, SupervisedResult>>,
}

impl EvalContext<'_> {
    pub fn in_channels(&self) -> i64 {
        self.splits.train.image_shape()[0]
    }

    pub fn classes(&self) -> i64 {
        self.splits.train.classes.len() as i64
    }

    pub fn block_index(&self, name: &str) -> usize {
        self.spec
            .model
            .blocks
            .iter()
            .position(|block| block.name == name)
            .expect("block names are checked when the spec is loaded")
    }

    /// Builds a stage description for `eval` in folder `parts` under the evaluation folder.
    pub fn stage<'b>(&self, eval: &'b EvalSpec, index: usize, parts: &[&str]) -> Stage<'b> {
        let mut dir = self.run_dir.join(eval.stage_name());
        let mut name = eval.stage_name().to_string();
        for part in parts {
            dir.push(part);
            name = format!("{name}/{part}");
        }
        Stage {
            name,
            dir,
            train: &eval.train,
            lr_key: format!("eval.{index}.train.lr"),
            progress: self.progress,
            device: self.device,
            seed: self.spec.experiment.seed,
        }
    }
}

/// Runs evaluation entry `index` of the spec with its baselines.
pub fn run_eval(ctx: &EvalContext, index: usize) -> Result<Vec<EvalResult>> {
    let eval = &ctx.spec.eval[index];
    let protocol = registry::PROTOCOLS
        .get(&eval.protocol)
        .expect("protocol names are checked when the spec is loaded");
    let mut results = (protocol.build)(ctx, index, Init::Pretrained)?;
    for baseline in &eval.baselines {
        match baseline.as_str() {
            "random_init" => results.extend((protocol.build)(ctx, index, Init::RandomInit)?),
            "supervised" => {
                let done = supervised(ctx, index)?;
                let rows: Vec<EvalResult> = results
                    .iter()
                    .filter(|row| row.init == Init::Pretrained.name())
                    .map(|row| EvalResult {
                        init: "supervised".into(),
                        test_accuracy: done.test_accuracy,
                        seconds: done.seconds,
                        stage_dir: done.stage_dir.clone(),
                        ..row.clone()
                    })
                    .collect();
                results.extend(rows);
            }
            other => unreachable!("baseline `{other}` passed the spec check"),
        }
    }
    Ok(results)
}

/// Figures of a supervised baseline stage.
#[derive(Debug, Clone)]
pub struct SupervisedResult {
    pub test_accuracy: f64,
    pub seconds: f64,
    /// Stage folder, relative to the run folder.
    pub stage_dir: String,
}

/// Trains the whole network end-to-end on the labelled subset of evaluation `index`. When
/// an earlier evaluation with the same labels and settings already trained it, its result
/// is returned instead.
fn supervised(ctx: &EvalContext, index: usize) -> Result<SupervisedResult> {
    let eval = &ctx.spec.eval[index];
    let key = format!("{}:{:?}", eval.labels_per_class, eval.train);
    if let Some(done) = ctx.supervised_done.borrow().get(&key) {
        return Ok(done.clone());
    }
    tch::manual_seed(ctx.spec.experiment.seed as i64);
    let network = Network::trainable(
        &ctx.spec.model,
        ctx.in_channels(),
        ctx.classes(),
        ctx.device,
        ctx.spec.device.channels_last,
    );

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
    let stage = ctx.stage(eval, index, &["supervised"]);
    let summary = fit(&stage, &network.trainable_store, &mut objective)?;
    let done = SupervisedResult {
        test_accuracy: summary.test_accuracy,
        seconds: summary.seconds,
        stage_dir: format!("{}/supervised", eval.stage_name()),
    };
    ctx.supervised_done.borrow_mut().insert(key, done.clone());
    Ok(done)
}

/// Fails when any variable of the frozen store changed during `stage`.
pub fn ensure_unchanged(
    stage: &str,
    before: &std::collections::BTreeMap<String, f64>,
    network: &Network,
) -> Result<()> {
    let after = checksums(&network.frozen_store);
    for (name, value) in before {
        if after.get(name) != Some(value) {
            return Err(Error::data(
                PathBuf::from(stage),
                format!("frozen variable `{name}` changed during the stage"),
            ));
        }
    }
    Ok(())
}
