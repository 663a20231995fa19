//! The on-disk run queue of a sweep.
//!
//! ```text
//! SWEEP_DIR/
//!     sweep.json              identity: experiment, spec, data folder, runs and their spec hashes
//!     queue/<label>.json      one entry per run: state and attempt history
//!     queue/<label>.lock      held (flock) by the worker running that run
//!     <label>/spec.resolved.toml, run.log, stage folders, metrics.json
//! ```
//!
//! A worker claims a run by taking its lock file without waiting, then reading its entry.
//! A `pending` run is claimed, and so is a `running` one: the kernel drops a process's
//! locks when it exits, even by SIGKILL, so a free lock means the worker that ran it has
//! died. That run then resumes from its checkpoints. Only the lock holder writes an
//! entry, always through a temporary file and a rename. So any number of workers, on one
//! machine or on several sharing a file system with working locks, run each run once.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Version of the queue layout, stored in `sweep.json`.
const FORMAT: u32 = 1;

/// State of a run in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Pending,
    Running,
    Done,
    Failed,
}

impl RunState {
    pub fn name(self) -> &'static str {
        match self {
            RunState::Pending => "pending",
            RunState::Running => "running",
            RunState::Done => "done",
            RunState::Failed => "failed",
        }
    }
}

/// Outcome of one attempt at a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Done,
    Failed,
    /// The worker died (killed, machine lost) before recording an end.
    Interrupted,
}

/// One attempt at a run by one worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    /// `host:pid` of the worker.
    pub worker: String,
    pub started: String,
    pub ended: Option<String>,
    pub outcome: Option<Outcome>,
    /// The error of a failed attempt.
    pub error: Option<String>,
    /// Stage and optimiser step where a failed attempt stopped, when known.
    pub stage: Option<String>,
    pub step: Option<usize>,
}

/// A run's queue entry, `queue/<label>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub label: String,
    /// Swept values of the run, as `key=value`.
    pub overrides: Vec<String>,
    pub state: RunState,
    pub attempts: Vec<Attempt>,
    /// Final figures of a finished run: test accuracy of each evaluation row as
    /// `<eval>/<block>/<init>`, then of the pretext task as `pretext`.
    pub metrics: Vec<(String, f64)>,
    /// Training time of the finished run in seconds, over all attempts.
    pub seconds: Option<f64>,
}

/// One run in `sweep.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunIdentity {
    pub label: String,
    pub overrides: Vec<String>,
    /// Hash of the run's complete spec, to tell a different spec's queue apart.
    pub spec_hash: String,
}

/// `sweep.json`: what a queue folder holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub experiment: String,
    /// The spec file the sweep was expanded from, as given.
    pub spec: String,
    pub created: String,
    /// Absolute data folder that relative `data.root` paths resolve against.
    pub data_dir: PathBuf,
    pub runs: Vec<RunIdentity>,
}

/// A run to enqueue: identity and complete resolved spec text.
pub struct NewRun {
    pub label: String,
    pub overrides: Vec<String>,
    /// The spec text that identifies the run (its hash goes into `sweep.json`).
    pub spec_text: String,
    /// The resolved spec written as `<label>/spec.resolved.toml`.
    pub resolved_text: String,
}

