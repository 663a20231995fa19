//! End-to-end tests of the `runner` binary on real CIFAR-10 and MNIST files.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{data_dir, python, runner, stderr, stdout, tiny_spec};
use serde_json::Value;

fn write_spec(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Returns the only run folder under `runs/<experiment>/`.
fn single_run_dir(runs: &Path, experiment: &str) -> PathBuf {
    let entries: Vec<PathBuf> = std::fs::read_dir(runs.join(experiment))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "run folders: {entries:?}");
    entries[0].clone()
}

fn read_events(run_dir: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/read_events.py");
    let output = std::process::Command::new(python())
        .arg(script)
        .arg(run_dir)
        .output()
        .expect("python with tensorboard starts");
    assert!(
        output.status.success(),
        "read_events.py failed: {}",
        stderr(&output)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn steps(events: &Value, stage: &str, tag: &str) -> Vec<i64> {
    let series = &events[stage]["scalars"][tag];
    assert!(
        series.is_array(),
        "stage {stage} has no scalar tag {tag}: {}",
        events[stage]
    );
    series
        .as_array()
        .unwrap()
        .iter()
        .map(|point| point[0].as_i64().unwrap())
        .collect()
}

fn check_stage(events: &Value, stage: &str, steps_total: i64, epochs: i64) {
    let per_step: Vec<i64> = (1..=steps_total).collect();
    let per_epoch: Vec<i64> = (1..=epochs).collect();
    for tag in ["train/loss", "train/accuracy", "train/lr"] {
        assert_eq!(steps(events, stage, tag), per_step, "{stage} {tag}");
    }
    for tag in [
        "epoch/train_loss",
        "epoch/train_accuracy",
        "epoch/images_per_second",
        "epoch/lr",
    ] {
        assert_eq!(steps(events, stage, tag), per_epoch, "{stage} {tag}");
    }
    assert_eq!(
        steps(events, stage, "epoch/test_accuracy"),
        vec![epochs],
        "{stage}"
    );
    let scalar_tags = events[stage]["scalars"].as_object().unwrap().len();
    assert_eq!(scalar_tags, 8, "{stage}: {}", events[stage]["scalars"]);
}

#[test]
fn tiny_run_writes_events_and_metrics() {
    let work = tempfile::tempdir().unwrap();
    let spec = write_spec(work.path(), "tiny.toml", &tiny_spec(320, 200));
    let runs = work.path().join("runs");
    let output = runner(
        work.path(),
        &[
            spec.to_str().unwrap(),
            "--data-dir",
            data_dir().to_str().unwrap(),
            "--runs-dir",
            runs.to_str().unwrap(),
        ],
    );
    assert!(
        output.status.success(),
        "runner failed: {}",
        stderr(&output)
    );
    let table = stdout(&output);
    for row in [
        "linear_probe     conv1",
        "linear_probe     conv3",
        "frozen_finetune  conv2",
    ] {
        assert!(table.contains(row), "results table lacks `{row}`:\n{table}");
    }
    assert!(table.contains("random_init"), "{table}");
    assert!(table.contains("supervised"), "{table}");

    let run_dir = single_run_dir(&runs, "tiny");
    for file in [
        "spec.resolved.toml",
        "run.log",
        "metrics.json",
        "pretext/checkpoint.safetensors",
    ] {
        assert!(run_dir.join(file).is_file(), "missing {file}");
    }
    let log = std::fs::read_to_string(run_dir.join("run.log")).unwrap();
    assert!(log.contains("pretext: epoch 1/1"), "run.log:\n{log}");

    let events = read_events(&run_dir);
    let stages: Vec<&String> = events.as_object().unwrap().keys().collect();
    assert_eq!(
        stages,
        vec![
            "frozen_finetune/pretrained",
            "frozen_finetune/random_init",
            "frozen_finetune/supervised",
            "linear_probe/pretrained/conv1",
            "linear_probe/pretrained/conv3",
            "linear_probe/random_init/conv1",
            "linear_probe/random_init/conv3",
            "pretext",
        ]
    );
    // 320 images in batches of 64: 5 steps.
    check_stage(&events, "pretext", 5, 1);
    // 320 features in batches of 100: 3 steps per epoch, 2 epochs.
    for stage in [
        "linear_probe/pretrained/conv1",
        "linear_probe/random_init/conv3",
    ] {
        check_stage(&events, stage, 6, 2);
    }
    // 10 classes x 10 labels in batches of 50: 2 steps.
    for stage in [
        "frozen_finetune/pretrained",
        "frozen_finetune/random_init",
        "frozen_finetune/supervised",
    ] {
        check_stage(&events, stage, 2, 1);
    }
    let images = &events["pretext"]["images"]["inputs/rows_rotated_by_0_90_180_270_degrees"];
    // 8 columns and 4 rows of 32x32 images with a 2-pixel border: [step, width, height].
    assert_eq!(images, &serde_json::json!([[0, 288, 144]]));

    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("metrics.json")).unwrap())
            .unwrap();
    let evaluations = metrics["evaluations"].as_array().unwrap();
    assert_eq!(evaluations.len(), 7);
    let mut inits: BTreeMap<String, usize> = BTreeMap::new();
    for row in evaluations {
        let accuracy = row["test_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&accuracy), "{row}");
        *inits
            .entry(row["init"].as_str().unwrap().to_string())
            .or_default() += 1;
        let seconds = row["seconds"].as_f64().unwrap();
        assert!(seconds > 0.0, "stage time missing: {row}");
    }
    assert_eq!(inits["pretrained"], 3);
    assert_eq!(inits["random_init"], 3);
    assert_eq!(inits["supervised"], 1);
    assert_eq!(metrics["pretext"]["steps"], 5);
}

#[test]
fn nan_loss_fails_and_keeps_earlier_runs() {
    let work = tempfile::tempdir().unwrap();
    let runs = work.path().join("runs");
    let data = data_dir();
    let spec = write_spec(work.path(), "tiny.toml", &tiny_spec(128, 50));
    let args = |extra: &[&str]| {
        let mut args = vec![spec.to_str().unwrap().to_string(), "--data-dir".into()];
        args.push(data.to_str().unwrap().into());
        args.push("--runs-dir".into());
        args.push(runs.to_str().unwrap().into());
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let first_args = args(&["--set", "eval=[]"]);
    let first = runner(
        work.path(),
        &first_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(first.status.success(), "{}", stderr(&first));
    let earlier = single_run_dir(&runs, "tiny");
    let snapshot = |dir: &Path| -> BTreeMap<PathBuf, Vec<u8>> {
        walkdir::WalkDir::new(dir)
            .into_iter()
            .map(|entry| entry.unwrap())
            .filter(|entry| entry.file_type().is_file())
            .map(|entry| {
                (
                    entry.path().to_path_buf(),
                    std::fs::read(entry.path()).unwrap(),
                )
            })
            .collect()
    };
    let before = snapshot(&earlier);

    let nan_args = args(&["--set", "train.lr=1e30", "--set", "train.nesterov=false"]);
    let output = runner(
        work.path(),
        &nan_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("stage `pretext`: loss is"), "{message}");
    assert!(message.contains("train.lr"), "{message}");
    assert!(!message.contains("panicked"), "{message}");
    assert_eq!(snapshot(&earlier), before, "earlier run folder changed");

    let failed: Vec<PathBuf> = std::fs::read_dir(runs.join("tiny"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path != &earlier)
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].join("spec.resolved.toml").is_file());
    let log = std::fs::read_to_string(failed[0].join("run.log")).unwrap();
    assert!(log.contains("run failed"), "{log}");
    let events = read_events(&failed[0]);
    assert!(
        events["pretext"]["images"].is_object(),
        "event file of failed stage unreadable"
    );
}

#[test]
fn bad_inputs_exit_with_clear_errors() {
    let work = tempfile::tempdir().unwrap();
    let data = data_dir();
    let data = data.to_str().unwrap();
    let runs = work.path().join("runs");
    let runs = runs.to_str().unwrap();
    let blocker = work.path().join("not_a_folder");
    std::fs::write(&blocker, "").unwrap();

    struct Case {
        name: &'static str,
        spec: String,
        extra: Vec<String>,
        code: i32,
        expected: Vec<&'static str>,
    }
    let base = tiny_spec(64, 20);
    let cases = vec![
        Case {
            name: "malformed toml",
            spec: "[train\nlr = 0.1\n".into(),
            extra: vec![],
            code: 2,
            expected: vec!["bad.toml:1", "invalid TOML"],
        },
        Case {
            name: "unknown component",
            spec: base.replace("protocol = \"linear_probe\"", "protocol = \"linear_prob\""),
            extra: vec![],
            code: 2,
            expected: vec![
                "unknown eval protocol `linear_prob`",
                "did you mean `linear_probe`?",
            ],
        },
        Case {
            name: "negative lr and zero batch",
            spec: base.replace("batch_size = 64", "batch_size = 0\nlr = -0.5"),
            extra: vec![],
            code: 2,
            expected: vec!["2 errors", "`train.lr`", "`train.batch_size`"],
        },
        Case {
            name: "missing data root",
            spec: base.replace("root = \"cifar10-jpg\"", "root = \"no-such-folder\""),
            extra: vec![],
            code: 1,
            expected: vec![
                "no-such-folder",
                "data set folder not found",
                "RUNNER_DATA_DIR",
            ],
        },
        Case {
            name: "pooling to nothing",
            spec: base
                .replace(
                    "channels = [16]\n\n[[model.blocks]]",
                    "channels = [16]\npool_kernel = 8\npool_stride = 8\n\n[[model.blocks]]",
                )
                .replace(
                    "name = \"conv1\"\n",
                    "name = \"conv1\"\npool_kernel = 8\npool_stride = 8\n",
                ),
            extra: vec![],
            code: 1,
            expected: vec!["block `conv2` pools its 4x4 input to nothing"],
        },
        Case {
            name: "unwritable run folder",
            spec: base.clone(),
            extra: vec![
                "--runs-dir".into(),
                blocker.join("runs").to_str().unwrap().into(),
            ],
            code: 1,
            expected: vec!["cannot create run folder", "not_a_folder"],
        },
    ];
    for case in cases {
        let spec = write_spec(work.path(), "bad.toml", &case.spec);
        let mut args = vec![spec.to_str().unwrap(), "--data-dir", data];
        if case.extra.is_empty() {
            args.extend(["--runs-dir", runs]);
        }
        args.extend(case.extra.iter().map(String::as_str));
        let output = runner(work.path(), &args);
        let message = stderr(&output);
        assert_eq!(
            output.status.code(),
            Some(case.code),
            "{}: {message}",
            case.name
        );
        for text in case.expected {
            assert!(
                message.contains(text),
                "{}: `{text}` not in:\n{message}",
                case.name
            );
        }
        assert!(!message.contains("panicked"), "{}: {message}", case.name);
    }
}

#[test]
fn corrupt_jpeg_is_named() {
    let work = tempfile::tempdir().unwrap();
    let source = data_dir().join("cifar10-jpg");
    for split in ["train", "test"] {
        for class in ["cat", "dog"] {
            let folder = work.path().join("tree").join(split).join(class);
            std::fs::create_dir_all(&folder).unwrap();
            for index in 0..4 {
                let name = format!("{index:04}.jpg");
                std::fs::copy(
                    source.join(split).join(class).join(&name),
                    folder.join(&name),
                )
                .unwrap();
            }
        }
    }
    let broken = work.path().join("tree/train/dog/0002.jpg");
    let bytes = std::fs::read(&broken).unwrap();
    std::fs::write(&broken, &bytes[..bytes.len() / 3]).unwrap();
    let spec = tiny_spec(0, 0)
        .replace("kind = \"cifar10_folder\"", "kind = \"image_folder\"")
        .replace(
            "root = \"cifar10-jpg\"",
            &format!("root = {:?}", work.path().join("tree")),
        );
    let spec = write_spec(work.path(), "spec.toml", &spec);
    let runs = work.path().join("runs");
    let output = runner(
        work.path(),
        &[spec.to_str().unwrap(), "--runs-dir", runs.to_str().unwrap()],
    );
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(message.contains("train/dog/0002.jpg"), "{message}");
    assert!(message.contains("cannot decode image"), "{message}");
}

#[test]
fn truncated_mnist_is_reported() {
    let work = tempfile::tempdir().unwrap();
    let source = data_dir().join("mnist");
    let folder = work.path().join("mnist");
    std::fs::create_dir_all(&folder).unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, folder.join(path.file_name().unwrap())).unwrap();
    }
    let images = folder.join("t10k-images-idx3-ubyte.gz");
    let bytes = std::fs::read(&images).unwrap();
    std::fs::write(&images, &bytes[..bytes.len() / 2]).unwrap();
    let spec = tiny_spec(64, 20)
        .replace("kind = \"cifar10_folder\"", "kind = \"mnist\"")
        .replace("root = \"cifar10-jpg\"", &format!("root = {folder:?}"));
    let spec = write_spec(work.path(), "spec.toml", &spec);
    let runs = work.path().join("runs");
    let output = runner(
        work.path(),
        &[spec.to_str().unwrap(), "--runs-dir", runs.to_str().unwrap()],
    );
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(message.contains("t10k-images-idx3-ubyte.gz"), "{message}");
    assert!(message.contains("truncated or corrupt"), "{message}");
}

