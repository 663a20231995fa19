//! Runs the queue of a sweep (see [`runner_spec::queue`]): puts a sweep's runs in the queue
//! of its folder, works through it in this process or in worker subprocesses, or submits
//! it as a Slurm job array, and summarises the outcome.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::logging::hparams::HParamValue;
use crate::queue::{self, Claim, NewRun, Queue, RunResult, RunState};
use crate::run::{execute_at, RunOptions, RunReport};
use crate::spec::{load, LauncherSpec, LoadOptions, LoadedSpec};
use crate::sweep::{toml_text, SweepRun};

/// Puts `runs` in the queue of `sweep_dir`, or joins the queue already there when it
/// contains the same runs, and writes the hparams plugin's experiment record.
pub fn enqueue(
    runs: &[SweepRun],
    spec_path: &Path,
    sweep_dir: &Path,
    data_dir: &Path,
) -> Result<Queue> {
    let experiment = runs
        .first()
        .map_or("experiment", |run| run.loaded.spec.experiment.name.as_str());
    let new_runs: Vec<NewRun> = runs.iter().map(new_run).collect();
    let data_dir =
        std::path::absolute(data_dir).map_err(|error| Error::io("resolve", data_dir, error))?;
    let queue = queue::create_or_join(
        sweep_dir,
        experiment,
        &spec_path.display().to_string(),
        &data_dir,
        &new_runs,
    )
    .map_err(Error::Queue)?;
    crate::sweep_records::write_experiment(&queue, runs)?;
    Ok(queue)
}

fn new_run(run: &SweepRun) -> NewRun {
    let mut loaded = run.loaded.clone();
    loaded.spec.sweep = None;
    // The launcher settings describe how runs are started, not what they compute, so a sweep
    // started again with other `--jobs` still matches its queue.
    let mut identity = loaded.spec.clone();
    identity.launcher = LauncherSpec::default();
    NewRun {
        label: run.label.clone(),
        overrides: overrides(run),
        spec_text: toml::to_string(&identity).unwrap_or_default(),
        resolved_text: loaded.resolved_text(),
    }
}

/// Formats the swept values of `run` as `key=value`.
pub fn overrides(run: &SweepRun) -> Vec<String> {
    run.assignments
        .iter()
        .map(|a| format!("{}={}", a.key, toml_text(&a.value)))
        .collect()
}

/// Requeues failed runs (`retry_failed`) and finished ones (`force`), all or only the run
/// `only`, reporting what it did.
pub fn requeue(queue: &Queue, retry_failed: bool, force: bool, only: Option<&str>) -> Result<()> {
    let mut states = Vec::new();
    if retry_failed || force {
        states.push(RunState::Failed);
    }
    if force {
        states.push(RunState::Done);
    }
    if states.is_empty() {
        return Ok(());
    }
    let labels = queue.requeue(&states, only).map_err(Error::Queue)?;
    if !labels.is_empty() {
        eprintln!("requeued {} run(s): {}", labels.len(), labels.join(", "));
    }
    Ok(())
}

/// Runs counted by [`work`].
#[derive(Debug, Default)]
pub struct WorkCount {
    pub done: usize,
    pub failed: usize,
}

/// Claims and runs queued runs until none is left (or `max_runs` ran), returning how many
/// this worker ran.
pub fn work(queue: &Queue, options: &RunOptions, max_runs: Option<usize>) -> Result<WorkCount> {
    let worker = queue::worker_name();
    let mut count = WorkCount::default();
    while max_runs.is_none_or(|max| count.done + count.failed < max) {
        let Some(claim) = queue.claim(&worker).map_err(Error::Queue)? else {
            break;
        };
        if run_claim(queue, claim, options, &worker)? {
            count.done += 1;
        } else {
            count.failed += 1;
        }
    }
    Ok(count)
}

