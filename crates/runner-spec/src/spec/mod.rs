//! The experiment spec: plain serde structs that mirror the TOML file.
//!
//! This is the first step of the pipeline (spec → run → stages). [`load`] reads and merges
//! the layers: defaults, the `extends` chain, the spec file, `RUNNER_*` variables and `--set`
//! overrides. `check` then validates values and component names against the registry.
//! Both report every problem of a spec in one [`SpecErrors`] with file, line and key path.
//! Nothing here touches libtorch.

mod check;
mod load;
pub mod origin;

use serde::{Deserialize, Serialize};

pub use load::{load, parse_value as parse_override_value, LoadOptions, LoadedSpec, ENV_PREFIX};
pub use origin::{SpecError, SpecErrors};

/// A complete experiment: every key the runner reads, with defaults filled in.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Path of a base spec whose values this one overrides, relative to this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    #[serde(default)]
    pub experiment: ExperimentSpec,
    #[serde(default)]
    pub data: DataSpec,
    #[serde(default)]
    pub model: ModelSpec,
    #[serde(default)]
    pub pretext: PretextSpec,
    /// Optimisation of the pretext stage.
    #[serde(default)]
    pub train: TrainSpec,
    /// Evaluation protocols, each run as its own stages after the pretext stage.
    #[serde(default)]
    pub eval: Vec<EvalSpec>,
    #[serde(default)]
    pub device: DeviceSpec,
    /// How the runs of a sweep are started: here, or as a Slurm job array.
    #[serde(default)]
    pub launcher: LauncherSpec,
    /// Hyperparameter sweep over the keys above (see [`crate::sweep`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<crate::sweep::SweepSpec>,
}

/// Name and seed of the experiment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExperimentSpec {
    /// Name of the experiment, used as the folder under the runs directory.
    pub name: String,
    /// Seed for weight initialisation, shuffling, augmentation and labelled subsets.
    pub seed: u64,
}

impl Default for ExperimentSpec {
    fn default() -> Self {
        Self {
            name: "experiment".into(),
            seed: 0,
        }
    }
}

/// The data set and its augmentations.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSpec {
    /// Dataset reader, a name from the `dataset` registry (`runner list`).
    pub kind: String,
    /// Folder of the data set. A relative path is resolved against the data directory
    /// (`--data-dir`, else `RUNNER_DATA_DIR`, else `./data`).
    pub root: String,
    /// Split used for training (a sub-folder for folder data sets).
    pub train_split: String,
    /// Split used to measure test accuracy.
    pub test_split: String,
    /// Use only the first N training images after a seeded shuffle (0: all).
    pub train_limit: usize,
    /// Use only the first N test images after a seeded shuffle (0: all).
    pub test_limit: usize,
    /// Side length in pixels that `image_folder` resizes every image to (0: keep the size
    /// of the files, which must then all be equal).
    pub image_size: u32,
    /// Threads that decode image files (0: all cores).
    pub decode_threads: usize,
    pub augment: AugmentSpec,
}

impl Default for DataSpec {
    fn default() -> Self {
        Self {
            kind: "cifar10_folder".into(),
            root: "cifar10-jpg".into(),
            train_split: "train".into(),
            test_split: "test".into(),
            train_limit: 0,
            test_limit: 0,
            image_size: 0,
            decode_threads: 0,
            augment: AugmentSpec::default(),
        }
    }
}

/// Augmentations applied to training batches on tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentSpec {
    /// Zero padding in pixels on each side before a random crop back to the input size
    /// (0: no crop).
    pub crop_padding: i64,
    /// Flip each image horizontally with probability 0.5.
    pub horizontal_flip: bool,
    /// Subtract the training set's per-channel mean and divide by its standard deviation.
    pub normalize: bool,
}

impl Default for AugmentSpec {
    fn default() -> Self {
        Self {
            crop_padding: 4,
            horizontal_flip: true,
            normalize: true,
        }
    }
}

/// The backbone: a sequence of named blocks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSpec {
    pub blocks: Vec<BlockSpec>,
}

impl Default for ModelSpec {
    fn default() -> Self {
        let block = |name: &str, channels: i64| BlockSpec {
            name: name.into(),
            channels: vec![channels],
            ..BlockSpec::default()
        };
        Self {
            blocks: vec![block("conv1", 32), block("conv2", 64), block("conv3", 128)],
        }
    }
}

/// One block of the backbone: convolutions, each followed by batch norm and ReLU, then
/// pooling.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlockSpec {
    /// Name used in frozen-layer lists, checkpoints and TensorBoard tags (`conv1`, ...).
    pub name: String,
    /// Block type, a name from the `block` registry.
    pub kind: String,
    /// Output channels of each convolution in the block, in order.
    pub channels: Vec<i64>,
    /// Kernel size of the first convolution (`conv` uses it for all of them, `nin` follows
    /// it with 1x1 convolutions).
    pub kernel: i64,
    pub batch_norm: bool,
    /// Pooling after the convolutions, a name from the `pool` registry.
    pub pool: String,
    pub pool_kernel: i64,
    pub pool_stride: i64,
    pub pool_padding: i64,
}

impl Default for BlockSpec {
    fn default() -> Self {
        Self {
            name: String::new(),
            kind: "conv".into(),
            channels: vec![64],
            kernel: 3,
            batch_norm: true,
            pool: "max".into(),
            pool_kernel: 2,
            pool_stride: 2,
            pool_padding: 0,
        }
    }
}

