//! The in-toto Statement v1 with a SLSA Provenance v1 predicate for one run (docs/attest.md maps
//! every field). Pure: the record in, the statement out.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::record::{DatasetKind, ExecMode, Run, Status};

/// `_type` of an in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// `predicateType` of SLSA Provenance v1.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// `buildDefinition.buildType`: names repro's run type; the parameters it implies are documented
/// (with a JSON schema) in docs/attest.md.
pub const BUILD_TYPE: &str = "https://repro.dev/attest/run/v1";
/// `runDetails.builder.id` prefix; the version is appended (`…@v0.1.0`).
pub const BUILDER_ID: &str = "https://repro.dev/builder/repro";
/// The annotation saying a digest is repro's canonical directory manifest digest (docs/datasets.md),
/// not the SHA-256 of a single file.
pub const MANIFEST_DIGEST_NOTE: &str = "repro-dir-manifest-v1";

/// An in-toto ResourceDescriptor (only the fields repro writes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ResourceDescriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digest: BTreeMap<String, String>,
    /// The resource's bytes, standard base64 (protobuf JSON `bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, rename = "mediaType", skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub annotations: Map<String, Value>,
}

/// A Statement v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub type_: String,
    pub subject: Vec<ResourceDescriptor>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Provenance,
}

/// SLSA Provenance v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Provenance {
    pub build_definition: BuildDefinition,
    pub run_details: RunDetails,
}

/// `buildDefinition`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BuildDefinition {
    pub build_type: String,
    pub external_parameters: Map<String, Value>,
    pub internal_parameters: Map<String, Value>,
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

/// `runDetails`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RunDetails {
    pub builder: Builder,
    pub metadata: Metadata,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub byproducts: Vec<ResourceDescriptor>,
}

/// `runDetails.builder`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Builder {
    pub id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub version: BTreeMap<String, String>,
}

/// `runDetails.metadata`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    pub invocation_id: String,
    pub started_on: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_on: Option<String>,
}

/// Why a run cannot be attested.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    #[error("run {id} has no outputs with a digest to attest")]
    NoOutputs { id: String, missing: Vec<String> },
    #[error("run {id} is {status}: only a finished run can be attested")]
    NotFinished { id: String, status: Status },
}

impl crate::error::Hinted for StatementError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            StatementError::NoOutputs { missing, .. } if !missing.is_empty() => format!(
                "its outputs were missing when the run ended ({}); re-run with --output PATH naming files the job writes",
                missing.join(", ")
            ),
            StatementError::NoOutputs { .. } => {
                "the subject of an attestation is the run's outputs: record them with `repro run --output PATH …`".into()
            }
            StatementError::NotFinished { .. } => {
                "wait for the run to finish (a `lost` run has no end time)".into()
            }
        })
    }
}

/// Facts the statement needs that are not in the record.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// SHA-256 (hex) of the bash re-run script (`repro script ID`), when it renders.
    pub rerun_script_sha256: Option<String>,
    /// Metric summary per key (DESIGN.md `metrics`), once the record carries metrics.
    pub metrics: Option<Map<String, Value>>,
}

/// What building the statement skipped (shown as warnings).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Outputs recorded missing (no digest): not subjects.
    pub missing_outputs: Vec<String>,
}

/// The subject name of an output: its path relative to the repository root (the run's cwd is
/// relative to it), normalised; an absolute path inside the repository is made relative too.
pub fn subject_name(run: &Run, output_path: &str) -> String {
    let repo_root = run.code.as_ref().map(|c| PathBuf::from(&c.repo_root));
    let joined = Path::new(&run.cwd).join(output_path);
    let norm = normalise(&joined);
    if norm.is_absolute() {
        if let Some(root) = repo_root {
            if let Ok(rel) = norm.strip_prefix(normalise(&root)) {
                return rel.to_string_lossy().into_owned();
            }
        }
    }
    norm.to_string_lossy().into_owned()
}

/// Lexical normalisation: drops `.`, folds `..` (never above the start of a relative path).
fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Splits `algo:hex` into (algo, hex); a bare hex string is SHA-256.
fn split_digest(d: &str) -> (String, String) {
    match d.split_once(':') {
        Some((a, h)) => (a.to_string(), h.to_string()),
        None => ("sha256".to_string(), d.to_string()),
    }
}