/// Runs a claimed run, records its outcome in the queue and its hparams session records,
/// and returns whether it finished without failure.
pub fn run_claim(queue: &Queue, claim: Claim, options: &RunOptions, worker: &str) -> Result<bool> {
    let verb = if claim.resumed {
        "resuming"
    } else {
        "starting"
    };
    eprintln!("worker {worker}: {verb} {}", claim.label);
    let started = Instant::now();
    let outcome = run_claimed(&claim, options);
    let result = match &outcome {
        Ok(report) => RunResult::Done {
            metrics: metrics(report),
            seconds: report.wall_seconds,
        },
        Err(error) => failure(error),
    };
    if let Err(error) = crate::sweep_records::write_session(queue, &claim, &outcome) {
        tracing::warn!("hparams records of {} not written: {error}", claim.label);
    }
    let entry = queue.finish(claim, result).map_err(Error::Queue)?;
    let seconds = started.elapsed().as_secs_f64();
    match &outcome {
        Ok(_) => eprintln!("worker {worker}: {} done in {seconds:.1} s", entry.label),
        Err(error) => eprintln!(
            "worker {worker}: {} failed after {seconds:.1} s: {}",
            entry.label,
            first_line(&error.to_string())
        ),
    }
    Ok(outcome.is_ok())
}

