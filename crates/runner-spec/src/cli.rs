//! The command line, shared by the `runner` front end and the `runner-engine` binary.
//!
//! `runner` handles `list` and `validate` itself without loading libtorch, and hands every
//! other command to `runner-engine` (installed beside it) with the same arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::spec::LoadOptions;

#[derive(Parser)]
#[command(
    name = "runner",
    version,
    about = "Run computer-vision experiments from TOML specs",
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  runner experiments/rotation_ssl.toml\n  \
                  runner experiments/rotation_ssl.toml --set train.epochs=1\n  \
                  runner validate experiments/rotation_ssl.toml\n  runner list"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run an experiment spec (the same as `runner SPEC`).
    Run(RunArgs),
    /// Load and check a spec without running it; prints the resolved spec.
    Validate(SpecArgs),
    /// List every component kind with its components.
    List,
    /// Time a spec's pretext stage and print one JSON line (used by scripts/bench).
    Bench(BenchArgs),
    /// Print a table of a sweep's runs, swept values and final test accuracies.
    Report(ReportArgs),
    /// Show the queue of a sweep folder: each run's state, attempts and last error.
    Status(StatusArgs),
    /// Join the queue of a sweep folder and run its runs until none is left.
    Worker(WorkerArgs),
    /// Continue a sweep folder (finished runs are skipped, interrupted ones resume from
    /// their checkpoints), or an interrupted run folder.
    Resume(ResumeArgs),
}

#[derive(Args)]
pub struct StatusArgs {
    /// Sweep folder.
    pub dir: PathBuf,
}

#[derive(Args)]
pub struct WorkerArgs {
    /// Sweep folder whose queue to join.
    pub dir: PathBuf,
    /// libtorch intra-op threads of this worker (default: the spec's `device.threads`).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub threads: Option<usize>,
    /// Stop after this many runs.
    #[arg(long)]
    pub max_runs: Option<usize>,
    /// Folder that relative `data.root` paths are resolved against (default: the one the
    /// sweep was started with).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log level on the terminal.
    #[arg(long, default_value = "info", value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub log_level: String,
}

#[derive(Args)]
pub struct ResumeArgs {
    /// Sweep folder, or the folder of a single run.
    pub dir: PathBuf,
    #[command(flatten)]
    pub queue: QueueArgs,
    /// Folder that relative `data.root` paths are resolved against (default: the one the
    /// sweep was started with).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log level on the terminal.
    #[arg(long, default_value = "info", value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub log_level: String,
}

/// Options for working through a sweep's queue.
#[derive(Args, Clone, Default)]
pub struct QueueArgs {
    /// Runs at a time (overrides `launcher.jobs`); `local` splits the cores between them.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub jobs: Option<usize>,
    /// Launcher (overrides `launcher.kind`).
    #[arg(long, value_parser = ["local", "slurm"])]
    pub launcher: Option<String>,
    /// Put failed runs back in the queue.
    #[arg(long)]
    pub retry_failed: bool,
    /// Run finished runs again, replacing their results.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args)]
pub struct ReportArgs {
    /// Sweep folder (runs/<experiment>/sweep_<spec file name> by default).
    pub dir: PathBuf,
    /// Metric to sort by, in decreasing order (default: the first one).
    #[arg(long)]
    pub sort: Option<String>,
    /// Table format.
    #[arg(long, value_enum, default_value = "markdown")]
    pub format: crate::report::Format,
}

/// Runs `runner status`.
pub fn status(args: &StatusArgs) -> std::process::ExitCode {
    print_table(crate::queue::open(&args.dir).and_then(|queue| crate::queue::status_table(&queue)))
}

/// Runs `runner report`.
pub fn report(args: &ReportArgs) -> std::process::ExitCode {
    print_table(crate::report::report(
        &args.dir,
        args.sort.as_deref(),
        args.format,
    ))
}

/// Prints a table to stdout, or its error to stderr with exit code 2.
fn print_table(table: Result<String, String>) -> std::process::ExitCode {
    match table {
        Ok(table) => {
            print!("{table}");
            std::process::ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::from(2)
        }
    }
}

#[derive(Args)]
pub struct SpecArgs {
    /// Spec file (TOML).
    pub spec: Option<PathBuf>,
    /// Override a spec key, e.g. `--set train.lr=0.05` (repeatable, applied last).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

impl SpecArgs {
    /// Builds load options with the process environment, or `None` when no spec was given.
    pub fn load_options(&self) -> Option<LoadOptions> {
        Some(LoadOptions {
            spec_path: self.spec.clone()?,
            overrides: self.overrides.clone(),
            env: spec_variables(),
        })
    }
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Folder that relative `data.root` paths are resolved against [env: RUNNER_DATA_DIR;
    /// default: ./data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Folder that run folders are created under [env: RUNNER_RUNS_DIR; default: ./runs].
    #[arg(long, value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,
    /// Sweep a spec key over values, e.g. `--sweep train.lr=0.1,0.03` (repeatable; the
    /// flags form a grid, crossed with the spec's own `[sweep]`).
    #[arg(long = "sweep", value_name = "KEY=V1,V2")]
    pub sweeps: Vec<String>,
    /// Print the runs a spec expands to, with their overrides, and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Sweep folder [default: <runs-dir>/<experiment>/sweep_<spec file name>]. Running the
    /// same sweep again continues the queue there.
    #[arg(long, value_name = "DIR")]
    pub sweep_dir: Option<PathBuf>,
    #[command(flatten)]
    pub queue: QueueArgs,
    /// Log level on the terminal.
    #[arg(long, default_value = "info", value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub log_level: String,
}

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Part of the step to time.
    #[arg(long, value_enum)]
    pub mode: BenchMode,
    /// Untimed steps before timing starts.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 40)]
    pub steps: usize,
    /// Folder that relative `data.root` paths are resolved against [env: RUNNER_DATA_DIR;
    /// default: ./data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Part of the pretext step that `runner bench` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BenchMode {
    /// The training step as a stage runs it, input pipeline included.
    EndToEnd,
    /// The same step repeated on one pre-built batch.
    Compute,
    /// Decoding and batched augmentation alone.
    Data,
    /// Single-precision matrix products, for the machine's ceiling.
    Sgemm,
}

/// Collects the `RUNNER_*` environment variables. Values that are not UTF-8 are converted
/// lossily and other variables are skipped, so an unrelated variable never stops a run.
fn spec_variables() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(name, value)| {
            let name = name.into_string().ok()?;
            name.starts_with(crate::spec::ENV_PREFIX)
                .then(|| (name, value.to_string_lossy().into_owned()))
        })
        .collect()
}

