//! `runner report DIR`: a table of a sweep's runs, their swept values and final figures,
//! read from the sweep folder's queue (so it also works while the sweep runs).

use std::collections::BTreeMap;
use std::path::Path;

use crate::queue::{Entry, RunState};

/// Output format of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Markdown,
    Csv,
}

/// Builds the report of the sweep in `dir`, sorted by `sort` (a metric name, default the
/// first metric) in decreasing order, with the best run marked.
///
/// # Errors
///
/// A message naming the file when the queue is missing or unreadable, or when `sort`
/// names no metric of the sweep.
pub fn report(dir: &Path, sort: Option<&str>, format: Format) -> Result<String, String> {
    let queue = crate::queue::open(dir)?;
    let entries = queue.entries()?;

    let keys: Vec<String> = unique(
        entries
            .iter()
            .flat_map(|run| run.overrides.iter().map(|o| key_of(o))),
    );
    let metrics: Vec<String> = unique(
        entries
            .iter()
            .flat_map(|run| run.metrics.iter().map(|(name, _)| name.clone())),
    );
    let sort_metric = match sort {
        Some(name) if metrics.iter().any(|metric| metric == name) => Some(name.to_string()),
        Some(name) if metrics.is_empty() => {
            return Err(format!(
                "cannot sort by `{name}`: no run of {} has finished yet, so there are no \
                 figures to sort by",
                dir.display()
            ))
        }
        Some(name) => {
            return Err(format!(
                "unknown metric `{name}`; metrics: {}",
                metrics.join(", ")
            ))
        }
        None => metrics.first().cloned(),
    };
    let value_of = |run: &Entry, metric: &str| {
        run.metrics
            .iter()
            .find(|(name, _)| name == metric)
            .map(|(_, value)| *value)
    };
    let mut runs: Vec<&Entry> = entries.iter().collect();
    if let Some(metric) = &sort_metric {
        runs.sort_by(|a, b| {
            let (a, b) = (value_of(a, metric), value_of(b, metric));
            b.unwrap_or(f64::NEG_INFINITY)
                .total_cmp(&a.unwrap_or(f64::NEG_INFINITY))
        });
    }
    let best = sort_metric
        .as_ref()
        .and_then(|metric| runs.first().filter(|run| value_of(run, metric).is_some()))
        .map(|run| run.label.clone());

    let mut header = vec!["run".to_string()];
    header.extend(keys.iter().cloned());
    header.push("state".into());
    header.extend(metrics.iter().cloned());
    header.push("seconds".into());
    if format == Format::Csv {
        header.push("best".into());
        header.push("error".into());
    }
    let mut rows = Vec::new();
    for run in &runs {
        let values: BTreeMap<String, String> = run
            .overrides
            .iter()
            .map(|o| {
                (
                    key_of(o),
                    plain_value(o.split_once('=').map_or("", |(_, v)| v)),
                )
            })
            .collect();
        let is_best = best.as_deref() == Some(run.label.as_str());
        let marker = if is_best && format == Format::Markdown {
            " *"
        } else {
            ""
        };
        let mut row = vec![format!("{}{marker}", run.label)];
        row.extend(
            keys.iter()
                .map(|key| values.get(key).cloned().unwrap_or_default()),
        );
        row.push(queue.state_name(run).into());
        row.extend(metrics.iter().map(|metric| {
            value_of(run, metric).map_or(String::new(), |value| format!("{:.2}", 100.0 * value))
        }));
        row.push(
            run.seconds
                .map_or(String::new(), |seconds| format!("{seconds:.0}")),
        );
        if format == Format::Csv {
            row.push(if is_best { "yes" } else { "" }.into());
            row.push(run.last_error().unwrap_or_default().into());
        }
        rows.push(row);
    }

    let mut out = match format {
        Format::Markdown => markdown(&header, &rows),
        Format::Csv => csv(&header, &rows),
    };
    if format == Format::Markdown {
        if let Some(metric) = &sort_metric {
            out.push_str(&format!(
                "\nTest accuracy in %, sorted by `{metric}`; * marks the best run.\n"
            ));
        }
        let failures: Vec<&&Entry> = runs
            .iter()
            .filter(|run| run.state == RunState::Failed)
            .collect();
        if !failures.is_empty() {
            out.push_str(&format!("\nFailed runs ({}):\n", failures.len()));
            for run in failures {
                out.push_str(&format!(
                    "- {}: {} (log: {})\n",
                    run.label,
                    run.last_error().unwrap_or_default(),
                    dir.join(&run.label).join("run.log").display()
                ));
            }
        }
    }
    Ok(out)
}

/// Formats a swept value for the table: a string loses its TOML quotes.
fn plain_value(toml_text: &str) -> String {
    match toml::from_str::<toml::Table>(&format!("value = {toml_text}")) {
        Ok(table) => match table.get("value") {
            Some(toml::Value::String(text)) => text.clone(),
            _ => toml_text.to_string(),
        },
        Err(_) => toml_text.to_string(),
    }
}

fn key_of(assignment: &str) -> String {
    assignment
        .split_once('=')
        .map_or(assignment, |(key, _)| key)
        .to_string()
}

fn unique(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

fn markdown(header: &[String], rows: &[Vec<String>]) -> String {
    let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
    let mut out = line(header);
    out.push_str(&line(
        &header.iter().map(|_| "---".to_string()).collect::<Vec<_>>(),
    ));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

fn csv(header: &[String], rows: &[Vec<String>]) -> String {
    let quote = |cell: &String| {
        if cell.contains([',', '"', '\n']) {
            format!("\"{}\"", cell.replace('"', "\"\""))
        } else {
            cell.clone()
        }
    };
    let line = |cells: &[String]| cells.iter().map(quote).collect::<Vec<_>>().join(",") + "\n";
    let mut out = line(header);
    for row in rows {
        out.push_str(&line(row));
    }
    out
}
