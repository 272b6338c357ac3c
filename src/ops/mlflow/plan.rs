//! What a repro run should be on an MLflow server, and what to send to get it there.
//!
//! The mapping: the tags MLflow's UI understands, `repro.*` tags, params (values over the
//! server's limit moved to an artifact, with a note), datasets as inputs, metric history, and the
//! `repro/` artifacts (the run JSON, the re-run script, the attestation). The diff: what differs
//! from what the server is believed to hold (from the ledger, or read back from the server).
//! Pure: no I/O but the attestation files' metadata, unit-tested.

use std::collections::BTreeMap;

use chrono::DateTime;
use sha2::{Digest as _, Sha256};

use super::ParamConflict;
use crate::mlflow::{
    DatasetInput, KeyValue, MetricPoint, RemoteRun, MAX_DATASET_DIGEST, MAX_KEY, MAX_PARAM_VALUE,
    MAX_TAG_VALUE,
};
use crate::record::metrics::MetricSummary;
use crate::record::text::release_line;
use crate::record::{DatasetKind, Run, Status};
use crate::store::mlflow::MlflowPush;

/// Bumped whenever the mapping sends something else for the same run (a new tag, another
/// artifact layout), so that every fingerprint changes and each run is compared by its full
/// hash once. The repro version is part of the fingerprint too.
///
/// 2: kept outputs under `outputs/`; few, short `repro.*` tags (old ones deleted), a Markdown description, `repro/README.md`,
/// dataset labels of 12 hex with a context and a profile, `mlflow.source.name` the script.
/// 3: system metrics (`sys/…`) under MLflow's own `system/…` names and units.
pub const MAPPING_VERSION: u32 = 3;

/// Hex digits of a dataset's digest in its MLflow label: enough to tell versions apart, short
/// enough that the UI shows the context badge beside it.
pub const DATASET_LABEL_HEX: usize = 12;

/// The `mlflow.data.context` of datasets unless configured (`--dataset-context`,
/// `mlflow_dataset_context`): MLflow's own convention for what a run trained on.
pub const DEFAULT_DATASET_CONTEXT: &str = "training";

/// The previewable copy of the re-run recipe (MLflow previews Markdown, not `.sh`).
pub const README_ARTIFACT: &str = "repro/README.md";

/// The `repro.*` tags repro writes (besides the rare ones naming renamed or moved names):
/// short keys, so the run overview shows them whole. Everything else is in `repro/run.json`.
pub const REPRO_TAGS: [&str; 6] = [
    "repro.run_id",
    "repro.exit",
    "repro.pin",
    "repro.ref",
    "repro.digest",
    "repro.tags",
];

/// Artifact holding every param at full length when some could not be MLflow params.
pub const PARAMS_ARTIFACT: &str = "repro/params.json";

/// Artifact mapping each renamed metric key (the name MLflow holds) to the recorded one.
pub const METRIC_KEYS_ARTIFACT: &str = "repro/metric_keys.json";

/// Whether MLflow accepts `name` as a param, metric or tag key: at most 250 characters, only
/// alphanumerics, `_`, `-`, `.`, space, `:` and `/`, and a path that is already normal (what
/// MLflow's `path_not_unique` checks: not empty, not absolute, no empty, `.` or `..` segment,
/// not starting with `..`).
pub fn valid_key(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_KEY
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | ':' | '/'))
        && !name.starts_with('/')
        && !name.starts_with("..")
        && name
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// The name MLflow holds for a recorded key: the key itself when MLflow accepts it; else, always
/// the same for the same key, its allowed characters (any other becomes `_`), the path segments
/// that are empty, `.` or `..` dropped, then `-` and the first 8 hex digits of the key's SHA-256
/// (two keys never share a name by accident): `../etc` → `etc-…`, `""` → `_-e3b0c442`.
pub fn safe_key(name: &str) -> String {
    if valid_key(name) {
        return name.to_string();
    }
    let mapped: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | ':' | '/') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut clean = mapped
        .split('/')
        .filter(|seg| !seg.is_empty() && *seg != "." && *seg != "..")
        .collect::<Vec<_>>()
        .join("/");
    if clean.starts_with("..") || clean.is_empty() {
        clean.insert(0, '_');
    }
    let clean = cut(&clean, MAX_KEY - 9).trim_end_matches('/').to_string();
    format!("{clean}-{}", &sha256_hex(name.as_bytes())[..8])
}

/// `orig as safe, …`, the names escaped for the people who read the note.
fn renamed_list(renamed: &[(String, String)]) -> String {
    renamed
        .iter()
        .map(|(orig, safe)| format!("'{}' as '{safe}'", crate::sanitize::escape(orig)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Everything repro wants the MLflow run to hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub run_name: String,
    pub user: String,
    /// Milliseconds since the epoch.
    pub start_time: i64,
    pub end_time: Option<i64>,
    /// RUNNING, FINISHED, FAILED or KILLED.
    pub status: &'static str,
    pub params: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub inputs: Vec<DatasetInput>,
    /// (path under the run's artifact root, content), sorted by path.
    pub artifacts: Vec<(String, Vec<u8>)>,
    /// Sorted by key, step, timestamp.
    pub metrics: Vec<MetricPoint>,
    /// Kept-output files to upload under `outputs/`, streamed from the object store.
    pub outputs: Vec<OutputArtifact>,
    /// Outputs (or files of them) left out, each `PATH: why`.
    pub outputs_skipped: Vec<String>,
}

/// One file of a kept output as an MLflow artifact.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutputArtifact {
    /// Under the run's artifact root: `outputs/…`.
    pub path: String,
    /// SHA-256 hex: the object holding the bytes.
    pub sha256: String,
    pub bytes: u64,
}

/// Tag listing the outputs left out of `outputs/` and why (only when some are).
pub const OUTPUTS_SKIPPED_TAG: &str = "repro.outputs.skipped";

/// Milliseconds since the epoch of an RFC 3339 time.
pub fn millis(rfc3339: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// MLflow's status for a run (liveness applied: a `lost` run is FAILED, with `repro.status=lost`).
pub fn status_of(status: Status) -> &'static str {
    match status {
        Status::Running => "RUNNING",
        Status::Succeeded => "FINISHED",
        Status::Failed | Status::Lost | Status::Error => "FAILED",
        Status::Killed => "KILLED",
    }
}

/// SHA-256 hex of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn cut(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The dataset as an MLflow input (`context`: its `mlflow.data.context`): a 12-hex digest
/// prefix as its label, the full digest, file count and bytes in its profile (the UI's dataset
/// drawer), and the whole record in the source JSON.
pub fn dataset_input(d: &crate::record::Dataset, context: &str) -> DatasetInput {
    let full = d.digest.clone().or_else(|| d.version.clone());
    let source = serde_json::json!({
        "kind": d.kind.as_str(),
        "uri": d.uri,
        "version": d.version,
        "digest": d.digest,
        "files": d.files,
        "bytes": d.bytes,
    });
    let digest = match &full {
        Some(f) => {
            let hex = f.split_once(':').map(|(_, h)| h).unwrap_or(f);
            cut(hex, DATASET_LABEL_HEX.min(MAX_DATASET_DIGEST)).to_string()
        }
        None => sha256_hex(source.to_string().as_bytes())[..DATASET_LABEL_HEX].to_string(),
    };
    let mut profile = serde_json::Map::new();
    for (k, v) in [
        ("digest", full.clone().map(serde_json::Value::from)),
        ("files", d.files.map(serde_json::Value::from)),
        ("bytes", d.bytes.map(serde_json::Value::from)),
        ("kind", Some(d.kind.as_str().into())),
    ] {
        if let Some(v) = v {
            profile.insert(k.into(), v);
        }
    }
    // A content-addressed directory's schema is its manifest's (docs/datasets.md).
    let schema = (d.kind == DatasetKind::Path && d.digest.is_some()).then(|| {
        serde_json::json!({"mlflow_colspec": [
            {"type": "string", "name": "path"},
            {"type": "long", "name": "bytes"},
            {"type": "string", "name": "sha256"},
        ]})
        .to_string()
    });
    let source_type = match d.kind {
        DatasetKind::Path | DatasetKind::Dvc => "local".to_string(),
        DatasetKind::Label => "label".to_string(),
        DatasetKind::Uri => d
            .uri
            .as_deref()
            .and_then(|u| u.split_once("://").map(|(s, _)| s.to_ascii_lowercase()))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "uri".into()),
    };
    DatasetInput {
        name: d.name.clone(),
        digest,
        source_type,
        source: source.to_string(),
        schema,
        profile: Some(serde_json::Value::Object(profile).to_string()),
        context: context.to_string(),
    }
}

