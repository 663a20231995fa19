//! Hyperparameter sweeps: a `[sweep]` table in the spec and `--sweep KEY=V1,V2` flags
//! expand into runs, each a set of overrides applied like `--set` on top of the spec.
//!
//! - `grid`: the cartesian product of `[sweep.grid]`, `"train.lr" = [0.1, 0.03]`;
//! - `random`: `trials` draws from `[sweep.random."train.lr"]` distributions (`uniform`,
//!   `log_uniform`, `int`, `choice`), seeded by `seed`;
//! - `list`: the explicit override sets of `[[sweep.list]]`.
//!
//! `--sweep` flags add a grid that is crossed with the spec's runs. Every run is loaded and
//! checked like a spec with `--set` overrides. An error in a swept key points at the line of
//! the `[sweep]` entry (or the flag) that produced it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::value::Value;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::spec::origin::{line_in_file, Origin, SpecError, SpecErrors};

/// Most runs one sweep may expand to; larger sweeps are rejected before anything is built.
pub const MAX_RUNS: usize = 10_000;
use crate::spec::{load, LoadOptions, LoadedSpec};

/// The `[sweep]` table of a spec.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweepSpec {
    /// `grid`, `random` or `list`.
    pub kind: String,
    /// `grid`: values of each dotted spec key.
    pub grid: BTreeMap<String, Vec<Value>>,
    /// `random`: the distribution of each dotted spec key.
    pub random: BTreeMap<String, Distribution>,
    /// `random`: number of runs drawn.
    pub trials: usize,
    /// `random`: seed of the draws.
    pub seed: u64,
    /// `list`: one table of dotted keys and values per run.
    pub list: Vec<BTreeMap<String, Value>>,
}

/// A distribution of `[sweep.random]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Distribution {
    /// `uniform`, `log_uniform` (both over floats in [low, high]), `int` (integers in
    /// [low, high]) or `choice` (one of `values`).
    pub distribution: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<Value>>,
}

/// One override of a run and where it came from.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// Dotted spec key.
    pub key: String,
    pub value: Value,
    /// Spec key of the sweep entry that produced it (`sweep.grid.train.lr`), or the
    /// `--sweep` flag.
    pub source: Source,
}

/// Origin of a swept value.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// The key path of the entry in the spec's `[sweep]` table.
    Spec(Vec<String>),
    /// A `--sweep` flag, as given.
    Flag(String),
}

/// One run of a sweep: its overrides, folder label and loaded spec.
#[derive(Debug, Clone)]
pub struct SweepRun {
    pub assignments: Vec<Assignment>,
    /// Folder name that says what differs, such as `lr=0.03,width=64`.
    pub label: String,
    pub loaded: LoadedSpec,
}

