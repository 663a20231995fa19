//! The training loop shared by every stage.
//!
//! A stage's [`Objective`] owns the maths (inputs, loss, accuracy); [`fit`] owns time: the
//! epoch and step loop, learning-rate schedule, the finite-loss check, TensorBoard scalars,
//! progress and checkpoints.

pub mod objectives;
pub mod optim;
pub mod schedule;

use std::path::PathBuf;
use std::time::Instant;

use tch::{nn, Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::logging::events::EventWriter;
use crate::logging::progress::{EpochProgress, ProgressMode};
use crate::registry;
use crate::spec::TrainSpec;
use schedule::{learning_rate, Position};

/// Loss and accuracy counts of one training batch.
pub struct BatchLoss {
    /// Scalar loss to minimise.
    pub loss: Tensor,
    /// Correct predictions in the batch.
    pub correct: i64,
    /// Predictions in the batch (inputs after any pretext expansion).
    pub count: i64,
}

/// The maths of a stage: its data, loss and accuracy.
pub trait Objective {
    /// Number of training examples in one epoch.
    fn train_len(&self) -> usize;

    /// Computes the loss on the training examples at `indices` (i64 `[batch]`).
    fn train_batch(&mut self, indices: &Tensor) -> Result<BatchLoss>;

    /// Measures accuracy on the test split, in [0, 1].
    fn test_accuracy(&mut self) -> Result<f64>;

    /// Writes the stage's checkpoint.
    fn save(&self, path: &std::path::Path) -> Result<()>;

    /// Writes images that show the stage's inputs, once before training.
    fn log_inputs(&mut self, _events: &mut EventWriter) -> Result<()> {
        Ok(())
    }
}

/// A stage's identity and settings.
pub struct Stage<'a> {
    /// Name shown in logs and the results table, such as `linear_probe/pretrained/conv2`.
    pub name: String,
    /// Folder of the stage's event file and checkpoint.
    pub dir: PathBuf,
    pub train: &'a TrainSpec,
    /// Spec key of the learning rate, named in the error for a diverging loss.
    pub lr_key: String,
    pub progress: ProgressMode,
    pub device: Device,
}

/// Figures of a finished stage.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StageSummary {
    pub stage: String,
    pub epochs: usize,
    pub steps: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub test_accuracy: f64,
    pub seconds: f64,
    /// Training inputs per second (after pretext expansion), over the whole stage.
    pub images_per_second: f64,
    /// Peak resident memory of the process so far, in MiB.
    pub peak_rss_mib: f64,
}

/// Number of optimiser steps in one epoch of `examples` with `batch_size`. The last partial
/// batch is dropped (batch norm needs more than one example), unless it is the only one.
pub fn steps_per_epoch(examples: usize, batch_size: usize) -> usize {
    (examples / batch_size.max(1)).max(1)
}