/// The artifact holding the run object.
pub const RUN_JSON: &str = "repro/run.json";

/// The bytes of `repro/run.json`: the object `repro show --json` prints (metric summary
/// included), pretty-printed.
pub fn run_json_artifact(run: &Run, summaries: &[MetricSummary]) -> Vec<u8> {
    let mut bytes =
        serde_json::to_vec_pretty(&crate::record::json::run_json_with_metrics(run, summaries))
            .expect("run serialises");
    bytes.push(b'\n');
    bytes
}

impl Desired {
    /// Adds the kept-output files to upload and the lines saying what was left out (also the
    /// tag [`OUTPUTS_SKIPPED_TAG`], so the MLflow run says it too).
    pub fn with_outputs(mut self, outputs: Vec<OutputArtifact>, skipped: Vec<String>) -> Desired {
        if !skipped.is_empty() {
            let list = skipped.join("; ");
            self.tags.insert(
                OUTPUTS_SKIPPED_TAG.into(),
                cut(&list, MAX_TAG_VALUE).to_string(),
            );
        }
        self.outputs = outputs;
        self.outputs_skipped = skipped;
        self
    }

    /// Gives every dataset input the `mlflow.data.context` `context` (empty: the default,
    /// [`DEFAULT_DATASET_CONTEXT`]).
    pub fn with_dataset_context(mut self, context: &str) -> Desired {
        let context = if context.is_empty() {
            DEFAULT_DATASET_CONTEXT
        } else {
            context
        };
        for i in &mut self.inputs {
            i.context = context.to_string();
        }
        self
    }

    /// Puts the run's stored metric summary into `repro/run.json`, so the artifact is the
    /// `show --json` object (the history itself goes to MLflow as metrics).
    pub fn with_metric_summary(mut self, run: &Run, summaries: &[MetricSummary]) -> Desired {
        if let Some(a) = self.artifacts.iter_mut().find(|a| a.0 == RUN_JSON) {
            a.1 = run_json_artifact(run, summaries);
        }
        self
    }
}

impl Desired {
    /// Puts the run's environment snapshot into `repro/run.json` (after
    /// [`Desired::with_metric_summary`]), as `show --json` has it; nothing without one.
    pub fn with_environment(
        mut self,
        env: Option<&crate::record::environment::Environment>,
    ) -> Desired {
        let Some(env) = env else { return self };
        if let Some(a) = self.artifacts.iter_mut().find(|a| a.0 == RUN_JSON) {
            if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&a.1) {
                v["environment"] = serde_json::to_value(env).expect("environment serialises");
                let mut bytes = serde_json::to_vec_pretty(&v).expect("run serialises");
                bytes.push(b'\n');
                a.1 = bytes;
            }
        }
        self
    }
}

/// Directory of the attestation artifact (`repro/attestation/FILE NAME`).
pub const ATTESTATION_DIR: &str = "repro/attestation";

/// Builds what the MLflow run should hold for `run`, its metric history, the MLflow run id
/// of the run it re-runs when that one was pushed, and its attestation (file name, bytes).
pub fn desired(
    run: &Run,
    metrics: &[MetricPoint],
    parent: Option<&str>,
    attestation: Option<(&str, &[u8])>,
) -> Desired {
    let run_name = run
        .name
        .clone()
        .unwrap_or_else(|| run.short_id().to_string());
    let mut tags = tags_of(run, &run_name, parent);
    let mut artifacts: Vec<(String, Vec<u8>)> = Vec::new();
    // The outcome first when the run did not succeed: what a teammate needs before the rest.
    let mut note_lines: Vec<String> = outcome_line(run).into_iter().collect();
    note_lines.extend(run.notes.iter().cloned());
    let params = params_of(run, &mut tags, &mut artifacts, &mut note_lines);
    let mut metrics = metrics.to_vec();
    for p in metrics.iter_mut() {
        if let Some((name, factor)) = system_metric(&p.key) {
            p.key = name;
            p.value *= factor;
        }
    }
    if let Some(line) = rename_metric_keys(&mut metrics, &mut tags, &mut artifacts) {
        note_lines.push(line);
    }
    note_lines.push(facts_block(run));
    tags.insert("mlflow.note.content".into(), note_lines.join("\n\n"));
    move_long_tags(&mut tags, &mut artifacts);

    artifacts.push((RUN_JSON.into(), run_json_artifact(run, &[])));
    add_rerun_script(run, &mut artifacts, &mut tags);
    if let Some((name, bytes)) = attestation {
        artifacts.push((format!("{ATTESTATION_DIR}/{name}"), bytes.to_vec()));
    }
    artifacts.sort_by(|a, b| a.0.cmp(&b.0));

    metrics.sort_by(|a, b| {
        (a.key.as_str(), a.step, a.timestamp).cmp(&(b.key.as_str(), b.step, b.timestamp))
    });

    Desired {
        run_name,
        user: run.user.clone(),
        start_time: millis(&run.started_at).unwrap_or(0),
        end_time: run.ended_at.as_deref().and_then(millis),
        status: status_of(run.status),
        params,
        tags,
        inputs: run
            .datasets
            .iter()
            .map(|d| dataset_input(d, DEFAULT_DATASET_CONTEXT))
            .collect(),
        artifacts,
        metrics,
        outputs: Vec::new(),
        outputs_skipped: Vec::new(),
    }
}

