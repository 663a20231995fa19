//! Sweep expansion (grid, seeded random, list, flags) and a real sweep with a failing run.

mod common;

use std::path::{Path, PathBuf};

use common::{data_dir, runner, stderr, stdout, tiny_spec};
use runner::spec::{load, LoadOptions};
use runner::sweep::{expand, toml_text, SweepRun};

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("sweep.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Expands the sweep of spec `text` with `flags`: `--sweep` flags, or `--set` flags when
/// they start with `set:`.
fn expand_text(text: &str, flags: &[&str]) -> Result<Vec<SweepRun>, String> {
    let dir = tempfile::tempdir().unwrap();
    let options = LoadOptions {
        spec_path: write(dir.path(), text),
        overrides: flags
            .iter()
            .filter_map(|flag| flag.strip_prefix("set:"))
            .map(str::to_string)
            .collect(),
        ..LoadOptions::default()
    };
    let base = load(&options).map_err(|e| e.to_string())?;
    let flags: Vec<String> = flags
        .iter()
        .filter(|flag| !flag.starts_with("set:"))
        .map(|s| s.to_string())
        .collect();
    expand(&options, &base, &flags).map_err(|e| e.to_string())
}

fn overrides(runs: &[SweepRun]) -> Vec<String> {
    runs.iter()
        .map(|run| {
            run.assignments
                .iter()
                .map(|a| format!("{}={}", a.key, toml_text(&a.value)))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[test]
fn expansion_cases() {
    let cases: Vec<(&str, &str, Vec<&str>, Vec<&str>)> = vec![
        ("no sweep", "", vec![], vec![""]),
        (
            "grid",
            "[sweep]\nkind = \"grid\"\n[sweep.grid]\n\"train.lr\" = [0.1, 0.03]\n\"train.epochs\" = [1, 2]\n",
            vec![],
            vec![
                "train.epochs=1 train.lr=0.1",
                "train.epochs=1 train.lr=0.03",
                "train.epochs=2 train.lr=0.1",
                "train.epochs=2 train.lr=0.03",
            ],
        ),
        (
            "list",
            "[sweep]\nkind = \"list\"\n[[sweep.list]]\n\"train.lr\" = 0.5\n[[sweep.list]]\n\"train.lr\" = 0.2\n\"train.momentum\" = 0.0\n\"train.nesterov\" = false\n",
            vec![],
            vec!["train.lr=0.5", "train.lr=0.2 train.momentum=0.0 train.nesterov=false"],
        ),
        (
            "flags only",
            "",
            vec!["train.lr=0.1,0.2", "pretext.angles=[0, 180],[0, 90]"],
            vec![
                "train.lr=0.1 pretext.angles=[0, 180]",
                "train.lr=0.1 pretext.angles=[0, 90]",
                "train.lr=0.2 pretext.angles=[0, 180]",
                "train.lr=0.2 pretext.angles=[0, 90]",
            ],
        ),
        (
            "set on a key some list entries sweep",
            "[sweep]\nkind = \"list\"\n[[sweep.list]]\n\"train.lr\" = 0.5\n[[sweep.list]]\n\"train.epochs\" = 2\n",
            vec!["set:train.epochs=3"],
            vec!["train.lr=0.5", "train.epochs=2"],
        ),
        (
            "flags crossed with list",
            "[sweep]\nkind = \"list\"\n[[sweep.list]]\n\"train.lr\" = 0.5\n",
            vec!["train.epochs=1,2"],
            vec!["train.lr=0.5 train.epochs=1", "train.lr=0.5 train.epochs=2"],
        ),
    ];
    for (name, text, flags, expected) in cases {
        let runs = expand_text(text, &flags).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(overrides(&runs), expected, "{name}");
    }
}

#[test]
fn random_is_seeded_and_in_range() {
    let text = "[sweep]\nkind = \"random\"\ntrials = 20\nseed = 3\n\
                [sweep.random.\"train.lr\"]\ndistribution = \"log_uniform\"\nlow = 0.001\nhigh = 0.1\n\
                [sweep.random.\"train.batch_size\"]\ndistribution = \"int\"\nlow = 16\nhigh = 64\n\
                [sweep.random.\"train.optimizer\"]\ndistribution = \"choice\"\nvalues = [\"sgd\", \"adam\"]\n";
    let first = expand_text(text, &[]).unwrap();
    let second = expand_text(text, &[]).unwrap();
    assert_eq!(first.len(), 20);
    assert_eq!(
        overrides(&first),
        overrides(&second),
        "same seed, same runs"
    );
    let other = expand_text(&text.replace("seed = 3", "seed = 4"), &[]).unwrap();
    assert_ne!(
        overrides(&first),
        overrides(&other),
        "another seed, other runs"
    );
    for run in &first {
        let train = &run.loaded.spec.train;
        assert!(train.lr >= 0.001, "{}", train.lr);
        assert!(train.lr <= 0.1, "{}", train.lr);
        assert!(
            (16..=64).contains(&train.batch_size),
            "{}",
            train.batch_size
        );
        assert!(["sgd", "adam"].contains(&train.optimizer.as_str()));
    }
    let labels: std::collections::HashSet<&str> = first.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(labels.len(), 20, "labels are unique");
}

#[test]
fn invalid_sweeps_report_located_errors() {
    let cases: Vec<(&str, &str, Vec<&str>, Vec<&str>)> = vec![
        (
            "unknown key",
            "[sweep]\nkind = \"grid\"\n[sweep.grid]\n\"train.lrr\" = [0.1]\n",
            vec![],
            vec!["sweep.toml:4", "`train.lrr`", "did you mean `lr`?"],
        ),
        (
            "empty values",
            "[sweep]\nkind = \"grid\"\n[sweep.grid]\n\"train.lr\" = []\n",
            vec![],
            vec!["sweep.toml:4", "empty list"],
        ),
        (
            "low above high",
            "[sweep]\nkind = \"random\"\ntrials = 2\n[sweep.random.\"train.lr\"]\ndistribution = \"uniform\"\nlow = 0.5\nhigh = 0.1\n",
            vec![],
            vec!["sweep.toml:4", "`low` (0.5) is greater than `high` (0.1)"],
        ),
        (
            "invalid value",
            "[sweep]\nkind = \"grid\"\n[sweep.grid]\n\"train.lr\" = [0.1, -1.0]\n",
            vec![],
            vec!["sweep.toml:4", "positive learning rate"],
        ),
        (
            "bad flag key",
            "",
            vec!["train.lrr=1,2"],
            vec!["command line `--sweep train.lrr=1,2`", "did you mean `lr`?"],
        ),
        ("flag without values", "", vec!["train.lr="], vec!["expected at least one value"]),
        (
            "too many runs",
            "[sweep]\nkind = \"random\"\ntrials = 100000000000\n[sweep.random.\"train.lr\"]\ndistribution = \"uniform\"\nlow = 0.01\nhigh = 0.1\n",
            vec![],
            vec!["100000000000 runs, more than the limit of 10000"],
        ),
        (
            "key swept twice",
            "[sweep]\nkind = \"grid\"\n[sweep.grid]\n\"train.lr\" = [0.1, 0.03]\n",
            vec!["train.lr=0.5"],
            vec!["command line `--sweep train.lr=0.5`", "`train.lr` is swept twice"],
        ),
        (
            "sweep key swept",
            "[sweep]\nkind = \"list\"\n[[sweep.list]]\n\"sweep.kind\" = \"grid\"\n",
            vec![],
            vec!["sweep.toml:4", "`sweep` cannot be swept"],
        ),
        (
            "missing kind",
            "[sweep.grid]\n\"train.lr\" = [0.1]\n",
            vec![],
            vec!["missing `kind`"],
        ),
        (
            "unquoted dotted key",
            "[sweep]\nkind = \"grid\"\n[sweep.grid]\ntrain.lr = [0.1]\n",
            vec![],
            vec!["sweep.toml:4", "quote dotted sweep keys"],
        ),
        (
            "unknown kind",
            "[sweep]\nkind = \"bayes\"\n",
            vec![],
            vec!["sweep.toml:2", "unknown sweep kind `bayes`"],
        ),
        (
            "repeated value",
            "[sweep]\nkind = \"grid\"\n[sweep.grid]\n\"train.lr\" = [0.1, 0.1]\n",
            vec![],
            vec!["sweep.toml:1", "runs 1 and 2 have the same values (train.lr=0.1)"],
        ),
        (
            "repeated flag value",
            "",
            vec!["train.lr=0.1,0.1"],
            vec!["command line `--sweep train.lr=0.1,0.1`", "the same values"],
        ),
        (
            "random draws repeat",
            "[sweep]\nkind = \"random\"\ntrials = 5\n[sweep.random.\"train.nesterov\"]\ndistribution = \"choice\"\nvalues = [true, false]\n",
            vec![],
            vec!["the same values", "draw fewer `trials`"],
        ),
        (
            "set on swept key",
            "[sweep]\nkind = \"grid\"\n[sweep.grid]\n\"train.lr\" = [0.1, 0.03]\n",
            vec!["set:train.lr=0.5"],
            vec!["command line `--set train.lr=0.5`", "`train.lr` is also swept"],
        ),
        (
            "set on table of swept key",
            "",
            vec!["train.lr=0.1,0.2", "set:train={lr = 0.3}"],
            vec!["`train` overlaps the swept key `train.lr`"],
        ),
        (
            "values on uniform",
            "[sweep]\nkind = \"random\"\ntrials = 2\n[sweep.random.\"train.lr\"]\ndistribution = \"uniform\"\nlow = 0.1\nhigh = 0.5\nvalues = [0.2]\n",
            vec![],
            vec!["sweep.toml:4", "`values` is only used by `choice`"],
        ),
        (
            "trials with grid",
            "[sweep]\nkind = \"grid\"\ntrials = 3\n[sweep.grid]\n\"train.lr\" = [0.1]\n",
            vec![],
            vec!["sweep.toml:3", "`sweep.trials` is not used by `kind = \"grid\"`"],
        ),
        (
            "random without trials",
            "[sweep]\nkind = \"random\"\n[sweep.random.\"train.lr\"]\ndistribution = \"uniform\"\nlow = 0.1\nhigh = 0.5\n",
            vec![],
            vec!["sweep.toml:1", "needs `trials`"],
        ),
        (
            "grid value not a list",
            "[sweep]\nkind = \"grid\"\n[sweep.grid]\n\"train.lr\" = 0.1\n",
            vec![],
            vec!["sweep.toml:4", "a grid key takes a list of values"],
        ),
    ];
    for (name, text, flags, fragments) in cases {
        let report = match expand_text(text, &flags) {
            Ok(_) => panic!("{name}: accepted"),
            Err(report) => report,
        };
        for fragment in fragments {
            assert!(
                report.contains(fragment),
                "{name}: `{fragment}` not in:\n{report}"
            );
        }
    }
}

#[test]
fn sweep_records_failed_run_and_continues() {
    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("tiny.toml");
    std::fs::write(
        &spec,
        tiny_spec(128, 40)
            .replace("[[eval]]", "[[unused]]")
            .split("[[unused]]")
            .next()
            .unwrap(),
    )
    .unwrap();
    let runs = work.path().join("runs");
    let data = data_dir();
    let args = [
        spec.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--set",
        "train.nesterov=false",
        "--sweep",
        "train.lr=1e30,0.05",
    ];
    let bad = work.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[sweep]\nkind = \"grid\"\n[sweep.grid]\n\"train.lrr\" = [0.1]\n",
    )
    .unwrap();
    let validate = runner(work.path(), &["validate", bad.to_str().unwrap()]);
    assert_eq!(
        validate.status.code(),
        Some(2),
        "validate must check the sweep"
    );
    assert!(
        stderr(&validate).contains("did you mean `lr`?"),
        "{}",
        stderr(&validate)
    );

    let dry = runner(work.path(), &[&args[..], &["--dry-run"]].concat());
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(stdout(&dry).contains("2 run(s)"), "{}", stdout(&dry));

    let output = runner(work.path(), &[&args[..], &["--jobs", "2"]].concat());
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stdout(&output);
    assert!(message.contains("1 run(s) failed"), "{message}");
    assert!(message.contains("lr=1e30/run.log"), "{message}");

    let sweeps: Vec<PathBuf> = std::fs::read_dir(runs.join("tiny"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(sweeps.len(), 1);
    let entry = |label: &str| -> serde_json::Value {
        let path = sweeps[0].join("queue").join(format!("{label}.json"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let (failed, done) = (entry("lr=1e30"), entry("lr=0.05"));
    assert_eq!(failed["state"], "failed");
    assert_eq!(done["state"], "done");
    let attempt = &failed["attempts"][0];
    assert!(
        attempt["error"].as_str().unwrap().contains("loss is"),
        "{attempt}"
    );
    assert_eq!(attempt["stage"], "pretext");
    assert!(attempt["step"].as_u64().unwrap() >= 1, "{attempt}");
    for label in ["lr=1e30", "lr=0.05"] {
        assert!(
            sweeps[0].join(label).join("spec.resolved.toml").is_file(),
            "{label}"
        );
    }
    assert!(sweeps[0]
        .join("lr=0.05/pretext/checkpoint.safetensors")
        .is_file());

    // The HPARAMS tab, as TensorBoard's own hparams backend serves it.
    let hparams = std::process::Command::new(common::python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/read_hparams.py"))
        .arg(&sweeps[0])
        .output()
        .unwrap();
    assert!(hparams.status.success(), "{}", stderr(&hparams));
    let tab: serde_json::Value = serde_json::from_slice(&hparams.stdout).unwrap();
    assert_eq!(tab["hparams"], serde_json::json!(["train.lr"]));
    assert_eq!(tab["metrics"], serde_json::json!(["final/pretext"]));
    let session = &tab["sessions"]["lr=0.05"];
    assert_eq!(session["hparams"]["train.lr"], 0.05);
    assert_eq!(session["status"], "STATUS_SUCCESS");
    let accuracy = done["metrics"][0][1].as_f64().unwrap();
    let recorded = session["metrics"]["final/pretext"].as_f64().unwrap();
    assert!(
        (recorded - accuracy).abs() < 1e-6,
        "{recorded} != {accuracy}"
    );
    let session = &tab["sessions"]["lr=1e30"];
    assert_eq!(session["hparams"]["train.lr"], 1e30);
    assert_eq!(session["status"], "STATUS_FAILURE");

    let report = runner(work.path(), &["report", sweeps[0].to_str().unwrap()]);
    assert!(report.status.success(), "{}", stderr(&report));
    let table = stdout(&report);
    assert!(table.contains("| lr=0.05 * | 0.05 | done |"), "{table}");
    assert!(table.contains("Failed runs (1):"), "{table}");
    let csv = runner(
        work.path(),
        &["report", sweeps[0].to_str().unwrap(), "--format", "csv"],
    );
    let csv = stdout(&csv);
    assert!(csv.starts_with("run,train.lr,state,"), "{csv}");
    assert!(
        csv.lines().next().unwrap().ends_with(",seconds,best,error"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 3, "{csv}");
    let done_row = csv
        .lines()
        .find(|line| line.starts_with("lr=0.05,"))
        .unwrap();
    assert!(done_row.contains(",done,"), "{csv}");
    assert!(done_row.ends_with(",yes,"), "{csv}");
    let failed_row = csv
        .lines()
        .find(|line| line.starts_with("lr=1e30,"))
        .unwrap();
    assert!(failed_row.contains(",failed,"), "{csv}");
    assert!(
        failed_row.contains("loss"),
        "the error column names the cause: {csv}"
    );
}