#[test]
fn validate_and_list_shipped_specs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for spec in [
        "experiments/rotation_ssl.toml",
        "experiments/rotnet_nin_cifar10.toml",
    ] {
        let output = runner(root, &["validate", spec]);
        assert!(output.status.success(), "{spec}: {}", stderr(&output));
        assert!(stdout(&output).contains("[experiment]"), "{spec}");
    }
    let output = runner(root, &["list"]);
    assert!(output.status.success());
    let listing = stdout(&output);
    for name in [
        "cifar10_bin",
        "cifar10_folder",
        "mnist",
        "image_folder",
        "rotation",
        "linear_probe",
        "frozen_finetune",
        "cosine",
    ] {
        assert!(listing.contains(name), "`runner list` lacks {name}");
    }
}

#[test]
fn front_end_does_not_link_libtorch() {
    let output = std::process::Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_runner"))
        .output()
        .expect("ldd runs");
    let libraries = stdout(&output);
    assert!(output.status.success(), "ldd failed: {}", stderr(&output));
    assert!(
        !libraries.contains("libtorch"),
        "runner links libtorch:\n{libraries}"
    );
    assert!(
        !libraries.contains("libc10"),
        "runner links libc10:\n{libraries}"
    );

    let engine = Path::new(env!("CARGO_BIN_EXE_runner")).with_file_name("runner-engine");
    let output = std::process::Command::new("ldd")
        .arg(&engine)
        .output()
        .expect("ldd runs");
    assert!(
        stdout(&output).contains("libtorch_cpu"),
        "runner-engine must link libtorch"
    );
}