/// Markdown inline code holding `s` (escaped for terminals too), fenced with more backticks than
/// it holds so recorded text cannot end the span.
fn md_code(s: &str) -> String {
    let s = crate::sanitize::escape(s).replace('\n', " ");
    let longest = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// The description's first line for a run that did not succeed (or still runs).
fn outcome_line(run: &Run) -> Option<String> {
    let code = |c: Option<i32>| c.map(|c| format!(" (exit code {c})")).unwrap_or_default();
    Some(match run.status {
        Status::Succeeded => return None,
        Status::Running => "**Running**: not finished when it was pushed.".into(),
        Status::Failed => format!("**Failed**{}.", code(run.exit_code)),
        Status::Killed => match run.signal {
            Some(s) => format!("**Killed** by signal {s}."),
            None => format!("**Killed**{}.", code(run.exit_code)),
        },
        Status::Lost => "**Lost**: the wrapper ended without recording the outcome.".into(),
        Status::Error => format!(
            "**Not started**: the engine could not pull or start the image{}.",
            code(run.exit_code)
        ),
    })
}

/// The description's facts: image (reference and digest, once), commit (dirty and patch), data,
/// command, as a Markdown list.
fn facts_block(run: &Run) -> String {
    let mut lines = Vec::new();
    match &run.image {
        None => lines.push("- **Image**: none (ran on the host)".to_string()),
        Some(img) => {
            let name = img.reference.split('@').next().unwrap_or(&img.reference);
            let digest = img.digest.as_deref().unwrap_or("UNPINNED");
            lines.push(format!(
                "- **Image**: {} {} ({})",
                md_code(name),
                md_code(digest),
                img.resolved_by.as_str()
            ));
        }
    }
    match &run.code {
        None => lines.push("- **Commit**: none".into()),
        Some(c) => {
            let mut l = format!(
                "- **Commit**: {}",
                md_code(c.commit.as_deref().unwrap_or("(none)"))
            );
            if let Some(b) = &c.branch {
                l.push_str(&format!(" on {}", md_code(b)));
            }
            if c.dirty {
                match &c.patch_sha256 {
                    Some(p) => l.push_str(&format!(
                        ", dirty: patch {}",
                        md_code(&format!("sha256:{p}"))
                    )),
                    None => l.push_str(", dirty"),
                }
            }
            lines.push(l);
        }
    }
    if run.datasets.is_empty() {
        lines.push("- **Data**: none".into());
    }
    for d in &run.datasets {
        let mut l = format!("- **Data**: {}", md_code(&d.name));
        if let Some(v) = d.digest.as_deref().or(d.version.as_deref()) {
            l.push_str(&format!(" {}", md_code(v)));
        }
        if let (Some(f), Some(b)) = (d.files, d.bytes) {
            l.push_str(&format!(" ({f} files, {b} bytes)"));
        } else if let Some(u) = &d.uri {
            l.push_str(&format!(" from {}", md_code(u)));
        }
        lines.push(l);
    }
    lines.push(format!(
        "- **Command**: {}",
        md_code(&crate::record::text::command_line(run))
    ));
    lines.push(format!(
        "- **Re-run**: `repro rerun {}`, or the script in `{README_ARTIFACT}`",
        run.id
    ));
    lines.join("\n")
}

/// `repro/README.md`: the re-run script in a fenced block MLflow's artifact view previews, with
/// the lines that say what it is.
fn readme(run: &Run, script: Result<&str, String>) -> Vec<u8> {
    let mut out = format!(
        "# Re-run of repro run {}\n\nRecorded by repro: {}\n\n",
        run.id,
        release_line(run).trim_end()
    );
    match script {
        Ok(script) => {
            let longest = script.split(|c| c != '`').map(str::len).max().unwrap_or(0);
            let fence = "`".repeat(longest.max(2) + 1);
            out.push_str(&format!(
                "The script below re-runs it pinned to the same image digest, commit (and patch) and data. \
                 It is also `repro/rerun.sh` (`bash rerun.sh`), and `repro script {id}` prints the same; \
                 `repro rerun {id}` runs it and records the result as a new run.\n\n\
                 {fence}bash\n{script}{nl}{fence}\n",
                id = run.id,
                nl = if script.ends_with('\n') { "" } else { "\n" },
            ));
        }
        Err(why) => out.push_str(&format!("No re-run script: {why}\n")),
    }
    out.into_bytes()
}

/// The run's tags: its own first (value `true`, so compare shows them; keys MLflow or repro use
/// are not taken from it), then MLflow's (`mlflow.*`, which its UI shows) and repro's few
/// [`REPRO_TAGS`].
fn tags_of(run: &Run, run_name: &str, parent: Option<&str>) -> BTreeMap<String, String> {
    let mut tags: BTreeMap<String, String> = BTreeMap::new();
    // The run's own tags first, so repro's and MLflow's keys win a collision.
    // A tag MLflow refuses as a key is listed in `repro.tags` only.
    for t in &run.tags {
        if valid_key(t) && !t.starts_with("mlflow.") && !t.starts_with("repro.") {
            tags.insert(t.clone(), "true".into());
        }
    }
    let mut set = |k: &str, v: String| {
        tags.insert(k.to_string(), v);
    };
    set("mlflow.runName", run_name.to_string());
    set("mlflow.user", run.user.clone());
    set("mlflow.source.type", "JOB".into());
    set("mlflow.source.name", source_name(run));
    set("repro.run_id", run.id.clone());
    set("repro.exit", exit_of(run));
    set("repro.pin", run.pin_grade());
    if !run.tags.is_empty() {
        set("repro.tags", run.tags.join(","));
    }
    if let Some(p) = parent {
        set("mlflow.parentRunId", p.to_string());
    }
    if let Some(code) = &run.code {
        if let Some(r) = &code.remote {
            set("mlflow.source.git.repoURL", r.clone());
        }
        if let Some(c) = &code.commit {
            set("mlflow.source.git.commit", c.clone());
        }
        if let Some(b) = &code.branch {
            set("mlflow.source.git.branch", b.clone());
        }
        set("mlflow.source.git.dirty", code.dirty.to_string());
    }
    if let Some(img) = &run.image {
        // The digest has its own tag: the reference as written, without one it may carry.
        let name = img.reference.split('@').next().unwrap_or(&img.reference);
        set("repro.ref", name.to_string());
        set("mlflow.docker.image.uri", image_uri(img));
        if let Some(d) = &img.digest {
            set("mlflow.docker.image.id", d.clone());
            set("repro.digest", d.clone());
        }
    }
    tags
}

/// `mlflow.docker.image.uri`: the reference as written (its tag kept) with the digest that ran,
/// `registry/team/trainer:2.3.1@sha256:…`, as MLflow's docs show an image URI with its tag.
fn image_uri(img: &crate::record::Image) -> String {
    let name = img.reference.split('@').next().unwrap_or(&img.reference);
    match &img.digest {
        Some(d) => format!("{name}@{d}"),
        None => img.reference.clone(),
    }
}

/// `repro.exit`: the exit code; `signal N` for a run killed by a signal; `lost`, `running` or
/// `not started` when there is no code to show.
fn exit_of(run: &Run) -> String {
    match (run.status, run.exit_code, run.signal) {
        (Status::Error, Some(c), _) => format!("not started ({c})"),
        (Status::Error, None, _) => "not started".into(),
        (_, _, Some(s)) => format!("signal {s}"),
        (_, Some(c), None) => c.to_string(),
        (status, None, None) => status.as_str().into(),
    }
}

/// `mlflow.source.name`: what ran — the first argument that is a `.py` or `.sh` path
/// (`python train.py` → `train.py`), else the program.
pub fn source_name(run: &Run) -> String {
    let args: Vec<String> = run.command.iter().map(|a| a.to_string_lossy()).collect();
    args.iter()
        .find(|a| {
            let a = a.trim();
            !a.starts_with('-') && (a.ends_with(".py") || a.ends_with(".sh"))
        })
        .or(args.first())
        .map(|a| cut(a, MAX_TAG_VALUE).to_string())
        .unwrap_or_default()
}

/// The params MLflow can hold. Those it cannot go, at full length, to an artifact with a tag
/// and a note naming them.
fn params_of(
    run: &Run,
    tags: &mut BTreeMap<String, String>,
    artifacts: &mut Vec<(String, Vec<u8>)>,
    note_lines: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    let mut moved = Vec::new();
    let mut renamed: Vec<(String, String)> = Vec::new();
    for (k, v) in &run.params {
        if k.chars().count() > MAX_KEY || v.chars().count() > MAX_PARAM_VALUE {
            moved.push(crate::sanitize::escape(k).into_owned());
        } else if !valid_key(k) {
            let safe = safe_key(k);
            params.insert(safe.clone(), v.clone());
            renamed.push((k.clone(), safe));
        } else {
            params.insert(k.clone(), v.clone());
        }
    }
    if !moved.is_empty() || !renamed.is_empty() {
        let all = serde_json::to_vec_pretty(&run.params).expect("params serialise");
        artifacts.push((PARAMS_ARTIFACT.into(), all));
    }
    if !renamed.is_empty() {
        let list = renamed_list(&renamed);
        tags.insert(
            "repro.params.renamed".into(),
            cut(&list, MAX_TAG_VALUE).to_string(),
        );
        note_lines.push(format!(
            "Params whose names MLflow refuses are recorded under safe names; their recorded names and values are in the artifact {PARAMS_ARTIFACT}: {list}"
        ));
    }
    if !moved.is_empty() {
        let list = moved.join(", ");
        tags.insert(
            "repro.params.moved".into(),
            cut(&list, MAX_TAG_VALUE).to_string(),
        );
        note_lines.push(format!(
            "Params over MLflow's limits ({MAX_PARAM_VALUE}-character value, {MAX_KEY}-character key) are not MLflow params; their full values are in the artifact {PARAMS_ARTIFACT}: {list}"
        ));
    }
    params
}

/// MLflow's name for a repro system metric (docs/metrics.md, "System metrics") and the factor
/// to its unit: the names MLflow's own system-metrics monitor logs (`mlflow/system_metrics/
/// metrics/{cpu,gpu}_monitor.py`, with its `system/` prefix), so its "System metrics" tab shows
/// them; megabytes are 10⁶ bytes, as there. The job's own memory has no MLflow name: it goes as
/// `system/job_memory_usage_megabytes`. Other `sys/…` keys are left as they are.
pub fn system_metric(key: &str) -> Option<(String, f64)> {
    const MB: f64 = 1e-6;
    let rest = key.strip_prefix("sys/")?;
    let named = match rest {
        "cpu_percent" => ("system/cpu_utilization_percentage".to_string(), 1.0),
        "rss_bytes" => ("system/job_memory_usage_megabytes".to_string(), MB),
        "system_memory_used_bytes" => ("system/system_memory_usage_megabytes".to_string(), MB),
        _ => {
            let gpu = rest.strip_prefix("gpu")?;
            let digits = gpu.find(|c: char| !c.is_ascii_digit())?;
            let (index, what) = gpu.split_at(digits);
            let index: u32 = index.parse().ok()?;
            match what {
                "_utilization_percent" => {
                    (format!("system/gpu_{index}_utilization_percentage"), 1.0)
                }
                "_memory_used_bytes" => (format!("system/gpu_{index}_memory_usage_megabytes"), MB),
                _ => return None,
            }
        }
    };
    Some(named)
}

/// Metric keys MLflow refuses get safe names (see [`safe_key`]); the artifact
/// `repro/metric_keys.json` maps each back to the recorded key, the tag `repro.metrics.renamed`
/// lists them, and the returned note line says so.
fn rename_metric_keys(
    metrics: &mut [MetricPoint],
    tags: &mut BTreeMap<String, String>,
    artifacts: &mut Vec<(String, Vec<u8>)>,
) -> Option<String> {
    let mut renamed: BTreeMap<String, String> = BTreeMap::new();
    for p in metrics.iter_mut() {
        if !valid_key(&p.key) {
            let safe = safe_key(&p.key);
            renamed.insert(safe.clone(), std::mem::replace(&mut p.key, safe));
        }
    }
    if renamed.is_empty() {
        return None;
    }
    let map = serde_json::to_vec_pretty(&renamed).expect("keys serialise");
    artifacts.push((METRIC_KEYS_ARTIFACT.into(), map));
    let pairs: Vec<(String, String)> = renamed.into_iter().map(|(s, o)| (o, s)).collect();
    let list = renamed_list(&pairs);
    tags.insert(
        "repro.metrics.renamed".into(),
        cut(&list, MAX_TAG_VALUE).to_string(),
    );
    Some(format!(
        "Metric keys MLflow refuses are recorded under safe names; {METRIC_KEYS_ARTIFACT} maps them back: {list}"
    ))
}

/// Tag values over the limit: the full text becomes an artifact, the tag says so.
fn move_long_tags(tags: &mut BTreeMap<String, String>, artifacts: &mut Vec<(String, Vec<u8>)>) {
    let long: Vec<String> = tags
        .iter()
        .filter(|(_, v)| v.chars().count() > MAX_TAG_VALUE)
        .map(|(k, _)| k.clone())
        .collect();
    for k in long {
        let path = format!("repro/tags/{k}.txt");
        let full = tags.remove(&k).unwrap_or_default();
        let marker = format!("\n\n[… cut at {MAX_TAG_VALUE} characters by repro: the full text is the artifact {path}]");
        let head = cut(&full, MAX_TAG_VALUE - marker.chars().count()).to_string();
        tags.insert(k, format!("{head}{marker}"));
        artifacts.push((path, full.into_bytes()));
    }
}

/// `repro/rerun.sh`: the run's bash re-run script; when it cannot be rendered, the tag
/// `repro.rerun_script` says why.
fn add_rerun_script(
    run: &Run,
    artifacts: &mut Vec<(String, Vec<u8>)>,
    tags: &mut BTreeMap<String, String>,
) {
    // The function `repro script` calls, with its defaults: the same bytes as `repro script ID`
    // (the registry options the run recorded included).
    match crate::script::render(run, &crate::script::ScriptOptions::default()) {
        Ok(script) => {
            artifacts.push((README_ARTIFACT.into(), readme(run, Ok(&script))));
            artifacts.push(("repro/rerun.sh".into(), script.into_bytes()));
        }
        Err(e) => {
            artifacts.push((
                README_ARTIFACT.into(),
                readme(
                    run,
                    Err(crate::sanitize::escape(&e.to_string()).into_owned()),
                ),
            ));
            tags.insert(
                "repro.rerun_script".into(),
                cut(&format!("not generated: {e}"), MAX_TAG_VALUE).to_string(),
            );
        }
    }
}

/// A SHA-256 writer, so a run is hashed as it serialises, without an intermediate buffer.
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The cheap change check: a hash of everything [`desired`] reads, without loading it — the
/// run's own `runs` row (status, end time, name, code, image…; its datasets, outputs, env,
/// params, tags and notes are left out, loaded or not), its change number (`changes`: the store
/// gives a run a new one whenever any row belonging to it — datasets, outputs, env, params, tags,
/// notes, attestations, metric series — is inserted, updated or deleted; migration 11), the
/// MLflow run id of its parent and its attestations (`attestations`: rows with the size and
/// mtime of their files) and what the push does with kept outputs (`outputs`: whether it
/// uploads them and the cap) — plus the repro and mapping versions. Equal to the ledger's means
/// unchanged, without loading the run's children, rendering `run.json` and the script, reading
/// the metric history or hashing the files.
pub fn fingerprint(
    run: &Run,
    changes: Option<i64>,
    parent: Option<&str>,
    attestations: &str,
    outputs: &str,
    dataset_context: &str,
) -> String {
    let mut h = HashWriter(Sha256::new());
    h.0.update(format!(
        "repro {} mapping {MAPPING_VERSION} changes {changes:?} context {dataset_context:?}\n",
        env!("CARGO_PKG_VERSION")
    ));
    let loaded = !(run.datasets.is_empty()
        && run.outputs.is_empty()
        && run.env.is_empty()
        && run.params.is_empty()
        && run.tags.is_empty()
        && run.notes.is_empty());
    if loaded {
        let mut row = run.clone();
        row.datasets.clear();
        row.outputs.clear();
        row.env.clear();
        row.params.clear();
        row.tags.clear();
        row.notes.clear();
        serde_json::to_writer(&mut h, &row).expect("run serialises");
    } else {
        serde_json::to_writer(&mut h, run).expect("run serialises");
    }
    for part in [parent.unwrap_or(""), attestations, outputs] {
        // Length-prefixed: no two different splits of the same bytes hash alike.
        h.0.update(format!("\n{}\n", part.len()));
        h.0.update(part.as_bytes());
    }
    hex::encode(h.0.finalize())
}

impl Desired {
    /// Hash of status, end time and name (what `runs/update` sends).
    pub fn state_hash(&self) -> String {
        sha256_hex(format!("{}\n{:?}\n{}", self.status, self.end_time, self.run_name).as_bytes())
    }

    /// Hash of the dataset inputs and their contexts.
    pub fn inputs_hash(&self) -> String {
        let contexts: Vec<&str> = self.inputs.iter().map(|i| i.context.as_str()).collect();
        sha256_hex(
            serde_json::to_string(&(&self.inputs, contexts))
                .expect("json")
                .as_bytes(),
        )
    }

    /// Hash of the artifacts (paths and contents).
    pub fn artifacts_hash(&self) -> String {
        let mut h = Sha256::new();
        for (p, bytes) in &self.artifacts {
            h.update(p.as_bytes());
            h.update([0]);
            h.update(sha256_hex(bytes).as_bytes());
        }
        hex::encode(h.finalize())
    }

    /// Points per metric key.
    pub fn metric_counts(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for p in &self.metrics {
            *m.entry(p.key.clone()).or_insert(0) += 1;
        }
        m
    }

    /// Hash of everything: equal to the ledger's means there is nothing to send.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(format!(
            "{}\n{}\n{}\n",
            self.user,
            self.start_time,
            self.state_hash()
        ));
        h.update(serde_json::to_vec(&self.params).expect("json"));
        h.update(serde_json::to_vec(&self.tags).expect("json"));
        h.update(self.inputs_hash());
        h.update(self.artifacts_hash());
        h.update(serde_json::to_vec(&self.metrics).expect("json"));
        h.update(serde_json::to_vec(&self.outputs).expect("json"));
        hex::encode(h.finalize())
    }
}