/// Expands the sweep of `base` (the spec loaded without sweep values) and the `--sweep`
/// flags into runs, loading and checking each one.
///
/// # Errors
///
/// Every problem of the sweep definition and of each run's spec, located at the sweep entry
/// or flag that caused it.
pub fn expand(
    options: &LoadOptions,
    base: &LoadedSpec,
    flags: &[String],
) -> Result<Vec<SweepRun>, SpecErrors> {
    let spec_path = options.spec_path.clone();
    let fail = |errors| SpecErrors {
        spec_path: spec_path.clone(),
        errors,
    };
    let sweep_file = base
        .files
        .last()
        .cloned()
        .unwrap_or_else(|| spec_path.clone());
    let mut errors = Vec::new();
    let spec_count = base.spec.sweep.as_ref().map_or(Some(1), run_count);
    let flag_count = flags.iter().try_fold(1usize, |product, flag| {
        let values = flag
            .split_once('=')
            .map_or(1, |(_, v)| split_top_level(v).len().max(1));
        product.checked_mul(values)
    });
    let total = spec_count
        .zip(flag_count)
        .and_then(|(a, b)| a.checked_mul(b));
    if total.is_none_or(|total| total > MAX_RUNS) {
        let count = total.map_or("more than 2^64".to_string(), |total| total.to_string());
        return Err(fail(vec![SpecError {
            origin: Origin::File {
                path: sweep_file.clone(),
                line: line_in_file(&sweep_file, &["sweep".to_string()]),
            },
            key: "sweep".into(),
            message: format!(
                "the sweep expands to {count} runs, more than the limit of {MAX_RUNS}"
            ),
            hint: Some("sweep fewer values, or split the sweep into several specs".into()),
        }]));
    }
    let mut sets = match &base.spec.sweep {
        Some(sweep) => spec_sets(sweep, &sweep_file, &mut errors),
        None => vec![Vec::new()],
    };
    let flag_grid = flag_sets(flags, &mut errors);
    if !flag_grid.is_empty() {
        sets = cross(&sets, &flag_grid);
    }
    // Every set of a list sweep can name other keys; grid and random sets repeat the first
    // set's keys, so their errors are reported once.
    check_set_flags(&sets, &options.overrides, &mut errors);
    for set in &sets {
        let mut set_errors = Vec::new();
        check_keys(set, &sweep_file, &mut set_errors);
        for error in set_errors {
            if !errors.contains(&error) {
                errors.push(error);
            }
        }
    }
    let random = base
        .spec
        .sweep
        .as_ref()
        .is_some_and(|sweep| sweep.kind == "random");
    check_duplicate_runs(&sets, &sweep_file, random, &mut errors);
    if !errors.is_empty() {
        return Err(fail(errors));
    }

    let mut runs = Vec::new();
    let labels = run_labels(&sets);
    for (assignments, label) in sets.into_iter().zip(labels) {
        let mut run_options = options.clone();
        let generated: Vec<(String, &Assignment)> = assignments
            .iter()
            .map(|a| (format!("{}={}", a.key, toml_text(&a.value)), a))
            .collect();
        run_options
            .overrides
            .extend(generated.iter().map(|(flag, _)| flag.clone()));
        match load(&run_options) {
            Ok(mut loaded) => {
                loaded.spec.sweep = None;
                runs.push(SweepRun {
                    assignments,
                    label,
                    loaded,
                });
            }
            Err(run_errors) => {
                for mut error in run_errors.errors {
                    relocate(&mut error, &generated, &sweep_file);
                    if !errors.contains(&error) {
                        errors.push(error);
                    }
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(runs)
    } else {
        Err(fail(errors))
    }
}

/// Number of runs a `[sweep]` table expands to, or `None` when it overflows.
fn run_count(sweep: &SweepSpec) -> Option<usize> {
    match sweep.kind.as_str() {
        "grid" => sweep.grid.values().try_fold(1usize, |product, values| {
            product.checked_mul(values.len().max(1))
        }),
        "random" => Some(sweep.trials),
        "list" => Some(sweep.list.len()),
        _ => Some(1),
    }
}

/// Rejects a key swept twice (its labels would describe runs that never happen) and keys
/// that are not experiment settings (`sweep.*`, `extends`, `launcher.*`: one launcher
/// starts every run of a sweep).
fn check_keys(assignments: &[Assignment], sweep_file: &Path, errors: &mut Vec<SpecError>) {
    let origin = |source: &Source| match source {
        Source::Spec(path) => Origin::File {
            path: sweep_file.to_path_buf(),
            line: line_in_file(sweep_file, path),
        },
        Source::Flag(flag) => Origin::SweepFlag(flag.clone()),
    };
    for (index, assignment) in assignments.iter().enumerate() {
        let key = &assignment.key;
        let first_segment = key.split('.').next().unwrap_or_default();
        if matches!(first_segment, "sweep" | "extends" | "launcher") {
            errors.push(SpecError {
                origin: origin(&assignment.source),
                key: key.clone(),
                message: format!("`{first_segment}` cannot be swept"),
                hint: Some("sweep experiment settings such as `train.lr`".into()),
            });
        }
        if assignments[..index]
            .iter()
            .any(|earlier| &earlier.key == key)
        {
            errors.push(SpecError {
                origin: origin(&assignment.source),
                key: key.clone(),
                message: format!("`{key}` is swept twice"),
                hint: Some(
                    "sweep each key in one place: the [sweep] table or one --sweep flag".into(),
                ),
            });
        }
    }
}

/// Rejects a `--set` flag on a key (or on a table or key inside it) that every run sweeps:
/// the swept values would replace it everywhere, so the flag would have no effect. In a
/// list sweep, runs that do not sweep the key still use the flag's value.
fn check_set_flags(sets: &[Vec<Assignment>], set_flags: &[String], errors: &mut Vec<SpecError>) {
    for flag in set_flags {
        let key = flag
            .split_once('=')
            .map_or(flag.as_str(), |(key, _)| key)
            .trim();
        let overlaps = |swept: &str| {
            swept == key
                || swept.starts_with(&format!("{key}."))
                || key.starts_with(&format!("{swept}."))
        };
        let overlapping: Vec<Option<&Assignment>> = sets
            .iter()
            .map(|set| set.iter().find(|a| overlaps(&a.key)))
            .collect();
        if sets.is_empty() || overlapping.iter().any(Option::is_none) {
            continue;
        }
        if let Some(assignment) = overlapping.into_iter().flatten().next() {
            errors.push(SpecError {
                origin: Origin::CommandLine(flag.clone()),
                key: key.to_string(),
                message: if assignment.key == key {
                    format!("`{key}` is also swept, so this value would never be used")
                } else {
                    format!(
                        "`{key}` overlaps the swept key `{}`, so this value would never be used",
                        assignment.key
                    )
                },
                hint: Some("remove the `--set` flag, or the key from the sweep".into()),
            });
        }
    }
}

/// Rejects two runs with the same values, such as `train.lr=0.1,0.1`: they would train the
/// same thing twice.
fn check_duplicate_runs(
    sets: &[Vec<Assignment>],
    sweep_file: &Path,
    random: bool,
    errors: &mut Vec<SpecError>,
) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (index, set) in sets.iter().enumerate() {
        let text = set
            .iter()
            .map(|a| format!("{}={}", a.key, toml_text(&a.value)))
            .collect::<Vec<_>>()
            .join(" ");
        let Some(first) = seen.get(&text) else {
            seen.insert(text, index);
            continue;
        };
        let origin = match set.first().map(|a| &a.source) {
            Some(Source::Flag(flag)) => Origin::SweepFlag(flag.clone()),
            Some(Source::Spec(_)) | None => Origin::File {
                path: sweep_file.to_path_buf(),
                line: line_in_file(sweep_file, &["sweep".to_string()]),
            },
        };
        errors.push(SpecError {
            origin,
            key: "sweep".into(),
            message: format!(
                "runs {} and {} have the same values ({text})",
                first + 1,
                index + 1
            ),
            hint: Some(if random {
                "a random sweep drew the same values twice: draw fewer `trials` than there \
                 are distinct combinations, or change `seed`"
                    .into()
            } else {
                "list each value once".into()
            }),
        });
    }
}

/// Points an error caused by a generated override at the sweep entry or flag behind it.
fn relocate(error: &mut SpecError, generated: &[(String, &Assignment)], sweep_file: &Path) {
    let Origin::CommandLine(flag) = &error.origin else {
        return;
    };
    let Some((_, assignment)) = generated.iter().find(|(text, _)| text == flag) else {
        return;
    };
    error.origin = match &assignment.source {
        Source::Spec(path) => Origin::File {
            path: sweep_file.to_path_buf(),
            line: line_in_file(sweep_file, path),
        },
        Source::Flag(flag) => Origin::SweepFlag(flag.clone()),
    };
}

/// Override sets of the spec's `[sweep]` table.
fn spec_sets(sweep: &SweepSpec, file: &Path, errors: &mut Vec<SpecError>) -> Vec<Vec<Assignment>> {
    let mut problem = |path: Vec<String>, message: String| {
        errors.push(SpecError {
            origin: Origin::File {
                path: file.to_path_buf(),
                line: line_in_file(file, &path),
            },
            key: path.join("."),
            message,
            hint: None,
        });
    };
    let at = |parts: &[&str]| {
        parts
            .iter()
            .map(|part| part.to_string())
            .collect::<Vec<_>>()
    };
    let unused = |table: &str, present: bool, problem: &mut dyn FnMut(Vec<String>, String)| {
        if present {
            problem(
                at(&["sweep", table]),
                format!("`sweep.{table}` is not used by `kind = \"{}\"`", sweep.kind),
            );
        }
    };
    if sweep.trials != 0 && sweep.kind != "random" {
        problem(
            at(&["sweep", "trials"]),
            format!("`sweep.trials` is not used by `kind = \"{}\"`", sweep.kind),
        );
    }
    match sweep.kind.as_str() {
        "grid" => {
            unused("random", !sweep.random.is_empty(), &mut problem);
            unused("list", !sweep.list.is_empty(), &mut problem);
            let mut axes = Vec::new();
            for (key, values) in &sweep.grid {
                let path = at(&["sweep", "grid", key]);
                if values.is_empty() {
                    problem(
                        path,
                        "expected at least one value, found an empty list".into(),
                    );
                    continue;
                }
                let axis = values
                    .iter()
                    .map(|value| vec![assignment(key, value.clone(), &path)])
                    .collect::<Vec<_>>();
                axes.push(axis);
            }
            if sweep.grid.is_empty() {
                problem(
                    at(&["sweep", "grid"]),
                    "expected at least one key to sweep".into(),
                );
            }
            axes.iter()
                .fold(vec![Vec::new()], |sets, axis| cross(&sets, axis))
        }
        "random" => {
            unused("grid", !sweep.grid.is_empty(), &mut problem);
            unused("list", !sweep.list.is_empty(), &mut problem);
            if sweep.trials == 0 {
                problem(
                    at(&["sweep"]),
                    "`kind = \"random\"` needs `trials`, the number of runs to draw (1 or more)"
                        .into(),
                );
            }
            for (key, distribution) in &sweep.random {
                if let Err(message) = check_distribution(distribution) {
                    problem(at(&["sweep", "random", key]), message);
                }
            }
            if sweep.random.is_empty() {
                problem(
                    at(&["sweep", "random"]),
                    "expected at least one key to sweep".into(),
                );
            }
            let mut rng = rand::rngs::StdRng::seed_from_u64(sweep.seed);
            (0..sweep.trials)
                .map(|_| {
                    sweep
                        .random
                        .iter()
                        .filter(|(_, distribution)| check_distribution(distribution).is_ok())
                        .map(|(key, distribution)| {
                            let path = at(&["sweep", "random", key]);
                            assignment(key, sample(distribution, &mut rng), &path)
                        })
                        .collect()
                })
                .collect()
        }
        "list" => {
            unused("grid", !sweep.grid.is_empty(), &mut problem);
            unused("random", !sweep.random.is_empty(), &mut problem);
            if sweep.list.is_empty() {
                problem(
                    at(&["sweep", "list"]),
                    "expected at least one run, found none".into(),
                );
            }
            sweep
                .list
                .iter()
                .enumerate()
                .map(|(index, entries)| {
                    entries
                        .iter()
                        .map(|(key, value)| {
                            let path = at(&["sweep", "list", &index.to_string(), key]);
                            assignment(key, value.clone(), &path)
                        })
                        .collect()
                })
                .collect()
        }
        "" => {
            problem(
                at(&["sweep"]),
                "missing `kind`: set `kind = \"grid\"`, `\"random\"` or `\"list\"`".into(),
            );
            Vec::new()
        }
        other => {
            problem(
                at(&["sweep", "kind"]),
                format!("unknown sweep kind `{other}`; expected `grid`, `random` or `list`"),
            );
            Vec::new()
        }
    }
}

fn assignment(key: &str, value: Value, path: &[String]) -> Assignment {
    Assignment {
        key: key.to_string(),
        value,
        source: Source::Spec(path.to_vec()),
    }
}

/// Grid of `--sweep KEY=V1,V2,...` flags (values parsed as TOML, split at top-level
/// commas).
fn flag_sets(flags: &[String], errors: &mut Vec<SpecError>) -> Vec<Vec<Assignment>> {
    let mut axes: Vec<Vec<Vec<Assignment>>> = Vec::new();
    for flag in flags {
        let invalid = |message: &str| SpecError {
            origin: Origin::SweepFlag(flag.clone()),
            key: String::new(),
            message: message.into(),
            hint: Some("write sweeps as `--sweep section.key=value1,value2`".into()),
        };
        let Some((key, values)) = flag.split_once('=') else {
            errors.push(invalid("missing `=`"));
            continue;
        };
        let values: Vec<Value> = split_top_level(values)
            .into_iter()
            .filter(|text| !text.trim().is_empty())
            .map(|text| crate::spec::parse_override_value(text.trim()))
            .collect();
        if values.is_empty() {
            errors.push(invalid("expected at least one value"));
            continue;
        }
        let axis = values
            .into_iter()
            .map(|value| {
                vec![Assignment {
                    key: key.trim().to_string(),
                    value,
                    source: Source::Flag(flag.clone()),
                }]
            })
            .collect();
        axes.push(axis);
    }
    if axes.is_empty() {
        return Vec::new();
    }
    axes.iter()
        .fold(vec![Vec::new()], |sets, axis| cross(&sets, axis))
}

/// Splits at commas outside brackets and quotes, so `[0, 180],[0, 90]` is two values.
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    let mut parts = Vec::new();
    for (index, ch) in text.char_indices() {
        match ch {
            '"' | '\'' => quoted = !quoted,
            '[' | '{' if !quoted => depth += 1,
            ']' | '}' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Builds every combination of one set from `left` and one from `right`, `left` varying
/// slowest.
fn cross(left: &[Vec<Assignment>], right: &[Vec<Assignment>]) -> Vec<Vec<Assignment>> {
    let mut sets = Vec::new();
    for first in left {
        for second in right {
            sets.push(first.iter().chain(second).cloned().collect());
        }
    }
    sets
}

fn check_distribution(distribution: &Distribution) -> Result<(), String> {
    let bounds = || match (distribution.low, distribution.high) {
        (Some(low), Some(high)) if !low.is_finite() || !high.is_finite() => Err(format!(
            "`low` and `high` must be finite numbers, found {low} and {high}"
        )),
        (Some(low), Some(high)) if low <= high => Ok((low, high)),
        (Some(low), Some(high)) => Err(format!("`low` ({low}) is greater than `high` ({high})")),
        _ => Err(format!(
            "`{}` needs `low` and `high`",
            distribution.distribution
        )),
    };
    let name = distribution.distribution.as_str();
    if name != "choice" && distribution.values.is_some() {
        return Err(format!(
            "`values` is only used by `choice`; `{name}` draws between `low` and `high`"
        ));
    }
    if name == "choice" && (distribution.low.is_some() || distribution.high.is_some()) {
        return Err("`choice` draws from `values`; remove `low` and `high`".into());
    }
    match name {
        "uniform" => bounds().map(|_| ()),
        "log_uniform" => {
            let (low, _) = bounds()?;
            if low <= 0.0 {
                return Err(format!("`log_uniform` needs `low` above 0, found {low}"));
            }
            Ok(())
        }
        "int" => {
            let (low, high) = bounds()?;
            if low.fract() != 0.0 || high.fract() != 0.0 {
                return Err("`int` needs integer `low` and `high`".into());
            }
            Ok(())
        }
        "choice" => match &distribution.values {
            Some(values) if !values.is_empty() => Ok(()),
            _ => Err("`choice` needs a non-empty `values` list".into()),
        },
        other => Err(format!(
            "unknown distribution `{other}`; expected `uniform`, `log_uniform`, `int` or `choice`"
        )),
    }
}

/// Draws one value; `distribution` must have passed [`check_distribution`].
fn sample(distribution: &Distribution, rng: &mut impl Rng) -> Value {
    let low = distribution.low.unwrap_or(0.0);
    let high = distribution.high.unwrap_or(low);
    match distribution.distribution.as_str() {
        "uniform" => Value::from(low + (high - low) * rng.gen::<f64>()),
        "log_uniform" => Value::from((low.ln() + (high.ln() - low.ln()) * rng.gen::<f64>()).exp()),
        "int" => Value::from(rng.gen_range(low as i64..=high as i64)),
        _ => {
            let values = distribution.values.as_deref().unwrap_or_default();
            values[rng.gen_range(0..values.len())].clone()
        }
    }
}

/// TOML text of an override value.
pub fn toml_text(value: &Value) -> String {
    match toml::Value::try_from(value) {
        Ok(toml::Value::Float(number)) => format!("{number:?}"),
        Ok(other) => other.to_string(),
        Err(_) => format!("{value:?}"),
    }
}

/// Folder labels of the runs of a sweep: `name=value` per swept key, where the name is the
/// key's last part unless two keys share it (`blocks.0.channels`, `blocks.1.channels`).
/// Floats have 4 significant digits unless two runs would then get one label, in which
/// case they are written in full.
fn run_labels(sets: &[Vec<Assignment>]) -> Vec<String> {
    // A list sweep's runs may each set other keys, so names come from all of them.
    let mut keys: Vec<&str> = Vec::new();
    for assignment in sets.iter().flatten() {
        if !keys.contains(&assignment.key.as_str()) {
            keys.push(&assignment.key);
        }
    }
    let names: BTreeMap<String, String> = keys
        .iter()
        .map(|key| key.to_string())
        .zip(key_names(&keys))
        .collect();

    let labels = |precise: bool| -> Vec<String> {
        sets.iter()
            .map(|set| run_label(set, &names, precise))
            .collect()
    };
    let short = labels(false);
    let unique: std::collections::BTreeSet<&String> = short.iter().collect();
    let mut labels = if unique.len() == short.len() {
        short
    } else {
        labels(true)
    };

    // Values that differ only in characters a folder name cannot hold, or beyond its
    // length limit, still collide: number the later ones.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for label in &mut labels {
        let count = counts.entry(label.clone()).or_insert(0);
        *count += 1;
        if *count > 1 {
            *label = format!("{label}_{count}");
        }
    }
    labels
}

/// Shortest dotted suffix of each key that no other key ends with, extended so that it
/// does not start with a list index.
fn key_names(keys: &[&str]) -> Vec<String> {
    let suffix = |key: &str, parts: usize| -> String {
        let segments: Vec<&str> = key.split('.').collect();
        segments[segments.len().saturating_sub(parts)..].join(".")
    };
    keys.iter()
        .map(|key| {
            let segments = key.split('.').count();
            let mut parts = 1;
            while parts < segments
                && keys
                    .iter()
                    .any(|other| other != key && suffix(other, parts) == suffix(key, parts))
            {
                parts += 1;
            }
            while parts < segments
                && suffix(key, parts)
                    .split('.')
                    .next()
                    .is_some_and(|first| first.parse::<usize>().is_ok())
            {
                parts += 1;
            }
            suffix(key, parts)
        })
        .collect()
}

/// Label of one run; `names` maps each swept key to its name in labels.
fn run_label(
    assignments: &[Assignment],
    names: &BTreeMap<String, String>,
    precise: bool,
) -> String {
    if assignments.is_empty() {
        return "default".into();
    }
    let parts: Vec<String> = assignments
        .iter()
        .map(|a| {
            let name = names.get(&a.key).map_or(a.key.as_str(), String::as_str);
            let value = match toml::Value::try_from(&a.value) {
                Ok(toml::Value::Float(number)) if precise => format!("{number}"),
                Ok(toml::Value::Float(number)) => short_float(number),
                Ok(toml::Value::String(text)) => text,
                Ok(toml::Value::Array(items)) => items
                    .iter()
                    .map(|item| item.to_string().trim_matches('"').to_string())
                    .collect::<Vec<_>>()
                    .join("-"),
                _ => toml_text(&a.value),
            };
            format!("{name}={value}")
        })
        .collect();
    folder_label(&parts.join(","), 100)
}

/// Returns the default sweep folder, `<runs>/<experiment>/sweep_<spec file name>`, so
/// running the same sweep again finds its queue.
pub fn default_sweep_dir(runs_dir: &Path, experiment: &str, spec_path: &Path) -> PathBuf {
    let stem = spec_path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "spec".into());
    runs_dir
        .join(experiment)
        .join(format!("sweep_{}", folder_label(&stem, 80)))
}

/// Makes `text` safe as one folder name: characters other than letters, digits and
/// `=.,_-` become `_`, the result is cut to `max_chars` and loses trailing commas.
pub fn folder_label(text: &str, max_chars: usize) -> String {
    let label: String = text
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || "=.,_-".contains(ch) {
                ch
            } else {
                '_'
            }
        })
        .take(max_chars)
        .collect();
    label.trim_end_matches(',').to_string()
}

