//! The library's error type. Every variant names the file, key or stage it concerns and,
//! where there is one, the fix. The binary prints it and maps it to an exit code.

use std::path::PathBuf;

use crate::spec::SpecErrors;

/// Errors raised while loading a spec, reading data or running stages.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// One or more problems in the spec layers, all reported together.
    #[error("{0}")]
    Spec(#[from] SpecErrors),

    /// A data set is missing, truncated or malformed.
    #[error("data error in {path}: {message}")]
    Data { path: PathBuf, message: String },

    /// A file or folder could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    /// The loss became NaN or infinite during training.
    #[error(
        "stage `{stage}`: loss is {value} at epoch {epoch}, step {step}; training diverged. \
         Lower the learning rate (`{lr_key}`) or check the input data. \
         Checkpoints and event files written so far are kept."
    )]
    NonFiniteLoss {
        stage: String,
        epoch: usize,
        step: usize,
        value: f64,
        lr_key: String,
    },

    /// The requested device is not available.
    #[error("device `{requested}` is not available: {reason}")]
    Device { requested: String, reason: String },

    /// An error raised by libtorch.
    #[error("libtorch error: {0}")]
    Torch(#[from] tch::TchError),

    /// Another process is running the run in this folder.
    #[error(
        "{} is in use: another runner process is running it (it holds run.lock); wait for \
         that process to end",
        .0.display()
    )]
    RunInUse(PathBuf),

    /// A sweep's queue folder cannot be used as asked.
    #[error("{0}")]
    Queue(String),

    /// A failure inside libtorch (reported by tch as a panic) or a bug in the runner.
    #[error("internal error: {0}. Files written so far are kept; check run.log")]
    Internal(String),
}

impl Error {
    /// Builds an [`Error::Io`] for `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Builds an [`Error::Data`] for `path`.
    pub fn data(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;
