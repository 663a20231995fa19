//! One run of a spec: its folder, the pretext stage, the evaluation stages, and the
//! results (`metrics.json` and the table printed at the end).
//!
//! Run folder layout:
//!
//! ```text
//! <runs>/<experiment>/<timestamp>_<label>/
//!     spec.resolved.toml  run.log  metrics.json
//!     pretext/events.out.tfevents.*  pretext/checkpoint.safetensors
//!     <eval>/<pretrained|random_init|supervised>[/<block>]/events.out.tfevents.*, checkpoint
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use tch::Device;

use crate::data::{self, augment::Augmenter};
use crate::error::{Error, Result};
use crate::eval::{self, EvalContext, EvalResult};
use crate::logging::{self, progress::ProgressMode};
use crate::models::{read_checkpoint, Network};
use crate::registry;
use crate::spec::{LoadedSpec, Spec};
use crate::train::objectives::ImageObjective;
use crate::train::{fit, Stage, StageSummary};

/// Data and output folders of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Folder that relative `data.root` paths are resolved against.
    pub data_dir: PathBuf,
    /// Folder under which `<experiment>/<timestamp>_<label>/` is created.
    pub runs_dir: PathBuf,
    pub progress: ProgressMode,
    /// libtorch intra-op threads, overriding the spec's `device.threads` (a launcher that
    /// runs several runs at once splits the cores this way).
    pub threads: Option<usize>,
}

/// Everything a finished run reports; written as `metrics.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub experiment: String,
    pub run_dir: PathBuf,
    pub device: String,
    pub threads: i32,
    pub data_seconds: f64,
    /// The pretext stage, absent when `pretext.checkpoint` named an earlier one.
    pub pretext: Option<StageSummary>,
    pub evaluations: Vec<EvalResult>,
    pub wall_seconds: f64,
}

/// Creates the run folder, runs every stage and writes `metrics.json`.
///
/// On failure the folder keeps what was written so far (resolved spec, `run.log`, event
/// files and checkpoints of finished epochs), and the error is also logged to `run.log`.
pub fn execute(loaded: &LoadedSpec, options: &RunOptions) -> Result<RunReport> {
    let timestamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    let parent = options.runs_dir.join(&loaded.spec.experiment.name);
    let name = format!("{timestamp}_{}", run_label(&loaded.overrides));
    let run_dir = create_unique_dir(&parent, &name)?;
    execute_at(loaded, &run_dir, options)
}

/// Runs `loaded` in the existing folder `run_dir` (see [`execute`]). A folder that contains
/// an earlier attempt's stages continues from their checkpoints; its `spec.resolved.toml`
/// is kept.
pub fn execute_at(loaded: &LoadedSpec, run_dir: &Path, options: &RunOptions) -> Result<RunReport> {
    let spec = &loaded.spec;
    let _lock = lock_run_dir(run_dir)?;
    let path = run_dir.join("spec.resolved.toml");
    if !path.exists() {
        std::fs::write(&path, loaded.resolved_text())
            .map_err(|error| Error::io("write", &path, error))?;
    }
    let run_dir = run_dir.to_path_buf();
    logging::attach_run_log(&run_dir.join("run.log"))?;
    // libtorch errors surface as panics inside tch; turn them into errors so they reach the
    // terminal and run.log like any other failure.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        execute_in(spec, &run_dir, options)
    }))
    .unwrap_or_else(|payload| Err(Error::Internal(panic_message(payload.as_ref()))));
    std::panic::set_hook(default_hook);
    if let Err(error) = &result {
        logging::write_run_log_line(&format!("ERROR run failed: {error}"));
    }
    logging::detach_run_log();
    result
}

/// Takes the lock `run.lock` in `run_dir` without waiting, so that two processes never
/// train in one run folder. The kernel releases it when the returned file is dropped or the
/// process dies.
///
/// # Errors
///
/// [`Error::RunInUse`] when another process holds it.
pub fn lock_run_dir(run_dir: &Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(run_dir).map_err(|error| Error::io("create", run_dir, error))?;
    let path = run_dir.join("run.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|error| Error::io("open", &path, error))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::RunInUse(run_dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(error)) => Err(Error::io("lock", &path, error)),
    }
}

