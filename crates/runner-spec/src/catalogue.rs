//! Names and one-line docs of every component, by kind. This module does not touch
//! libtorch, so `runner list`, `runner validate` and the spec checks run in the front-end
//! binary without loading it. The `registry` module of the `runner` crate pairs each name
//! with its builder, and a test there keeps the two in step.

/// One component: its name in specs and a one-line description.
pub struct Component {
    pub name: &'static str,
    pub doc: &'static str,
}

/// The components of one kind.
pub struct Catalogue {
    /// Kind name as shown by `runner list` and in errors.
    pub kind: &'static str,
    pub components: &'static [Component],
}

impl Catalogue {
    pub fn contains(&self, name: &str) -> bool {
        self.components
            .iter()
            .any(|component| component.name == name)
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.components
            .iter()
            .map(|component| component.name)
            .collect()
    }

    /// Builds the error message and hint for an unknown component `name`.
    pub fn unknown(&self, name: &str) -> (String, String) {
        let names = self.names();
        let message = format!("unknown {} `{name}`", self.kind);
        let hint = match crate::spec::origin::closest(name, names.iter().copied()) {
            Some(suggestion) => format!("did you mean `{suggestion}`? valid: {}", names.join(", ")),
            None => format!("valid {} names: {}", self.kind, names.join(", ")),
        };
        (message, hint)
    }
}

const fn component(name: &'static str, doc: &'static str) -> Component {
    Component { name, doc }
}

pub static DATASETS: Catalogue = Catalogue {
    kind: "dataset",
    components: &[
        component(
            "cifar10_folder",
            "CIFAR-10 as an image-folder tree: root/<split>/<class>/*.jpg, 32x32 RGB",
        ),
        component(
            "cifar10_bin",
            "CIFAR-10 in the official binary format (cifar-10-batches-bin)",
        ),
        component(
            "mnist",
            "MNIST in the IDX format, gzip-compressed or raw (train-*, t10k-*)",
        ),
        component(
            "image_folder",
            "any image-folder tree root/<split>/<class>/*.{jpg,jpeg,png}",
        ),
    ],
};

pub static BLOCKS: Catalogue = Catalogue {
    kind: "block",
    components: &[
        component(
            "conv",
            "convolutions of size `kernel`, each with batch norm and ReLU, then pooling",
        ),
        component(
            "nin",
            "network-in-network: one `kernel` convolution then 1x1 convolutions, then pooling",
        ),
    ],
};

pub static POOLS: Catalogue = Catalogue {
    kind: "pool",
    components: &[
        component(
            "max",
            "max pooling with pool_kernel, pool_stride, pool_padding",
        ),
        component(
            "avg",
            "average pooling with pool_kernel, pool_stride, pool_padding",
        ),
        component("none", "no pooling"),
    ],
};

pub static PRETEXTS: Catalogue = Catalogue {
    kind: "pretext task",
    components: &[component(
        "rotation",
        "predict the rotation (from `angles`) applied to each image; all angles in each batch",
    )],
};

pub static OPTIMIZERS: Catalogue = Catalogue {
    kind: "optimizer",
    components: &[
        component("sgd", "SGD with `momentum`, `nesterov` and `weight_decay`"),
        component("adam", "Adam with L2 `weight_decay`; `momentum` sets beta1"),
        component(
            "adamw",
            "AdamW with decoupled `weight_decay`; `momentum` sets beta1",
        ),
    ],
};

pub static SCHEDULES: Catalogue = Catalogue {
    kind: "schedule",
    components: &[
        component(
            "constant",
            "the peak learning rate throughout (after any warm-up)",
        ),
        component("step", "multiply by `gamma` at each epoch in `milestones`"),
        component(
            "cosine",
            "half-cosine decay from the peak to 0 over the stage",
        ),
    ],
};

pub static PROTOCOLS: Catalogue = Catalogue {
    kind: "eval protocol",
    components: &[
        component(
            "linear_probe",
            "frozen backbone; a linear classifier on the pooled output of each of `blocks`",
        ),
        component(
            "frozen_finetune",
            "blocks up to `frozen_until` frozen; later blocks re-initialised and trained \
             with a linear classifier",
        ),
    ],
};

pub static BASELINES: Catalogue = Catalogue {
    kind: "baseline",
    components: &[
        component(
            "random_init",
            "the same protocol on an untrained, randomly initialised backbone",
        ),
        component(
            "supervised",
            "the whole network trained end-to-end on the same labelled images",
        ),
    ],
};

/// Lists every kind, in the order `runner list` prints them.
pub fn all() -> [&'static Catalogue; 8] {
    [
        &DATASETS,
        &BLOCKS,
        &POOLS,
        &PRETEXTS,
        &OPTIMIZERS,
        &SCHEDULES,
        &PROTOCOLS,
        &BASELINES,
    ]
}