/// What the server is believed to hold for a run.
#[derive(Debug, Clone, Default)]
pub(super) struct Baseline {
    pub(super) mlflow_run_id: String,
    pub(super) params: BTreeMap<String, String>,
    pub(super) tags: BTreeMap<String, String>,
    /// Tags repro may delete when they are no longer wanted.
    pub(super) owned_tags: Vec<String>,
    pub(super) state_hash: Option<String>,
    pub(super) inputs_hash: Option<String>,
    pub(super) artifacts_hash: Option<String>,
    pub(super) metric_counts: BTreeMap<String, usize>,
    pub(super) artifact_uri: Option<String>,
    /// Kept-output files the artifact ledger says this MLflow run holds: path → SHA-256.
    pub(super) uploaded: BTreeMap<String, String>,
}

impl Baseline {
    pub(super) fn from_ledger(p: &MlflowPush) -> Baseline {
        let tags: BTreeMap<String, String> = serde_json::from_str(&p.tags_json).unwrap_or_default();
        Baseline {
            mlflow_run_id: p.mlflow_run_id.clone(),
            params: serde_json::from_str(&p.params_json).unwrap_or_default(),
            owned_tags: tags.keys().cloned().collect(),
            tags,
            state_hash: Some(p.state_hash.clone()),
            inputs_hash: Some(p.inputs_hash.clone()),
            artifacts_hash: Some(p.artifacts_hash.clone()),
            metric_counts: serde_json::from_str(&p.metrics_json).unwrap_or_default(),
            artifact_uri: None,
            uploaded: BTreeMap::new(),
        }
    }