/// An opened queue folder.
#[derive(Debug, Clone)]
pub struct Queue {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// A run claimed by this worker; the run's lock is held until it is dropped.
pub struct Claim {
    pub label: String,
    pub run_dir: PathBuf,
    pub entry: Entry,
    /// Whether an earlier attempt was interrupted, so the run resumes from checkpoints.
    pub resumed: bool,
    _lock: File,
}

/// Creates the queue in `dir` or joins the one there.
///
/// # Errors
///
/// When `dir` contains a queue of other runs (another spec, or other sweep values). The
/// message names the runs that differ, and nothing in the folder is changed.
pub fn create_or_join(
    dir: &Path,
    experiment: &str,
    spec: &str,
    data_dir: &Path,
    runs: &[NewRun],
) -> Result<Queue, String> {
    check_usable(dir)?;
    let queue_dir = dir.join("queue");
    std::fs::create_dir_all(&queue_dir).map_err(|error| {
        format!(
            "cannot create {}: {error}; set `--runs-dir` or `--sweep-dir` to a writable folder",
            queue_dir.display()
        )
    })?;
    // One process at a time sets the queue up, so two sweeps started together into one
    // folder either both join the same queue or the second finds the first's runs.
    let guard = lock_file(&queue_dir.join("setup.lock"))?;
    guard
        .lock()
        .map_err(|error| format!("cannot lock {}: {error}", queue_dir.display()))?;

    let identities: Vec<RunIdentity> = runs
        .iter()
        .map(|run| RunIdentity {
            label: run.label.clone(),
            overrides: run.overrides.clone(),
            spec_hash: spec_hash(&run.spec_text),
        })
        .collect();
    let manifest_path = dir.join("sweep.json");
    if manifest_path.exists() {
        let queue = open(dir)?;
        check_same_runs(&queue, &identities)?;
        return Ok(queue);
    }
    // Checked again under the lock: another process may have filled the folder meanwhile.
    check_usable(dir)?;
    for run in runs {
        let run_dir = dir.join(&run.label);
        std::fs::create_dir_all(&run_dir)
            .map_err(|error| format!("cannot create {}: {error}", run_dir.display()))?;
        write_atomic(&run_dir.join("spec.resolved.toml"), &run.resolved_text)?;
        let entry = Entry {
            label: run.label.clone(),
            overrides: run.overrides.clone(),
            state: RunState::Pending,
            attempts: Vec::new(),
            metrics: Vec::new(),
            seconds: None,
        };
        write_entry(&queue_dir, &entry)?;
    }
    let manifest = Manifest {
        format: FORMAT,
        experiment: experiment.into(),
        spec: spec.into(),
        created: now(),
        data_dir: data_dir.to_path_buf(),
        runs: identities,
    };
    // Written last: a folder with sweep.json contains a complete queue.
    write_json(&manifest_path, &manifest)?;
    Ok(Queue {
        dir: dir.to_path_buf(),
        manifest,
    })
}

/// Checks that `dir` is missing, empty, or contains a queue (`sweep.json`, or the `queue`
/// folder of a queue being set up), so that setting up a queue overwrites nothing.
fn check_usable(dir: &Path) -> Result<(), String> {
    if !dir.exists() || dir.join("sweep.json").exists() {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|error| format!("cannot read {}: {error}", dir.display()))?;
    if let Some(entry) = entries.flatten().find(|entry| entry.file_name() != "queue") {
        return Err(format!(
            "{} is not empty ({} is there) and holds no sweep.json; choose an empty or new \
             folder with `--sweep-dir`",
            dir.display(),
            entry.file_name().to_string_lossy()
        ));
    }
    Ok(())
}

/// Opens the queue in `dir`.
pub fn open(dir: &Path) -> Result<Queue, String> {
    let path = dir.join("sweep.json");
    let text = std::fs::read_to_string(&path).map_err(|error| {
        format!(
            "cannot read {}: {error}; pass a sweep folder (runs/<experiment>/sweep_<name>)",
            path.display()
        )
    })?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|error| {
        format!(
            "{} is not a sweep manifest ({error}); was it written by another version of runner?",
            path.display()
        )
    })?;
    if manifest.format != FORMAT {
        return Err(format!(
            "{} has queue format {}, this runner reads format {FORMAT}",
            path.display(),
            manifest.format
        ));
    }
    Ok(Queue {
        dir: dir.to_path_buf(),
        manifest,
    })
}

