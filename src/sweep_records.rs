//! The hparams plugin's records of a sweep, so `tensorboard --logdir SWEEP_DIR` lists
//! every run in its HPARAMS tab with the swept values and final figures.
//!
//! The experiment record (columns: swept keys and final metrics) goes in an event file in
//! the sweep folder. Each run folder gets an event file with its session start (swept
//! values), one `final/<metric>` scalar per figure and its session end (success or
//! failure).

use std::path::Path;
use std::time::SystemTime;

use crate::error::Result;
use crate::logging::events::EventWriter;
use crate::logging::hparams::{self, HParamValue};
use crate::queue::{Claim, Queue};
use crate::run::RunReport;
use crate::spec::Spec;
use crate::sweep::SweepRun;
use crate::sweep_run::{hparam_value, metrics};

/// Prefix of the final-figure scalars in a run folder's own event file.
pub const FINAL_PREFIX: &str = "final/";

/// Writes the experiment record into the sweep folder, unless one is there already.
pub fn write_experiment(queue: &Queue, runs: &[SweepRun]) -> Result<()> {
    if has_event_file(&queue.dir)? {
        return Ok(());
    }
    let mut columns: Vec<(String, Vec<HParamValue>)> = Vec::new();
    for run in runs {
        for assignment in &run.assignments {
            let value = hparam_value(&assignment.value);
            match columns.iter_mut().find(|(key, _)| key == &assignment.key) {
                Some((_, values)) => values.push(value),
                None => columns.push((assignment.key.clone(), vec![value])),
            }
        }
    }
    let metric_names = runs
        .first()
        .map(|run| expected_metrics(&run.loaded.spec))
        .unwrap_or_default();
    let metrics: Vec<(String, String)> = metric_names
        .iter()
        .map(|name| (String::new(), format!("{FINAL_PREFIX}{name}")))
        .collect();
    let mut events = EventWriter::create(&queue.dir)?;
    events.summary(hparams::experiment(&columns, &metrics), 0)?;
    events.flush()
}

/// Writes a finished (or failed) run's session records into its folder, replacing any
/// from an earlier attempt.
pub fn write_session(queue: &Queue, claim: &Claim, outcome: &Result<RunReport>) -> Result<()> {
    let run_dir = queue.dir.join(&claim.label);
    crate::logging::events::remove_event_files(&run_dir, None)?;
    let values: Vec<(String, HParamValue)> = claim
        .entry
        .overrides
        .iter()
        .filter_map(|flag| {
            let (key, text) = flag.split_once('=')?;
            let value = crate::spec::parse_override_value(text);
            Some((key.to_string(), hparam_value(&value)))
        })
        .collect();
    let started = claim
        .entry
        .attempts
        .first()
        .and_then(|attempt| chrono::DateTime::parse_from_rfc3339(&attempt.started).ok())
        .map_or(0.0, |time| time.timestamp_millis() as f64 / 1000.0);
    let mut events = EventWriter::create(&run_dir)?;
    events.summary(hparams::session_start(&values, "", started), 0)?;
    if let Ok(report) = outcome {
        for (name, value) in metrics(report) {
            events.scalar(&format!("{FINAL_PREFIX}{name}"), value, 0)?;
        }
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    events.summary(hparams::session_end(outcome.is_ok(), now), 0)?;
    events.flush()
}

/// Names of the figures a run of `spec` reports, in the order of [`metrics`]: each
/// evaluation's rows (pretrained, then each baseline), then `pretext`.
pub fn expected_metrics(spec: &Spec) -> Vec<String> {
    let mut names = Vec::new();
    for eval in &spec.eval {
        let blocks: Vec<&str> = match eval.protocol.as_str() {
            "frozen_finetune" => eval.frozen_until.iter().map(String::as_str).collect(),
            _ => eval.blocks.iter().flatten().map(String::as_str).collect(),
        };
        let inits = std::iter::once("pretrained").chain(eval.baselines.iter().map(String::as_str));
        for init in inits {
            for block in &blocks {
                names.push(format!("{}/{block}/{init}", eval.stage_name()));
            }
        }
    }
    if spec.pretext.checkpoint.is_none() {
        names.push("pretext".into());
    }
    names
}

fn has_event_file(dir: &Path) -> Result<bool> {
    Ok(crate::logging::events::event_files(dir)?.next().is_some())
}
