//! Reads the spec layers, merges them with figment and extracts a [`Spec`], collecting every
//! error with its origin.
//!
//! Layers, later ones overriding earlier ones key by key: the built-in defaults (serde
//! defaults of the spec structs), the `extends` chain (base first), the spec file,
//! `RUNNER_<SECTION>__<KEY>` environment variables, then `--set KEY=VALUE` flags.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Map, Tag, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};

use super::check::check;
use super::origin::{
    closest, line_in_file, line_of_key, line_of_key_exact, Origin, SpecError, SpecErrors,
};
use super::Spec;

/// Top-level sections that `RUNNER_<SECTION>__<KEY>` variables may set. Other `RUNNER_*`
/// variables (such as `RUNNER_DATA_DIR`) are not spec keys and are left alone.
pub const SECTIONS: &[&str] = &[
    "experiment",
    "data",
    "model",
    "pretext",
    "train",
    "eval",
    "device",
    "launcher",
];

/// Prefix of environment variables that override spec keys.
pub const ENV_PREFIX: &str = "RUNNER_";

/// Longest `extends` chain accepted, to stop runaway chains early.
const MAX_EXTENDS_DEPTH: usize = 16;

/// Mistakes that stop the extraction loop from looping forever on a value it cannot drop.
const MAX_EXTRACTION_ERRORS: usize = 64;

/// What to load.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The spec file named on the command line.
    pub spec_path: PathBuf,
    /// `KEY=VALUE` overrides from `--set`, applied last, in order.
    pub overrides: Vec<String>,
    /// Environment variables to read `RUNNER_*` overrides from (the caller passes
    /// `std::env::vars()`, tests pass their own).
    pub env: Vec<(String, String)>,
}

/// A validated spec and the layers it came from.
#[derive(Debug, Clone)]
pub struct LoadedSpec {
    pub spec: Spec,
    /// Spec files read, base of the `extends` chain first.
    pub files: Vec<PathBuf>,
    /// Overrides applied from the environment and `--set`, as `key=value`.
    pub overrides: Vec<String>,
}

impl LoadedSpec {
    /// Formats the complete spec as TOML, headed by the layers it came from.
    pub fn resolved_text(&self) -> String {
        let mut text = String::from("# Resolved spec: every key with the value this run used.\n");
        for file in &self.files {
            text.push_str(&format!("# spec file: {}\n", file.display()));
        }
        for flag in &self.overrides {
            text.push_str(&format!("# override: {flag}\n"));
        }
        let mut spec = self.spec.clone();
        spec.extends = None;
        let body = toml::to_string_pretty(&spec)
            .unwrap_or_else(|error| format!("# not serialisable: {error}\n"));
        text.push_str(&body);
        text
    }
}

/// Loads, merges and validates the spec at `options.spec_path`.
///
/// # Errors
///
/// Returns every problem found: unreadable files, TOML syntax errors, unknown keys, wrong
/// types, out-of-range values and unknown component names, each with its origin.
pub fn load(options: &LoadOptions) -> Result<LoadedSpec, SpecErrors> {
    let fail = |errors| SpecErrors {
        spec_path: options.spec_path.clone(),
        errors,
    };

    let mut errors = Vec::new();
    let files = read_extends_chain(&options.spec_path, &mut errors);
    let mut layers: Vec<Layer> = files
        .iter()
        .map(|(path, dict)| Layer::file(path, dict))
        .collect();
    let mut overrides = Vec::new();
    for (name, value) in &options.env {
        if let Some(layer) = env_layer(name, value) {
            overrides.push(format!("{}={value}", layer.key));
            layers.push(layer);
        }
    }
    for flag in &options.overrides {
        match set_layer(flag) {
            Ok(layer) => {
                overrides.push(flag.clone());
                layers.push(layer);
            }
            Err(error) => errors.push(error),
        }
    }
    if !errors.is_empty() {
        return Err(fail(errors));
    }

    let mut figment = Figment::new();
    for mut layer in layers {
        if let Some((path, value)) = layer.assignment.take() {
            match assignment_dict(&figment, &path, value) {
                Ok(dict) => layer.dict = dict,
                Err(message) => {
                    errors.push(SpecError {
                        origin: layer.origin(),
                        key: path.join("."),
                        message,
                        hint: None,
                    });
                    continue;
                }
            }
        }
        figment = figment.merge(layer);
    }
    if !errors.is_empty() {
        return Err(fail(errors));
    }
    let file_paths: Vec<PathBuf> = files.iter().map(|(path, _)| path.clone()).collect();
    let origins = Origins {
        figment: &figment,
        files: &file_paths,
    };
    let mut root = match figment.data() {
        Ok(mut data) => Value::from(data.remove(&Profile::Default).unwrap_or_default()),
        Err(error) => {
            return Err(fail(vec![figment_error(
                &origins,
                &Value::from(Dict::new()),
                error,
            )]))
        }
    };
    let mut removed = Vec::new();
    let spec = extract(&origins, &mut root, &mut errors, &mut removed);
    if let Some(spec) = &spec {
        // A removed key fell back to its default, so checks of it, and of the schedule keys
        // that depend on `epochs`, would judge a value the user did not write.
        let near_removed = |path: &[String]| {
            removed.iter().any(|removed_path| {
                let Some((last, parent)) = removed_path.split_last() else {
                    return false;
                };
                let schedule_of_epochs = last == "epochs"
                    && path.starts_with(parent)
                    && path.get(parent.len()).is_some_and(|key| key == "schedule");
                path == removed_path.as_slice() || schedule_of_epochs
            })
        };
        for problem in check(spec) {
            if near_removed(&problem.path) {
                continue;
            }
            let origin = origins.of(&root, &problem.path);
            errors.push(SpecError {
                origin,
                key: problem.path.join("."),
                message: problem.message,
                hint: problem.hint,
            });
        }
    }
    match spec {
        Some(spec) if errors.is_empty() => Ok(LoadedSpec {
            spec,
            files: files.into_iter().map(|(path, _)| path).collect(),
            overrides,
        }),
        _ => Err(fail(errors)),
    }
}