fn check_same_runs(queue: &Queue, runs: &[RunIdentity]) -> Result<(), String> {
    let existing = &queue.manifest.runs;
    if existing == runs {
        return Ok(());
    }
    let mut differences = Vec::new();
    for run in runs {
        match existing.iter().find(|old| old.label == run.label) {
            None => differences.push(format!("run `{}` is new", run.label)),
            Some(old) if old.spec_hash != run.spec_hash => {
                differences.push(format!("run `{}` has a different spec", run.label))
            }
            Some(_) => {}
        }
    }
    for old in existing {
        if !runs.iter().any(|run| run.label == old.label) {
            differences.push(format!("run `{}` is not in this sweep", old.label));
        }
    }
    if differences.is_empty() {
        differences.push("the runs are in another order".into());
    }
    const SHOWN: usize = 10;
    let hidden = differences.len().saturating_sub(SHOWN);
    differences.truncate(SHOWN);
    if hidden > 0 {
        differences.push(format!("and {hidden} more"));
    }
    Err(format!(
        "{} holds the queue of another sweep (created {} from {}, with other runs or \
         values); nothing was changed:\n  {}\nPass `--sweep-dir` with a new folder to start \
         this sweep, or `runner resume {}` to continue that one",
        queue.dir.display(),
        queue.manifest.created,
        queue.manifest.spec,
        differences.join("\n  "),
        queue.dir.display()
    ))
}

impl Entry {
    /// First figure of a finished run, as `name 12.34 %`.
    pub fn headline(&self) -> Option<String> {
        self.metrics
            .first()
            .map(|(name, value)| format!("{name} {:.2} %", 100.0 * value))
    }

    /// First line of the error of the last attempt.
    pub fn last_error(&self) -> Option<&str> {
        self.attempts
            .last()
            .and_then(|attempt| attempt.error.as_deref())
            .and_then(|error| error.lines().next())
    }
}

impl Queue {
    /// Returns true when `entry` is marked running but no live worker holds its lock.
    pub fn is_interrupted(&self, entry: &Entry) -> bool {
        entry.state == RunState::Running && !self.is_locked(&entry.label)
    }

