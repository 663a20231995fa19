//! Builders of every component, one table per kind, keyed by the names in
//! [`crate::catalogue`]. Adding a component is one function, one row here and one row in
//! the catalogue. A test checks that both list the same names in the same order.

use tch::nn;
use tch::Tensor;

use crate::catalogue::{self, Catalogue};
use crate::data::{self, ImageSet, ReadRequest};
use crate::error::Result;
use crate::eval::{self, EvalContext, EvalResult, Init};
use crate::models::{blocks, ConvLayer};
use crate::pretext::{rotation::Rotation, PretextTask};
use crate::spec::{BlockSpec, PretextSpec, TrainSpec};
use crate::train::{optim, schedule};

/// One component's builder, by name.
pub struct Entry<B> {
    pub name: &'static str,
    pub build: B,
}

/// The builders of one kind, with the catalogue of their names and docs.
pub struct Registry<B: 'static> {
    pub catalogue: &'static Catalogue,
    pub entries: &'static [Entry<B>],
}

impl<B> Registry<B> {
    pub fn get(&self, name: &str) -> Option<&Entry<B>> {
        self.entries.iter().find(|entry| entry.name == name)
    }

    /// Builds the error message and hint for an unknown component `name`.
    pub fn unknown(&self, name: &str) -> (String, String) {
        self.catalogue.unknown(name)
    }
}

/// A dataset reader and the instructions shown when its files are missing.
pub struct DatasetReader {
    pub read: fn(&ReadRequest, &str, usize) -> Result<ImageSet>,
    pub how_to_get: &'static str,
}

pub static DATASETS: Registry<DatasetReader> = Registry {
    catalogue: &catalogue::DATASETS,
    entries: &[
        Entry {
            name: "cifar10_folder",
            build: DatasetReader {
                read: data::folder::read_cifar10_folder,
                how_to_get: "It must contain train/ and test/, each with the 10 CIFAR-10 class \
                             folders of 32x32 images.",
            },
        },
        Entry {
            name: "cifar10_bin",
            build: DatasetReader {
                read: data::cifar_bin::read_cifar10_bin,
                how_to_get: "Download cifar-10-binary.tar.gz from \
                             https://www.cs.toronto.edu/~kriz/cifar.html (MD5 \
                             c32a1d4ab5d03f1284b67883e8d87530) and extract it there.",
            },
        },
        Entry {
            name: "mnist",
            build: DatasetReader {
                read: data::mnist::read_mnist,
                how_to_get: "It must contain train-images-idx3-ubyte.gz, \
                             train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and \
                             t10k-labels-idx1-ubyte.gz from the official MNIST release.",
            },
        },
        Entry {
            name: "image_folder",
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
    catalogue: &catalogue::BLOCKS,
    entries: &[
        Entry {
            name: "conv",
            build: blocks::conv_block,
        },
        Entry {
            name: "nin",
            build: blocks::nin_block,
        },
    ],
};

type PoolFn = fn(&Tensor, &BlockSpec) -> Tensor;

pub static POOLS: Registry<PoolFn> = Registry {
    catalogue: &catalogue::POOLS,
    entries: &[
        Entry {
            name: "max",
            build: blocks::max_pool,
        },
        Entry {
            name: "avg",
            build: blocks::avg_pool,
        },
        Entry {
            name: "none",
            build: blocks::no_pool,
        },
    ],
};

type PretextBuilder = fn(&PretextSpec) -> Box<dyn PretextTask>;

pub static PRETEXTS: Registry<PretextBuilder> = Registry {
    catalogue: &catalogue::PRETEXTS,
    entries: &[Entry {
        name: "rotation",
        build: |spec| Box::new(Rotation::new(spec)),
    }],
};

type OptimizerBuilder = fn(&nn::VarStore, &TrainSpec) -> Result<optim::Optimizer>;

pub static OPTIMIZERS: Registry<OptimizerBuilder> = Registry {
    catalogue: &catalogue::OPTIMIZERS,
    entries: &[
        Entry {
            name: "sgd",
            build: optim::sgd,
        },
        Entry {
            name: "adam",
            build: optim::adam,
        },
        Entry {
            name: "adamw",
            build: optim::adamw,
        },
    ],
};

type ScheduleFn = fn(&TrainSpec, schedule::Position) -> f64;

pub static SCHEDULES: Registry<ScheduleFn> = Registry {
    catalogue: &catalogue::SCHEDULES,
    entries: &[
        Entry {
            name: "constant",
            build: schedule::constant,
        },
        Entry {
            name: "step",
            build: schedule::step,
        },
        Entry {
            name: "cosine",
            build: schedule::cosine,
        },
    ],
};

type ProtocolFn = fn(&EvalContext, usize, Init) -> Result<Vec<EvalResult>>;

pub static PROTOCOLS: Registry<ProtocolFn> = Registry {
    catalogue: &catalogue::PROTOCOLS,
    entries: &[
        Entry {
            name: "linear_probe",
            build: eval::linear_probe::run,
        },
        Entry {
            name: "frozen_finetune",
            build: eval::frozen_finetune::run,
        },
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    fn names<B>(registry: &Registry<B>) -> Vec<&'static str> {
        registry.entries.iter().map(|entry| entry.name).collect()
    }

    #[test]
    fn builders_match_catalogue() {
        let tables = [
            (names(&DATASETS), DATASETS.catalogue),
            (names(&BLOCKS), BLOCKS.catalogue),
            (names(&POOLS), POOLS.catalogue),
            (names(&PRETEXTS), PRETEXTS.catalogue),
            (names(&OPTIMIZERS), OPTIMIZERS.catalogue),
            (names(&SCHEDULES), SCHEDULES.catalogue),
            (names(&PROTOCOLS), PROTOCOLS.catalogue),
        ];
        for (builders, catalogue) in tables {
            assert_eq!(builders, catalogue.names(), "kind {}", catalogue.kind);
        }
    }
}
