//! One table per component kind: name, one-line doc and builder. `runner list`, the spec
//! checks and "unknown component" errors all read these tables, so adding a component is
//! one function plus one row.

use tch::nn;
use tch::Tensor;

use crate::data::{self, ImageSet, ReadRequest};
use crate::error::Result;
use crate::eval::{self, EvalContext, EvalResult, Init};
use crate::models::{blocks, ConvLayer};
use crate::pretext::{rotation::Rotation, PretextTask};
use crate::spec::origin::closest;
use crate::spec::{BlockSpec, PretextSpec, TrainSpec};
use crate::train::{optim, schedule};

/// One component: its name in specs, a one-line description and its builder.
pub struct Entry<B> {
    pub name: &'static str,
    pub doc: &'static str,
    pub build: B,
}

/// The components of one kind.
pub struct Registry<B: 'static> {
    /// Kind name as shown by `runner list`.
    pub kind: &'static str,
    pub entries: &'static [Entry<B>],
}

impl<B> Registry<B> {
    pub fn get(&self, name: &str) -> Option<&Entry<B>> {
        self.entries.iter().find(|entry| entry.name == name)
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.entries.iter().map(|entry| entry.name).collect()
    }

    /// Error message and hint for an unknown component `name`.
    pub fn unknown(&self, name: &str) -> (String, String) {
        let names = self.names();
        let message = format!("unknown {} `{name}`", self.kind);
        let hint = match closest(name, names.iter().copied()) {
            Some(suggestion) => format!("did you mean `{suggestion}`? valid: {}", names.join(", ")),
            None => format!("valid {} names: {}", self.kind, names.join(", ")),
        };
        (message, hint)
    }
}

/// A dataset reader and the instructions shown when its files are missing.
pub struct DatasetReader {
    pub read: fn(&ReadRequest, &str, usize) -> Result<ImageSet>,
    pub how_to_get: &'static str,
}

pub static DATASETS: Registry<DatasetReader> = Registry {
    kind: "dataset",
    entries: &[
        Entry {
            name: "cifar10_folder",
            doc: "CIFAR-10 as an image-folder tree: root/<split>/<class>/*.jpg, 32x32 RGB",
            build: DatasetReader {
                read: data::folder::read_cifar10_folder,
                how_to_get: "It must contain train/ and test/, each with the 10 CIFAR-10 class \
                             folders of 32x32 images.",
            },
        },
        Entry {
            name: "cifar10_bin",
            doc: "CIFAR-10 in the official binary format (cifar-10-batches-bin)",
            build: DatasetReader {
                read: data::cifar_bin::read_cifar10_bin,
                how_to_get: "Download cifar-10-binary.tar.gz from \
                             https://www.cs.toronto.edu/~kriz/cifar.html (MD5 \
                             c32a1d4ab5d03f1284b67883e8d87530) and extract it there.",
            },
        },
        Entry {
            name: "mnist",
            doc: "MNIST in the IDX format, gzip-compressed or raw (train-*, t10k-*)",
            build: DatasetReader {
                read: data::mnist::read_mnist,
                how_to_get: "It must contain train-images-idx3-ubyte.gz, \
                             train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and \
                             t10k-labels-idx1-ubyte.gz from the official MNIST release.",
            },
        },
        Entry {
            name: "image_folder",
            doc: "any image-folder tree root/<split>/<class>/*.{jpg,jpeg,png}",
            build: DatasetReader {
                read: data::folder::read_image_folder,
                how_to_get: "It must contain one folder per split, each with one folder of \
                             images per class.",
            },
        },
    ],
};

type BlockBuilder = fn(&nn::Path, i64, &BlockSpec) -> Vec<ConvLayer>;

pub static BLOCKS: Registry<BlockBuilder> = Registry {
    kind: "block",
    entries: &[
        Entry {
            name: "conv",
            doc: "convolutions of size `kernel`, each with batch norm and ReLU, then pooling",
            build: blocks::conv_block,
        },
        Entry {
            name: "nin",
            doc: "network-in-network: one `kernel` convolution then 1x1 convolutions, then pooling",
            build: blocks::nin_block,
        },
    ],
};