/// Reads the spec file and its `extends` chain, returning the files base first.
fn read_extends_chain(spec_path: &Path, errors: &mut Vec<SpecError>) -> Vec<(PathBuf, Dict)> {
    let mut chain = Vec::new();
    let mut seen = HashSet::new();
    let mut next = Some(spec_path.to_path_buf());
    while let Some(path) = next.take() {
        let canonical = path.canonicalize().unwrap_or_else(|_| path.clone());
        if !seen.insert(canonical) {
            errors.push(file_error(
                &path,
                None,
                "`extends` forms a cycle".into(),
                None,
            ));
            break;
        }
        if chain.len() == MAX_EXTENDS_DEPTH {
            let message = format!("`extends` chain is longer than {MAX_EXTENDS_DEPTH} files");
            errors.push(file_error(&path, None, message, None));
            break;
        }
        let Some(dict) = read_toml_file(&path, errors) else {
            break;
        };
        match dict.get("extends") {
            Some(Value::String(_, base)) => {
                let folder = path.parent().unwrap_or(Path::new("."));
                next = Some(folder.join(base));
            }
            Some(other) => {
                let line = line_in_file(&path, &["extends".into()]);
                let message = format!("expected a path string, found {}", describe(other));
                errors.push(file_error(&path, line, message, None).with_key("extends"));
            }
            None => {}
        }
        chain.push((path, dict));
    }
    chain.reverse();
    chain
}

/// Reads and parses one TOML file, recording a located error on failure.
fn read_toml_file(path: &Path, errors: &mut Vec<SpecError>) -> Option<Dict> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            let hint = (error.kind() == std::io::ErrorKind::NotFound).then(|| {
                "check the path; `extends` paths are relative to the extending file".into()
            });
            errors.push(file_error(
                path,
                None,
                format!("cannot read spec file: {error}"),
                hint,
            ));
            return None;
        }
    };
    match toml::from_str::<Dict>(&text) {
        Ok(dict) => Some(dict),
        Err(error) => {
            let line = error
                .span()
                .map(|span| text[..span.start].matches('\n').count() + 1);
            let message = format!("invalid TOML: {}", error.message().trim());
            errors.push(file_error(path, line, message, None));
            None
        }
    }
}

fn file_error(
    path: &Path,
    line: Option<usize>,
    message: String,
    hint: Option<String>,
) -> SpecError {
    SpecError {
        origin: Origin::File {
            path: path.to_path_buf(),
            line,
        },
        key: String::new(),
        message,
        hint,
    }
}

impl SpecError {
    fn with_key(mut self, key: &str) -> Self {
        self.key = key.into();
        self
    }
}

/// One merge layer: a spec file, an environment variable or a `--set` flag.
struct Layer {
    /// Metadata name that [`origin_of`] maps back to an [`Origin`].
    name: String,
    source: Option<PathBuf>,
    /// Dotted key this layer sets, for environment and command-line layers.
    key: String,
    dict: Dict,
    /// Key path and value of an environment or command-line override, turned into `dict`
    /// against the layers merged before it (see [`assignment_dict`]).
    assignment: Option<(Vec<String>, Value)>,
}