    /// Name of the state of `entry` as status and reports show it: `interrupted` for a
    /// running run whose worker is gone.
    pub fn state_name(&self, entry: &Entry) -> &'static str {
        if self.is_interrupted(entry) {
            "interrupted"
        } else {
            entry.state.name()
        }
    }

    fn queue_dir(&self) -> PathBuf {
        self.dir.join("queue")
    }

    /// Reads every entry, in the sweep's order.
    pub fn entries(&self) -> Result<Vec<Entry>, String> {
        self.manifest
            .runs
            .iter()
            .map(|run| read_entry(&self.queue_dir(), &run.label))
            .collect()
    }

    /// Returns true when another worker has locked the run `label`.
    pub fn is_locked(&self, label: &str) -> bool {
        let Ok(file) = lock_file(&self.queue_dir().join(format!("{label}.lock"))) else {
            return false;
        };
        file.try_lock().is_err()
    }

    /// Claims the next runnable run for `worker`: the first pending run, or a run whose
    /// worker died. Returns `None` when every run is finished or held by a live worker.
    pub fn claim(&self, worker: &str) -> Result<Option<Claim>, String> {
        for run in &self.manifest.runs {
            if let Some(claim) = self.claim_run(worker, &run.label)? {
                return Ok(Some(claim));
            }
        }
        Ok(None)
    }

    /// Claims the run `label` for `worker` if it is pending or its worker died. Returns
    /// `None` when it is finished, failed or held by a live worker.
    pub fn claim_run(&self, worker: &str, label: &str) -> Result<Option<Claim>, String> {
        let lock = lock_file(&self.queue_dir().join(format!("{label}.lock")))?;
        if lock.try_lock().is_err() {
            return Ok(None);
        }
        let mut entry = read_entry(&self.queue_dir(), label)?;
        let resumed = match entry.state {
            RunState::Pending => false,
            RunState::Running => {
                if let Some(last) = entry.attempts.last_mut() {
                    if last.outcome.is_none() {
                        last.outcome = Some(Outcome::Interrupted);
                        // The worker appended to run.log until it died.
                        last.ended = last_write(&self.dir.join(label).join("run.log"));
                    }
                }
                true
            }
            RunState::Done | RunState::Failed => return Ok(None),
        };
        entry.state = RunState::Running;
        entry.attempts.push(Attempt {
            worker: worker.into(),
            started: now(),
            ended: None,
            outcome: None,
            error: None,
            stage: None,
            step: None,
        });
        write_entry(&self.queue_dir(), &entry)?;
        Ok(Some(Claim {
            label: label.to_string(),
            run_dir: self.dir.join(label),
            entry,
            resumed,
            _lock: lock,
        }))
    }

    /// Records the end of a claimed run and releases it.
    pub fn finish(&self, mut claim: Claim, result: RunResult) -> Result<Entry, String> {
        let entry = &mut claim.entry;
        if let Some(attempt) = entry.attempts.last_mut() {
            attempt.ended = Some(now());
            match &result {
                RunResult::Done { .. } => attempt.outcome = Some(Outcome::Done),
                RunResult::Failed { error, stage, step } => {
                    attempt.outcome = Some(Outcome::Failed);
                    attempt.error = Some(error.clone());
                    attempt.stage = stage.clone();
                    attempt.step = *step;
                }
            }
        }
        match result {
            RunResult::Done { metrics, seconds } => {
                entry.state = RunState::Done;
                entry.metrics = metrics;
                entry.seconds = Some(attempts_seconds(&entry.attempts).unwrap_or(seconds));
            }
            RunResult::Failed { .. } => {
                entry.state = RunState::Failed;
                entry.seconds = attempts_seconds(&entry.attempts);
            }
        }
        write_entry(&self.queue_dir(), entry)?;
        Ok(claim.entry)
    }

    /// Puts runs in `states` back to pending, for `--retry-failed` (failed runs) and
    /// `--force` (finished ones too). A forced run's folder is emptied but for its spec.
    /// Returns the labels requeued; runs held by a live worker are left alone.
    /// `only` restricts this to one run.
    pub fn requeue(&self, states: &[RunState], only: Option<&str>) -> Result<Vec<String>, String> {
        let mut requeued = Vec::new();
        for run in &self.manifest.runs {
            if only.is_some_and(|label| label != run.label) {
                continue;
            }
            let lock = lock_file(&self.queue_dir().join(format!("{}.lock", run.label)))?;
            if lock.try_lock().is_err() {
                continue;
            }
            let mut entry = read_entry(&self.queue_dir(), &run.label)?;
            if !states.contains(&entry.state) {
                continue;
            }
            if entry.state == RunState::Done {
                clear_run_dir(&self.dir.join(&run.label))?;
            }
            entry.state = RunState::Pending;
            entry.metrics.clear();
            entry.seconds = None;
            write_entry(&self.queue_dir(), &entry)?;
            requeued.push(run.label.clone());
        }
        Ok(requeued)
    }
}

/// Result of a claimed run.
pub enum RunResult {
    Done {
        metrics: Vec<(String, f64)>,
        seconds: f64,
    },
    Failed {
        error: String,
        stage: Option<String>,
        step: Option<usize>,
    },
}

/// Removes everything in a run folder but its resolved spec and its lock file, so the run
/// starts afresh.
pub fn clear_run_dir(run_dir: &Path) -> Result<(), String> {
    let entries = std::fs::read_dir(run_dir)
        .map_err(|error| format!("cannot read {}: {error}", run_dir.display()))?;
    for entry in entries.flatten() {
        if entry.file_name() == "spec.resolved.toml" || entry.file_name() == "run.lock" {
            continue;
        }
        let path = entry.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|error| format!("cannot remove {}: {error}", path.display()))?;
    }
    Ok(())
}

