//! Executes the runs of a sweep one after another in one sweep folder:
//! `<runs>/<experiment>/sweep_<timestamp>/<label>/`, with `sweep.json` listing every run's
//! overrides, state and final figures. A failing run is recorded and the sweep goes on.

use std::path::PathBuf;

use serde::Serialize;

use crate::error::Result;
use crate::run::{create_unique_dir, execute_at, write_json, RunOptions};
use crate::sweep::{toml_text, SweepRun};

/// State and figures of one run of a sweep.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub label: String,
    pub overrides: Vec<String>,
    /// `done` or `failed`.
    pub state: String,
    pub run_dir: PathBuf,
    /// Test accuracy of each evaluation row, as `<eval>/<block>/<init>`, then of the
    /// pretext task as `pretext`.
    pub metrics: Vec<(String, f64)>,
    pub error: Option<String>,
    pub seconds: Option<f64>,
}

/// The outcome of a whole sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    pub sweep_dir: PathBuf,
    pub runs: Vec<RunRecord>,
}

impl SweepReport {
    pub fn failures(&self) -> impl Iterator<Item = &RunRecord> {
        self.runs.iter().filter(|run| run.state == "failed")
    }
}

/// Runs every run of the sweep in order, writing `sweep.json` after each.
pub fn execute_sweep(runs: &[SweepRun], options: &RunOptions) -> Result<SweepReport> {
    let experiment = runs
        .first()
        .map_or("experiment", |run| run.loaded.spec.experiment.name.as_str());
    let timestamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    let parent = options.runs_dir.join(experiment);
    let sweep_dir = create_unique_dir(&parent, &format!("sweep_{timestamp}"))?;
    let mut report = SweepReport {
        sweep_dir: sweep_dir.clone(),
        runs: Vec::new(),
    };
    for (index, run) in runs.iter().enumerate() {
        tracing::info!("sweep run {}/{}: {}", index + 1, runs.len(), run.label);
        let overrides = run
            .assignments
            .iter()
            .map(|a| format!("{}={}", a.key, toml_text(&a.value)))
            .collect();
        let run_dir = create_unique_dir(&sweep_dir, &run.label)?;
        let record = match execute_at(&run.loaded, &run_dir, options) {
            Ok(result) => RunRecord {
                label: run.label.clone(),
                overrides,
                state: "done".into(),
                run_dir,
                metrics: result
                    .evaluations
                    .iter()
                    .map(|row| {
                        (
                            format!("{}/{}/{}", row.eval, row.block, row.init),
                            row.test_accuracy,
                        )
                    })
                    .chain(
                        result
                            .pretext
                            .iter()
                            .map(|p| ("pretext".to_string(), p.test_accuracy)),
                    )
                    .collect(),
                error: None,
                seconds: Some(result.wall_seconds),
            },
            Err(error) => {
                tracing::error!("sweep run {} failed: {error}", run.label);
                RunRecord {
                    label: run.label.clone(),
                    overrides,
                    state: "failed".into(),
                    run_dir,
                    metrics: Vec::new(),
                    error: Some(error.to_string()),
                    seconds: None,
                }
            }
        };
        report.runs.push(record);
        write_json(&sweep_dir.join("sweep.json"), &report)?;
    }
    Ok(report)
}

/// Formats one line per run: label, state, and its first evaluation's test accuracy.
pub fn sweep_table(report: &SweepReport) -> String {
    let mut lines = Vec::new();
    for run in &report.runs {
        let figure = match (run.metrics.first(), &run.error) {
            (Some((name, accuracy)), _) => format!("{name} {:.2} %", 100.0 * accuracy),
            (None, Some(error)) => error.lines().next().unwrap_or_default().to_string(),
            (None, None) => String::new(),
        };
        lines.push(format!("  {:<32} {:<7} {figure}", run.label, run.state));
    }
    lines.join("\n")
}