/// Formats a float with 4 significant digits without trailing zeros, in scientific
/// notation when it is very large or very small.
fn short_float(number: f64) -> String {
    let trim = |text: &str| text.trim_end_matches('0').trim_end_matches('.').to_string();
    let scientific = format!("{number:.3e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if number != 0.0 && (number.abs() >= 1e4 || number.abs() < 1e-3) {
        format!("{}e{exponent}", trim(mantissa))
    } else {
        let decimals = (3 - exponent).max(0) as usize;
        let text = format!("{number:.decimals$}");
        if text.contains('.') {
            trim(&text)
        } else {
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_top_level_keeps_lists() {
        assert_eq!(split_top_level("0.1,0.03"), vec!["0.1", "0.03"]);
        assert_eq!(
            split_top_level("[0, 180],[0, 90]"),
            vec!["[0, 180]", "[0, 90]"]
        );
        assert_eq!(split_top_level("\"a,b\",c"), vec!["\"a,b\"", "c"]);
    }

    #[test]
    fn run_label_shortens_values() {
        let assignments = vec![
            Assignment {
                key: "train.lr".into(),
                value: Value::from(0.030000001),
                source: Source::Flag(String::new()),
            },
            Assignment {
                key: "model.blocks.0.kind".into(),
                value: Value::from("nin".to_string()),
                source: Source::Flag(String::new()),
            },
        ];
        let names = BTreeMap::from([
            ("train.lr".to_string(), "lr".to_string()),
            ("model.blocks.0.kind".to_string(), "kind".to_string()),
        ]);
        assert_eq!(run_label(&assignments, &names, false), "lr=0.03,kind=nin");
    }

    #[test]
    fn key_names_disambiguate() {
        let cases: [(&[&str], &[&str]); 4] = [
            (&["train.lr", "train.momentum"], &["lr", "momentum"]),
            (
                &["train.lr", "eval.0.train.lr"],
                &["train.lr", "eval.0.train.lr"],
            ),
            (
                &["model.blocks.0.channels", "model.blocks.1.channels"],
                &["blocks.0.channels", "blocks.1.channels"],
            ),
            (&["lr"], &["lr"]),
        ];
        for (keys, expected) in cases {
            assert_eq!(key_names(keys), expected, "{keys:?}");
        }
    }

    #[test]
    fn run_labels_full_floats_on_collision() {
        let set = |lr: f64| {
            vec![Assignment {
                key: "train.lr".into(),
                value: Value::from(lr),
                source: Source::Flag(String::new()),
            }]
        };
        assert_eq!(
            run_labels(&[set(0.10001), set(0.10002)]),
            vec!["lr=0.10001", "lr=0.10002"]
        );
        assert_eq!(run_labels(&[set(0.1), set(0.3)]), vec!["lr=0.1", "lr=0.3"]);
    }

    #[test]
    fn run_labels_use_list_entry_keys() {
        let entry = |pairs: &[(&str, f64)]| -> Vec<Assignment> {
            pairs
                .iter()
                .map(|(key, value)| Assignment {
                    key: key.to_string(),
                    value: Value::from(*value),
                    source: Source::Flag(String::new()),
                })
                .collect()
        };
        let sets = [
            entry(&[("train.lr", 0.05)]),
            entry(&[("train.epochs", 1.0)]),
            entry(&[("train.batch_size", 64.0), ("train.weight_decay", 0.001)]),
        ];
        assert_eq!(
            run_labels(&sets),
            vec!["lr=0.05", "epochs=1", "batch_size=64,weight_decay=0.001"]
        );
    }

    #[test]
    fn short_float_cases() {
        let cases = [
            (0.1, "0.1"),
            (1e30, "1e30"),
            (0.00042, "4.2e-4"),
            (0.0042, "0.0042"),
            (0.00123456, "0.001235"),
            (123.456, "123.5"),
            (1200.0, "1200"),
            (2.0, "2"),
        ];
        for (number, expected) in cases {
            assert_eq!(short_float(number), expected, "{number}");
        }
    }
}