const ENV_LAYER: &str = "env:";
const SET_LAYER: &str = "set:";

impl Layer {
    fn file(path: &Path, dict: &Dict) -> Self {
        Layer {
            name: format!("spec file {}", path.display()),
            source: Some(path.to_path_buf()),
            key: String::new(),
            dict: dict.clone(),
            assignment: None,
        }
    }

    fn origin(&self) -> Origin {
        match (
            self.name.strip_prefix(ENV_LAYER),
            self.name.strip_prefix(SET_LAYER),
        ) {
            (Some(name), _) => Origin::Env(name.into()),
            (_, Some(flag)) => Origin::CommandLine(flag.into()),
            _ => Origin::File {
                path: self.source.clone().unwrap_or_default(),
                line: None,
            },
        }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        match &self.source {
            Some(path) => Metadata::from(self.name.clone(), Source::File(path.clone())),
            None => Metadata::named(self.name.clone()),
        }
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// Turns `RUNNER_TRAIN__LR=0.05` into a layer setting `train.lr`; other variables give
/// `None`.
fn env_layer(name: &str, value: &str) -> Option<Layer> {
    let rest = name.strip_prefix(ENV_PREFIX)?;
    let path: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
    if path.len() < 2 || !SECTIONS.contains(&path[0].as_str()) {
        return None;
    }
    if path.iter().any(|segment| segment.is_empty()) {
        return Some(Layer {
            name: format!("{ENV_LAYER}{name}"),
            source: None,
            key: path.join("."),
            dict: Dict::new(),
            assignment: Some((path, Value::from(value.to_string()))),
        });
    }
    Some(Layer {
        name: format!("{ENV_LAYER}{name}"),
        source: None,
        key: path.join("."),
        dict: Dict::new(),
        assignment: Some((path, parse_value(value))),
    })
}

/// Turns `train.lr=0.05` into a layer setting `train.lr`.
fn set_layer(flag: &str) -> Result<Layer, SpecError> {
    let invalid = |message: &str| SpecError {
        origin: Origin::CommandLine(flag.into()),
        key: String::new(),
        message: message.into(),
        hint: Some(
            "write overrides as `--set section.key=value`, e.g. `--set train.lr=0.05`".into(),
        ),
    };
    let (key, value) = flag.split_once('=').ok_or_else(|| invalid("missing `=`"))?;
    let path: Vec<String> = key.trim().split('.').map(String::from).collect();
    if path.iter().any(|segment| segment.is_empty()) {
        return Err(invalid("empty key segment"));
    }
    if path[0] == "extends" || path[0] == "sweep" {
        return Err(invalid(&format!(
            "`{}` can only be set in a spec file",
            path[0]
        )));
    }
    Ok(Layer {
        name: format!("{SET_LAYER}{flag}"),
        source: None,
        key: path.join("."),
        dict: Dict::new(),
        assignment: Some((path, parse_value(value.trim()))),
    })
}

/// Parses an override value as a TOML value (number, boolean, array, quoted string), or
/// takes it as a bare string when it is not valid TOML.
pub fn parse_value(text: &str) -> Value {
    toml::from_str::<Dict>(&format!("value = {text}"))
        .ok()
        .and_then(|mut dict| dict.remove("value"))
        .unwrap_or_else(|| Value::from(text.to_string()))
}

fn nested_dict(path: &[String], leaf: Value) -> Dict {
    let (last, parents) = path
        .split_last()
        .expect("override paths have at least one segment");
    let mut dict = Dict::new();
    dict.insert(last.clone(), leaf);
    for segment in parents.iter().rev() {
        let mut outer = Dict::new();
        outer.insert(segment.clone(), Value::from(dict));
        dict = outer;
    }
    dict
}

/// Deserialises `root` into a [`Spec`]. On each error it records the error, removes the
/// offending key so that its default applies, and tries again, so one pass reports every
/// unknown key and wrong type. Returns `None` when an error cannot be removed.
fn extract(
    origins: &Origins,
    root: &mut Value,
    errors: &mut Vec<SpecError>,
    removed: &mut Vec<Vec<String>>,
) -> Option<Spec> {
    let mut removed_elements: Vec<Vec<String>> = Vec::new();
    for _ in 0..MAX_EXTRACTION_ERRORS {
        let error = match root.deserialize::<Spec>() {
            Ok(spec) => return Some(spec),
            Err(error) => error,
        };
        // For unknown keys, figment's path already ends with the key itself.
        let current = error.path.clone();
        let unknown_key = matches!(error.kind, figment::error::Kind::UnknownField(..));
        let mut spec_error = figment_error(origins, root, error);
        // Removing an array element shifts the later ones, so report original indices.
        let original = original_path(&current, &removed_elements);
        if original != current {
            spec_error.key = original.join(".");
            if let Origin::File { path, line } = &mut spec_error.origin {
                *line = line_in_file(path, &original);
            }
        }
        errors.push(spec_error);
        if current.is_empty() || !remove_path(root, &current) {
            return None;
        }
        if current
            .last()
            .is_some_and(|segment| segment.parse::<usize>().is_ok())
        {
            removed_elements.push(original.clone());
        }
        // Dropping an unknown key changes no value, so only invalid values count here.
        if !unknown_key {
            removed.push(original);
        }
    }
    errors.push(SpecError {
        origin: Origin::File {
            path: origins.files.last().cloned().unwrap_or_default(),
            line: None,
        },
        key: String::new(),
        message: format!("more than {MAX_EXTRACTION_ERRORS} errors; the rest are not shown"),
        hint: None,
    });
    None
}

/// Maps a path in the array-pruned tree back to the original indices, given the original
/// paths of the array elements removed so far (in removal order).
fn original_path(current: &[String], removed_elements: &[Vec<String>]) -> Vec<String> {
    let mut original: Vec<String> = Vec::with_capacity(current.len());
    for segment in current {
        let Ok(index) = segment.parse::<usize>() else {
            original.push(segment.clone());
            continue;
        };
        let mut removed_indices: Vec<usize> = removed_elements
            .iter()
            .filter(|path| {
                path.len() == original.len() + 1 && path[..original.len()] == original[..]
            })
            .filter_map(|path| path.last()?.parse().ok())
            .collect();
        removed_indices.sort_unstable();
        let mut mapped = index;
        for removed_index in removed_indices {
            if removed_index <= mapped {
                mapped += 1;
            }
        }
        original.push(mapped.to_string());
    }
    original
}

/// Converts a deserialisation error into a located [`SpecError`] with a suggestion.
fn figment_error(origins: &Origins, root: &Value, error: figment::Error) -> SpecError {
    use figment::error::Kind;
    let path = error.path.clone();
    let (message, hint) = match &error.kind {
        Kind::UnknownField(field, expected) => {
            let hint = match closest(field, expected.iter().copied()) {
                Some(suggestion) => format!("did you mean `{suggestion}`?"),
                None => format!("valid keys here: {}", expected.join(", ")),
            };
            (format!("unknown key `{field}`"), Some(hint))
        }
        Kind::InvalidType(actual, expected) => {
            let in_sweep = path.first().is_some_and(|s| s == "sweep")
                && path
                    .get(1)
                    .is_some_and(|s| s == "grid" || s == "random" || s == "list");
            // An unquoted dotted key makes a nested table where a value list belongs.
            let found_table = matches!(actual, figment::error::Actual::Map);
            let hint = match (in_sweep, found_table) {
                (true, true) => {
                    Some("quote dotted sweep keys, e.g. `\"train.lr\" = [0.1, 0.03]`".to_string())
                }
                (true, false) if path.get(1).is_some_and(|s| s == "grid") => Some(
                    "a grid key takes a list of values, e.g. `\"train.lr\" = [0.1, 0.03]`"
                        .to_string(),
                ),
                _ => None,
            };
            (format!("expected {expected}, found {actual}"), hint)
        }
        Kind::InvalidValue(actual, expected) => {
            (format!("expected {expected}, found {actual}"), None)
        }
        other => (other.to_string(), None),
    };
    SpecError {
        origin: origins.of(root, &path),
        key: path.join("."),
        message,
        hint,
    }
}

/// Maps key paths back to the layer that set them.
struct Origins<'a> {
    figment: &'a Figment,
    /// Spec files, base of the `extends` chain first.
    files: &'a [PathBuf],
}

impl Origins<'_> {
    /// Finds the layer that set the value at `path` (or its deepest present ancestor).
    fn of(&self, root: &Value, path: &[String]) -> Origin {
        let mut node = root;
        let mut tag = Tag::Default;
        for segment in path {
            let next = match node {
                Value::Dict(_, dict) => dict.get(segment),
                Value::Array(_, items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
            let Some(next) = next else { break };
            node = next;
            tag = next.tag();
        }
        let dotted = path.join(".");
        let overrides_path = |key: &str| dotted == key || dotted.starts_with(&format!("{key}."));
        let metadata = self.figment.get_metadata(tag);
        match metadata.map(|m| (m.name.as_ref(), &m.source)) {
            Some((_, Some(Source::File(file)))) => {
                let text = std::fs::read_to_string(file).unwrap_or_default();
                Origin::File {
                    path: file.clone(),
                    line: line_of_key(&text, path),
                }
            }
            Some((name, _)) if name.starts_with(ENV_LAYER) || name.starts_with(SET_LAYER) => {
                let (layer, key) = match name.strip_prefix(ENV_LAYER) {
                    Some(variable) => (Origin::Env(variable.into()), env_key(variable)),
                    None => {
                        let flag = &name[SET_LAYER.len()..];
                        let key = flag.split_once('=').map_or(flag, |(key, _)| key).trim();
                        (Origin::CommandLine(flag.into()), key.to_string())
                    }
                };
                // An override of one array element replaces the whole array, so the other
                // elements are attributed to the files that wrote them.
                if overrides_path(&key) {
                    layer
                } else {
                    self.in_files(path).unwrap_or(layer)
                }
            }
            _ => self.in_files(path).unwrap_or(Origin::Default),
        }
    }

    /// Finds the last spec file that contains the whole key path.
    fn in_files(&self, path: &[String]) -> Option<Origin> {
        self.files.iter().rev().find_map(|file| {
            let text = std::fs::read_to_string(file).ok()?;
            let line = line_of_key_exact(&text, path)?;
            Some(Origin::File {
                path: file.clone(),
                line: Some(line),
            })
        })
    }
}

/// Spec key that environment variable `name` sets (`RUNNER_TRAIN__LR` sets `train.lr`).
fn env_key(name: &str) -> String {
    let rest = name.strip_prefix(ENV_PREFIX).unwrap_or(name);
    rest.split("__")
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(".")
}

/// Builds the dict that sets `path` to `value`. A numeric segment indexes an array that
/// earlier layers defined; the array is copied with that element changed, because figment
/// replaces arrays as a whole.
fn assignment_dict(figment: &Figment, path: &[String], value: Value) -> Result<Dict, String> {
    if path.iter().any(|segment| segment.is_empty()) {
        return Err(
            "empty key segment; separate levels with `__` in variables, `.` in --set".into(),
        );
    }
    let Some(array_at) = path
        .iter()
        .position(|segment| segment.parse::<usize>().is_ok())
    else {
        return Ok(nested_dict(path, value));
    };
    if array_at == 0 {
        return Err("a key cannot start with an array index".into());
    }
    let array_key = path[..array_at].join(".");
    let earlier = figment
        .find_value(&array_key)
        .ok()
        .or_else(|| default_value(&array_key));
    let mut array = match earlier {
        Some(array @ Value::Array(..)) => array,
        Some(other) => {
            return Err(format!(
                "`{array_key}` is {}, not an array",
                describe(&other)
            ))
        }
        None => {
            return Err(format!(
                "`{array_key}` is not a list in the spec or its defaults"
            ))
        }
    };
    set_path(&mut array, &path[array_at..], value)?;
    Ok(nested_dict(&path[..array_at], array))
}

/// Value of dotted `key` in the built-in defaults.
fn default_value(key: &str) -> Option<Value> {
    Value::serialize(Spec::default()).ok()?.find(key)
}

/// Sets `path` inside `node`, creating tables for missing keys; array indices must exist.
fn set_path(node: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else {
        *node = value;
        return Ok(());
    };
    let child = match node {
        Value::Array(_, items) => {
            let length = items.len();
            let index: usize = first
                .parse()
                .map_err(|_| format!("expected an array index, found `{first}`"))?;
            items.get_mut(index).ok_or_else(|| {
                format!("index {index} is out of range: the array has {length} entries")
            })?
        }
        Value::Dict(_, dict) => dict
            .entry(first.clone())
            .or_insert_with(|| Value::from(Dict::new())),
        other => return Err(format!("cannot set `{first}` inside {}", describe(other))),
    };
    set_path(child, rest, value)
}

/// Removes the value at `path`, returning whether it was there.
fn remove_path(root: &mut Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = root;
    for segment in parents {
        let next = match node {
            Value::Dict(_, dict) => dict.get_mut(segment),
            Value::Array(_, items) => segment.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        };
        match next {
            Some(next) => node = next,
            None => return false,
        }
    }
    match node {
        Value::Dict(_, dict) => dict.remove(last).is_some(),
        Value::Array(_, items) => match last.parse::<usize>() {
            Ok(index) if index < items.len() => {
                items.remove(index);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(_, text) => format!("string {text:?}"),
        Value::Num(_, number) => format!("number {number:?}"),
        Value::Bool(_, flag) => format!("boolean {flag}"),
        Value::Dict(..) => "a table".into(),
        Value::Array(..) => "an array".into(),
        other => format!("{other:?}"),
    }
}
