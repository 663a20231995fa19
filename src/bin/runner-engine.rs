//! `runner-engine`: the part of the `runner` command line that loads libtorch. The `runner`
//! front end starts it for `run` and `bench`; it accepts the same arguments.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use runner::cli::{
    data_dir, dry_run, print_list, validate, BenchArgs, Cli, Command, QueueArgs, ResumeArgs,
    RunArgs, SpecArgs, WorkerArgs,
};
use runner::logging::{self, progress::ProgressMode};
use runner::queue::{Queue, RunState};
use runner::run::{execute, results_table, RunOptions, RunReport};
use runner::spec::{load, LauncherSpec, LoadOptions, LoadedSpec};
use runner::sweep::expand;
use runner::sweep_run;
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
        Some(Command::Status(args)) => runner::cli::status(&args),
        Some(Command::Worker(args)) => worker(args),
        Some(Command::Resume(args)) => resume(args),
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
    // A plain spec goes through a queue too when a sweep folder or the Slurm launcher is
    // asked for: a queue of one run.
    let slurm = args
        .queue
        .launcher
        .as_deref()
        .unwrap_or(&loaded.spec.launcher.kind)
        == "slurm";
    if !args.sweeps.is_empty() || loaded.spec.sweep.is_some() || args.sweep_dir.is_some() || slurm {
        return run_sweep(&args, &options, &loaded);
    }
    match execute(&loaded, &run_options(&args)) {
        Ok(report) => {
            print_report(&report);
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

fn print_report(report: &RunReport) {
    println!(
        "\nResults of {} (test accuracy)\n",
        report.run_dir.display()
    );
    print!("{}", results_table(report));
    if let Some(pretext) = &report.pretext {
        println!(
            "\npretext: {:.2} % test accuracy on the pretext task, {:.0} images/s",
            100.0 * pretext.test_accuracy,
            pretext.images_per_second,
        );
    }
    println!("total: {:.1} s", report.wall_seconds);
}

fn run_options(args: &RunArgs) -> RunOptions {
    RunOptions {
        data_dir: data_dir(args.data_dir.clone()),
        runs_dir: args.runs_folder(),
        progress: ProgressMode::detect(),
        threads: None,
    }
}

/// Puts every run of a swept spec in the queue of its sweep folder and works through it
/// with the launcher the spec or flags choose. The exit code is 1 when any run failed.
fn run_sweep(args: &RunArgs, options: &LoadOptions, base: &LoadedSpec) -> ExitCode {
    let runs = match expand(options, base, &args.sweeps) {
        Ok(runs) => runs,
        Err(errors) => {
            eprintln!("error: {errors}");
            return ExitCode::from(2);
        }
    };
    let run_options = run_options(args);
    let sweep_dir = args.sweep_folder(&base.spec.experiment.name);
    let queue =
        match sweep_run::enqueue(&runs, &options.spec_path, &sweep_dir, &run_options.data_dir) {
            Ok(queue) => queue,
            Err(error) => return fail(&error),
        };
    work_queue(
        &queue,
        &args.queue,
        &base.spec.launcher,
        base.spec.device.threads,
        run_options,
    )
}

/// Requeues what the flags ask for, then runs the queue with the chosen launcher and
/// prints the summary.
fn work_queue(
    queue: &Queue,
    flags: &QueueArgs,
    launcher: &LauncherSpec,
    spec_threads: usize,
    run_options: RunOptions,
) -> ExitCode {
    if let Err(error) = sweep_run::requeue(queue, flags.retry_failed, flags.force, None) {
        return fail(&error);
    }
    let mut launcher = launcher.clone();
    if let Some(kind) = &flags.launcher {
        launcher.kind = kind.clone();
    }
    if let Some(jobs) = flags.jobs {
        launcher.jobs = jobs;
    }
    if launcher.kind == "slurm" {
        let data_dir = std::path::absolute(&run_options.data_dir).unwrap_or(run_options.data_dir);
        return match sweep_run::launch_slurm(queue, &launcher, &data_dir) {
            Ok(job) => {
                println!(
                    "submitted Slurm job array {job} for {}; `runner status {}` shows the queue",
                    queue.dir.display(),
                    queue.dir.display()
                );
                ExitCode::SUCCESS
            }
            Err(error) => fail(&error),
        };
    }
    let outcome = if launcher.jobs > 1 {
        let cores = if spec_threads > 0 {
            spec_threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        };
        sweep_run::launch_local(queue, launcher.jobs, cores, &run_options.data_dir)
    } else {
        sweep_run::work_until_finished(queue, &run_options)
    };
    if let Err(error) = outcome {
        return fail(&error);
    }
    match sweep_run::summary(queue) {
        Ok((text, all_done)) => {
            println!("\n{text}");
            if all_done {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => fail(&error),
    }
}

fn fail(error: &Error) -> ExitCode {
    eprintln!("error: {error}");
    match error {
        Error::Spec(_) => ExitCode::from(2),
        Error::Queue(_) => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    }
}

/// Opens the queue in `dir` with the options its runs execute under: the data folder
/// recorded in the queue unless `data_dir` overrides it.
fn open_queue(
    dir: &Path,
    data_dir: Option<&PathBuf>,
    threads: Option<usize>,
) -> Result<(Queue, RunOptions), ExitCode> {
    let queue = runner::queue::open(dir).map_err(|message| fail(&Error::Queue(message)))?;
    let options = RunOptions {
        data_dir: data_dir
            .cloned()
            .unwrap_or_else(|| queue.manifest.data_dir.clone()),
        runs_dir: queue.dir.clone(),
        progress: ProgressMode::detect(),
        threads,
    };
    Ok((queue, options))
}

/// `runner worker DIR`: joins a sweep's queue.
fn worker(args: WorkerArgs) -> ExitCode {
    logging::init(&args.log_level);
    let (queue, options) = match open_queue(&args.dir, args.data_dir.as_ref(), args.threads) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    match sweep_run::work(&queue, &options, args.max_runs) {
        Ok(count) if count.done + count.failed == 0 => {
            eprintln!(
                "no run of {} is waiting; nothing to do (`runner status {}` shows the queue, \
                 `runner resume {} --retry-failed` runs failed runs again)",
                queue.dir.display(),
                queue.dir.display(),
                queue.dir.display()
            );
            ExitCode::SUCCESS
        }
        Ok(count) => {
            eprintln!(
                "worker finished: {} run(s) done, {} failed (`runner status {}` shows the queue)",
                count.done,
                count.failed,
                queue.dir.display()
            );
            if count.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => fail(&error),
    }
}

/// `runner resume DIR`: continues a sweep folder's queue, or a single run folder.
fn resume(args: ResumeArgs) -> ExitCode {
    logging::init(&args.log_level);
    if !args.dir.join("sweep.json").is_file() && args.dir.join("spec.resolved.toml").is_file() {
        if let Some(parent) = args
            .dir
            .parent()
            .filter(|dir| dir.join("sweep.json").is_file())
        {
            return resume_sweep_run(&args, parent);
        }
        return resume_run(&args);
    }
    let (queue, options) = match open_queue(&args.dir, args.data_dir.as_ref(), None) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    // Every run carries the same launcher settings; read them from the first.
    let first = queue
        .manifest
        .runs
        .first()
        .map(|run| queue.dir.join(&run.label));
    let (launcher, threads) = first
        .and_then(|dir| sweep_run::load_run_spec(&dir).ok())
        .map_or((LauncherSpec::default(), 0), |loaded| {
            (loaded.spec.launcher, loaded.spec.device.threads)
        });
    work_queue(&queue, &args.queue, &launcher, threads, options)
}

/// Continues one run of a sweep through the sweep's queue, so that no other worker runs
/// it meanwhile and the queue records the outcome.
fn resume_sweep_run(args: &ResumeArgs, sweep_dir: &Path) -> ExitCode {
    let (queue, options) = match open_queue(sweep_dir, args.data_dir.as_ref(), None) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let label = args
        .dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !queue.manifest.runs.iter().any(|run| run.label == label) {
        return fail(&Error::Queue(format!(
            "{} is not a run of the sweep in {}; `runner status {}` lists its runs",
            args.dir.display(),
            sweep_dir.display(),
            sweep_dir.display()
        )));
    }
    let flags = &args.queue;
    if let Err(error) = sweep_run::requeue(&queue, flags.retry_failed, flags.force, Some(&label)) {
        return fail(&error);
    }
    let worker = runner::queue::worker_name();
    let claim = match queue.claim_run(&worker, &label) {
        Ok(Some(claim)) => claim,
        Ok(None) => {
            let state = match queue.entries() {
                Ok(entries) => entries
                    .into_iter()
                    .find(|entry| entry.label == label)
                    .map(|entry| entry.state),
                Err(message) => return fail(&Error::Queue(message)),
            };
            let locked = queue.is_locked(&label);
            let hint = match state {
                _ if locked => "another worker is running it",
                Some(RunState::Done) => "it is finished; `--force` runs it again",
                Some(RunState::Failed) => "it failed; `--retry-failed` runs it again",
                _ => "it is not waiting",
            };
            eprintln!("{label} was not resumed: {hint}");
            return if state == Some(RunState::Done) && !locked {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        Err(message) => return fail(&Error::Queue(message)),
    };
    match sweep_run::run_claim(&queue, claim, &options, &worker) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => fail(&error),
    }
}

/// Continues an interrupted single run in its folder.
fn resume_run(args: &ResumeArgs) -> ExitCode {
    let run_dir = &args.dir;
    if run_dir.join("metrics.json").is_file() && !args.queue.force {
        println!(
            "{} is finished (metrics.json); `--force` runs it again",
            run_dir.display()
        );
        return ExitCode::SUCCESS;
    }
    let loaded = match sweep_run::load_run_spec(run_dir) {
        Ok(loaded) => loaded,
        Err(error) => return fail(&error),
    };
    if args.queue.force {
        // Held while the folder is emptied, then released for the run itself.
        let lock = match runner::run::lock_run_dir(run_dir) {
            Ok(lock) => lock,
            Err(error) => return fail(&error),
        };
        if let Err(message) = runner::queue::clear_run_dir(run_dir) {
            return fail(&Error::Queue(message));
        }
        drop(lock);
    }
    let options = RunOptions {
        data_dir: data_dir(args.data_dir.clone()),
        runs_dir: run_dir.clone(),
        progress: ProgressMode::detect(),
        threads: None,
    };
    match runner::run::execute_at(&loaded, run_dir, &options) {
        Ok(report) => {
            print_report(&report);
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
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
