//! Value checks that serde cannot express: ranges, component names from the registry, and
//! references between sections (a frozen block must exist in the model).

use std::collections::HashSet;

use super::{EvalSpec, Spec, TrainSpec};
use crate::catalogue::{self, Catalogue};

/// One failed check, located by its key path.
#[derive(Debug)]
pub(super) struct Problem {
    pub path: Vec<String>,
    pub message: String,
    pub hint: Option<String>,
}

/// Collects the problems of a spec that deserialised cleanly.
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn push(&mut self, path: &str, message: impl Into<String>, hint: Option<String>) {
        self.problems.push(Problem {
            path: path.split('.').map(String::from).collect(),
            message: message.into(),
            hint,
        });
    }

    fn require(&mut self, ok: bool, path: &str, message: impl Into<String>) {
        if !ok {
            self.push(path, message, None);
        }
    }

    fn component(&mut self, path: &str, table: &Catalogue, name: &str) {
        if !table.contains(name) {
            let (message, hint) = table.unknown(name);
            self.push(path, message, Some(hint));
        }
    }
}

/// Upper bound for thread counts, far above any machine this runs on, to catch typos.
const MAX_THREADS: usize = 4096;

/// Returns whether `name` can be used as one folder name. It must start with a letter or
/// digit (so it is never `.` or `..`) and contain only letters, digits, `_`, `-` and `.`.
fn is_folder_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|ch| ch.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'))
}

/// Checks every value of `spec`, returning all problems found.
pub(super) fn check(spec: &Spec) -> Vec<Problem> {
    let mut c = Checker {
        problems: Vec::new(),
    };

    let name = &spec.experiment.name;
    c.require(
        is_folder_name(name),
        "experiment.name",
        format!(
            "expected a name that starts with a letter or digit, followed by letters, digits, \
             `_`, `-` or `.`, found {name:?}"
        ),
    );

    check_data(&mut c, spec);
    let block_names = check_model(&mut c, spec);
    check_pretext(&mut c, spec);
    check_train(&mut c, "train", &spec.train);
    let mut stage_names = HashSet::new();
    for (index, eval) in spec.eval.iter().enumerate() {
        check_eval(&mut c, &format!("eval.{index}"), eval, &block_names);
        if !stage_names.insert(eval.stage_name().to_string()) {
            let message = format!(
                "two evaluations share the stage name `{}`",
                eval.stage_name()
            );
            let hint = Some("give one of them a distinct `name`".into());
            c.push(&format!("eval.{index}.name"), message, hint);
        }
    }
    check_device(&mut c, spec);
    check_launcher(&mut c, spec);
    c.problems
}

fn check_data(c: &mut Checker, spec: &Spec) {
    let data = &spec.data;
    c.component("data.kind", &catalogue::DATASETS, &data.kind);
    c.require(
        !data.root.is_empty(),
        "data.root",
        "expected a folder, found an empty string",
    );
    c.require(
        data.decode_threads <= MAX_THREADS,
        "data.decode_threads",
        format!(
            "expected at most {MAX_THREADS}, found {}",
            data.decode_threads
        ),
    );
    c.require(
        data.augment.crop_padding >= 0,
        "data.augment.crop_padding",
        format!(
            "expected 0 or more pixels, found {}",
            data.augment.crop_padding
        ),
    );
}

/// Checks the backbone and returns its block names in order.
fn check_model(c: &mut Checker, spec: &Spec) -> Vec<String> {
    let blocks = &spec.model.blocks;
    c.require(
        !blocks.is_empty(),
        "model.blocks",
        "expected at least one block, found none",
    );
    let mut names = Vec::new();
    for (index, block) in blocks.iter().enumerate() {
        let at = |key: &str| format!("model.blocks.{index}.{key}");
        let valid_name = !block.name.is_empty()
            && block
                .name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
        c.require(
            valid_name,
            &at("name"),
            format!(
                "expected a name of letters, digits or `_`, found {:?}",
                block.name
            ),
        );
        if names.contains(&block.name) {
            c.push(
                &at("name"),
                format!("block name `{}` is used twice", block.name),
                None,
            );
        }
        names.push(block.name.clone());
        c.component(&at("kind"), &catalogue::BLOCKS, &block.kind);
        c.require(
            !block.channels.is_empty(),
            &at("channels"),
            "expected at least one convolution",
        );
        for (layer, channels) in block.channels.iter().enumerate() {
            c.require(
                *channels > 0,
                &format!("model.blocks.{index}.channels.{layer}"),
                format!("expected a positive channel count, found {channels}"),
            );
        }
        c.require(
            block.kernel >= 1 && block.kernel % 2 == 1,
            &at("kernel"),
            format!(
                "expected an odd kernel size of 1 or more, found {}",
                block.kernel
            ),
        );
        c.component(&at("pool"), &catalogue::POOLS, &block.pool);
        c.require(
            block.pool_kernel >= 1,
            &at("pool_kernel"),
            format!("expected 1 or more, found {}", block.pool_kernel),
        );
        c.require(
            block.pool_stride >= 1,
            &at("pool_stride"),
            format!("expected 1 or more, found {}", block.pool_stride),
        );
        c.require(
            block.pool_padding >= 0 && block.pool_padding * 2 <= block.pool_kernel,
            &at("pool_padding"),
            format!(
                "expected 0 to half of pool_kernel ({}), found {}",
                block.pool_kernel / 2,
                block.pool_padding
            ),
        );
    }
    names
}