type PoolFn = fn(&Tensor, &BlockSpec) -> Tensor;

pub static POOLS: Registry<PoolFn> = Registry {
    kind: "pool",
    entries: &[
        Entry {
            name: "max",
            doc: "max pooling with pool_kernel, pool_stride, pool_padding",
            build: blocks::max_pool,
        },
        Entry {
            name: "avg",
            doc: "average pooling with pool_kernel, pool_stride, pool_padding",
            build: blocks::avg_pool,
        },
        Entry {
            name: "none",
            doc: "no pooling",
            build: blocks::no_pool,
        },
    ],
};

type PretextBuilder = fn(&PretextSpec) -> Box<dyn PretextTask>;

pub static PRETEXTS: Registry<PretextBuilder> = Registry {
    kind: "pretext task",
    entries: &[Entry {
        name: "rotation",
        doc: "predict the rotation (from `angles`) applied to each image; all angles in each batch",
        build: |spec| Box::new(Rotation::new(spec)),
    }],
};

type OptimizerBuilder = fn(&nn::VarStore, &TrainSpec) -> Result<nn::Optimizer>;

pub static OPTIMIZERS: Registry<OptimizerBuilder> = Registry {
    kind: "optimizer",
    entries: &[
        Entry {
            name: "sgd",
            doc: "SGD with `momentum`, `nesterov` and `weight_decay`",
            build: optim::sgd,
        },
        Entry {
            name: "adam",
            doc: "Adam with L2 `weight_decay`; `momentum` sets beta1",
            build: optim::adam,
        },
        Entry {
            name: "adamw",
            doc: "AdamW with decoupled `weight_decay`; `momentum` sets beta1",
            build: optim::adamw,
        },
    ],
};

type ScheduleFn = fn(&TrainSpec, schedule::Position) -> f64;

pub static SCHEDULES: Registry<ScheduleFn> = Registry {
    kind: "schedule",
    entries: &[
        Entry {
            name: "constant",
            doc: "the peak learning rate throughout (after any warm-up)",
            build: schedule::constant,
        },
        Entry {
            name: "step",
            doc: "multiply by `gamma` at each epoch in `milestones`",
            build: schedule::step,
        },
        Entry {
            name: "cosine",
            doc: "half-cosine decay from the peak to 0 over the stage",
            build: schedule::cosine,
        },
    ],
};

type ProtocolFn = fn(&EvalContext, usize, Init) -> Result<Vec<EvalResult>>;

pub static PROTOCOLS: Registry<ProtocolFn> = Registry {
    kind: "eval protocol",
    entries: &[
        Entry {
            name: "linear_probe",
            doc: "frozen backbone; a linear classifier on the pooled output of each of `blocks`",
            build: eval::linear_probe::run,
        },
        Entry {
            name: "frozen_finetune",
            doc: "blocks up to `frozen_until` frozen; later blocks re-initialised and trained with a linear classifier",
            build: eval::frozen_finetune::run,
        },
    ],
};

pub static BASELINES: Registry<()> = Registry {
    kind: "baseline",
    entries: &[
        Entry {
            name: "random_init",
            doc: "the same protocol on an untrained, randomly initialised backbone",
            build: (),
        },
        Entry {
            name: "supervised",
            doc: "the whole network trained end-to-end on the same labelled images",
            build: (),
        },
    ],
};

/// Every table as (kind, [(name, doc)]), for `runner list`.
pub fn catalogue() -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
    fn rows<B>(registry: &Registry<B>) -> (&'static str, Vec<(&'static str, &'static str)>) {
        let rows = registry.entries.iter().map(|e| (e.name, e.doc)).collect();
        (registry.kind, rows)
    }
    vec![
        rows(&DATASETS),
        rows(&BLOCKS),
        rows(&POOLS),
        rows(&PRETEXTS),
        rows(&OPTIMIZERS),
        rows(&SCHEDULES),
        rows(&PROTOCOLS),
        rows(&BASELINES),
    ]
}
