//! The on-disk queue of a sweep: concurrent workers, resuming after SIGKILL, refusing
//! another sweep's folder, `--force`, and the Slurm launcher on a real one-machine cluster.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{data_dir, python, runner, runner_command, stderr, stdout, tiny_spec};
use serde_json::Value;

/// Writes the tiny spec without evaluations: a pretext stage of `epochs` epochs.
fn pretext_spec(dir: &Path, train: usize, epochs: usize) -> PathBuf {
    let text = tiny_spec(train, 40)
        .replace("[[eval]]", "[[unused]]")
        .split("[[unused]]")
        .next()
        .unwrap()
        .replace("epochs = 1", &format!("epochs = {epochs}"));
    let path = dir.join("tiny.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn entry(sweep: &Path, label: &str) -> Value {
    let path = sweep.join("queue").join(format!("{label}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn labels(sweep: &Path) -> Vec<String> {
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(sweep.join("sweep.json")).unwrap()).unwrap();
    manifest["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["label"].as_str().unwrap().to_string())
        .collect()
}

fn event_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().contains("tfevents"))
        .collect()
}

/// Runs `runner SPEC --sweep-dir SWEEP --sweep VALUES` on the data folder of the tests.
fn run_sweep(work: &Path, spec: &Path, sweep: &Path, values: &str) -> Output {
    let data = data_dir();
    runner(
        work,
        &[
            spec.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--sweep-dir",
            sweep.to_str().unwrap(),
            "--sweep",
            values,
        ],
    )
}

#[test]
fn queue_two_workers_run_each_once() {
    let work = tempfile::tempdir().unwrap();
    let spec = pretext_spec(work.path(), 128, 1);
    let sweep = work.path().join("sweep");
    let data = data_dir();
    let args = [
        spec.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--sweep-dir",
        sweep.to_str().unwrap(),
        "--sweep",
        "experiment.seed=1,2,3,4,5,6,7,8",
        "--set",
        "device.threads=1",
    ];
    // Two sweeps of the same runs started together join one queue.
    let mut first = runner_command(work.path(), &args).spawn().unwrap();
    let mut second = runner_command(work.path(), &args).spawn().unwrap();
    assert!(first.wait().unwrap().success());
    assert!(second.wait().unwrap().success());

    let labels = labels(&sweep);
    assert_eq!(labels.len(), 8);
    let mut workers = std::collections::BTreeSet::new();
    for label in &labels {
        let entry = entry(&sweep, label);
        workers.insert(entry["attempts"][0]["worker"].as_str().unwrap().to_string());
        assert_eq!(entry["state"], "done", "{label}: {entry}");
        assert_eq!(
            entry["attempts"].as_array().unwrap().len(),
            1,
            "{label}: {entry}"
        );
        let pretext = sweep.join(label).join("pretext");
        assert_eq!(event_files(&pretext).len(), 1, "{label}");
    }
    assert_eq!(workers.len(), 2, "both workers took runs: {workers:?}");
}

/// Reads every stage's scalars with TensorBoard's EventAccumulator.
fn scalars(run_dir: &Path) -> Value {
    let output = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/read_events.py"))
        .arg(run_dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn resume_after_sigkill_matches_uninterrupted() {
    let work = tempfile::tempdir().unwrap();
    let spec = pretext_spec(work.path(), 1024, 4);
    let data = data_dir();
    let sweep_args = |sweep: &Path| -> Vec<String> {
        [
            spec.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--sweep-dir",
            sweep.to_str().unwrap(),
            "--sweep",
            "train.lr=0.05",
            "--set",
            "device.threads=1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };

    let whole = work.path().join("whole");
    let output = runner(work.path(), &as_strs(&sweep_args(&whole)));
    assert!(output.status.success(), "{}", stderr(&output));

    let killed = work.path().join("killed");
    let mut child = runner_command(work.path(), &as_strs(&sweep_args(&killed)))
        .spawn()
        .unwrap();
    // Wait for the first epoch's checkpoint, then kill during the second epoch.
    let checkpoint = killed.join("lr=0.05/pretext/checkpoint.safetensors");
    let started = Instant::now();
    while !checkpoint.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(150));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let interrupted = entry(&killed, "lr=0.05");
    assert_eq!(
        interrupted["state"], "running",
        "the kill came too late: {interrupted}"
    );
    assert!(!killed.join("lr=0.05/pretext/summary.json").exists());

    let status = runner(work.path(), &["status", killed.to_str().unwrap()]);
    assert!(
        stdout(&status).contains("interrupted"),
        "{}",
        stdout(&status)
    );

    let resumed = runner(work.path(), &["resume", killed.to_str().unwrap()]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(
        stderr(&resumed).contains("resuming after epoch"),
        "{}",
        stderr(&resumed)
    );
    let entry_after = entry(&killed, "lr=0.05");
    assert_eq!(entry_after["state"], "done");
    assert_eq!(entry_after["attempts"][0]["outcome"], "interrupted");
    assert_eq!(entry_after["metrics"], entry(&whole, "lr=0.05")["metrics"]);

    // Every step once, with the uninterrupted run's values: the curves continue where
    // they stopped.
    let expected = scalars(&whole.join("lr=0.05"));
    assert_eq!(
        event_files(&killed.join("lr=0.05/pretext")).len(),
        1,
        "the resumed stage appends to its event file"
    );
    let actual = scalars(&killed.join("lr=0.05"));
    let steps: Vec<u64> = actual["pretext"]["scalars"]["train/loss"]
        .as_array()
        .unwrap()
        .iter()
        .map(|point| point[0].as_u64().unwrap())
        .collect();
    let total = steps.len() as u64;
    assert_eq!(steps, (1..=total).collect::<Vec<_>>());
    assert_eq!(total, 4 * (1024 / 64));
    let without_timing = |mut stage: Value| {
        stage["scalars"]
            .as_object_mut()
            .unwrap()
            .remove("epoch/images_per_second");
        stage
    };
    assert_eq!(
        without_timing(actual["pretext"].clone()),
        without_timing(expected["pretext"].clone())
    );
}

#[test]
fn sweep_dir_rejects_other_sweep_and_needs_force() {
    let work = tempfile::tempdir().unwrap();
    let spec = pretext_spec(work.path(), 128, 1);
    let sweep = work.path().join("sweep");
    let data = data_dir();
    let args = |values: &str| -> Vec<String> {
        [
            spec.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--sweep-dir",
            sweep.to_str().unwrap(),
            "--sweep",
            values,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |args: &[String]| {
        runner(
            work.path(),
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    };

    assert!(run(&args("train.lr=0.05,0.1")).status.success());
    let manifest = std::fs::read(sweep.join("sweep.json")).unwrap();
    let metrics = std::fs::read(sweep.join("lr=0.05/metrics.json")).unwrap();

    let other = run(&args("train.lr=0.05,0.2"));
    assert_eq!(other.status.code(), Some(2));
    let message = stderr(&other);
    assert!(
        message.contains("holds the queue of another sweep"),
        "{message}"
    );
    assert!(message.contains("run `lr=0.2` is new"), "{message}");
    assert_eq!(std::fs::read(sweep.join("sweep.json")).unwrap(), manifest);

    // The same sweep again skips its finished runs.
    let again = run(&args("train.lr=0.05,0.1"));
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        entry(&sweep, "lr=0.05")["attempts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        std::fs::read(sweep.join("lr=0.05/metrics.json")).unwrap(),
        metrics
    );

    let mut forced = args("train.lr=0.05,0.1");
    forced.push("--force".into());
    let forced = run(&forced);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_eq!(
        entry(&sweep, "lr=0.05")["attempts"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(event_files(&sweep.join("lr=0.05/pretext")).len(), 1);
}

#[test]
fn sweep_dir_rejects_non_empty_folder() {
    let work = tempfile::tempdir().unwrap();
    let spec = pretext_spec(work.path(), 128, 1);
    let folder = work.path().join("notes");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("notes.txt"), "keep").unwrap();
    let output = run_sweep(work.path(), &spec, &folder, "train.lr=0.05");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("is not empty"),
        "{}",
        stderr(&output)
    );
    let names: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["notes.txt"]);
}

#[test]
fn retry_failed_writes_each_step_once() {
    let work = tempfile::tempdir().unwrap();
    let spec = pretext_spec(work.path(), 256, 1);
    let sweep = work.path().join("sweep");
    let sweep_str = sweep.to_str().unwrap();
    let output = run_sweep(work.path(), &spec, &sweep, "train.lr=1e10");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(entry(&sweep, "lr=1e10")["state"], "failed");

    let idle = runner(work.path(), &["worker", sweep_str]);
    assert!(idle.status.success(), "{}", stderr(&idle));
    assert!(stderr(&idle).contains("nothing to do"), "{}", stderr(&idle));

    let retried = runner(work.path(), &["resume", sweep_str, "--retry-failed"]);
    assert_eq!(retried.status.code(), Some(1), "{}", stderr(&retried));
    let failed = entry(&sweep, "lr=1e10");
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["attempts"].as_array().unwrap().len(), 2);

    // The second attempt replaced the first's event file instead of adding a second one.
    let pretext = sweep.join("lr=1e10/pretext");
    assert_eq!(event_files(&pretext).len(), 1);
    let scalars = scalars(&sweep.join("lr=1e10"));
    let steps: Vec<u64> = scalars["pretext"]["scalars"]["train/loss"]
        .as_array()
        .unwrap()
        .iter()
        .map(|point| point[0].as_u64().unwrap())
        .collect();
    assert!(!steps.is_empty());
    let total = steps.len() as u64;
    assert_eq!(steps, (1..=total).collect::<Vec<_>>());

    // A worker whose run fails exits with 1 and reports the failure.
    let path = sweep.join("queue/lr=1e10.json");
    let mut pending = entry(&sweep, "lr=1e10");
    pending["state"] = "pending".into();
    std::fs::write(&path, pending.to_string()).unwrap();
    let worker = runner(work.path(), &["worker", sweep_str]);
    assert_eq!(worker.status.code(), Some(1), "{}", stderr(&worker));
    assert!(stderr(&worker).contains("1 failed"), "{}", stderr(&worker));
}

#[test]
fn resume_run_dir_goes_through_queue() {
    let work = tempfile::tempdir().unwrap();
    let spec = pretext_spec(work.path(), 128, 1);
    let sweep = work.path().join("sweep");
    let output = run_sweep(work.path(), &spec, &sweep, "train.lr=0.05,0.1");
    assert!(output.status.success(), "{}", stderr(&output));
    let run_dir = sweep.join("lr=0.1");

    // A finished run is left alone without --force.
    let finished = runner(work.path(), &["resume", run_dir.to_str().unwrap()]);
    assert!(finished.status.success(), "{}", stderr(&finished));
    assert!(
        stderr(&finished).contains("--force"),
        "{}",
        stderr(&finished)
    );
    assert_eq!(
        entry(&sweep, "lr=0.1")["attempts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // While another process has claimed the run, resuming it is rejected.
    let lock = std::fs::File::open(sweep.join("queue/lr=0.1.lock")).unwrap();
    lock.lock().unwrap();
    let busy = runner(
        work.path(),
        &["resume", run_dir.to_str().unwrap(), "--force"],
    );
    assert_eq!(busy.status.code(), Some(1), "{}", stderr(&busy));
    assert!(
        stderr(&busy).contains("another worker is running it"),
        "{}",
        stderr(&busy)
    );
    drop(lock);

    // --force runs it again and records the attempt in the queue.
    let forced = runner(
        work.path(),
        &["resume", run_dir.to_str().unwrap(), "--force"],
    );
    assert!(forced.status.success(), "{}", stderr(&forced));
    let rerun = entry(&sweep, "lr=0.1");
    assert_eq!(rerun["state"], "done");
    assert_eq!(rerun["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(
        entry(&sweep, "lr=0.05")["attempts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn run_folder_lock_rejects_second_process() {
    let work = tempfile::tempdir().unwrap();
    let spec = pretext_spec(work.path(), 128, 1);
    let runs = work.path().join("runs");
    let data = data_dir();
    let output = runner(
        work.path(),
        &[
            spec.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--runs-dir",
            runs.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let run_dir = std::fs::read_dir(runs.join("tiny"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();

    let lock = std::fs::File::open(run_dir.join("run.lock")).unwrap();
    lock.lock().unwrap();
    let busy = runner(
        work.path(),
        &["resume", run_dir.to_str().unwrap(), "--force"],
    );
    assert_eq!(busy.status.code(), Some(1), "{}", stderr(&busy));
    assert!(stderr(&busy).contains("is in use"), "{}", stderr(&busy));
    assert!(
        run_dir.join("metrics.json").is_file(),
        "a refused --force empties nothing"
    );
}

#[test]
fn slurm_launcher_runs_queue() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm-cluster");
    let cluster = Command::new(&script).arg("start").output().unwrap();
    if !cluster.status.success() {
        eprintln!(
            "skipped: no Slurm cluster on this machine ({})",
            stderr(&cluster).trim()
        );
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let spec = pretext_spec(work.path(), 128, 1);
    let sweep = work.path().join("sweep");
    let data = data_dir();
    let output = runner(
        work.path(),
        &[
            spec.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--sweep-dir",
            sweep.to_str().unwrap(),
            "--sweep",
            "train.lr=0.05,0.1,0.2",
            "--launcher",
            "slurm",
            "--set",
            "launcher.slurm.time=\"10:00\"",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("submitted Slurm job array"),
        "{}",
        stdout(&output)
    );

    let started = Instant::now();
    loop {
        let states: Vec<String> = labels(&sweep)
            .iter()
            .map(|label| entry(&sweep, label)["state"].as_str().unwrap().to_string())
            .collect();
        if states.iter().all(|state| state == "done") {
            break;
        }
        assert!(
            !states.iter().any(|state| state == "failed"),
            "{states:?}; see {}/slurm",
            sweep.display()
        );
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "not finished: {states:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for label in labels(&sweep) {
        let entry = entry(&sweep, &label);
        assert_eq!(entry["attempts"].as_array().unwrap().len(), 1, "{entry}");
    }
    let script_text = std::fs::read_dir(sweep.join("slurm"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|ext| ext == "sh"))
        .map(|path| std::fs::read_to_string(path).unwrap())
        .unwrap();
    assert!(script_text.contains("#SBATCH --array=0-2"), "{script_text}");
    assert!(
        script_text.contains("#SBATCH --time=10:00"),
        "{script_text}"
    );
    let status = runner(work.path(), &["status", sweep.to_str().unwrap()]);
    assert!(stdout(&status).contains("3 done"), "{}", stdout(&status));
}
