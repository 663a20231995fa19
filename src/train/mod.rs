//! The training loop shared by every stage.
//!
//! A stage's [`Objective`] owns the maths (inputs, loss, accuracy); [`fit`] owns time: the
//! epoch and step loop, learning-rate schedule, the finite-loss check, TensorBoard scalars,
//! progress and checkpoints.

pub mod objectives;
pub mod optim;
pub mod schedule;

use std::path::{Path, PathBuf};
use std::time::Instant;

use tch::{nn, Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::logging::events::{remove_event_files, EventWriter};
use crate::logging::progress::{EpochProgress, ProgressMode};
use crate::models::{read_checkpoint, Checkpoint};
use crate::registry;
use crate::run::write_json;
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

    /// Returns the variables a checkpoint stores, by name.
    fn variables(&self) -> Vec<(String, Tensor)>;

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
    /// The experiment's seed; each epoch derives its own from it.
    pub seed: u64,
}

/// Figures of a finished stage.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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
/// and `epoch/test_accuracy` after the last (step = epochs so far).
///
/// # Resuming
///
/// After each epoch the stage's `checkpoint.safetensors` contains the variables of `store`,
/// the optimiser state and the position (epochs, steps, event-file length). Each epoch
/// draws its random numbers from a seed of its own, so a stage that finds a checkpoint in
/// its folder continues from it and ends with the same weights as one that never stopped.
/// The event file is cut back to the checkpoint's length, so every step appears once. A
/// stage whose folder holds `summary.json` is finished and returns that summary.
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
    let summary_path = stage.dir.join("summary.json");
    if summary_path.is_file() {
        tracing::info!(
            "{}: finished earlier, reading {}",
            stage.name,
            summary_path.display()
        );
        return read_summary(&summary_path);
    }
    let train = stage.train;
    let optimizer_entry = registry::OPTIMIZERS
        .get(&train.optimizer)
        .expect("optimizer names are checked when the spec is loaded");
    let mut optimizer = (optimizer_entry.build)(store, train)?;

    let examples = objective.train_len();
    let batch_size = train.batch_size.min(examples) as i64;
    let steps = steps_per_epoch(examples, batch_size as usize);
    let total_steps = steps * train.epochs;
    let checkpoint_path = stage.dir.join("checkpoint.safetensors");
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

    let (mut position, mut events) = if checkpoint_path.is_file() {
        let checkpoint = read_checkpoint(&checkpoint_path, stage.device)?;
        let position = TrainingState::read(&checkpoint)?;
        restore_variables(store, &checkpoint)?;
        optimizer.load_state(&checkpoint.tensors, &checkpoint_path.display().to_string())?;
        let events = EventWriter::reopen(
            &stage.dir.join(&position.events_file),
            position.events_length,
        )?;
        tracing::info!(
            "{}: resuming after epoch {}/{} (step {}) from {}",
            stage.name,
            position.epochs,
            train.epochs,
            position.steps,
            checkpoint_path.display()
        );
        summary.train_loss = position.train_loss;
        summary.train_accuracy = position.train_accuracy;
        summary.test_accuracy = position.test_accuracy;
        (position, events)
    } else {
        let mut events = EventWriter::create(&stage.dir)?;
        objective.log_inputs(&mut events)?;
        let events_file = events
            .path()
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        (TrainingState::start(events_file), events)
    };
    // An attempt that failed or was killed before its first checkpoint leaves an event
    // file whose steps this attempt writes again.
    remove_event_files(&stage.dir, Some(events.path()))?;
    if position.epochs == 0 {
        tracing::info!(
            "{}: {} epochs of {steps} steps, batch {batch_size}, {examples} examples",
            stage.name,
            train.epochs
        );
    }

    let resumed_at = Instant::now();
    let seconds_before = position.seconds;
    for epoch in position.epochs + 1..=train.epochs {
        tch::manual_seed(epoch_seed(stage.seed, &stage.name, epoch));
        let label = format!("{} epoch {epoch}/{}", stage.name, train.epochs);
        let mut progress = EpochProgress::new(stage.progress, label, steps);
        let order = Tensor::randperm(examples as i64, (Kind::Int64, Device::Cpu));
        let (mut loss_sum, mut correct, mut count) = (0.0, 0i64, 0i64);
        let mut lr = 0.0;
        for step in 0..steps {
            let at = Position {
                step: position.steps,
                steps_per_epoch: steps,
                total_steps,
            };
            lr = learning_rate(train, at);
            let indices = order.narrow(0, step as i64 * batch_size, batch_size);
            let batch = objective.train_batch(&indices)?;
            let loss = batch.loss.double_value(&[]);
            if !loss.is_finite() {
                return Err(Error::NonFiniteLoss {
                    stage: stage.name.clone(),
                    epoch,
                    step: position.steps + 1,
                    value: loss,
                    lr_key: stage.lr_key.clone(),
                });
            }
            optimizer.backward_step(&batch.loss, lr);
            position.steps += 1;
            loss_sum += loss;
            correct += batch.correct;
            count += batch.count;
            position.inputs_seen += batch.count as usize;
            progress.step(step + 1, batch.count as usize, loss);
            if position.steps.is_multiple_of(train.log_every) {
                let accuracy = batch.correct as f64 / batch.count.max(1) as f64;
                let global_step = position.steps as i64;
                events.scalar("train/loss", loss, global_step)?;
                events.scalar("train/accuracy", accuracy, global_step)?;
                events.scalar("train/lr", lr, global_step)?;
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
        position.epochs = epoch;
        position.events_length = events.flushed_length()?;
        position.seconds = seconds_before + resumed_at.elapsed().as_secs_f64();
        position.train_loss = summary.train_loss;
        position.train_accuracy = summary.train_accuracy;
        position.test_accuracy = summary.test_accuracy;
        let mut tensors = objective.variables();
        tensors.extend(optimizer.state());
        tensors.extend(position.tensors());
        write_checkpoint(&checkpoint_path, &tensors)?;
        tracing::info!("{line}");
    }
    summary.seconds = position.seconds;
    summary.images_per_second = position.inputs_seen as f64 / summary.seconds.max(1e-9);
    summary.peak_rss_mib = peak_rss_mib();
    write_json(&summary_path, &summary)?;
    tracing::info!(
        "{}: finished in {:.1} s, peak memory so far {:.0} MiB",
        stage.name,
        summary.seconds,
        summary.peak_rss_mib
    );
    Ok(summary)
}

/// Seed of the random numbers (batch order, augmentation) of one epoch of a stage.
fn epoch_seed(seed: u64, stage: &str, epoch: usize) -> i64 {
    // FNV-1a over the stage name keeps stages of one run on different streams.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in stage.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let mixed = hash ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (epoch as u64);
    (mixed >> 1) as i64
}

/// Position of a stage after its last finished epoch, stored in its checkpoint as
/// `state.*` tensors.
struct TrainingState {
    epochs: usize,
    steps: usize,
    inputs_seen: usize,
    /// Training time so far, in seconds.
    seconds: f64,
    events_file: String,
    events_length: u64,
    train_loss: f64,
    train_accuracy: f64,
    test_accuracy: f64,
}

impl TrainingState {
    fn start(events_file: String) -> Self {
        Self {
            epochs: 0,
            steps: 0,
            inputs_seen: 0,
            seconds: 0.0,
            events_file,
            events_length: 0,
            train_loss: f64::NAN,
            train_accuracy: f64::NAN,
            test_accuracy: f64::NAN,
        }
    }

    fn tensors(&self) -> Vec<(String, Tensor)> {
        let count = |value: usize| Tensor::from(value as i64);
        vec![
            ("state.epochs".into(), count(self.epochs)),
            ("state.steps".into(), count(self.steps)),
            ("state.inputs_seen".into(), count(self.inputs_seen)),
            ("state.seconds".into(), Tensor::from(self.seconds)),
            (
                "state.events_file".into(),
                Tensor::from_slice(self.events_file.as_bytes()),
            ),
            (
                "state.events_length".into(),
                Tensor::from(self.events_length as i64),
            ),
            ("state.train_loss".into(), Tensor::from(self.train_loss)),
            (
                "state.train_accuracy".into(),
                Tensor::from(self.train_accuracy),
            ),
            (
                "state.test_accuracy".into(),
                Tensor::from(self.test_accuracy),
            ),
        ]
    }

    fn read(checkpoint: &Checkpoint) -> Result<Self> {
        let get = |name: &str| {
            checkpoint.tensors.get(name).ok_or_else(|| {
                Error::data(
                    &checkpoint.path,
                    format!(
                        "`{name}` is missing, so training cannot resume from this checkpoint; \
                         remove the stage folder to train the stage again"
                    ),
                )
            })
        };
        let count = |name: &str| get(name).map(|tensor| tensor.int64_value(&[]).max(0) as usize);
        let real = |name: &str| get(name).map(|tensor| tensor.double_value(&[]));
        let name_bytes = Vec::<u8>::try_from(get("state.events_file")?).map_err(|error| {
            Error::data(&checkpoint.path, format!("`state.events_file`: {error}"))
        })?;
        Ok(Self {
            epochs: count("state.epochs")?,
            steps: count("state.steps")?,
            inputs_seen: count("state.inputs_seen")?,
            seconds: real("state.seconds")?,
            events_file: String::from_utf8_lossy(&name_bytes).into_owned(),
            events_length: count("state.events_length")? as u64,
            train_loss: real("state.train_loss")?,
            train_accuracy: real("state.train_accuracy")?,
            test_accuracy: real("state.test_accuracy")?,
        })
    }
}

/// Copies every variable of `store` from `checkpoint`.
fn restore_variables(store: &nn::VarStore, checkpoint: &Checkpoint) -> Result<()> {
    for (name, mut variable) in store.variables() {
        let saved = checkpoint
            .tensors
            .get(&name)
            .filter(|saved| saved.size() == variable.size());
        let Some(saved) = saved else {
            return Err(Error::data(
                &checkpoint.path,
                format!(
                    "variable `{name}` is missing or has another shape; the checkpoint was \
                     written for another model"
                ),
            ));
        };
        tch::no_grad(|| variable.copy_(saved));
    }
    Ok(())
}

/// Writes `tensors` as one safetensors file through a temporary file, synced to disk
/// before the rename, so a killed process leaves either the old or the new checkpoint.
pub fn write_checkpoint(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let temporary = path.with_extension("safetensors.tmp");
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(name, tensor)| (name.clone(), tensor.to_device(Device::Cpu)))
        .collect();
    Tensor::write_safetensors(&cpu, &temporary)?;
    std::fs::File::open(&temporary)
        .and_then(|file| file.sync_all())
        .map_err(|error| Error::io("sync", &temporary, error))?;
    std::fs::rename(&temporary, path).map_err(|error| Error::io("write", path, error))
}

fn read_summary(path: &Path) -> Result<StageSummary> {
    let text = std::fs::read_to_string(path).map_err(|error| Error::io("read", path, error))?;
    serde_json::from_str(&text).map_err(|error| {
        Error::data(
            path,
            format!("not a stage summary ({error}); remove it to train the stage again"),
        )
    })
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