/// Formats `runner status`: one line per run with its state, attempts and last error or
/// first figure, then the counts per state.
pub fn status_table(queue: &Queue) -> Result<String, String> {
    let entries = queue.entries()?;
    let width = entries
        .iter()
        .map(|entry| entry.label.len())
        .max()
        .unwrap_or(0)
        .max(5);
    let mut text = format!(
        "{} ({}, {} runs)\n\n{:<width$}  {:<11}  {:>8}  {}\n",
        queue.dir.display(),
        queue.manifest.spec,
        entries.len(),
        "run",
        "state",
        "attempts",
        "detail"
    );
    let mut counts = [0usize; 5];
    for entry in &entries {
        let interrupted = queue.is_interrupted(entry);
        let state = queue.state_name(entry);
        let index = match (entry.state, interrupted) {
            (RunState::Pending, _) => 0,
            (RunState::Running, false) => 1,
            (RunState::Running, true) => 2,
            (RunState::Done, _) => 3,
            (RunState::Failed, _) => 4,
        };
        counts[index] += 1;
        let detail = match entry.state {
            RunState::Done => entry.headline().unwrap_or_default(),
            RunState::Failed => entry
                .last_error()
                .map(|line| format!("{line} (see {}/run.log)", entry.label))
                .unwrap_or_default(),
            RunState::Running => entry
                .attempts
                .last()
                .map(|attempt| format!("{} since {}", attempt.worker, attempt.started))
                .unwrap_or_default(),
            RunState::Pending => String::new(),
        };
        text.push_str(&format!(
            "{:<width$}  {state:<11}  {:>8}  {detail}\n",
            entry.label,
            entry.attempts.len()
        ));
    }
    let names = ["pending", "running", "interrupted", "done", "failed"];
    let summary: Vec<String> = names
        .iter()
        .zip(counts)
        .filter(|(_, count)| *count > 0)
        .map(|(name, count)| format!("{count} {name}"))
        .collect();
    text.push_str(&format!("\n{}\n", summary.join(", ")));
    Ok(text)
}

/// `host:pid` of this process.
pub fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// Hash of a run's spec text (64-bit FNV-1a, stable across builds and machines).
pub fn spec_hash(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Modification time of `path` in the queue's time format, when it can be read.
fn last_write(path: &Path) -> Option<String> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let time: chrono::DateTime<chrono::Local> = modified.into();
    Some(time.to_rfc3339_opts(chrono::SecondsFormat::Millis, false))
}

/// Total time of `attempts` in seconds, or `None` when an attempt lacks its start or end.
fn attempts_seconds(attempts: &[Attempt]) -> Option<f64> {
    attempts
        .iter()
        .map(|attempt| {
            let started = chrono::DateTime::parse_from_rfc3339(&attempt.started).ok()?;
            let ended = chrono::DateTime::parse_from_rfc3339(attempt.ended.as_deref()?).ok()?;
            Some((ended - started).as_seconds_f64().max(0.0))
        })
        .sum()
}

fn now() -> String {
    chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
}

fn lock_file(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|error| format!("cannot open lock file {}: {error}", path.display()))
}