    pub(super) fn from_server(r: &RemoteRun) -> Baseline {
        let tags: BTreeMap<String, String> = r
            .tags
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect();
        // Own tags repro pushed are listed in `repro.tags`; only those and repro's own
        // namespace (`repro.*`: tags an older mapping wrote) may be deleted.
        let mut owned_tags: Vec<String> = tags
            .get("repro.tags")
            .map(|l| l.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        owned_tags.extend(tags.keys().filter(|k| k.starts_with("repro.")).cloned());
        let state =
            sha256_hex(format!("{}\n{:?}\n{}", r.status, r.end_time, r.run_name).as_bytes());
        Baseline {
            mlflow_run_id: r.run_id.clone(),
            params: r
                .params
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.clone()))
                .collect(),
            tags,
            owned_tags,
            state_hash: Some(state),
            inputs_hash: None,
            artifacts_hash: None,
            metric_counts: BTreeMap::new(),
            artifact_uri: Some(r.artifact_uri.clone()),
            uploaded: BTreeMap::new(),
        }
    }
}

/// The difference between what the server holds and what is wanted.
#[derive(Debug, Default)]
pub(super) struct Diff {
    pub(super) params: Vec<KeyValue>,
    pub(super) conflicts: Vec<ParamConflict>,
    pub(super) tags: Vec<KeyValue>,
    pub(super) delete_tags: Vec<String>,
    pub(super) state: bool,
    pub(super) inputs: bool,
    pub(super) artifacts: bool,
    pub(super) metrics: Vec<MetricPoint>,
    /// Kept-output files the MLflow run does not hold yet (or holds other bytes at their path).
    pub(super) outputs: Vec<OutputArtifact>,
}

impl Diff {
    pub(super) fn parts(&self) -> Vec<&'static str> {
        let mut p = Vec::new();
        if !self.params.is_empty() {
            p.push("params");
        }
        if !self.tags.is_empty() || !self.delete_tags.is_empty() {
            p.push("tags");
        }
        if !self.metrics.is_empty() {
            p.push("metrics");
        }
        if self.inputs {
            p.push("datasets");
        }
        if self.artifacts {
            p.push("artifacts");
        }
        if !self.outputs.is_empty() {
            p.push("outputs");
        }
        if self.state {
            p.push("status");
        }
        p
    }
}