fn digest_map(d: &str) -> BTreeMap<String, String> {
    let (a, h) = split_digest(d);
    BTreeMap::from([(a, h)])
}

fn annotations(pairs: &[(&str, Option<Value>)]) -> Map<String, Value> {
    pairs
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v)))
        .collect()
}

/// The statement for `run`. Refuses a run that has not finished or has no output digests.
pub fn build(run: &Run, extras: &Extras) -> Result<(Statement, Skipped), StatementError> {
    let Some(finished_on) = run.ended_at.clone().filter(|_| {
        matches!(
            run.status,
            Status::Succeeded | Status::Failed | Status::Killed
        )
    }) else {
        return Err(StatementError::NotFinished {
            id: run.id.clone(),
            status: run.status,
        });
    };
    let mut skipped = Skipped::default();
    let mut subject = Vec::new();
    for o in &run.outputs {
        let Some(d) = &o.sha256 else {
            skipped.missing_outputs.push(o.path.clone());
            continue;
        };
        // A file's digest is bare hex; a directory's is the `sha256:` manifest digest.
        let dir = d.contains(':');
        subject.push(ResourceDescriptor {
            name: Some(subject_name(run, &o.path)),
            digest: digest_map(d),
            annotations: annotations(&[("digestOf", dir.then(|| json!(MANIFEST_DIGEST_NOTE)))]),
            ..Default::default()
        });
    }
    if subject.is_empty() {
        return Err(StatementError::NoOutputs {
            id: run.id.clone(),
            missing: skipped.missing_outputs,
        });
    }
    let statement = Statement {
        type_: STATEMENT_TYPE.into(),
        subject,
        predicate_type: PREDICATE_TYPE.into(),
        predicate: Provenance {
            build_definition: BuildDefinition {
                build_type: BUILD_TYPE.into(),
                external_parameters: external_parameters(run),
                internal_parameters: internal_parameters(run),
                resolved_dependencies: resolved_dependencies(run),
            },
            run_details: RunDetails {
                builder: Builder {
                    id: format!("{BUILDER_ID}@v{}", env!("CARGO_PKG_VERSION")),
                    version: BTreeMap::from([(
                        "repro".to_string(),
                        env!("CARGO_PKG_VERSION").to_string(),
                    )]),
                },
                metadata: Metadata {
                    invocation_id: run.id.clone(),
                    started_on: run.started_at.clone(),
                    finished_on: Some(finished_on),
                },
                byproducts: byproducts(run, extras),
            },
        },
    };
    Ok((statement, skipped))
}

/// What the user asked for: argv (lossless), params, image as written, datasets, named env.
fn external_parameters(run: &Run) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("argv".into(), json!(run.command));
    m.insert("cwd".into(), json!(run.cwd));
    m.insert("params".into(), json!(run.params));
    m.insert(
        "image".into(),
        json!(run.image.as_ref().map(|i| i.reference.clone())),
    );
    m.insert(
        "datasets".into(),
        Value::Array(
            run.datasets
                .iter()
                .map(|d| {
                    json!({
                        "name": d.name,
                        "kind": d.kind.as_str(),
                        "uri": d.uri,
                        "version": d.version,
                    })
                })
                .collect(),
        ),
    );
    // Only the variables named with --env; redacted values stay redacted in the record.
    m.insert("env".into(), json!(run.env));
    m.insert(
        "outputs".into(),
        json!(run.outputs.iter().map(|o| &o.path).collect::<Vec<_>>()),
    );
    m
}

/// How repro carried it out: engine, flags, workdir, platform, resolution, outcome.
fn internal_parameters(run: &Run) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("execMode".into(), json!(run.exec.mode.as_str()));
    m.insert("engine".into(), json!(run.exec.engine));
    m.insert("engineArgs".into(), json!(run.exec.engine_args));
    m.insert("gpus".into(), json!(run.exec.gpus));
    m.insert("workdir".into(), json!(run.exec.workdir));
    m.insert(
        "imagePlatform".into(),
        json!(run.image.as_ref().and_then(|i| i.platform.clone())),
    );
    m.insert(
        "resolvedBy".into(),
        json!(run.image.as_ref().map(|i| i.resolved_by.as_str())),
    );
    m.insert("hostPlatform".into(), json!(run.platform));
    m.insert(
        "outcome".into(),
        json!({
            "status": run.status.as_str(),
            "exitCode": run.exit_code,
            "signal": run.signal,
        }),
    );
    m.insert("rerunOf".into(), json!(run.rerun_of));
    m
}

