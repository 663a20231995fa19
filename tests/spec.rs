//! Spec loading: layers, validation and error messages, table-driven.

use std::path::{Path, PathBuf};

use runner::spec::{load, LoadOptions, LoadedSpec, SpecErrors};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn load_with(
    path: &Path,
    overrides: &[&str],
    env: &[(&str, &str)],
) -> Result<LoadedSpec, SpecErrors> {
    load(&LoadOptions {
        spec_path: path.to_path_buf(),
        overrides: overrides.iter().map(|s| s.to_string()).collect(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
}

const VALID: &str = r#"
[experiment]
name = "demo"

[train]
lr = 0.05
epochs = 3

[[eval]]
protocol = "linear_probe"
blocks = ["conv1", "conv2"]

[[eval]]
protocol = "frozen_finetune"
frozen_until = "conv2"
labels_per_class = 100
[eval.train]
epochs = 2
"#;

#[test]
fn valid_specs_load() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cases: Vec<(&str, PathBuf)> = vec![
        ("inline", write(dir.path(), "valid.toml", VALID)),
        (
            "empty file uses defaults",
            write(dir.path(), "empty.toml", ""),
        ),
        (
            "default experiment",
            root.join("experiments/rotation_ssl.toml"),
        ),
        (
            "rotnet experiment",
            root.join("experiments/rotnet_nin_cifar10.toml"),
        ),
    ];
    for (name, path) in cases {
        let loaded = load_with(&path, &[], &[]);
        assert!(loaded.is_ok(), "{name}: {}", loaded.unwrap_err());
    }
    let loaded = load_with(&dir.path().join("valid.toml"), &[], &[]).unwrap();
    assert_eq!(loaded.spec.train.lr, 0.05);
    assert_eq!(
        loaded.spec.train.batch_size, 128,
        "default fills unset keys"
    );
    assert_eq!(loaded.spec.eval[1].train.epochs, 2);
    assert_eq!(loaded.spec.eval[1].labels_per_class, 100);
    assert_eq!(loaded.spec.model.blocks.len(), 3);
}

/// Each case: spec text, and fragments that must all appear in the error report.
#[test]
fn invalid_specs_report_located_errors() {
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "malformed toml",
            "[train]\nlr = \n".into(),
            vec!["bad.toml:2", "invalid TOML"],
        ),
        (
            "unknown top-level key",
            "[trian]\nlr = 0.1\n".into(),
            vec!["bad.toml:1", "`trian`: unknown key `trian`", "did you mean `train`?"],
        ),
        (
            "unknown nested key",
            "[train]\nepochs = 2\nlrr = 0.1\n".into(),
            vec!["bad.toml:3", "`train.lrr`", "did you mean `lr`?"],
        ),
        (
            "wrong type",
            "[train]\nlr = \"fast\"\n".into(),
            vec!["bad.toml:2", "`train.lr`", "expected f64", "string \"fast\""],
        ),
        (
            "negative lr",
            "[train]\nlr = -0.1\n".into(),
            vec!["bad.toml:2", "`train.lr`", "expected a positive learning rate, found -0.1"],
        ),
        (
            "zero batch",
            "[train]\nbatch_size = 0\n".into(),
            vec!["bad.toml:2", "`train.batch_size`", "expected 2 or more images (batch norm needs two per batch), found 0"],
        ),
        (
            "negative batch",
            "[train]\nbatch_size = -4\n".into(),
            vec!["bad.toml:2", "`train.batch_size`", "-4"],
        ),
        (
            "unknown pretext",
            "[pretext]\nkind = \"rotaton\"\n".into(),
            vec!["bad.toml:2", "unknown pretext task `rotaton`", "did you mean `rotation`?"],
        ),
        (
            "unknown dataset",
            "[data]\nkind = \"imagenet\"\n".into(),
            vec!["`data.kind`", "unknown dataset `imagenet`", "cifar10_folder", "mnist"],
        ),
        (
            "bad angle",
            "[pretext]\nangles = [0, 45]\n".into(),
            vec!["bad.toml:2", "`pretext.angles.1`", "expected one of 0, 90, 180, 270, found 45"],
        ),
        (
            "unknown frozen block",
            "[[eval]]\nprotocol = \"frozen_finetune\"\nfrozen_until = \"conv22\"\n".into(),
            vec!["bad.toml:3", "`eval.0.frozen_until`", "unknown block `conv22`", "did you mean `conv2`?"],
        ),
        (
            "key of another protocol",
            "[[eval]]\nprotocol = \"linear_probe\"\nfrozen_until = \"conv2\"\n".into(),
            vec!["`eval.0.frozen_until`", "does not apply to protocol `linear_probe`"],
        ),
        (
            "unknown key in second eval",
            "[[eval]]\nprotocol = \"linear_probe\"\n\n[[eval]]\nprotocol = \"linear_probe\"\nname = \"b\"\nblokcs = []\n".into(),
            vec!["bad.toml:7", "`eval.1.blokcs`", "did you mean `blocks`?"],
        ),
        (
            "milestone out of range",
            "[train]\nepochs = 4\nschedule = { kind = \"step\", milestones = [2, 9] }\n".into(),
            vec!["`train.schedule.milestones`", "between 1 and 3"],
        ),
        (
            "bad device",
            "[device]\nkind = \"tpu\"\n".into(),
            vec!["`device.kind`", "expected `auto`, `cpu`, `cuda` or `cuda:N`"],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (name, text, fragments) in cases {
        let path = write(dir.path(), "bad.toml", &text);
        let report = match load_with(&path, &[], &[]) {
            Ok(_) => panic!("{name}: spec was accepted"),
            Err(errors) => errors.to_string(),
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
fn all_errors_reported_in_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[train]\nlr = -1.0\nbatch_sise = 3\nmomentum = \"high\"\n\n[model]\nblockz = []\n\n[pretext]\nkind = \"jigsw\"\n";
    let path = write(dir.path(), "many.toml", text);
    let errors = load_with(&path, &[], &[]).unwrap_err();
    let keys: Vec<&str> = errors.errors.iter().map(|e| e.key.as_str()).collect();
    for key in [
        "train.batch_sise",
        "train.momentum",
        "model.blockz",
        "train.lr",
        "pretext.kind",
    ] {
        assert!(keys.contains(&key), "{key} not reported; got {keys:?}");
    }
    assert_eq!(errors.errors.len(), 5, "{errors}");
    assert!(errors.to_string().contains("5 errors"));
}

#[test]
fn extends_chain_merges_base_first() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("bases")).unwrap();
    write(
        dir.path(),
        "bases/base.toml",
        "[train]\nlr = 0.3\nepochs = 7\n[experiment]\nname = \"base\"\n",
    );
    let child = write(
        dir.path(),
        "child.toml",
        "extends = \"bases/base.toml\"\n[train]\nepochs = 2\n",
    );
    let loaded = load_with(&child, &[], &[]).unwrap();
    assert_eq!(loaded.spec.train.lr, 0.3, "inherited from the base");
    assert_eq!(loaded.spec.train.epochs, 2, "overridden by the child");
    assert_eq!(loaded.spec.experiment.name, "base");
    assert_eq!(loaded.files.len(), 2);

    write(dir.path(), "bases/bad.toml", "[train]\nlr = 0\n");
    let child = write(dir.path(), "child2.toml", "extends = \"bases/bad.toml\"\n");
    let report = load_with(&child, &[], &[]).unwrap_err().to_string();
    assert!(
        report.contains("bad.toml:2"),
        "error located in the base file:\n{report}"
    );

    write(dir.path(), "a.toml", "extends = \"b.toml\"\n");
    write(dir.path(), "b.toml", "extends = \"a.toml\"\n");
    let report = load_with(&dir.path().join("a.toml"), &[], &[])
        .unwrap_err()
        .to_string();
    assert!(report.contains("cycle"), "{report}");

    let child = write(dir.path(), "child3.toml", "extends = \"missing.toml\"\n");
    let report = load_with(&child, &[], &[]).unwrap_err().to_string();
    assert!(report.contains("missing.toml"), "{report}");
    assert!(report.contains("cannot read spec file"), "{report}");
}

#[test]
fn env_and_set_override_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "spec.toml", VALID);
    let env = [
        ("RUNNER_TRAIN__LR", "0.2"),
        ("RUNNER_TRAIN__EPOCHS", "9"),
        ("RUNNER_DATA_DIR", "/somewhere"),
        ("RUNNER_OS", "Linux"),
    ];
    let loaded = load_with(&path, &["train.epochs=5", "eval.1.train.epochs=6"], &env).unwrap();
    assert_eq!(loaded.spec.train.lr, 0.2, "environment overrides the file");
    assert_eq!(
        loaded.spec.train.epochs, 5,
        "--set overrides the environment"
    );
    assert_eq!(loaded.spec.eval[1].train.epochs, 6, "--set indexes arrays");
    assert_eq!(
        loaded.spec.eval[1].labels_per_class, 100,
        "other element keys kept"
    );
    assert_eq!(loaded.spec.eval.len(), 2);

    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            vec!["train.lr=-3"],
            vec![],
            vec!["command line `--set train.lr=-3`", "positive learning rate"],
        ),
        (
            vec![],
            vec![("RUNNER_TRAIN__LR", "abc")],
            vec!["environment variable RUNNER_TRAIN__LR", "`train.lr`"],
        ),
        (
            vec!["train.lrate=1"],
            vec![],
            vec!["`train.lrate`", "did you mean `lr`?"],
        ),
        (
            vec!["eval.5.train.epochs=1"],
            vec![],
            vec!["index 5 is out of range: the array has 2 entries"],
        ),
        (vec!["train"], vec![], vec!["missing `=`"]),
        (
            vec!["eval.1.train.epochs=6", "eval.0.blocks=[\"conv7\"]"],
            vec![],
            vec!["unknown block `conv7`"],
        ),
    ];
    for (overrides, env, fragments) in cases {
        let report = match load_with(&path, &overrides, &env) {
            Ok(_) => panic!("{overrides:?} {env:?}: accepted"),
            Err(errors) => errors.to_string(),
        };
        for fragment in fragments {
            assert!(
                report.contains(fragment),
                "{overrides:?}: `{fragment}` not in:\n{report}"
            );
        }
    }
}