/// What to send so the server holds `want`, given what it holds (`base`).
pub(super) fn diff(want: &Desired, base: &Baseline) -> Diff {
    let mut d = Diff::default();
    for (k, v) in &want.params {
        match base.params.get(k) {
            None => d.params.push(KeyValue {
                key: k.clone(),
                value: v.clone(),
            }),
            Some(old) if old != v => d.conflicts.push(ParamConflict {
                key: k.clone(),
                pushed: old.clone(),
                local: Some(v.clone()),
            }),
            Some(_) => {}
        }
    }
    // A param moved to the artifact (value grew past the limit) also differs from the server's.
    for (k, old) in &base.params {
        if !want.params.contains_key(k) {
            d.conflicts.push(ParamConflict {
                key: k.clone(),
                pushed: old.clone(),
                local: None,
            });
        }
    }
    for (k, v) in &want.tags {
        if base.tags.get(k) != Some(v) {
            d.tags.push(KeyValue {
                key: k.clone(),
                value: v.clone(),
            });
        }
    }
    for k in &base.owned_tags {
        if !want.tags.contains_key(k) && base.tags.contains_key(k) {
            d.delete_tags.push(k.clone());
        }
    }
    d.state = base.state_hash.as_deref() != Some(want.state_hash().as_str());
    d.inputs =
        !want.inputs.is_empty() && base.inputs_hash.as_deref() != Some(want.inputs_hash().as_str());
    d.artifacts = base.artifacts_hash.as_deref() != Some(want.artifacts_hash().as_str());
    d.outputs = want
        .outputs
        .iter()
        .filter(|o| base.uploaded.get(&o.path) != Some(&o.sha256))
        .cloned()
        .collect();
    // Metric history only grows: send the points past those already pushed, per key. Points
    // keep their step and timestamp, so a point sent twice is stored once.
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &want.metrics {
        let n = seen.entry(p.key.as_str()).or_insert(0);
        if *n >= base.metric_counts.get(&p.key).copied().unwrap_or(0) {
            d.metrics.push(p.clone());
        }
        *n += 1;
    }
    d
}