/// The image, the code (commit and, when dirty, the patch), the content-addressed datasets.
fn resolved_dependencies(run: &Run) -> Vec<ResourceDescriptor> {
    let mut deps = Vec::new();
    if let Some(img) = &run.image {
        deps.push(ResourceDescriptor {
            name: Some("image".into()),
            uri: Some(format!("oci://{}", img.repository())),
            digest: img.digest.as_deref().map(digest_map).unwrap_or_default(),
            annotations: annotations(&[
                ("reference", Some(json!(img.reference))),
                ("indexDigest", img.index_digest.clone().map(Value::String)),
                ("platform", img.platform.clone().map(Value::String)),
                ("resolvedBy", Some(json!(img.resolved_by.as_str()))),
                (
                    "ranInContainer",
                    Some(json!(run.exec.mode == ExecMode::Container)),
                ),
            ]),
            ..Default::default()
        });
    }
    if let Some(code) = &run.code {
        let base = match &code.remote {
            Some(r) => format!("git+{r}"),
            None => format!("git+file://{}", code.repo_root),
        };
        let at = code
            .branch
            .as_ref()
            .map(|b| format!("refs/heads/{b}"))
            .or_else(|| code.commit.clone());
        deps.push(ResourceDescriptor {
            name: Some("code".into()),
            uri: Some(match at {
                Some(r) => format!("{base}@{r}"),
                None => base,
            }),
            digest: code
                .commit
                .iter()
                .map(|c| ("gitCommit".to_string(), c.clone()))
                .collect(),
            annotations: annotations(&[
                ("dirty", Some(json!(code.dirty))),
                (
                    "untracked",
                    (!code.untracked.is_empty()).then(|| json!(code.untracked)),
                ),
            ]),
            ..Default::default()
        });
        if let Some(p) = code.patch_sha256.as_deref().filter(|_| code.dirty) {
            deps.push(ResourceDescriptor {
                name: Some("patch".into()),
                digest: digest_map(p),
                media_type: Some("text/x-diff".into()),
                annotations: annotations(&[
                    ("appliesTo", code.commit.clone().map(Value::String)),
                    (
                        "description",
                        Some(json!("uncommitted changes (git diff --binary HEAD, untracked files included); `repro export` carries it")),
                    ),
                ]),
                ..Default::default()
            });
        }
    }
    for d in &run.datasets {
        let digest = match d.kind {
            DatasetKind::Path => d.digest.as_deref().or(d.version.as_deref()).map(digest_map),
            // DVC records an MD5 (directories end in `.dir`).
            DatasetKind::Dvc => d.version.as_deref().and_then(|v| {
                let h = v.trim_end_matches(".dir");
                (h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                    .then(|| BTreeMap::from([("md5".to_string(), h.to_ascii_lowercase())]))
            }),
            DatasetKind::Label | DatasetKind::Uri => None,
        };
        let Some(digest) = digest else { continue };
        deps.push(ResourceDescriptor {
            name: Some(format!("dataset:{}", d.name)),
            uri: d.uri.clone(),
            digest,
            annotations: annotations(&[
                ("kind", Some(json!(d.kind.as_str()))),
                (
                    "digestOf",
                    (d.kind == DatasetKind::Path).then(|| json!(MANIFEST_DIGEST_NOTE)),
                ),
                (
                    "dvcVersion",
                    (d.kind == DatasetKind::Dvc).then(|| json!(d.version)),
                ),
                ("files", d.files.map(|f| json!(f))),
                ("bytes", d.bytes.map(|b| json!(b))),
            ]),
            ..Default::default()
        });
    }
    deps
}

/// The name of the metric-summary byproduct.
pub const METRICS_BYPRODUCT: &str = "metrics.json";

/// The canonical JSON of a metric summary (compact, keys sorted, NaN/±inf as the strings
/// "NaN"/"Infinity"/"-Infinity" as in `show --json`): the bytes the byproduct's digest covers.
pub fn metrics_canonical_json(summary: &Map<String, Value>) -> Vec<u8> {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let b: BTreeMap<&String, Value> = m.iter().map(|(k, v)| (k, sorted(v))).collect();
                Value::Object(b.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_vec(&sorted(&Value::Object(summary.clone()))).expect("json serialises")
}

/// The re-run script's digest and the metric summary.
fn byproducts(_run: &Run, extras: &Extras) -> Vec<ResourceDescriptor> {
    let mut out = Vec::new();
    if let Some(sha) = &extras.rerun_script_sha256 {
        out.push(ResourceDescriptor {
            name: Some("rerun.sh".into()),
            digest: BTreeMap::from([("sha256".to_string(), sha.clone())]),
            media_type: Some("text/x-shellscript".into()),
            annotations: annotations(&[(
                "generatedBy",
                Some(json!("repro script ID --target bash")),
            )]),
            ..Default::default()
        });
    }
    // The metric summary (DESIGN.md `metrics`), when the run recorded metrics: its canonical
    // JSON inline as `content`, with that content's SHA-256.
    if let Some(m) = extras.metrics.as_ref().filter(|m| !m.is_empty()) {
        use base64::Engine as _;
        use sha2::Digest as _;
        let bytes = metrics_canonical_json(m);
        out.push(ResourceDescriptor {
            name: Some(METRICS_BYPRODUCT.into()),
            digest: BTreeMap::from([(
                "sha256".to_string(),
                hex::encode(sha2::Sha256::digest(&bytes)),
            )]),
            content: Some(base64::engine::general_purpose::STANDARD.encode(&bytes)),
            media_type: Some("application/json".into()),
            annotations: annotations(&[(
                "generatedBy",
                Some(json!("repro show ID --json: .metrics")),
            )]),
            ..Default::default()
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Code, Output};

    fn run_in(cwd: &str) -> Run {
        let mut run: Run = serde_json::from_value(json!({
            "schema_version": 1, "id": "01jd3k0000000000000000000a", "name": null,
            "status": "succeeded", "exit_code": 0, "signal": null,
            "started_at": "2026-01-01T00:00:00.000Z", "ended_at": "2026-01-01T00:00:01.000Z",
            "duration_ms": 1000, "command": ["true"], "cwd": cwd,
            "exec": {"mode": "host", "engine": null}, "image": null, "code": null,
            "datasets": [], "outputs": [], "params": {}, "tags": [], "notes": [], "env": {},
            "host": "h", "user": "u", "platform": "linux/amd64", "pid": null, "boot_id": null,
            "rerun_of": null
        }))
        .unwrap();
        run.code = Some(Code {
            repo_root: "/src/proj".into(),
            remote: None,
            commit: Some("a".repeat(40)),
            branch: None,
            dirty: false,
            untracked: vec![],
            patch_sha256: None,
            patch: None,
        });
        run
    }

    #[test]
    fn subject_names_are_relative_to_the_repository() {
        assert_eq!(subject_name(&run_in("."), "./out/m.bin"), "out/m.bin");
        assert_eq!(subject_name(&run_in("exp/a"), "../m.bin"), "exp/m.bin");
        assert_eq!(
            subject_name(&run_in("exp"), "/src/proj/out/m.bin"),
            "out/m.bin"
        );
        assert_eq!(
            subject_name(&run_in("exp"), "/elsewhere/m.bin"),
            "/elsewhere/m.bin"
        );
    }

    #[test]
    fn unfinished_runs_are_refused_and_a_detached_head_pins_the_commit() {
        let mut run = run_in(".");
        run.outputs.push(Output::hashed(
            "m.bin".into(),
            Some("ab".repeat(32)),
            Some(1),
        ));
        let (st, _) = build(&run, &Extras::default()).unwrap();
        let code = &st.predicate.build_definition.resolved_dependencies[0];
        assert_eq!(
            code.uri.as_deref(),
            Some(format!("git+file:///src/proj@{}", "a".repeat(40)).as_str())
        );
        assert!(st.predicate.run_details.byproducts.is_empty());
        run.status = Status::Lost;
        assert!(matches!(
            build(&run, &Extras::default()),
            Err(StatementError::NotFinished { .. })
        ));
    }
}