#[test]
fn error_in_untouched_array_element_points_at_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = VALID.replace(
        "labels_per_class = 100",
        "labels_per_class = 100\nbaselines = [\"randominit\"]",
    );
    let path = write(dir.path(), "spec.toml", &text);
    let report = load_with(&path, &["eval.0.pool=2"], &[])
        .unwrap_err()
        .to_string();
    assert!(report.contains("spec.toml:17"), "{report}");
    assert!(report.contains("did you mean `random_init`?"), "{report}");
}

#[test]
fn tricky_inputs_report_original_keys() {
    let dir = tempfile::tempdir().unwrap();
    // Each case: spec text, overrides, fragments that must appear, fragments that must not.
    type Case<'a> = (&'a str, Vec<&'a str>, Vec<&'a str>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "[pretext]\nangles = [0, \"x\", 180, \"y\"]\n",
            vec![],
            vec!["`pretext.angles.1`", "`pretext.angles.3`"],
            vec!["`pretext.angles.2`"],
        ),
        (
            "[train]\nepochs = \"ten\"\nschedule = { kind = \"step\", milestones = [5, 8] }\n",
            vec![],
            vec!["`train.epochs`", "1 error"],
            vec!["milestones"],
        ),
        (
            "[experiment]\nname = \"..\"\n",
            vec![],
            vec!["`experiment.name`", "starts with a letter or digit"],
            vec![],
        ),
        (
            "[[eval]]\nprotocol = \"linear_probe\"\nname = \"../other\"\n",
            vec![],
            vec!["`eval.0.name`"],
            vec![],
        ),
        (
            "",
            vec!["extends=\"base.toml\""],
            vec!["`extends` can only be set in a spec file"],
            vec![],
        ),
        (
            "[pretext]\ncheckpoint = \"missing.safetensors\"\n",
            vec![],
            vec!["`pretext.checkpoint`", "not found"],
            vec![],
        ),
        (
            "[device]\nthreads = 4294967296\n",
            vec![],
            vec!["`device.threads`", "at most 4096"],
            vec![],
        ),
        ("", vec!["train.=1"], vec!["empty key segment"], vec![]),
    ];
    for (text, overrides, present, absent) in cases {
        let path = write(dir.path(), "tricky.toml", text);
        let report = match load_with(&path, &overrides, &[]) {
            Ok(_) => panic!("{text:?} {overrides:?}: accepted"),
            Err(errors) => errors.to_string(),
        };
        for fragment in present {
            assert!(
                report.contains(fragment),
                "{text:?}: `{fragment}` not in:\n{report}"
            );
        }
        for fragment in absent {
            assert!(
                !report.contains(fragment),
                "{text:?}: `{fragment}` in:\n{report}"
            );
        }
    }
}

#[test]
fn set_indexes_default_lists() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "empty.toml", "");
    let overrides = ["model.blocks.0.channels=[8]", "model.blocks.2.pool=\"avg\""];
    let loaded = load_with(&path, &overrides, &[]).unwrap();
    assert_eq!(loaded.spec.model.blocks[0].channels, vec![8]);
    assert_eq!(loaded.spec.model.blocks.len(), 3);
    assert_eq!(loaded.spec.model.blocks[2].pool, "avg");
    assert_eq!(loaded.spec.model.blocks[2].channels, vec![128]);
}
