//! Run records: TensorBoard event files ([`events`]), the `run.log` file beside them, and
//! terminal progress ([`progress`]).

pub mod events;
pub mod hparams;
pub mod progress;

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::error::{Error, Result};

/// The open `run.log`, if a run is in progress.
static RUN_LOG: Mutex<Option<File>> = Mutex::new(None);

/// Installs the global `tracing` subscriber: human-readable lines on stderr at `level`
/// (overridden by `RUST_LOG`), and `info` and above into the current run's `run.log`.
pub fn init(level: &str) {
    let stderr_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .with_filter(stderr_filter);
    let file = tracing_subscriber::fmt::layer()
        .with_writer(RunLogWriter)
        .with_ansi(false)
        .with_target(false)
        .with_filter(EnvFilter::new("info"));
    // A second call (as in tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init();
}

/// Sends `info` and above to `path` from now on, until [`detach_run_log`].
pub fn attach_run_log(path: &Path) -> Result<()> {
    let file = File::options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|error| Error::io("create", path, error))?;
    *RUN_LOG.lock().unwrap_or_else(|poison| poison.into_inner()) = Some(file);
    Ok(())
}

/// Appends one line to the current `run.log` only (not to stderr), such as a final error
/// that the binary prints itself.
pub fn write_run_log_line(line: &str) {
    let mut guard = RUN_LOG.lock().unwrap_or_else(|poison| poison.into_inner());
    if let Some(file) = guard.as_mut() {
        let _ = writeln!(file, "{line}");
    }
}

/// Closes the current `run.log`.
pub fn detach_run_log() {
    *RUN_LOG.lock().unwrap_or_else(|poison| poison.into_inner()) = None;
}

struct RunLogWriter;

struct RunLogLine;

impl Write for RunLogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut guard = RUN_LOG.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some(file) = guard.as_mut() {
            file.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut guard = RUN_LOG.lock().unwrap_or_else(|poison| poison.into_inner());
        match guard.as_mut() {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

impl<'a> MakeWriter<'a> for RunLogWriter {
    type Writer = RunLogLine;

    fn make_writer(&'a self) -> Self::Writer {
        RunLogLine
    }
}