fn check_pretext(c: &mut Checker, spec: &Spec) {
    let pretext = &spec.pretext;
    if let Some(checkpoint) = &pretext.checkpoint {
        c.require(
            std::path::Path::new(checkpoint).is_file(),
            "pretext.checkpoint",
            format!("checkpoint file {checkpoint:?} not found"),
        );
    }
    c.component("pretext.kind", &catalogue::PRETEXTS, &pretext.kind);
    let angles = &pretext.angles;
    c.require(
        angles.len() >= 2,
        "pretext.angles",
        format!(
            "expected at least two angles to classify, found {}",
            angles.len()
        ),
    );
    let mut seen = HashSet::new();
    for (index, angle) in angles.iter().enumerate() {
        let path = format!("pretext.angles.{index}");
        c.require(
            (0..360).contains(angle) && angle % 90 == 0,
            &path,
            format!("expected one of 0, 90, 180, 270, found {angle}"),
        );
        if !seen.insert(angle) {
            c.push(&path, format!("angle {angle} appears twice"), None);
        }
    }
}

fn check_train(c: &mut Checker, prefix: &str, train: &TrainSpec) {
    let at = |key: &str| format!("{prefix}.{key}");
    c.component(&at("optimizer"), &catalogue::OPTIMIZERS, &train.optimizer);
    c.require(
        train.lr.is_finite() && train.lr > 0.0,
        &at("lr"),
        format!("expected a positive learning rate, found {}", train.lr),
    );
    c.require(
        (0.0..1.0).contains(&train.momentum),
        &at("momentum"),
        format!("expected a value in [0, 1), found {}", train.momentum),
    );
    if train.nesterov && train.momentum == 0.0 && train.optimizer == "sgd" {
        c.push(
            &at("nesterov"),
            "Nesterov momentum needs a non-zero momentum",
            Some(format!(
                "set `{prefix}.momentum` above 0 or `{prefix}.nesterov = false`"
            )),
        );
    }
    c.require(
        train.weight_decay.is_finite() && train.weight_decay >= 0.0,
        &at("weight_decay"),
        format!("expected 0 or more, found {}", train.weight_decay),
    );
    c.require(
        train.batch_size >= 2,
        &at("batch_size"),
        format!(
            "expected 2 or more images (batch norm needs two per batch), found {}",
            train.batch_size
        ),
    );
    c.require(
        train.epochs >= 1,
        &at("epochs"),
        format!("expected 1 or more epochs, found {}", train.epochs),
    );
    c.require(
        train.log_every >= 1,
        &at("log_every"),
        format!("expected 1 or more steps, found {}", train.log_every),
    );

    let schedule = &train.schedule;
    c.component(&at("schedule.kind"), &catalogue::SCHEDULES, &schedule.kind);
    c.require(
        schedule.warmup_epochs >= 0.0 && schedule.warmup_epochs < train.epochs.max(1) as f64,
        &at("schedule.warmup_epochs"),
        format!(
            "expected 0 or more and fewer than the {} epochs, found {}",
            train.epochs, schedule.warmup_epochs
        ),
    );
    c.require(
        schedule.gamma > 0.0 && schedule.gamma <= 1.0,
        &at("schedule.gamma"),
        format!("expected a factor in (0, 1], found {}", schedule.gamma),
    );
    let increasing = schedule.milestones.windows(2).all(|pair| pair[0] < pair[1]);
    let in_range = schedule
        .milestones
        .iter()
        .all(|&m| m >= 1 && m < train.epochs.max(1));
    c.require(
        increasing && in_range,
        &at("schedule.milestones"),
        if train.epochs <= 1 {
            format!(
                "with {} epoch there is no epoch to step at, found {:?}",
                train.epochs, schedule.milestones
            )
        } else {
            format!(
                "expected increasing epochs between 1 and {}, found {:?}",
                train.epochs - 1,
                schedule.milestones
            )
        },
    );
}

