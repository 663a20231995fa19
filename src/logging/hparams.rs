//! Records of TensorBoard's hparams plugin, which fill the HPARAMS tab.
//!
//! The encoding follows TensorBoard's own writers (`tensorboard/plugins/hparams/summary.py`,
//! `summary_v2.py` and `metadata.py`, checked against TensorBoard 2.21). Each record is one
//! summary value whose metadata names the plugin `hparams` and carries a serialized
//! `HParamsPluginData` (version 0), and whose tensor is an empty float vector. TensorBoard
//! reads only the metadata, and the empty tensor makes the record load as tensor data.
//!
//! A sweep uses the logdir layout that the plugin reads:
//!
//! - The [`experiment`] record goes in an event file directly in the sweep folder, the logdir.
//! - Each run folder `<label>/` is one session, whose name is the run name `<label>`. Its event
//!   file contains [`session_start`], the final metric scalars and [`session_end`].
//!
//! Write every record at step 0, as TensorBoard's writers do.

use std::cmp::Ordering;

use protobuf::well_known_types::{ListValue, Value};
use protobuf::{Message, RepeatedField};
use tensorboard_proto::api::{DataType, Experiment, HParamInfo, MetricInfo, MetricName, Status};
use tensorboard_proto::plugin_hparams::{HParamsPluginData, SessionEndInfo, SessionStartInfo};
use tensorboard_proto::summary::{
    Summary, SummaryMetadata, SummaryMetadata_PluginData, Summary_Value,
};
use tensorboard_proto::tensor::TensorProto;
use tensorboard_proto::tensor_shape::{TensorShapeProto, TensorShapeProto_Dim};
use tensorboard_proto::types::DataType as TensorDataType;

/// Plugin name that routes these records to the hparams plugin.
pub const PLUGIN_NAME: &str = "hparams";

/// `HParamsPluginData.version` that TensorBoard accepts. Its reader rejects any other.
pub const PLUGIN_DATA_VERSION: i32 = 0;

/// Tag of the experiment record.
pub const EXPERIMENT_TAG: &str = "_hparams_/experiment";

/// Tag of the record that opens a session and stores its hyperparameter values.
pub const SESSION_START_INFO_TAG: &str = "_hparams_/session_start_info";

/// Tag of the record that closes a session with its status.
pub const SESSION_END_INFO_TAG: &str = "_hparams_/session_end_info";

/// Value of one hyperparameter, stored as a `google.protobuf.Value`.
///
/// The HPARAMS tab supports three data types: numbers (`DATA_TYPE_FLOAT64`, which also covers
/// integers), strings and booleans.
#[derive(Clone, Debug, PartialEq)]
pub enum HParamValue {
    Number(f64),
    Text(String),
    Bool(bool),
}

impl HParamValue {
    fn data_type(&self) -> DataType {
        match self {
            Self::Number(_) => DataType::DATA_TYPE_FLOAT64,
            Self::Text(_) => DataType::DATA_TYPE_STRING,
            Self::Bool(_) => DataType::DATA_TYPE_BOOL,
        }
    }

    fn to_proto(&self) -> Value {
        let mut value = Value::new();
        match self {
            Self::Number(number) => value.set_number_value(*number),
            Self::Text(text) => value.set_string_value(text.clone()),
            Self::Bool(flag) => value.set_bool_value(*flag),
        }
        value
    }

    /// Orders values of one data type, as the discrete domain lists them: numbers by
    /// `f64::total_cmp`, strings lexicographically, `false` before `true`. Values of
    /// different types compare by type only.
    fn compare(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Number(a), Self::Number(b)) => a.total_cmp(b),
            (Self::Text(a), Self::Text(b)) => a.cmp(b),
            (Self::Bool(a), Self::Bool(b)) => a.cmp(b),
            _ => (self.data_type() as i32).cmp(&(other.data_type() as i32)),
        }
    }
}

impl From<f64> for HParamValue {
    fn from(value: f64) -> Self {
        Self::Number(value)
    }
}

impl From<i64> for HParamValue {
    fn from(value: i64) -> Self {
        Self::Number(value as f64)
    }
}

impl From<bool> for HParamValue {
    fn from(value: bool) -> Self {
        Self::Bool(value)
    }
}

impl From<&str> for HParamValue {
    fn from(value: &str) -> Self {
        Self::Text(value.into())
    }
}

