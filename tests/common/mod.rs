//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Folder holding `cifar10-jpg/` and `mnist/`, from `RUNNER_DATA_DIR`.
pub fn data_dir() -> PathBuf {
    let dir = std::env::var_os("RUNNER_DATA_DIR").expect(
        "RUNNER_DATA_DIR must name the folder that holds cifar10-jpg/ and mnist/ \
         (scripts/test passes it through)",
    );
    PathBuf::from(dir)
}

/// Python interpreter with the `tensorboard` package, from `RUNNER_PYTHON` or the project
/// virtualenv.
pub fn python() -> PathBuf {
    std::env::var_os("RUNNER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

/// Runs the `runner` binary with `args` in `cwd`, with `RUNNER_*` spec variables removed
/// from the environment so that only the test's own settings apply.
pub fn runner(cwd: &Path, args: &[&str]) -> Output {
    runner_command(cwd, args)
        .output()
        .expect("runner binary starts")
}

/// Builds the command that [`runner`] runs, to start it in the background.
pub fn runner_command(cwd: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_runner"));
    command.current_dir(cwd).args(args).env("CI", "1");
    for (name, _) in std::env::vars() {
        if name.starts_with("RUNNER_") && name != "RUNNER_DATA_DIR" {
            command.env_remove(name);
        }
    }
    command
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Returns a tiny rotation spec on CIFAR-10: `train` training and `test` test images, one epoch
/// per stage, batch 64, scalars at every step, all protocols and baselines.
pub fn tiny_spec(train: usize, test: usize) -> String {
    format!(
        r#"
[experiment]
name = "tiny"
seed = 7

[data]
kind = "cifar10_folder"
root = "cifar10-jpg"
train_limit = {train}
test_limit = {test}

[[model.blocks]]
name = "conv1"
channels = [8]

[[model.blocks]]
name = "conv2"
channels = [16]

[[model.blocks]]
name = "conv3"
channels = [16]

[train]
batch_size = 64
epochs = 1
log_every = 1

[[eval]]
protocol = "linear_probe"
blocks = ["conv1", "conv3"]
baselines = ["random_init"]
[eval.train]
batch_size = 100
epochs = 2
log_every = 1

[[eval]]
protocol = "frozen_finetune"
frozen_until = "conv2"
labels_per_class = 10
baselines = ["random_init", "supervised"]
[eval.train]
batch_size = 50
epochs = 1
log_every = 1
"#
    )
}