/// Resolves the data directory: the flag, else `RUNNER_DATA_DIR`, else `./data`.
pub fn data_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("RUNNER_DATA_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("data"))
}

/// Runs `runner validate`: prints the resolved spec, or every error with exit code 2.
pub fn validate(args: &SpecArgs) -> std::process::ExitCode {
    let Some(options) = args.load_options() else {
        eprintln!("error: no spec given");
        return std::process::ExitCode::from(2);
    };
    match crate::spec::load(&options) {
        Ok(loaded) => {
            if loaded.spec.sweep.is_some() {
                if let Err(errors) = crate::sweep::expand(&options, &loaded, &[]) {
                    eprintln!("error: {errors}");
                    return std::process::ExitCode::from(2);
                }
            }
            print!("{}", loaded.resolved_text());
            eprintln!("{}: valid", options.spec_path.display());
            std::process::ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("error: {errors}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Runs `runner SPEC --dry-run`: prints each run of the (possibly swept) spec with its
/// overrides, or every error with exit code 2.
pub fn dry_run(args: &RunArgs) -> std::process::ExitCode {
    match expand_runs(args) {
        Ok(runs) => {
            let queued =
                runs.len() > 1 || runs.first().is_some_and(|run| !run.assignments.is_empty());
            match runs.first() {
                Some(run) if queued => println!(
                    "{} run(s) in sweep folder {}:",
                    runs.len(),
                    args.sweep_folder(&run.loaded.spec.experiment.name)
                        .display()
                ),
                _ => println!("{} run(s):", runs.len()),
            }
            for run in runs {
                let overrides: Vec<String> = run
                    .assignments
                    .iter()
                    .map(|a| format!("{}={}", a.key, crate::sweep::toml_text(&a.value)))
                    .collect();
                println!("  {:<40} {}", run.label, overrides.join(" "));
            }
            std::process::ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::from(2)
        }
    }
}

impl RunArgs {
    /// Folder that run folders are created under: `--runs-dir`, `RUNNER_RUNS_DIR` or
    /// `runs`.
    pub fn runs_folder(&self) -> PathBuf {
        self.runs_dir
            .clone()
            .or_else(|| std::env::var_os("RUNNER_RUNS_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("runs"))
    }

    /// Sweep folder of a spec of `experiment`: `--sweep-dir`, or the default under the
    /// runs folder.
    pub fn sweep_folder(&self, experiment: &str) -> PathBuf {
        self.sweep_dir.clone().unwrap_or_else(|| {
            let spec_path = self.spec.spec.clone().unwrap_or_default();
            crate::sweep::default_sweep_dir(&self.runs_folder(), experiment, &spec_path)
        })
    }
}

/// Loads the spec of `args` and expands its sweep (one run when there is none).
pub fn expand_runs(args: &RunArgs) -> Result<Vec<crate::sweep::SweepRun>, String> {
    let options = args.spec.load_options().ok_or("no spec given")?;
    let base = crate::spec::load(&options).map_err(|errors| errors.to_string())?;
    crate::sweep::expand(&options, &base, &args.sweeps).map_err(|errors| errors.to_string())
}

/// Prints `runner list`.
pub fn print_list() {
    for catalogue in crate::catalogue::all() {
        println!("{}:", catalogue.kind);
        let width = catalogue
            .components
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(0);
        for component in catalogue.components {
            println!("  {:<width$}  {}", component.name, component.doc);
        }
        println!();
    }
}
