//! `runner-engine`: the part of the `runner` command line that loads libtorch. The `runner`
//! front end starts it for `run` and `bench`; it accepts the same arguments.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use runner::cli::{
    data_dir, dry_run, print_list, validate, BenchArgs, Cli, Command, RunArgs, SpecArgs,
};
use runner::logging::{self, progress::ProgressMode};
use runner::run::{execute, results_table, RunOptions};
use runner::spec::{load, LoadOptions, LoadedSpec};
use runner::sweep::expand;
use runner::Error;

fn main() -> ExitCode {
    runner::tune_allocator();
    // Rust ignores SIGPIPE, which turns `runner ... | head` into a panic on the next print.
    // SAFETY: restoring the default handler before any output is written has no other effect.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match cli.command {
        Some(Command::List) => {
            print_list();
            ExitCode::SUCCESS
        }
        Some(Command::Validate(args)) => validate(&args),
        Some(Command::Report(args)) => runner::cli::report(&args),
        Some(Command::Run(args)) => run(args),
        Some(Command::Bench(args)) => bench(args),
        None if cli.run.spec.spec.is_some() => run(cli.run),
        None => {
            eprintln!("error: no spec given\n\nUsage: runner SPEC [--set KEY=VALUE]... | runner validate SPEC | runner list");
            ExitCode::from(2)
        }
    }
}

/// Loads the spec that `args` names, printing the errors on failure.
fn load_spec(args: &SpecArgs) -> Result<(LoadOptions, LoadedSpec), ExitCode> {
    let Some(options) = args.load_options() else {
        eprintln!("error: no spec given");
        return Err(ExitCode::from(2));
    };
    match load(&options) {
        Ok(loaded) => Ok((options, loaded)),
        Err(errors) => {
            eprintln!("error: {errors}");
            Err(ExitCode::from(2))
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    if args.dry_run {
        return dry_run(&args);
    }
    logging::init(&args.log_level);
    let (options, loaded) = match load_spec(&args.spec) {
        Ok(spec) => spec,
        Err(code) => return code,
    };
    if !args.sweeps.is_empty() || loaded.spec.sweep.is_some() {
        return run_sweep(&args, &options, &loaded);
    }
    match execute(&loaded, &run_options(&args)) {
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

fn run_options(args: &RunArgs) -> RunOptions {
    RunOptions {
        data_dir: data_dir(args.data_dir.clone()),
        runs_dir: args
            .runs_dir
            .clone()
            .or_else(|| std::env::var_os("RUNNER_RUNS_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("runs")),
        progress: ProgressMode::detect(),
    }
}

/// Runs every run of a swept spec; exit code 1 when any failed.
fn run_sweep(args: &RunArgs, options: &LoadOptions, base: &LoadedSpec) -> ExitCode {
    let runs = match expand(options, base, &args.sweeps) {
        Ok(runs) => runs,
        Err(errors) => {
            eprintln!("error: {errors}");
            return ExitCode::from(2);
        }
    };
    let report = match runner::sweep_run::execute_sweep(&runs, &run_options(args)) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "\nSweep {} ({} runs)\n",
        report.sweep_dir.display(),
        report.runs.len()
    );
    println!("{}", runner::sweep_run::sweep_table(&report));
    let failures: Vec<_> = report.failures().collect();
    if failures.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!("\n{} run(s) failed:", failures.len());
    for run in failures {
        eprintln!(
            "  {}: see {}",
            run.label,
            run.run_dir.join("run.log").display()
        );
    }
    ExitCode::FAILURE
}

fn bench(args: BenchArgs) -> ExitCode {
    logging::init("warn");
    let (_, loaded) = match load_spec(&args.spec) {
        Ok(spec) => spec,
        Err(code) => return code,
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