fn execute_in(spec: &Spec, run_dir: &Path, options: &RunOptions) -> Result<RunReport> {
    let started = Instant::now();
    tracing::info!("run folder {}", run_dir.display());
    let device = select_device(&spec.device.kind)?;
    if let Some(threads) = options.threads {
        tch::set_num_threads(threads as i32);
    } else if spec.device.threads > 0 {
        tch::set_num_threads(spec.device.threads as i32);
    }
    let threads = tch::get_num_threads();
    tracing::info!("device {device:?}, {threads} libtorch threads");
    tch::manual_seed(spec.experiment.seed as i64);

    let data_started = Instant::now();
    let splits = data::load(&spec.data, &options.data_dir, spec.experiment.seed)?;
    let data_seconds = data_started.elapsed().as_secs_f64();
    tracing::info!(
        "data: {} training and {} test images of shape {:?}, {} classes, decoded in {data_seconds:.1} s",
        splits.train.len(),
        splits.test.len(),
        splits.train.image_shape(),
        splits.train.classes.len()
    );
    let [_, height, width] = splits.train.image_shape();
    crate::models::check_input_size(&spec.model, height, width)?;
    let (mean, std) = splits.train.channel_stats();
    let augmenter = Augmenter::new(&spec.data.augment, &mean, &std, device);

    let (pretext, checkpoint) = match &spec.pretext.checkpoint {
        Some(path) => {
            tracing::info!("pretext stage skipped: evaluating checkpoint {path}");
            (None, PathBuf::from(path))
        }
        None => {
            let summary =
                run_pretext(spec, run_dir, &splits, &augmenter, device, options.progress)?;
            (
                Some(summary),
                run_dir.join("pretext").join("checkpoint.safetensors"),
            )
        }
    };
    let pretrained = read_checkpoint(&checkpoint, device)?;

    let context = EvalContext {
        spec,
        run_dir,
        splits: &splits,
        augmenter: &augmenter,
        device,
        progress: options.progress,
        pretrained: &pretrained,
        supervised_done: RefCell::new(HashMap::new()),
    };
    let mut evaluations = Vec::new();
    for index in 0..spec.eval.len() {
        evaluations.extend(eval::run_eval(&context, index)?);
    }

    let report = RunReport {
        experiment: spec.experiment.name.clone(),
        run_dir: run_dir.to_path_buf(),
        device: format!("{device:?}"),
        threads,
        data_seconds,
        pretext,
        evaluations,
        wall_seconds: started.elapsed().as_secs_f64(),
    };
    write_metrics(run_dir, &report)?;
    tracing::info!("finished in {:.1} s", report.wall_seconds);
    Ok(report)
}

fn run_pretext(
    spec: &Spec,
    run_dir: &Path,
    splits: &data::Splits,
    augmenter: &Augmenter,
    device: Device,
    progress: ProgressMode,
) -> Result<StageSummary> {
    let builder = registry::PRETEXTS
        .get(&spec.pretext.kind)
        .expect("pretext names are checked when the spec is loaded");
    let task = (builder.build)(&spec.pretext);
    let [_, height, width] = splits.train.image_shape();
    let quarter_turns = spec.pretext.angles.iter().any(|angle| angle % 180 != 0);
    if quarter_turns && height != width {
        return Err(Error::data(
            &spec.data.root,
            format!(
                "rotations by 90 or 270 degrees need square images, found {height}x{width}; \
                 set `data.image_size` or use `pretext.angles = [0, 180]`"
            ),
        ));
    }

    tch::manual_seed(spec.experiment.seed as i64);
    let network = Network::trainable(
        &spec.model,
        splits.train.image_shape()[0],
        task.classes(),
        device,
        spec.device.channels_last,
    );

    let mut objective = ImageObjective {
        network: &network,
        train: &splits.train,
        test: &splits.test,
        augmenter,
        pretext: Some(task.as_ref()),
        device,
    };
    let stage = Stage {
        name: "pretext".into(),
        dir: run_dir.join("pretext"),
        train: &spec.train,
        lr_key: "train.lr".into(),
        progress,
        device,
        seed: spec.experiment.seed,
    };
    fit(&stage, &network.trainable_store, &mut objective)
}

/// Extracts a panic's message, cut before libtorch's C++ stack trace.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = if let Some(text) = payload.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "unknown panic".into()
    };
    let text = text.replace("\\n", "\n");
    match text.find("\nException raised from") {
        Some(end) => text[..end].to_string(),
        None => text,
    }
}