impl From<String> for HParamValue {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

/// Builds the experiment record (`_hparams_/experiment`), which declares the table's columns.
///
/// `hparams` lists each hyperparameter with the values that the sweep gives it. When all
/// values have one data type, the column gets that type and a discrete domain of the distinct
/// values, sorted. An empty list leaves the type unset. Mixed types make a string column
/// without a domain. TensorBoard itself also infers a string type for mixed session values.
///
/// `metrics` lists each metric as `(group, tag)`. The plugin reads the metric as the last
/// scalar with `tag` in run `<session>/<group>`, so the empty group selects the session's
/// own run. The group `"."` does not select it, because the plugin joins it into the run name
/// `<session>/.`, which matches no run (checked with TensorBoard 2.21).
///
/// Write it once, in an event file directly in the logdir.
pub fn experiment(hparams: &[(String, Vec<HParamValue>)], metrics: &[(String, String)]) -> Summary {
    let hparam_infos = hparams
        .iter()
        .map(|(name, values)| hparam_info(name, values))
        .collect();
    let metric_infos = metrics
        .iter()
        .map(|(group, tag)| {
            let mut name = MetricName::new();
            name.set_group(group.clone());
            name.set_tag(tag.clone());
            let mut info = MetricInfo::new();
            info.set_name(name);
            info
        })
        .collect();

    // `time_created_secs` stays unset, as in TensorBoard's `hparams_config_pb` by default.
    let mut experiment = Experiment::new();
    experiment.set_hparam_infos(RepeatedField::from_vec(hparam_infos));
    experiment.set_metric_infos(RepeatedField::from_vec(metric_infos));

    let mut data = HParamsPluginData::new();
    data.set_experiment(experiment);
    plugin_summary(EXPERIMENT_TAG, data)
}

/// Builds the record that opens a session (`_hparams_/session_start_info`) with its
/// hyperparameter values.
///
/// Sessions with the same non-empty `group_name` form one row of the HPARAMS tab, whose
/// metrics are by default the mean over those sessions. So give repeats of one
/// configuration (such as seeds) the same group name. An empty `group_name` makes the
/// session a group of its own. A name listed twice in `hparams` keeps its last value,
/// because the record stores a map.
///
/// `start_time_secs` is seconds since the Unix epoch.
pub fn session_start(
    hparams: &[(String, HParamValue)],
    group_name: &str,
    start_time_secs: f64,
) -> Summary {
    let mut start = SessionStartInfo::new();
    let values = start.mut_hparams();
    for (name, value) in hparams {
        values.insert(name.clone(), value.to_proto());
    }
    start.set_group_name(group_name.into());
    start.set_start_time_secs(start_time_secs);

    let mut data = HParamsPluginData::new();
    data.set_session_start_info(start);
    plugin_summary(SESSION_START_INFO_TAG, data)
}

/// Builds the record that closes a session (`_hparams_/session_end_info`) with
/// `STATUS_SUCCESS` or `STATUS_FAILURE`.
///
/// A session without this record shows the status `STATUS_UNKNOWN`. `end_time_secs` is
/// seconds since the Unix epoch.
pub fn session_end(success: bool, end_time_secs: f64) -> Summary {
    let mut end = SessionEndInfo::new();
    end.set_status(if success {
        Status::STATUS_SUCCESS
    } else {
        Status::STATUS_FAILURE
    });
    end.set_end_time_secs(end_time_secs);

    let mut data = HParamsPluginData::new();
    data.set_session_end_info(end);
    plugin_summary(SESSION_END_INFO_TAG, data)
}

fn hparam_info(name: &str, values: &[HParamValue]) -> HParamInfo {
    let mut info = HParamInfo::new();
    info.set_name(name.into());
    let Some(first) = values.first() else {
        return info;
    };
    let data_type = first.data_type();
    if values.iter().any(|value| value.data_type() != data_type) {
        info.set_field_type(DataType::DATA_TYPE_STRING);
        return info;
    }
    info.set_field_type(data_type);

    let mut distinct = values.to_vec();
    distinct.sort_by(HParamValue::compare);
    distinct.dedup_by(|a, b| a.compare(b) == Ordering::Equal);
    let mut domain = ListValue::new();
    domain.set_values(distinct.iter().map(HParamValue::to_proto).collect());
    info.set_domain_discrete(domain);
    info
}

/// Wraps `data` in a one-value summary under `tag`, as TensorBoard's `_summary_pb` does.
fn plugin_summary(tag: &str, mut data: HParamsPluginData) -> Summary {
    data.set_version(PLUGIN_DATA_VERSION);
    // protobuf 2.28's `write_to_bytes` (src/message.rs) fails only when required fields are
    // missing, because it sizes the buffer before writing. Proto3 has no required fields.
    let content = data
        .write_to_bytes()
        .expect("proto3 HParamsPluginData always encodes");

    let mut plugin_data = SummaryMetadata_PluginData::new();
    plugin_data.set_plugin_name(PLUGIN_NAME.into());
    plugin_data.set_content(content);
    let mut metadata = SummaryMetadata::new();
    metadata.set_plugin_data(plugin_data);

    let mut value = Summary_Value::new();
    value.set_tag(tag.into());
    value.set_metadata(metadata);
    value.set_tensor(null_tensor());
    let mut summary = Summary::new();
    summary.set_value(RepeatedField::from_vec(vec![value]));
    summary
}

/// Returns the float tensor of shape `[0]`, TensorBoard's `metadata.NULL_TENSOR`: the
/// shortest valid tensor, for summaries whose data is all in their metadata.
fn null_tensor() -> TensorProto {
    let mut dim = TensorShapeProto_Dim::new();
    dim.set_size(0);
    let mut shape = TensorShapeProto::new();
    shape.set_dim(RepeatedField::from_vec(vec![dim]));
    let mut tensor = TensorProto::new();
    tensor.set_dtype(TensorDataType::DT_FLOAT);
    tensor.set_tensor_shape(shape);
    tensor
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use serde_json::Value as Json;

    use super::*;
    use crate::logging::events::EventWriter;

    const ACCURACY: &str = "final/pretext_test_accuracy";
    const PROBE: &str = "final/linear_probe/conv2/pretrained";

    /// Decodes the plugin data of a one-value summary, checking the fields that every
    /// hparams record shares.
    fn decode(summary: &Summary, tag: &str) -> HParamsPluginData {
        assert_eq!(summary.get_value().len(), 1);
        let value = &summary.get_value()[0];
        assert_eq!(value.get_tag(), tag);
        let plugin_data = value.get_metadata().get_plugin_data();
        assert_eq!(plugin_data.get_plugin_name(), "hparams");
        let data = HParamsPluginData::parse_from_bytes(plugin_data.get_content()).unwrap();
        assert_eq!(data.get_version(), 0);
        data
    }

    fn strings(values: &[&str]) -> Vec<HParamValue> {
        values.iter().map(|&value| value.into()).collect()
    }

    #[test]
    fn null_tensor_matches_tensorboard_bytes() {
        // Bytes of `tensorboard.plugins.hparams.metadata.NULL_TENSOR.SerializeToString()`.
        let expected = [0x08, 0x01, 0x12, 0x02, 0x12, 0x00];
        let summary = session_end(true, 0.0);
        let tensor = summary.get_value()[0].get_tensor();
        assert_eq!(tensor.write_to_bytes().unwrap(), expected);
    }

    #[test]
    fn experiment_lists_types_and_domains() {
        let hparams = vec![
            ("lr".to_string(), vec![0.1.into(), 0.01.into(), 0.1.into()]),
            ("optimizer".to_string(), strings(&["sgd", "adam"])),
            ("augment".to_string(), vec![true.into(), false.into()]),
            ("mixed".to_string(), vec![1.0.into(), "a".into()]),
            ("unknown".to_string(), vec![]),
        ];
        let metrics = vec![(String::new(), ACCURACY.to_string())];
        let data = decode(&experiment(&hparams, &metrics), EXPERIMENT_TAG);
        assert!(data.has_experiment());
        let infos = data.get_experiment().get_hparam_infos();
        assert_eq!(infos.len(), 5);

        let lr = &infos[0];
        assert_eq!(lr.get_name(), "lr");
        assert_eq!(lr.get_field_type(), DataType::DATA_TYPE_FLOAT64);
        let lr_domain: Vec<f64> = lr
            .get_domain_discrete()
            .get_values()
            .iter()
            .map(Value::get_number_value)
            .collect();
        assert_eq!(lr_domain, vec![0.01, 0.1]);

        let optimizer = &infos[1];
        assert_eq!(optimizer.get_field_type(), DataType::DATA_TYPE_STRING);
        let optimizer_domain: Vec<&str> = optimizer
            .get_domain_discrete()
            .get_values()
            .iter()
            .map(Value::get_string_value)
            .collect();
        assert_eq!(optimizer_domain, vec!["adam", "sgd"]);

        let augment = &infos[2];
        assert_eq!(augment.get_field_type(), DataType::DATA_TYPE_BOOL);
        let augment_domain: Vec<bool> = augment
            .get_domain_discrete()
            .get_values()
            .iter()
            .map(Value::get_bool_value)
            .collect();
        assert_eq!(augment_domain, vec![false, true]);

        assert_eq!(infos[3].get_field_type(), DataType::DATA_TYPE_STRING);
        assert!(!infos[3].has_domain_discrete());
        assert_eq!(infos[4].get_field_type(), DataType::DATA_TYPE_UNSET);
        assert!(!infos[4].has_domain_discrete());

        let metric_infos = data.get_experiment().get_metric_infos();
        assert_eq!(metric_infos.len(), 1);
        assert_eq!(metric_infos[0].get_name().get_group(), "");
        assert_eq!(metric_infos[0].get_name().get_tag(), ACCURACY);
    }

    #[test]
    fn session_start_stores_values() {
        let hparams = vec![
            ("lr".to_string(), HParamValue::Number(0.1)),
            ("optimizer".to_string(), HParamValue::Text("sgd".into())),
            ("augment".to_string(), HParamValue::Bool(true)),
        ];
        let data = decode(
            &session_start(&hparams, "group-a", 1_700_000_000.5),
            SESSION_START_INFO_TAG,
        );
        let start = data.get_session_start_info();
        assert_eq!(start.get_group_name(), "group-a");
        assert_eq!(start.get_start_time_secs(), 1_700_000_000.5);
        let values = start.get_hparams();
        assert_eq!(values.len(), 3);
        assert_eq!(values["lr"].get_number_value(), 0.1);
        assert_eq!(values["optimizer"].get_string_value(), "sgd");
        assert!(values["augment"].get_bool_value());
    }

    #[test]
    fn session_end_sets_status() {
        let success = decode(&session_end(true, 2.0), SESSION_END_INFO_TAG);
        assert_eq!(
            success.get_session_end_info().get_status(),
            Status::STATUS_SUCCESS
        );
        assert_eq!(success.get_session_end_info().get_end_time_secs(), 2.0);
        let failure = decode(&session_end(false, 3.0), SESSION_END_INFO_TAG);
        assert_eq!(
            failure.get_session_end_info().get_status(),
            Status::STATUS_FAILURE
        );
    }

    fn python() -> PathBuf {
        std::env::var_os("RUNNER_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
    }

    /// Reads `logdir` back through TensorBoard's hparams plugin with `tests/read_hparams.py`.
    fn read_hparams(logdir: &Path) -> Json {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/read_hparams.py");
        let output = Command::new(python())
            .arg(script)
            .arg(logdir)
            .output()
            .expect("python with tensorboard starts (scripts/setup-venv creates it)");
        assert!(
            output.status.success(),
            "read_hparams.py failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// Writes one session folder as the runner lays it out. `success: None` leaves out the
    /// end record, as for a run that is still going or was killed.
    fn write_session(
        logdir: &Path,
        label: &str,
        group_name: &str,
        hparams: &[(String, HParamValue)],
        metrics: &[(&str, f64)],
        success: Option<bool>,
    ) {
        let mut writer = EventWriter::create(&logdir.join(label)).unwrap();
        writer
            .summary(session_start(hparams, group_name, 1_700_000_000.0), 0)
            .unwrap();
        // An earlier value checks that the plugin reports the last one.
        for (tag, value) in metrics {
            writer.scalar(tag, value - 0.5, 0).unwrap();
            writer.scalar(tag, *value, 1).unwrap();
        }
        if let Some(success) = success {
            writer
                .summary(session_end(success, 1_700_000_100.0), 0)
                .unwrap();
        }
    }

    #[test]
    fn tensorboard_reads_sweep_sessions() {
        let logdir = tempfile::tempdir().unwrap();
        let hparams = vec![
            ("lr".to_string(), vec![0.1.into(), 0.01.into()]),
            ("optimizer".to_string(), strings(&["sgd", "adam"])),
            ("augment".to_string(), vec![true.into(), false.into()]),
        ];
        let metrics = vec![
            (String::new(), ACCURACY.to_string()),
            (String::new(), PROBE.to_string()),
        ];
        {
            let mut root = EventWriter::create(logdir.path()).unwrap();
            root.summary(experiment(&hparams, &metrics), 0).unwrap();
        }
        let first = vec![
            ("lr".to_string(), HParamValue::Number(0.1)),
            ("optimizer".to_string(), HParamValue::Text("sgd".into())),
            ("augment".to_string(), HParamValue::Bool(true)),
        ];
        write_session(
            logdir.path(),
            "lr=0.1,optimizer=sgd",
            "",
            &first,
            &[(ACCURACY, 0.75), (PROBE, 0.5)],
            Some(true),
        );
        let second = vec![
            ("lr".to_string(), HParamValue::Number(0.01)),
            ("optimizer".to_string(), HParamValue::Text("adam".into())),
            ("augment".to_string(), HParamValue::Bool(false)),
        ];
        write_session(
            logdir.path(),
            "lr=0.01,optimizer=adam",
            "",
            &second,
            &[(ACCURACY, 0.25)],
            Some(false),
        );
        let third = vec![
            ("lr".to_string(), HParamValue::Number(0.01)),
            ("optimizer".to_string(), HParamValue::Text("sgd".into())),
            ("augment".to_string(), HParamValue::Bool(true)),
        ];
        write_session(
            logdir.path(),
            "lr=0.01,optimizer=sgd",
            "",
            &third,
            &[],
            None,
        );

        let read = read_hparams(logdir.path());
        eprintln!("read_hparams.py output: {read:#}");

        assert_eq!(
            read["hparams"],
            serde_json::json!(["augment", "lr", "optimizer"])
        );
        assert_eq!(read["plugin_enabled"], true);
        assert_eq!(read["metrics"], serde_json::json!([ACCURACY, PROBE]));
        let sessions = read["sessions"].as_object().unwrap();
        assert_eq!(sessions.len(), 3, "sessions: {sessions:?}");

        let first = &read["sessions"]["lr=0.1,optimizer=sgd"];
        assert_eq!(first["hparams"]["lr"], 0.1);
        assert_eq!(first["hparams"]["optimizer"], "sgd");
        assert_eq!(first["hparams"]["augment"], true);
        assert_eq!(first["metrics"][ACCURACY], 0.75);
        assert_eq!(first["metrics"][PROBE], 0.5);
        assert_eq!(first["status"], "STATUS_SUCCESS");
        assert_eq!(first["group"], "lr=0.1,optimizer=sgd");

        let second = &read["sessions"]["lr=0.01,optimizer=adam"];
        assert_eq!(second["hparams"]["lr"], 0.01);
        assert_eq!(second["hparams"]["optimizer"], "adam");
        assert_eq!(second["hparams"]["augment"], false);
        assert_eq!(second["metrics"][ACCURACY], 0.25);
        assert!(
            second["metrics"].get(PROBE).is_none(),
            "metrics: {}",
            second["metrics"]
        );
        assert_eq!(second["status"], "STATUS_FAILURE");

        let third = &read["sessions"]["lr=0.01,optimizer=sgd"];
        assert_eq!(third["hparams"]["optimizer"], "sgd");
        assert_eq!(third["metrics"], serde_json::json!({}));
        assert_eq!(third["status"], "STATUS_UNKNOWN");
    }

    #[test]
    fn tensorboard_groups_sessions_by_name() {
        let logdir = tempfile::tempdir().unwrap();
        let hparams = vec![("lr".to_string(), vec![0.1.into()])];
        let metrics = vec![(String::new(), ACCURACY.to_string())];
        {
            let mut root = EventWriter::create(logdir.path()).unwrap();
            root.summary(experiment(&hparams, &metrics), 0).unwrap();
        }
        let values = vec![("lr".to_string(), HParamValue::Number(0.1))];
        for (label, accuracy) in [("seed=1", 0.5), ("seed=2", 0.75)] {
            write_session(
                logdir.path(),
                label,
                "lr=0.1",
                &values,
                &[(ACCURACY, accuracy)],
                Some(true),
            );
        }

        let read = read_hparams(logdir.path());
        eprintln!("read_hparams.py output: {read:#}");

        for label in ["seed=1", "seed=2"] {
            let session = &read["sessions"][label];
            assert_eq!(session["group"], "lr=0.1", "session {label}");
            assert_eq!(session["hparams"]["lr"], 0.1, "session {label}");
        }
        assert_eq!(read["sessions"]["seed=1"]["metrics"][ACCURACY], 0.5);
        assert_eq!(read["sessions"]["seed=2"]["metrics"][ACCURACY], 0.75);
        assert_eq!(read["groups"]["lr=0.1"][ACCURACY], 0.625);
    }
}