/// Works through the queue, then waits for runs that other workers hold, taking over any
/// whose worker dies, so the summary printed afterwards is complete.
pub fn work_until_finished(queue: &Queue, options: &RunOptions) -> Result<()> {
    loop {
        work(queue, options, None)?;
        let entries = queue.entries().map_err(Error::Queue)?;
        let claimed = entries
            .iter()
            .filter(|entry| entry.state == RunState::Running && queue.is_locked(&entry.label))
            .count();
        if claimed == 0 {
            return Ok(());
        }
        tracing::debug!("waiting for {claimed} run(s) claimed by other workers");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

fn run_claimed(claim: &Claim, options: &RunOptions) -> Result<RunReport> {
    let loaded = load_run_spec(&claim.run_dir)?;
    execute_at(&loaded, &claim.run_dir, options)
}

/// Loads a run folder's `spec.resolved.toml` as it is: no environment or `--set` layers,
/// since they were applied when the run was queued.
pub fn load_run_spec(run_dir: &Path) -> Result<LoadedSpec> {
    let options = LoadOptions {
        spec_path: run_dir.join("spec.resolved.toml"),
        overrides: Vec::new(),
        env: Vec::new(),
    };
    Ok(load(&options)?)
}

/// Final figures of a run: test accuracy of each evaluation row as
/// `<eval>/<block>/<init>`, then the pretext task's as `pretext`.
pub fn metrics(report: &RunReport) -> Vec<(String, f64)> {
    report
        .evaluations
        .iter()
        .map(|row| {
            (
                format!("{}/{}/{}", row.eval, row.block, row.init),
                row.test_accuracy,
            )
        })
        .chain(
            report
                .pretext
                .iter()
                .map(|p| ("pretext".to_string(), p.test_accuracy)),
        )
        .collect()
}

fn failure(error: &Error) -> RunResult {
    let (stage, step) = match error {
        Error::NonFiniteLoss { stage, step, .. } => (Some(stage.clone()), Some(*step)),
        _ => (None, None),
    };
    RunResult::Failed {
        error: error.to_string(),
        stage,
        step,
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// Starts `jobs` worker subprocesses on this machine, each with an equal share of
/// `cores` as libtorch threads, and waits for them.
/// No more workers start than there are runs waiting. A worker dies with this process, so
/// stopping the command (SIGTERM, SIGINT) stops the sweep and leaves its runs to resume.
pub fn launch_local(queue: &Queue, jobs: usize, cores: usize, data_dir: &Path) -> Result<()> {
    let waiting = waiting_runs(queue)?;
    let jobs = jobs.min(waiting).max(1);
    let threads = (cores / jobs).max(1);
    let engine =
        std::env::current_exe().map_err(|error| Error::io("find", "runner-engine", error))?;
    eprintln!(
        "{jobs} workers on {}, {threads} libtorch thread(s) each",
        queue.dir.display()
    );
    if jobs > cores {
        tracing::warn!(
            "{jobs} jobs on {cores} cores: the workers share the cores and each runs slower; \
             `--jobs {cores}` keeps one core per worker"
        );
    }
    let parent = std::process::id();
    let mut children = Vec::new();
    for _ in 0..jobs {
        let mut command = Command::new(&engine);
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe calls (prctl, getppid, _exit).
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                // The parent may have died before prctl took effect.
                if libc::getppid() as u32 != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = command
            .arg("worker")
            .arg(&queue.dir)
            .arg("--threads")
            .arg(threads.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--log-level")
            .arg("warn")
            // Plain progress lines: several bars on one terminal would overwrite each other.
            .env("CI", "1")
            .env("OMP_NUM_THREADS", threads.to_string())
            .spawn()
            .map_err(|error| Error::io("start", &engine, error))?;
        children.push(child);
    }
    for mut child in children {
        let status = child
            .wait()
            .map_err(|error| Error::io("wait for", &engine, error))?;
        // Exit code 1 means a run failed, which the summary lists.
        if !matches!(status.code(), Some(0 | 1)) {
            eprintln!("a worker exited with {status}");
        }
    }
    Ok(())
}

/// Number of runs a worker can still claim: pending ones, and running ones that may turn
/// out interrupted.
fn waiting_runs(queue: &Queue) -> Result<usize> {
    let entries = queue.entries().map_err(Error::Queue)?;
    Ok(entries
        .iter()
        .filter(|entry| matches!(entry.state, RunState::Pending | RunState::Running))
        .count())
}

/// Writes a Slurm batch script that runs one `runner worker` per array task and submits
/// it with `sbatch`, returning the job id.
pub fn launch_slurm(queue: &Queue, launcher: &LauncherSpec, data_dir: &Path) -> Result<String> {
    let waiting = waiting_runs(queue)?;
    if waiting == 0 {
        return Err(Error::Queue(format!(
            "every run in {} is finished; nothing to submit (`--retry-failed` or `--force` \
             requeue runs)",
            queue.dir.display()
        )));
    }

    let slurm_dir = queue.dir.join("slurm");
    let active = active_jobs(&slurm_dir.join("jobs.txt"));
    if !active.is_empty() {
        return Err(Error::Queue(format!(
            "Slurm job {} of {} is still queued or running, and its tasks take the waiting \
             runs; `runner status {}` shows them. Submit again once it has ended, or after \
             `scancel {}`",
            active.join(", "),
            queue.dir.display(),
            queue.dir.display(),
            active.join(" ")
        )));
    }
    std::fs::create_dir_all(&slurm_dir).map_err(|error| Error::io("create", &slurm_dir, error))?;
    let engine =
        std::env::current_exe().map_err(|error| Error::io("find", "runner-engine", error))?;
    let sweep_dir =
        std::path::absolute(&queue.dir).map_err(|error| Error::io("resolve", &queue.dir, error))?;

    let script = slurm_script(launcher, &engine, &sweep_dir, data_dir, waiting);
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    let path = slurm_dir.join(format!("array_{stamp}.sh"));
    std::fs::write(&path, script).map_err(|error| Error::io("write", &path, error))?;

    let output = Command::new("sbatch")
        .arg("--parsable")
        .arg(&path)
        .output()
        .map_err(|error| {
            Error::Queue(format!(
                "cannot run sbatch: {error}; is Slurm installed here? (scripts/slurm-cluster \
                 start sets up a one-machine cluster)"
            ))
        })?;
    if !output.status.success() {
        return Err(Error::Queue(format!(
            "sbatch {} failed: {}. The queue is kept; run the same command again to submit it",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }

    let job = String::from_utf8_lossy(&output.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();

    let jobs_file = slurm_dir.join("jobs.txt");
    let line = format!("{job} {} {waiting} tasks\n", path.display());
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&jobs_file)
        .and_then(|mut file| std::io::Write::write_all(&mut file, line.as_bytes()))
        .map_err(|error| Error::io("write", &jobs_file, error))?;
    Ok(job)
}

/// Job ids listed in `jobs_file` that `squeue` still shows (queued or running). Without a
/// working `squeue` no job counts as active.
fn active_jobs(jobs_file: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(jobs_file) else {
        return Vec::new();
    };
    let ids: Vec<&str> = text
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    if ids.is_empty() {
        return Vec::new();
    }
    let Ok(output) = Command::new("squeue")
        .args(["--noheader", "--array", "--format=%A", "--jobs"])
        .arg(ids.join(","))
        .output()
    else {
        return Vec::new();
    };
    // squeue exits non-zero when none of the ids is known any more.
    let listed = String::from_utf8_lossy(&output.stdout);
    let mut active: Vec<String> = ids
        .iter()
        .filter(|id| listed.lines().any(|line| line.trim() == **id))
        .map(|id| id.to_string())
        .collect();
    active.dedup();
    active
}

fn slurm_script(
    launcher: &LauncherSpec,
    engine: &Path,
    sweep_dir: &Path,
    data_dir: &Path,
    tasks: usize,
) -> String {
    let slurm = &launcher.slurm;
    let name = sweep_dir
        .file_name()
        .map_or("sweep".into(), |name| name.to_string_lossy().into_owned());
    let mut lines = vec![
        "#!/bin/bash".to_string(),
        format!("#SBATCH --job-name=runner-{}", shell_word_safe(&name)),
    ];

    let throttle = if launcher.jobs > 0 {
        format!("%{}", launcher.jobs)
    } else {
        String::new()
    };
    lines.push(format!("#SBATCH --array=0-{}{throttle}", tasks - 1));
    lines.push(format!(
        "#SBATCH --output={}",
        sweep_dir.join("slurm").join("%A_%a.out").display()
    ));

    if !slurm.partition.is_empty() {
        lines.push(format!("#SBATCH --partition={}", slurm.partition));
    }
    if !slurm.time.is_empty() {
        lines.push(format!("#SBATCH --time={}", slurm.time));
    }
    if slurm.cpus_per_task > 0 {
        lines.push(format!("#SBATCH --cpus-per-task={}", slurm.cpus_per_task));
    }
    if slurm.gpus > 0 {
        lines.push(format!("#SBATCH --gpus-per-task={}", slurm.gpus));
    }
    for option in &slurm.extra {
        lines.push(format!("#SBATCH {option}"));
    }

    lines.push(String::new());
    lines.push(
        "# Each task is one worker of the sweep's queue; it claims one run, so a task never \
         runs a run that another task holds."
            .into(),
    );
    lines.push(format!(
        "exec {} worker {} --max-runs 1 --data-dir {} --threads \"${{SLURM_CPUS_PER_TASK:-1}}\"",
        quote(&engine.display().to_string()),
        quote(&sweep_dir.display().to_string()),
        quote(&data_dir.display().to_string()),
    ));
    lines.join("\n") + "\n"
}

fn shell_word_safe(text: &str) -> String {
    text.chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || ch == '-' {
                ch
            } else {
                '_'
            }
        })
        .collect()
}

/// Quotes `text` for a POSIX shell.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// Formats the end-of-sweep summary (one line per run) and returns whether every run
/// finished without failure.
pub fn summary(queue: &Queue) -> Result<(String, bool)> {
    let entries = queue.entries().map_err(Error::Queue)?;
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    let mut unfinished = 0;
    for entry in &entries {
        let figure = match entry.state {
            RunState::Done => entry.headline().unwrap_or_default(),
            RunState::Failed => {
                let error = entry.last_error().unwrap_or_default();
                failures.push(format!(
                    "  {}: {error}\n    log: {}",
                    entry.label,
                    queue.dir.join(&entry.label).join("run.log").display()
                ));
                error.to_string()
            }
            RunState::Pending | RunState::Running => {
                unfinished += 1;
                String::new()
            }
        };
        let state = queue.state_name(entry);
        lines.push(format!("  {:<32} {state:<11} {figure}", entry.label));
    }
    let mut text = format!(
        "Sweep {} ({} runs)\n\n{}\n",
        queue.dir.display(),
        entries.len(),
        lines.join("\n")
    );
    if !failures.is_empty() {
        text.push_str(&format!(
            "\n{} run(s) failed (`--retry-failed` runs them again):\n{}\n",
            failures.len(),
            failures.join("\n")
        ));
    }
    if unfinished > 0 {
        text.push_str(&format!(
            "\n{unfinished} run(s) not finished; `runner resume {}` continues them\n",
            queue.dir.display()
        ));
    }
    Ok((text, failures.is_empty() && unfinished == 0))
}

/// Converts a swept value to an hparams plugin value.
pub fn hparam_value(value: &figment::value::Value) -> HParamValue {
    use figment::value::Value;
    match value {
        Value::Bool(_, flag) => HParamValue::Bool(*flag),
        Value::Num(..) => HParamValue::Number(value.to_f64().unwrap_or(f64::NAN)),
        Value::String(_, text) => HParamValue::Text(text.clone()),
        other => HParamValue::Text(toml_text(other)),
    }
}
