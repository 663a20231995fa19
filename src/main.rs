//! The `runner` command line: parses arguments, sets up logging, and maps errors to exit
//! codes (0 success, 1 failed run, 2 invalid spec or usage).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use runner::bench::BenchMode;
use runner::logging::{self, progress::ProgressMode};
use runner::run::{execute, results_table, RunOptions};
use runner::spec::{load, LoadOptions};
use runner::Error;

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
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run an experiment spec (the same as `runner SPEC`).
    Run(RunArgs),
    /// Load and check a spec without running it; prints the resolved spec.
    Validate(SpecArgs),
    /// List every component kind with its components.
    List,
    /// Time a spec's pretext stage and print one JSON line (used by scripts/bench).
    Bench(BenchArgs),
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// What to time.
    #[arg(long, value_enum)]
    mode: BenchMode,
    /// Untimed steps before timing starts.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 40)]
    steps: usize,
    /// Folder that relative `data.root` paths are resolved against [env: RUNNER_DATA_DIR;
    /// default: ./data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Args)]
struct SpecArgs {
    /// Spec file (TOML).
    spec: Option<PathBuf>,
    /// Override a spec key, e.g. `--set train.lr=0.05` (repeatable, applied last).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// Folder that relative `data.root` paths are resolved against [env: RUNNER_DATA_DIR;
    /// default: ./data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Folder that run folders are created under [env: RUNNER_RUNS_DIR; default: ./runs].
    #[arg(long, value_name = "DIR")]
    runs_dir: Option<PathBuf>,
    /// Log level on the terminal (error, warn, info, debug).
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn main() -> ExitCode {
    runner::tune_allocator();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::List) => {
            list();
            ExitCode::SUCCESS
        }
        Some(Command::Validate(args)) => validate(args),
        Some(Command::Run(args)) => run(args),
        Some(Command::Bench(args)) => bench(args),
        None if cli.run.spec.spec.is_some() => run(cli.run),
        None => {
            eprintln!("error: no spec given\n\nUsage: runner SPEC [--set KEY=VALUE]... | runner validate SPEC | runner list");
            ExitCode::from(2)
        }
    }
}

fn load_options(args: &SpecArgs) -> Option<LoadOptions> {
    let Some(spec_path) = args.spec.clone() else {
        eprintln!("error: no spec given");
        return None;
    };
    Some(LoadOptions {
        spec_path,
        overrides: args.overrides.clone(),
        env: std::env::vars().collect(),
    })
}

fn validate(args: SpecArgs) -> ExitCode {
    let Some(options) = load_options(&args) else {
        return ExitCode::from(2);
    };
    match load(&options) {
        Ok(loaded) => {
            print!("{}", runner::run::resolved_spec_text(&loaded));
            eprintln!("{}: valid", options.spec_path.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("error: {errors}");
            ExitCode::from(2)
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    logging::init(&args.log_level);
    let Some(options) = load_options(&args.spec) else {
        return ExitCode::from(2);
    };
    let loaded = match load(&options) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("error: {errors}");
            return ExitCode::from(2);
        }
    };
    let from_env = |name: &str| std::env::var_os(name).map(PathBuf::from);
    let run_options = RunOptions {
        data_dir: data_dir(args.data_dir),
        runs_dir: args
            .runs_dir
            .or_else(|| from_env("RUNNER_RUNS_DIR"))
            .unwrap_or_else(|| PathBuf::from("runs")),
        progress: ProgressMode::detect(),
    };
    match execute(&loaded, &run_options) {
        Ok(report) => {
            println!(
                "\nResults of {} (test accuracy)\n",
                report.run_dir.display()
            );
            print!("{}", results_table(&report));
            if let Some(pretext) = &report.pretext {
                println!(
                    "\npretext: {:.2} % test accuracy on the pretext task, {:.0} images/s",
                    100.0 * pretext.test_accuracy,
                    pretext.images_per_second,
                );
            }
            println!("total: {:.1} s", report.wall_seconds);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            match error {
                Error::Spec(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// Resolves the data directory: the flag, else `RUNNER_DATA_DIR`, else `./data`.
fn data_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("RUNNER_DATA_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("data"))
}

fn bench(args: BenchArgs) -> ExitCode {
    logging::init("warn");
    let Some(options) = load_options(&args.spec) else {
        return ExitCode::from(2);
    };
    let loaded = match load(&options) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("error: {errors}");
            return ExitCode::from(2);
        }
    };
    let data_dir = data_dir(args.data_dir);
    match runner::bench::bench(&loaded.spec, &data_dir, args.mode, args.warmup, args.steps) {
        Ok(result) => {
            println!("{}", serde_json::to_string(&result).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn list() {
    for (kind, entries) in runner::registry::catalogue() {
        println!("{kind}:");
        let width = entries
            .iter()
            .map(|(name, _)| name.len())
            .max()
            .unwrap_or(0);
        for (name, doc) in entries {
            println!("  {name:<width$}  {doc}");
        }
        println!();
    }
}