/// The attestation part of the fingerprint: each attestation row with the size and mtime of
/// its file (a file changed, replaced or removed since the push changes what is uploaded).
pub(super) fn attestation_stamp(rows: Option<&Vec<(String, Option<String>)>>) -> String {
    let mut s = String::new();
    for (sha256, path) in rows.into_iter().flatten() {
        let stamp = path
            .as_deref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| {
                let mtime = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos());
                (m.len(), mtime)
            });
        s.push_str(&format!("{sha256}\t{path:?}\t{stamp:?}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::*;

    fn run() -> Run {
        Run {
            schema_version: 1,
            id: "01jf0000000000000000000000".into(),
            name: Some("train".into()),
            status: Status::Succeeded,
            exit_code: Some(0),
            signal: None,
            started_at: "2026-11-30T10:00:00.000Z".into(),
            ended_at: Some("2026-11-30T10:05:00.500Z".into()),
            duration_ms: Some(300_500),
            command: vec!["python".into(), "train.py".into()],
            cwd: ".".into(),
            exec: Exec {
                mode: ExecMode::Host,
                engine: None,
                workdir: None,
                engine_args: vec![],
                gpus: None,
                registry: None,
            },
            image: Some(Image {
                reference: "reg.example/team/app:1.0".into(),
                digest: Some(format!("sha256:{}", "a".repeat(64))),
                index_digest: Some(format!("sha256:{}", "b".repeat(64))),
                platform: None,
                resolved_by: ResolvedBy::Registry,
                labels: BTreeMap::new(),
            }),
            code: Some(Code {
                repo_root: "/src/app".into(),
                remote: Some("https://git.example/app.git".into()),
                commit: Some("c".repeat(40)),
                branch: Some("main".into()),
                dirty: true,
                untracked: vec![],
                patch_sha256: Some("d".repeat(64)),
                patch: None,
            }),
            datasets: vec![Dataset {
                name: "imgs".into(),
                kind: DatasetKind::Path,
                uri: Some("data/imgs".into()),
                version: Some(format!("sha256:{}", "e".repeat(64))),
                digest: Some(format!("sha256:{}", "e".repeat(64))),
                files: Some(3),
                bytes: Some(10),
            }],
            outputs: vec![],
            params_from_argv: Vec::new(),
            params_from_job: Vec::new(),
            params: [
                ("lr".to_string(), "0.1".to_string()),
                ("big".to_string(), "x".repeat(7000)),
            ]
            .into_iter()
            .collect(),
            tags: vec!["best".into(), "mlflow.runName".into()],
            notes: vec!["first try".into()],
            env: BTreeMap::new(),
            host: "box".into(),
            user: "alice".into(),
            platform: "linux/amd64".into(),
            pid: None,
            boot_id: None,
            pid_start: None,
            pid_ns: None,
            scheduler: None,
            rerun_of: None,
        }
    }

    #[test]
    fn a_run_maps_to_mlflow_tags_params_inputs_and_artifacts() {
        let d = desired(&run(), &[], Some("parent123"), None);
        assert_eq!(d.status, "FINISHED");
        assert_eq!(d.start_time, 1_796_032_800_000);
        assert_eq!(d.end_time, Some(1_796_032_800_000 + 300_500));
        let t = |k: &str| d.tags.get(k).map(String::as_str);
        assert_eq!(t("mlflow.runName"), Some("train"));
        assert_eq!(t("mlflow.user"), Some("alice"));
        assert_eq!(t("mlflow.source.type"), Some("JOB"));
        assert_eq!(t("mlflow.source.git.commit"), Some("c".repeat(40).as_str()));
        assert_eq!(t("mlflow.source.git.branch"), Some("main"));
        assert_eq!(
            t("mlflow.source.git.repoURL"),
            Some("https://git.example/app.git")
        );
        // Reference as written (its tag kept) and the digest that ran.
        let uri = format!("reg.example/team/app:1.0@sha256:{}", "a".repeat(64));
        assert_eq!(t("mlflow.docker.image.uri"), Some(uri.as_str()));
        assert_eq!(t("mlflow.parentRunId"), Some("parent123"));
        assert_eq!(t("mlflow.source.git.dirty"), Some("true"));
        assert_eq!(t("repro.run_id"), Some("01jf0000000000000000000000"));
        assert_eq!(
            t("repro.digest"),
            Some(format!("sha256:{}", "a".repeat(64)).as_str())
        );
        assert_eq!(t("repro.ref"), Some("reg.example/team/app:1.0"));
        assert_eq!(t("repro.exit"), Some("0"));
        // Hand-added tags carry a value, so compare shows them.
        assert_eq!(t("best"), Some("true"));
        // A user tag named like MLflow's own does not override it.
        assert_eq!(t("repro.tags"), Some("best,mlflow.runName"));
        // Few, short repro tags: the listed ones, and those naming moved or renamed names.
        let repro: Vec<&String> = d.tags.keys().filter(|k| k.starts_with("repro.")).collect();
        assert!(
            repro
                .iter()
                .all(|k| REPRO_TAGS.contains(&k.as_str()) || k.starts_with("repro.params.")),
            "{repro:?}"
        );
        let note = t("mlflow.note.content").unwrap();
        assert!(note.starts_with("first try\n\n"), "{note}");
        assert!(note.contains("repro/params.json: big"), "{note}");
        let digest = format!("sha256:{}", "a".repeat(64));
        assert!(
            note.contains(&format!(
                "- **Image**: `reg.example/team/app:1.0` `{digest}`"
            )),
            "{note}"
        );
        assert_eq!(note.matches(&digest).count(), 1, "the digest once: {note}");
        // The long param is not a param, and not lost.
        assert_eq!(d.params.keys().collect::<Vec<_>>(), ["lr"]);
        assert_eq!(t("repro.params.moved"), Some("big"));
        let paths: Vec<&str> = d.artifacts.iter().map(|a| a.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "repro/README.md",
                "repro/params.json",
                "repro/rerun.sh",
                "repro/run.json"
            ]
        );
        let readme = String::from_utf8(d.artifacts[0].1.clone()).unwrap();
        let script = String::from_utf8(d.artifacts[2].1.clone()).unwrap();
        assert!(
            readme.contains(&format!("```bash\n{script}```\n")),
            "{readme}"
        );
        let params: BTreeMap<String, String> = serde_json::from_slice(&d.artifacts[1].1).unwrap();
        assert_eq!(params["big"].len(), 7000);
        assert_eq!(d.inputs.len(), 1);
        assert_eq!(d.inputs[0].digest, "e".repeat(12));
        assert_eq!(d.inputs[0].context, "training");
        let profile: serde_json::Value =
            serde_json::from_str(d.inputs[0].profile.as_deref().unwrap()).unwrap();
        assert_eq!(profile["digest"], format!("sha256:{}", "e".repeat(64)));
        assert!(d.inputs[0]
            .source
            .contains(&format!("sha256:{}", "e".repeat(64))));
        assert!(d.tags.keys().all(|k| k.len() <= MAX_KEY));
        assert!(d.tags.values().all(|v| v.chars().count() <= MAX_TAG_VALUE));
    }

    #[test]
    fn a_failed_run_says_so_first_and_the_source_is_the_script_that_ran() {
        let mut r = run();
        r.status = Status::Failed;
        r.exit_code = Some(3);
        r.command = vec![
            "python".into(),
            "-u".into(),
            "train.py".into(),
            "--lr".into(),
        ];
        let d = desired(&r, &[], None, None);
        let note = &d.tags["mlflow.note.content"];
        assert!(
            note.starts_with("**Failed** (exit code 3).\n\nfirst try"),
            "{note}"
        );
        assert_eq!(d.tags["mlflow.source.name"], "train.py");
        assert_eq!(d.tags["repro.exit"], "3");
        r.command = vec!["/usr/bin/env".into(), "true".into()];
        assert_eq!(source_name(&r), "/usr/bin/env");
        assert_eq!(md_code("a`b"), "``a`b``");
    }

    #[test]
    fn long_notes_are_cut_with_a_marker_and_kept_whole_as_an_artifact() {
        let mut r = run();
        r.notes = vec!["n".repeat(9000)];
        let d = desired(&r, &[], None, None);
        let note = &d.tags["mlflow.note.content"];
        assert!(note.chars().count() <= MAX_TAG_VALUE);
        assert!(note.ends_with("the full text is the artifact repro/tags/mlflow.note.content.txt]"));
        let full = d
            .artifacts
            .iter()
            .find(|a| a.0 == "repro/tags/mlflow.note.content.txt")
            .unwrap();
        assert!(String::from_utf8_lossy(&full.1).starts_with(&"n".repeat(9000)));
    }

    #[test]
    fn hashes_move_only_with_what_they_cover() {
        let a = desired(&run(), &[], None, None);
        let mut r = run();
        r.notes.push("later".into());
        let b = desired(&r, &[], None, None);
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.state_hash(), b.state_hash());
        assert_eq!(a.inputs_hash(), b.inputs_hash());
        assert_eq!(a.hash(), desired(&run(), &[], None, None).hash());
        let m = [MetricPoint {
            key: "loss".into(),
            value: 1.0,
            timestamp: 5,
            step: 0,
        }];
        let c = desired(&run(), &m, None, None);
        assert_ne!(a.hash(), c.hash());
        assert_eq!(c.metric_counts()["loss"], 1);
    }

    #[test]
    fn the_fingerprint_moves_with_every_input_of_the_mapping() {
        let base = fingerprint(&run(), Some(7), None, "", "on", "");
        assert_eq!(base, fingerprint(&run(), Some(7), None, "", "on", ""));
        // The run's children are covered by its change number, loaded or not.
        let mut r = run();
        r.tags.push("shipped".into());
        r.notes.push("later".into());
        r.params.insert("new".into(), "1".into());
        assert_eq!(base, fingerprint(&r, Some(7), None, "", "on", ""));
        let mut changed: Vec<String> = Vec::new();
        changed.push(fingerprint(&r, Some(8), None, "", "on", ""));
        changed.push(fingerprint(&run(), None, None, "", "on", ""));
        let mut r = run();
        r.status = Status::Failed;
        changed.push(fingerprint(&r, Some(7), None, "", "on", ""));
        let mut r = run();
        r.ended_at = Some("2026-11-30T10:06:00.000Z".into());
        changed.push(fingerprint(&r, Some(7), None, "", "on", ""));
        let mut r = run();
        r.name = Some("renamed".into());
        changed.push(fingerprint(&r, Some(7), None, "", "on", ""));
        changed.push(fingerprint(&run(), Some(7), Some("parent"), "", "on", ""));
        changed.push(fingerprint(&run(), Some(7), None, "abc\tNone\n", "on", ""));
        // The parts are delimited: moving bytes from one part to the next is a change.
        changed.push(fingerprint(&run(), Some(7), Some("ab"), "c", "on", ""));
        changed.push(fingerprint(&run(), Some(7), Some("a"), "bc", "on", ""));
        // What the push does with kept outputs.
        changed.push(fingerprint(&run(), Some(7), None, "", "off", ""));
        changed.push(fingerprint(&run(), Some(7), None, "", "on 10", ""));
        // The datasets' context.
        changed.push(fingerprint(&run(), Some(7), None, "", "on", "evaluation"));
        let distinct: std::collections::BTreeSet<&String> = changed.iter().collect();
        assert_eq!(distinct.len(), changed.len());
        assert!(!distinct.contains(&base));
    }

    fn want() -> Desired {
        Desired {
            run_name: "r".into(),
            user: "u".into(),
            start_time: 1,
            end_time: Some(2),
            status: "FINISHED",
            params: [("lr".to_string(), "0.1".to_string())]
                .into_iter()
                .collect(),
            tags: [
                ("a".to_string(), "1".to_string()),
                ("best".to_string(), String::new()),
            ]
            .into_iter()
            .collect(),
            inputs: Vec::new(),
            artifacts: vec![("repro/run.json".into(), b"{}".to_vec())],
            outputs: vec![OutputArtifact {
                path: "outputs/model.json".into(),
                sha256: "a".repeat(64),
                bytes: 2,
            }],
            outputs_skipped: Vec::new(),
            metrics: (0..3)
                .map(|s| MetricPoint {
                    key: "loss".into(),
                    value: 0.0,
                    timestamp: s,
                    step: s,
                })
                .collect(),
        }
    }

    fn pushed(w: &Desired) -> Baseline {
        Baseline {
            mlflow_run_id: "m".into(),
            params: w.params.clone(),
            tags: w.tags.clone(),
            owned_tags: w.tags.keys().cloned().collect(),
            state_hash: Some(w.state_hash()),
            inputs_hash: Some(w.inputs_hash()),
            artifacts_hash: Some(w.artifacts_hash()),
            metric_counts: w.metric_counts(),
            artifact_uri: None,
            uploaded: w
                .outputs
                .iter()
                .map(|o| (o.path.clone(), o.sha256.clone()))
                .collect(),
        }
    }

    #[test]
    fn only_what_changed_is_sent_and_changed_params_are_conflicts() {
        let w = want();
        let base = pushed(&w);
        assert!(diff(&w, &base).parts().is_empty());

        let mut t = want();
        t.tags.remove("best");
        t.tags.insert("shipped".into(), String::new());
        let d = diff(&t, &base);
        assert_eq!(d.parts(), ["tags"]);
        assert_eq!(
            d.tags,
            [KeyValue {
                key: "shipped".into(),
                value: String::new()
            }]
        );
        assert_eq!(d.delete_tags, ["best"]);

        let mut p = want();
        p.params.insert("lr".into(), "0.2".into());
        p.params.insert("new".into(), "x".into());
        let d = diff(&p, &base);
        assert_eq!(
            d.params,
            [KeyValue {
                key: "new".into(),
                value: "x".into()
            }]
        );
        assert_eq!(
            d.conflicts,
            [ParamConflict {
                key: "lr".into(),
                pushed: "0.1".into(),
                local: Some("0.2".into())
            }]
        );

        let mut m = want();
        m.metrics.push(MetricPoint {
            key: "loss".into(),
            value: 0.0,
            timestamp: 9,
            step: 9,
        });
        m.metrics.push(MetricPoint {
            key: "acc".into(),
            value: 1.0,
            timestamp: 9,
            step: 9,
        });
        m.metrics
            .sort_by(|a, b| (a.key.as_str(), a.step).cmp(&(b.key.as_str(), b.step)));
        let d = diff(&m, &base);
        assert_eq!(d.parts(), ["metrics"]);
        let sent: Vec<(&str, i64)> = d.metrics.iter().map(|p| (p.key.as_str(), p.step)).collect();
        assert_eq!(sent, [("acc", 9), ("loss", 9)]);

        let mut s = want();
        s.status = "FAILED";
        assert_eq!(diff(&s, &base).parts(), ["status"]);

        // Kept outputs: only files the MLflow run does not hold with the same bytes.
        let mut o = want();
        o.outputs.push(OutputArtifact {
            path: "outputs/ckpt/w.bin".into(),
            sha256: "b".repeat(64),
            bytes: 9,
        });
        o.outputs[0].sha256 = "c".repeat(64);
        let d = diff(&o, &base);
        assert_eq!(d.parts(), ["outputs"]);
        let sent: Vec<&str> = d.outputs.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(sent, ["outputs/model.json", "outputs/ckpt/w.bin"]);
        assert_ne!(o.hash(), w.hash());
        let mut fresh = base.clone();
        fresh.uploaded.clear();
        assert_eq!(diff(&w, &fresh).outputs.len(), 1);
    }

    #[test]
    fn system_metrics_go_under_mlflow_names_and_units() {
        let m = [
            ("sys/cpu_percent", 150.0),
            ("sys/rss_bytes", 2.5e8),
            ("sys/system_memory_used_bytes", 4e9),
            ("sys/gpu0_utilization_percent", 37.0),
            ("sys/gpu12_memory_used_bytes", 3e9),
            ("sys/gpu1_fan", 1.0),
            ("sysx/cpu_percent", 2.0),
            ("loss", 0.5),
        ]
        .map(|(k, v)| MetricPoint {
            key: k.into(),
            value: v,
            timestamp: 1,
            step: 0,
        });
        let d = desired(&run(), &m, None, None);
        let sent: BTreeMap<&str, f64> = d
            .metrics
            .iter()
            .map(|p| (p.key.as_str(), p.value))
            .collect();
        let want: BTreeMap<&str, f64> = [
            ("system/cpu_utilization_percentage", 150.0),
            ("system/job_memory_usage_megabytes", 250.0),
            ("system/system_memory_usage_megabytes", 4000.0),
            ("system/gpu_0_utilization_percentage", 37.0),
            ("system/gpu_12_memory_usage_megabytes", 3000.0),
            ("sys/gpu1_fan", 1.0),
            ("sysx/cpu_percent", 2.0),
            ("loss", 0.5),
        ]
        .into_iter()
        .collect();
        assert_eq!(sent, want);
        assert_eq!(system_metric("sys/gpu_utilization_percent"), None);
    }

    #[test]
    fn skipped_outputs_are_a_tag_and_leave_the_other_tags_alone() {
        let d = desired(&run(), &[], None, None);
        assert!(!d.tags.contains_key(OUTPUTS_SKIPPED_TAG));
        let s = d
            .clone()
            .with_outputs(vec![], vec!["a.bin: not kept (x)".into(), "b: y".into()]);
        assert_eq!(s.tags[OUTPUTS_SKIPPED_TAG], "a.bin: not kept (x); b: y");
        assert_ne!(s.hash(), d.hash());
    }

    #[test]
    fn names_mlflow_refuses_map_to_safe_deterministic_names_and_are_listed() {
        for bad in [
            "../etc",
            "/abs",
            "a//b",
            "q\"uote",
            "trail/",
            "",
            "\u{1b}[2J",
            "a\nb",
            "../up",
            "./x",
            "..x",
            "a/./b",
            ".",
        ] {
            assert!(!valid_key(bad), "{bad:?}");
            let safe = safe_key(bad);
            assert!(valid_key(&safe), "{bad:?} -> {safe:?}");
            assert_eq!(safe, safe_key(bad), "deterministic");
        }
        for good in ["lr", "train/loss", "val acc:top-1", "a.b_c", "überall"] {
            assert!(valid_key(good), "{good}");
            assert_eq!(safe_key(good), good);
        }
        assert_ne!(safe_key("a//b"), safe_key("a/b/"));
        let mut r = run();
        r.params = [("../etc", "1"), ("lr", "0.1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let m = ["", "\u{1b}x", "loss"].map(|k| MetricPoint {
            key: k.into(),
            value: 1.0,
            timestamp: 1,
            step: 0,
        });
        let d = desired(&r, &m, None, None);
        assert!(d.params.keys().all(|k| valid_key(k)), "{:?}", d.params);
        assert_eq!(d.params[&safe_key("../etc")], "1");
        assert!(d.metrics.iter().all(|p| valid_key(&p.key)));
        assert!(d.tags.keys().all(|k| valid_key(k)), "{:?}", d.tags.keys());
        assert!(d.tags["repro.params.renamed"].contains("'../etc' as 'etc-"));
        assert!(d.tags["repro.metrics.renamed"].contains("'\\x1bx' as '_x-"));
        let keys = d
            .artifacts
            .iter()
            .find(|a| a.0 == METRIC_KEYS_ARTIFACT)
            .unwrap();
        let map: BTreeMap<String, String> = serde_json::from_slice(&keys.1).unwrap();
        assert_eq!(map[&safe_key("")], "");
        let params = d.artifacts.iter().find(|a| a.0 == PARAMS_ARTIFACT).unwrap();
        let all: BTreeMap<String, String> = serde_json::from_slice(&params.1).unwrap();
        assert_eq!(all["../etc"], "1");
    }
}