fn read_entry(queue_dir: &Path, label: &str) -> Result<Entry, String> {
    let path = queue_dir.join(format!("{label}.json"));
    let text = std::fs::read_to_string(&path)
        .map_err(|error| format!("cannot read queue entry {}: {error}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|error| format!("queue entry {} is not valid: {error}", path.display()))
}

fn write_entry(queue_dir: &Path, entry: &Entry) -> Result<(), String> {
    write_json(&queue_dir.join(format!("{}.json", entry.label)), entry)
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|error| format!("cannot encode {}: {error}", path.display()))?;
    write_atomic(path, &text)
}

/// Writes through a temporary file named after this process and a rename, so a reader
/// never sees a partial file and two writers never share a temporary file.
fn write_atomic(path: &Path, text: &str) -> Result<(), String> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, text)
        .map_err(|error| format!("cannot write {}: {error}", temporary.display()))?;
    std::fs::rename(&temporary, path)
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(values: &[&str]) -> Vec<NewRun> {
        values
            .iter()
            .map(|value| NewRun {
                label: format!("lr={value}"),
                overrides: vec![format!("train.lr={value}")],
                spec_text: format!("lr = {value}"),
                resolved_text: format!("[train]\nlr = {value}\n"),
            })
            .collect()
    }

    fn create(dir: &Path, values: &[&str]) -> Result<Queue, String> {
        create_or_join(dir, "tiny", "tiny.toml", Path::new("/data"), &runs(values))
    }

    #[test]
    fn claim_skips_held_and_finished_runs() {
        let dir = tempfile::tempdir().unwrap();
        let queue = create(dir.path(), &["0.1", "0.2"]).unwrap();
        let first = queue.claim("a:1").unwrap().unwrap();
        let second = queue.claim("b:2").unwrap().unwrap();
        assert_eq!(
            (first.label.as_str(), second.label.as_str()),
            ("lr=0.1", "lr=0.2")
        );
        assert!(queue.claim("c:3").unwrap().is_none(), "both runs are held");
        let done = RunResult::Done {
            metrics: vec![("pretext".into(), 0.5)],
            seconds: 1.0,
        };
        queue.finish(first, done).unwrap();
        assert!(
            queue.claim("c:3").unwrap().is_none(),
            "a finished run is not claimed"
        );
        let entries = queue.entries().unwrap();
        assert_eq!(entries[0].state, RunState::Done);
        assert_eq!(entries[0].attempts.len(), 1);
        assert_eq!(entries[1].state, RunState::Running);
        drop(second);
    }

    #[test]
    fn claim_resumes_run_of_dead_worker() {
        let dir = tempfile::tempdir().unwrap();
        let queue = create(dir.path(), &["0.1"]).unwrap();
        // Dropping the claim without finishing it leaves what a killed worker leaves: the
        // entry is `running` and the lock is free.
        drop(queue.claim("a:1").unwrap().unwrap());
        let again = queue.claim("b:2").unwrap().unwrap();
        assert!(again.resumed);
        assert_eq!(again.entry.attempts.len(), 2);
        assert_eq!(again.entry.attempts[0].outcome, Some(Outcome::Interrupted));
    }

    #[test]
    fn join_keeps_queue_and_rejects_other_runs() {
        let dir = tempfile::tempdir().unwrap();
        let queue = create(dir.path(), &["0.1", "0.2"]).unwrap();
        let claim = queue.claim("a:1").unwrap().unwrap();
        queue
            .finish(
                claim,
                RunResult::Failed {
                    error: "loss is NaN".into(),
                    stage: Some("pretext".into()),
                    step: Some(3),
                },
            )
            .unwrap();
        let joined = create(dir.path(), &["0.1", "0.2"]).unwrap();
        assert_eq!(joined.entries().unwrap()[0].state, RunState::Failed);

        let error = create(dir.path(), &["0.1", "0.3"]).unwrap_err();
        assert!(error.contains("another sweep"), "{error}");
        assert!(error.contains("run `lr=0.3` is new"), "{error}");
        assert!(
            error.contains("run `lr=0.2` is not in this sweep"),
            "{error}"
        );
        assert_eq!(open(dir.path()).unwrap().manifest.runs.len(), 2);

        assert_eq!(
            joined.requeue(&[RunState::Failed], None).unwrap(),
            vec!["lr=0.1"]
        );
        let entry = &joined.entries().unwrap()[0];
        assert_eq!(entry.state, RunState::Pending);
        assert_eq!(entry.attempts[0].step, Some(3), "the history stays");
    }

    #[test]
    fn create_rejects_folder_without_queue() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        let error = create(dir.path(), &["0.1"]).unwrap_err();
        assert!(error.contains("notes.txt"), "{error}");
    }

    #[test]
    fn force_requeue_keeps_only_spec() {
        let dir = tempfile::tempdir().unwrap();
        let queue = create(dir.path(), &["0.1"]).unwrap();
        let claim = queue.claim("a:1").unwrap().unwrap();
        std::fs::write(claim.run_dir.join("metrics.json"), "{}").unwrap();
        let done = RunResult::Done {
            metrics: Vec::new(),
            seconds: 1.0,
        };
        queue.finish(claim, done).unwrap();
        assert!(queue.requeue(&[RunState::Failed], None).unwrap().is_empty());
        assert_eq!(
            queue.requeue(&[RunState::Done], None).unwrap(),
            vec!["lr=0.1"]
        );
        let run_dir = dir.path().join("lr=0.1");
        assert!(!run_dir.join("metrics.json").exists());
        assert!(run_dir.join("spec.resolved.toml").exists());
    }
}