/// The self-supervised pretext task.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretextSpec {
    /// Pretext task, a name from the `pretext` registry.
    pub kind: String,
    /// Rotation angles in degrees, each a multiple of 90; the label of an image is the index
    /// of its angle in this list.
    pub angles: Vec<i64>,
    /// Checkpoint of an earlier pretext stage (`<run>/pretext/checkpoint.safetensors`) to
    /// evaluate instead of training a new one; the pretext stage is then skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

impl Default for PretextSpec {
    fn default() -> Self {
        Self {
            kind: "rotation".into(),
            angles: vec![0, 90, 180, 270],
            checkpoint: None,
        }
    }
}

/// Optimiser, schedule and length of one training stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSpec {
    /// Optimiser, a name from the `optimizer` registry.
    pub optimizer: String,
    /// Peak learning rate.
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    /// Images per batch before any pretext expansion (rotation turns B images into
    /// B × angles).
    pub batch_size: usize,
    pub epochs: usize,
    pub schedule: ScheduleSpec,
    /// Write per-step scalars every N optimiser steps.
    pub log_every: usize,
}

impl Default for TrainSpec {
    fn default() -> Self {
        Self {
            optimizer: "sgd".into(),
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
            batch_size: 128,
            epochs: 4,
            schedule: ScheduleSpec::default(),
            log_every: 10,
        }
    }
}

/// Learning-rate schedule over the steps of a stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleSpec {
    /// Schedule, a name from the `schedule` registry.
    pub kind: String,
    /// Epochs of linear warm-up from 0 to the peak rate (fractions allowed).
    pub warmup_epochs: f64,
    /// Epochs at which `step` multiplies the rate by `gamma`.
    pub milestones: Vec<usize>,
    pub gamma: f64,
}

impl Default for ScheduleSpec {
    fn default() -> Self {
        Self {
            kind: "cosine".into(),
            warmup_epochs: 0.0,
            milestones: Vec::new(),
            gamma: 0.1,
        }
    }
}

/// One evaluation protocol and its baselines.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSpec {
    /// Protocol, a name from the `eval` registry.
    pub protocol: String,
    /// Name of the stage folder and TensorBoard run (default: the protocol).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `linear_probe`: blocks whose pooled output features are probed, one probe each.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocks: Option<Vec<String>>,
    /// `linear_probe`: side of the adaptive average pooling applied before the probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<i64>,
    /// `frozen_finetune`: the last frozen block. It and all blocks before it keep their
    /// pretrained weights and batch-norm statistics. The blocks after it are re-initialised
    /// and trained together with a linear classifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frozen_until: Option<String>,
    /// `frozen_finetune`: the last re-initialised block; later blocks are dropped (default:
    /// the last block of the model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retrain_until: Option<String>,
    /// Labelled training images per class (0: all labels).
    pub labels_per_class: usize,
    /// Baselines run with the same protocol, names from the `baseline` registry.
    pub baselines: Vec<String>,
    pub train: TrainSpec,
}

impl Default for EvalSpec {
    fn default() -> Self {
        Self {
            protocol: "linear_probe".into(),
            name: None,
            blocks: None,
            pool: None,
            frozen_until: None,
            retrain_until: None,
            labels_per_class: 0,
            baselines: vec!["random_init".into()],
            train: TrainSpec::default(),
        }
    }
}

impl EvalSpec {
    /// Name of the stage folder for this protocol.
    pub fn stage_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.protocol)
    }
}

/// Where tensors live and how many CPU threads libtorch uses.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceSpec {
    /// `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when available, else CPU).
    pub kind: String,
    /// libtorch intra-op threads (0: one per core).
    pub threads: usize,
    /// Feed the network channels-last (NHWC) tensors, so libtorch picks its channels-last
    /// convolution, batch-norm and pooling kernels. On 2 CPU cores this made the default
    /// pretext step about 1.3x faster (PyTorch 2.11, measured with `scripts/bench`).
    pub channels_last: bool,
}

impl Default for DeviceSpec {
    fn default() -> Self {
        Self {
            kind: "auto".into(),
            threads: 0,
            channels_last: true,
        }
    }
}

/// How the runs of a sweep are started. Every launcher feeds the sweep's on-disk queue to
/// `runner worker` processes (see `runner_spec::queue`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LauncherSpec {
    /// `local`: worker subprocesses on this machine; `slurm`: a Slurm job array (`sbatch`).
    pub kind: String,
    /// Runs at a time. `local` splits the cores between them; `slurm` throttles the array
    /// to this many tasks (0: no limit).
    pub jobs: usize,
    pub slurm: SlurmSpec,
}

impl Default for LauncherSpec {
    fn default() -> Self {
        Self {
            kind: "local".into(),
            jobs: 1,
            slurm: SlurmSpec::default(),
        }
    }
}

/// Resources each Slurm array task requests. An empty value or 0 leaves Slurm's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmSpec {
    /// `--partition`.
    pub partition: String,
    /// `--time`, such as `2:00:00`.
    pub time: String,
    /// `--cpus-per-task`; also the libtorch threads of each worker.
    pub cpus_per_task: usize,
    /// `--gpus-per-task`.
    pub gpus: usize,
    /// Further `sbatch` options, such as `["--account=vision", "--mem=8G"]`.
    pub extra: Vec<String>,
}
