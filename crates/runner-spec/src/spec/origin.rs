//! Spec errors and where each offending value came from: a file and line, an environment
//! variable, a `--set` flag, or the built-in defaults.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The layer that supplied a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A spec file, with the 1-based line of the key when it could be located.
    File { path: PathBuf, line: Option<usize> },
    /// An environment variable, by name.
    Env(String),
    /// A `--set KEY=VALUE` flag, as given.
    CommandLine(String),
    /// A `--sweep KEY=VALUES` flag, as given.
    SweepFlag(String),
    /// No layer set the key, so the built-in default applies.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File {
                path,
                line: Some(line),
            } => write!(f, "{}:{line}", path.display()),
            Origin::File { path, line: None } => write!(f, "{}", path.display()),
            Origin::Env(name) => write!(f, "environment variable {name}"),
            Origin::CommandLine(flag) => write!(f, "command line `--set {flag}`"),
            Origin::SweepFlag(flag) => write!(f, "command line `--sweep {flag}`"),
            Origin::Default => write!(f, "built-in default"),
        }
    }
}

/// One problem in a spec.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecError {
    pub origin: Origin,
    /// Dotted key path such as `train.lr` or `eval.1.frozen_until` (empty for the whole
    /// file).
    pub key: String,
    /// What was expected and what was found.
    pub message: String,
    /// The fix, such as the closest valid key or component name.
    pub hint: Option<String>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.origin, self.message)?;
        } else {
            write!(f, "{}: `{}`: {}", self.origin, self.key, self.message)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n    hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in one spec, in the order they were found.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecErrors {
    /// The spec file named on the command line.
    pub spec_path: PathBuf,
    pub errors: Vec<SpecError>,
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.errors.len();
        let noun = if count == 1 { "error" } else { "errors" };
        write!(
            f,
            "invalid spec {}: {count} {noun}",
            self.spec_path.display()
        )?;
        for error in &self.errors {
            write!(f, "\n  {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

/// Returns the closest candidate to `given` by edit distance, when it is close enough to be
/// a likely typo. A candidate that is a prefix of `given` (or the reverse) counts as close.
pub fn closest<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| {
            let prefix = !candidate.is_empty()
                && !given.is_empty()
                && (given.starts_with(candidate) || candidate.starts_with(given));
            let score = strsim::normalized_damerau_levenshtein(given, candidate);
            (if prefix { score.max(0.5) } else { score }, candidate)
        })
        .filter(|(score, _)| *score >= 0.5)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

/// Finds the 1-based line of the key at `path` in TOML `text`. When the full path is absent,
/// it returns the line of the deepest ancestor present. It returns `None` when not even the
/// first key is present or the text does not parse.
pub fn line_of_key(text: &str, path: &[String]) -> Option<usize> {
    let document = toml_edit::ImDocument::parse(text).ok()?;
    let mut node = Node::Item(document.as_item());
    let mut span: Option<Range<usize>> = None;
    for segment in path {
        let Some((next, next_span)) = node.child(segment) else {
            break;
        };
        span = next_span.or(span);
        node = next;
    }
    let offset = span?.start;
    Some(text[..offset].matches('\n').count() + 1)
}

/// Finds the 1-based line of the key at `path` in TOML `text`, only when the whole path is
/// present.
pub fn line_of_key_exact(text: &str, path: &[String]) -> Option<usize> {
    let document = toml_edit::ImDocument::parse(text).ok()?;
    let mut node = Node::Item(document.as_item());
    let mut span: Option<Range<usize>> = None;
    for segment in path {
        let (next, next_span) = node.child(segment)?;
        span = next_span.or(span);
        node = next;
    }
    let offset = span?.start;
    Some(text[..offset].matches('\n').count() + 1)
}

/// Reads `path` for [`line_of_key`], returning `None` on any read failure.
pub fn line_in_file(path: &Path, key: &[String]) -> Option<usize> {
    let text = std::fs::read_to_string(path).ok()?;
    line_of_key(&text, key)
}

/// A position in a parsed TOML document, as whichever toml_edit type represents it.
enum Node<'a> {
    Item(&'a toml_edit::Item),
    Value(&'a toml_edit::Value),
    Table(&'a toml_edit::Table),
}

impl<'a> Node<'a> {
    /// Steps into `segment` (a key, or an index for arrays), returning the child and the
    /// span of its key or, for array elements, of the element.
    fn child(&self, segment: &str) -> Option<(Node<'a>, Option<Range<usize>>)> {
        use toml_edit::{Item, Value};
        match self {
            Node::Item(Item::Table(table)) => Node::Table(table).child(segment),
            Node::Table(table) => {
                let (key, item) = table.get_key_value(segment)?;
                Some((Node::Item(item), key.span().or_else(|| item.span())))
            }
            Node::Item(Item::ArrayOfTables(array)) => {
                let table = array.get(segment.parse().ok()?)?;
                Some((Node::Table(table), table.span()))
            }
            Node::Item(Item::Value(value)) => Node::Value(value).child(segment),
            Node::Value(Value::InlineTable(table)) => {
                let (key, item) = table.get_key_value(segment)?;
                Some((Node::Item(item), key.span().or_else(|| item.span())))
            }
            Node::Value(Value::Array(array)) => {
                let value = array.get(segment.parse().ok()?)?;
                Some((Node::Value(value), value.span()))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(dotted: &str) -> Vec<String> {
        dotted.split('.').map(String::from).collect()
    }

    #[test]
    fn line_of_key_cases() {
        let text = "[train]\nlr = 0.1\nepochs = 2\n\n[[eval]]\nprotocol = \"a\"\n\n[[eval]]\n\
                    protocol = \"b\"\nblocks = [\"conv1\", \"conv9\"]\n[eval.train]\nlr = 1\n";
        let cases = [
            ("train.lr", Some(2)),
            ("train.epochs", Some(3)),
            ("train.missing", Some(1)),
            ("eval.1.protocol", Some(9)),
            ("eval.1.blocks.1", Some(10)),
            ("eval.1.train.lr", Some(12)),
            ("model", None),
        ];
        for (key, expected) in cases {
            assert_eq!(line_of_key(text, &path(key)), expected, "key {key}");
        }
    }

    #[test]
    fn closest_suggests_typos_only() {
        assert_eq!(closest("lrr", ["lr", "epochs"]), Some("lr"));
        assert_eq!(closest("rotaton", ["rotation", "jigsaw"]), Some("rotation"));
        assert_eq!(closest("zzzzzz", ["lr", "epochs"]), None);
    }
}