/// Trains `objective` with the optimiser that `stage.train` names over the variables of
/// `store`, writing scalars and checkpoints into `stage.dir`.
///
/// Scalars: `train/loss`, `train/accuracy` and `train/lr` every `log_every` steps (step =
/// optimiser steps so far); `epoch/train_loss`, `epoch/train_accuracy`,
/// `epoch/images_per_second` and `epoch/lr` (the rate of its last step) after each epoch,
/// and `epoch/test_accuracy` after the last
/// (step = epochs so far).
///
/// # Errors
///
/// [`Error::NonFiniteLoss`] when the loss becomes NaN or infinite; the checkpoint of the
/// last finished epoch and the event file stay on disk.
pub fn fit(
    stage: &Stage,
    store: &nn::VarStore,
    objective: &mut dyn Objective,
) -> Result<StageSummary> {
    let train = stage.train;
    let optimizer_entry = registry::OPTIMIZERS
        .get(&train.optimizer)
        .expect("optimizer names are checked when the spec is loaded");
    let mut optimizer = (optimizer_entry.build)(store, train)?;
    let mut events = EventWriter::create(&stage.dir)?;
    objective.log_inputs(&mut events)?;

    let examples = objective.train_len();
    let batch_size = train.batch_size.min(examples) as i64;
    let steps = steps_per_epoch(examples, batch_size as usize);
    let total_steps = steps * train.epochs;
    let checkpoint = stage.dir.join("checkpoint.safetensors");
    tracing::info!(
        "{}: {} epochs of {steps} steps, batch {batch_size}, {examples} examples",
        stage.name,
        train.epochs
    );

    let started = Instant::now();
    let mut inputs_seen = 0usize;
    let mut global_step = 0usize;
    let mut summary = StageSummary {
        stage: stage.name.clone(),
        epochs: train.epochs,
        steps: total_steps,
        train_loss: f64::NAN,
        train_accuracy: f64::NAN,
        test_accuracy: f64::NAN,
        seconds: 0.0,
        images_per_second: 0.0,
        peak_rss_mib: 0.0,
    };
    for epoch in 1..=train.epochs {
        let label = format!("{} epoch {epoch}/{}", stage.name, train.epochs);
        let mut progress = EpochProgress::new(stage.progress, label, steps);
        let order = Tensor::randperm(examples as i64, (Kind::Int64, Device::Cpu));
        let (mut loss_sum, mut correct, mut count) = (0.0, 0i64, 0i64);
        let mut lr = 0.0;
        for step in 0..steps {
            let position = Position {
                step: global_step,
                steps_per_epoch: steps,
                total_steps,
            };
            lr = learning_rate(train, position);
            optimizer.set_lr(lr);
            let indices = order.narrow(0, step as i64 * batch_size, batch_size);
            let batch = objective.train_batch(&indices)?;
            let loss = batch.loss.double_value(&[]);
            if !loss.is_finite() {
                return Err(Error::NonFiniteLoss {
                    stage: stage.name.clone(),
                    epoch,
                    step: global_step + 1,
                    value: loss,
                    lr_key: stage.lr_key.clone(),
                });
            }
            optimizer.backward_step(&batch.loss);
            global_step += 1;
            loss_sum += loss;
            correct += batch.correct;
            count += batch.count;
            inputs_seen += batch.count as usize;
            progress.step(step + 1, batch.count as usize, loss);
            if global_step.is_multiple_of(train.log_every) {
                let accuracy = batch.correct as f64 / batch.count.max(1) as f64;
                events.scalar("train/loss", loss, global_step as i64)?;
                events.scalar("train/accuracy", accuracy, global_step as i64)?;
                events.scalar("train/lr", lr, global_step as i64)?;
            }
        }
        progress.finish();
        summary.train_loss = loss_sum / steps as f64;
        summary.train_accuracy = correct as f64 / count.max(1) as f64;
        let rate = progress.images_per_second();
        events.scalar("epoch/train_loss", summary.train_loss, epoch as i64)?;
        events.scalar("epoch/train_accuracy", summary.train_accuracy, epoch as i64)?;
        events.scalar("epoch/images_per_second", rate, epoch as i64)?;
        events.scalar("epoch/lr", lr, epoch as i64)?;
        let mut line = format!(
            "{}: epoch {epoch}/{}: loss {:.4}, train accuracy {:.2} %, {rate:.0} images/s",
            stage.name,
            train.epochs,
            summary.train_loss,
            100.0 * summary.train_accuracy
        );
        if epoch == train.epochs {
            summary.test_accuracy = tch::no_grad(|| objective.test_accuracy())?;
            events.scalar("epoch/test_accuracy", summary.test_accuracy, epoch as i64)?;
            line.push_str(&format!(
                ", test accuracy {:.2} %",
                100.0 * summary.test_accuracy
            ));
        }
        objective.save(&checkpoint)?;
        events.flush()?;
        tracing::info!("{line}");
    }
    summary.seconds = started.elapsed().as_secs_f64();
    summary.images_per_second = inputs_seen as f64 / summary.seconds.max(1e-9);
    summary.peak_rss_mib = peak_rss_mib();
    tracing::info!(
        "{}: finished in {:.1} s, peak memory so far {:.0} MiB",
        stage.name,
        summary.seconds,
        summary.peak_rss_mib
    );
    Ok(summary)
}

/// Peak resident memory of this process, in MiB.
pub fn peak_rss_mib() -> f64 {
    // SAFETY: getrusage writes into the zero-initialised struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    usage.ru_maxrss as f64 / 1024.0
}

/// Accuracy of `logits` against `targets`: (correct, count).
pub fn count_correct(logits: &Tensor, targets: &Tensor) -> (i64, i64) {
    let correct = logits
        .argmax(-1, false)
        .eq_tensor(targets)
        .sum(Kind::Int64)
        .int64_value(&[]);
    (correct, targets.size()[0])
}

/// Computes accuracy in batches of `batch_size` over `count` examples, where `logits_of`
/// returns logits and targets for a range of examples.
pub fn batched_accuracy(
    count: usize,
    batch_size: usize,
    mut logits_of: impl FnMut(i64, i64) -> (Tensor, Tensor),
) -> f64 {
    let (mut correct, mut total) = (0i64, 0i64);
    let mut start = 0i64;
    while (start as usize) < count {
        let length = (batch_size as i64).min(count as i64 - start);
        let (logits, targets) = logits_of(start, length);
        let (batch_correct, batch_total) = count_correct(&logits, &targets);
        correct += batch_correct;
        total += batch_total;
        start += length;
    }
    correct as f64 / total.max(1) as f64
}