fn check_eval(c: &mut Checker, prefix: &str, eval: &EvalSpec, blocks: &[String]) {
    let at = |key: &str| format!("{prefix}.{key}");
    c.component(&at("protocol"), &catalogue::PROTOCOLS, &eval.protocol);
    let known_block = |c: &mut Checker, path: &str, name: &str| {
        if !blocks.iter().any(|block| block == name) {
            let hint = match crate::spec::origin::closest(name, blocks.iter().map(String::as_str)) {
                Some(suggestion) => format!("did you mean `{suggestion}`?"),
                None => format!("model blocks: {}", blocks.join(", ")),
            };
            c.push(path, format!("unknown block `{name}`"), Some(hint));
        }
    };
    let not_for = |c: &mut Checker, key: &str, present: bool| {
        if present {
            let message = format!("key `{key}` does not apply to protocol `{}`", eval.protocol);
            c.push(&at(key), message, Some("remove it".into()));
        }
    };
    if let Some(name) = &eval.name {
        c.require(
            is_folder_name(name),
            &at("name"),
            format!(
                "expected a name that starts with a letter or digit, followed by letters, \
                 digits, `_`, `-` or `.`, found {name:?}"
            ),
        );
    }
    match eval.protocol.as_str() {
        "linear_probe" => {
            if let Some(blocks) = &eval.blocks {
                c.require(
                    !blocks.is_empty(),
                    &at("blocks"),
                    "expected at least one block",
                );
            }
            not_for(c, "frozen_until", eval.frozen_until.is_some());
            not_for(c, "retrain_until", eval.retrain_until.is_some());
            for (index, block) in eval.blocks.iter().flatten().enumerate() {
                known_block(c, &format!("{prefix}.blocks.{index}"), block);
            }
            if let Some(pool) = eval.pool {
                c.require(
                    pool >= 1,
                    &at("pool"),
                    format!("expected 1 or more, found {pool}"),
                );
            }
        }
        "frozen_finetune" => {
            not_for(c, "blocks", eval.blocks.is_some());
            not_for(c, "pool", eval.pool.is_some());
            match &eval.frozen_until {
                Some(block) => known_block(c, &at("frozen_until"), block),
                None => c.push(
                    &at("frozen_until"),
                    "missing: name the last frozen block",
                    Some(format!(
                        "for example `frozen_until = \"{}\"`",
                        blocks
                            .get(1)
                            .or(blocks.first())
                            .map_or("conv2", String::as_str)
                    )),
                ),
            }
            if let Some(block) = &eval.retrain_until {
                known_block(c, &at("retrain_until"), block);
                let position = |name: &str| blocks.iter().position(|b| b == name);
                let frozen = eval.frozen_until.as_deref().and_then(position);
                if let (Some(frozen), Some(retrain)) = (frozen, position(block)) {
                    if retrain <= frozen {
                        let message = format!(
                            "`{block}` is not after the last frozen block `{}`",
                            blocks[frozen]
                        );
                        c.push(&at("retrain_until"), message, None);
                    }
                }
            }
        }
        _ => {}
    }
    let mut seen = HashSet::new();
    for (index, baseline) in eval.baselines.iter().enumerate() {
        let path = format!("{prefix}.baselines.{index}");
        c.component(&path, &catalogue::BASELINES, baseline);
        if !seen.insert(baseline) {
            c.push(&path, format!("baseline `{baseline}` appears twice"), None);
        }
    }
    check_train(c, &at("train"), &eval.train);
}

/// Most runs at a time a launcher starts.
const MAX_JOBS: usize = 1024;

fn check_launcher(c: &mut Checker, spec: &Spec) {
    let launcher = &spec.launcher;
    c.require(
        matches!(launcher.kind.as_str(), "local" | "slurm"),
        "launcher.kind",
        format!("expected `local` or `slurm`, found {:?}", launcher.kind),
    );
    let fewest = usize::from(launcher.kind == "local");
    c.require(
        (fewest..=MAX_JOBS).contains(&launcher.jobs),
        "launcher.jobs",
        format!(
            "expected {fewest} to {MAX_JOBS} runs at a time, found {}",
            launcher.jobs
        ),
    );
    c.require(
        launcher.slurm.cpus_per_task <= MAX_THREADS,
        "launcher.slurm.cpus_per_task",
        format!(
            "expected at most {MAX_THREADS}, found {}",
            launcher.slurm.cpus_per_task
        ),
    );
    for (index, option) in launcher.slurm.extra.iter().enumerate() {
        c.require(
            option.starts_with('-') && !option.contains('\n'),
            &format!("launcher.slurm.extra.{index}"),
            format!("expected one sbatch option such as \"--mem=8G\", found {option:?}"),
        );
    }
}

fn check_device(c: &mut Checker, spec: &Spec) {
    let kind = spec.device.kind.as_str();
    let cuda_index = kind
        .strip_prefix("cuda:")
        .map(|index| index.parse::<usize>().is_ok());
    let valid = matches!(kind, "auto" | "cpu" | "cuda") || cuda_index == Some(true);
    c.require(
        spec.device.threads <= MAX_THREADS,
        "device.threads",
        format!(
            "expected at most {MAX_THREADS}, found {}",
            spec.device.threads
        ),
    );
    c.require(
        valid,
        "device.kind",
        format!("expected `auto`, `cpu`, `cuda` or `cuda:N`, found {kind:?}"),
    );
}