/// Resolves `auto`, `cpu`, `cuda` and `cuda:N`.
pub fn select_device(kind: &str) -> Result<Device> {
    let unavailable = |reason: &str| Error::Device {
        requested: kind.into(),
        reason: reason.into(),
    };
    match kind {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(Device::cuda_if_available()),
        "cuda" if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
        "cuda" => Err(unavailable(
            "libtorch finds no CUDA device; use `device.kind = \"cpu\"`",
        )),
        other => {
            let index: usize = other
                .strip_prefix("cuda:")
                .and_then(|index| index.parse().ok())
                .ok_or_else(|| unavailable("expected auto, cpu, cuda or cuda:N"))?;
            if index < tch::Cuda::device_count() as usize {
                Ok(Device::Cuda(index))
            } else {
                Err(unavailable("no CUDA device with that index"))
            }
        }
    }
}

/// Creates `parent/name` (or `parent/name_2`, ... when it exists) and returns it.
pub fn create_unique_dir(parent: &Path, name: &str) -> Result<PathBuf> {
    let create_error = |path: &Path, error| {
        Error::io(
            "create run folder (set `--runs-dir` to a writable folder)",
            path,
            error,
        )
    };
    std::fs::create_dir_all(parent).map_err(|error| create_error(parent, error))?;
    // create_dir fails on an existing folder, so two runs started in the same second never
    // share one.
    let mut dir = parent.join(name);
    let mut suffix = 1;
    loop {
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                suffix += 1;
                dir = parent.join(format!("{name}_{suffix}"));
            }
            Err(error) => return Err(create_error(&dir, error)),
        }
    }
}

/// Folder label: the overrides in order, each as its last key segment and value
/// (`lr=0.05,epochs=1`), or `default`. Characters other than letters, digits and `=.,_-`
/// become `_`, and the label is cut to 80 characters.
fn run_label(overrides: &[String]) -> String {
    if overrides.is_empty() {
        return "default".into();
    }
    let parts: Vec<&str> = overrides
        .iter()
        .map(|flag| {
            let (key, _) = flag.split_once('=').unwrap_or((flag, ""));
            let last_dot = key.rfind('.').map_or(0, |i| i + 1);
            &flag[last_dot..]
        })
        .collect();
    crate::sweep::folder_label(&parts.join(","), 80)
}

fn write_metrics(run_dir: &Path, report: &RunReport) -> Result<()> {
    write_json(&run_dir.join("metrics.json"), report)
}

/// Writes `value` as pretty JSON through a temporary file and a rename, so a reader never
/// sees a half-written file.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let temporary = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(value)
        .map_err(|error| Error::data(path, format!("cannot encode as JSON: {error}")))?;
    std::fs::write(&temporary, text).map_err(|error| Error::io("write", &temporary, error))?;
    std::fs::rename(&temporary, path).map_err(|error| Error::io("write", path, error))
}

/// Formats the results as a table: one row per protocol, block and labels per class, with
/// the pretrained accuracy and each baseline beside it.
pub fn results_table(report: &RunReport) -> String {
    let mut inits: Vec<String> = Vec::new();
    let mut rows: Vec<(String, String, usize)> = Vec::new();
    let mut cells: HashMap<(String, String, usize, String), f64> = HashMap::new();
    for result in &report.evaluations {
        let row = (
            result.eval.clone(),
            result.block.clone(),
            result.labels_per_class,
        );
        if !rows.contains(&row) {
            rows.push(row.clone());
        }
        if !inits.contains(&result.init) {
            inits.push(result.init.clone());
        }
        cells.insert(
            (row.0, row.1, row.2, result.init.clone()),
            result.test_accuracy,
        );
    }
    let mut header = vec![
        "protocol".to_string(),
        "block".into(),
        "labels/class".into(),
    ];
    header.extend(inits.iter().cloned());
    let mut lines = vec![header];
    for (eval, block, labels) in &rows {
        let mut line = vec![
            eval.clone(),
            block.clone(),
            if *labels == 0 {
                "all".into()
            } else {
                labels.to_string()
            },
        ];
        for init in &inits {
            let cell = cells
                .get(&(eval.clone(), block.clone(), *labels, init.clone()))
                .map_or("-".into(), |accuracy| format!("{:.2} %", 100.0 * accuracy));
            line.push(cell);
        }
        lines.push(line);
    }

    let widths: Vec<usize> = (0..lines[0].len())
        .map(|column| {
            lines
                .iter()
                .map(|line| line[column].len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut table = String::new();
    for (index, line) in lines.iter().enumerate() {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        table.push_str(cells.join("  ").trim_end());
        table.push('\n');
        if index == 0 {
            let rule: Vec<String> = widths.iter().map(|width| "-".repeat(*width)).collect();
            table.push_str(&rule.join("  "));
            table.push('\n');
        }
    }
    table
}
