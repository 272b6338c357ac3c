//! The run record: the one data model that capture, store, output and re-run targets speak.
//!
//! Its serde form is the `--json` contract of DESIGN.md (schema_version 1): absent facts are
//! `null`, never omitted.

pub mod environment;
pub mod json;
pub mod metrics;
pub mod paths;
pub mod promotion;
pub mod scheduler;
pub mod text;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Version of the JSON shape printed by `--json` and written by `export`.
pub const SCHEMA_VERSION: u32 = 1;

/// One argv element, kept as raw bytes so that arguments that are not UTF-8 survive losslessly.
///
/// In JSON a UTF-8 argument is a plain string; any other is `{"base64": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Arg(pub Vec<u8>);

impl Arg {
    /// The argument as an OS string, exactly as given.
    pub fn as_os_str(&self) -> &OsStr {
        OsStr::from_bytes(&self.0)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Wraps raw bytes.
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        Arg(bytes)
    }

    /// Lossy text, for display only.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

/// Raw bytes that serialise like an [`Arg`]: a string when UTF-8, else `{"base64": …}` (used for patches).
pub type Bytes = Arg;

impl From<OsString> for Arg {
    fn from(s: OsString) -> Self {
        Arg(s.into_vec())
    }
}

impl From<&str> for Arg {
    fn from(s: &str) -> Self {
        Arg(s.as_bytes().to_vec())
    }
}

impl Serialize for Arg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => {
                let mut m = BTreeMap::new();
                m.insert(
                    "base64",
                    base64::engine::general_purpose::STANDARD.encode(&self.0),
                );
                m.serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Arg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Text(String),
            Bytes { base64: String },
        }
        match Repr::deserialize(d)? {
            Repr::Text(t) => Ok(Arg(t.into_bytes())),
            Repr::Bytes { base64 } => base64::engine::general_purpose::STANDARD
                .decode(base64.as_bytes())
                .map(Arg)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Lifecycle of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Written before the child starts; the wrapper is (believed to be) alive.
    Running,
    /// Exit code 0.
    Succeeded,
    /// Non-zero exit code, or the command could not start.
    Failed,
    /// Ended by a signal.
    Killed,
    /// Still `running` in the database but its wrapper is gone (SIGKILL, crash, reboot).
    Lost,
    /// The command never started: the engine could not pull the image or start the container.
    Error,
}

impl Status {
    /// The lowercase name used in the database and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Killed => "killed",
            Status::Lost => "lost",
            Status::Error => "error",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "running" => Status::Running,
            "succeeded" => Status::Succeeded,
            "failed" => Status::Failed,
            "killed" => Status::Killed,
            "lost" => Status::Lost,
            "error" => Status::Error,
            _ => return None,
        })
    }

    /// All statuses, for help text and validation.
    pub const ALL: [Status; 6] = [
        Status::Running,
        Status::Succeeded,
        Status::Failed,
        Status::Killed,
        Status::Lost,
        Status::Error,
    ];
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the command was executed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exec {
    /// `container` (run by repro in the pinned image) or `host`.
    pub mode: ExecMode,
    /// `docker` or `podman` in container mode, else null.
    pub engine: Option<String>,
    /// Working directory inside the container (the repository root is mounted here).
    #[serde(default)]
    pub workdir: Option<String>,
    /// Extra engine flags given at run time (`--gpus`, mounts, …), replayed by re-run targets.
    #[serde(default)]
    pub engine_args: Vec<String>,
    /// GPU request given with `--gpus`, replayed as the engine flag / k8s resource / `--nv`.
    #[serde(default)]
    pub gpus: Option<String>,
    /// What the run needed to reach its image's registry (insecure, CA certificates): part of
    /// the engine plan every re-run path renders. Left out of the JSON when nothing was needed,
    /// so that the records (and MLflow artifacts) of such runs keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryAccess>,
}

/// How the engine reached a registry: never credentials, only what a re-run needs to reach it
/// the same way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryAccess {
    /// The registry `HOST[:PORT]`.
    pub registry: String,
    /// Declared insecure (`--insecure-registry`, `insecure_registries`): plain HTTP allowed,
    /// podman pulls with `--tls-verify=false`.
    #[serde(default)]
    pub insecure: bool,
    /// CA certificates trusted for it (`--ca-cert`, certs.d), in the order they applied.
    #[serde(default)]
    pub ca_certs: Vec<CaCert>,
}

/// A CA certificate a run trusted: where the PEM lived and its SHA-256, so a re-run finds it
/// again and refuses another one under the same name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaCert {
    /// Absolute path of the PEM file when the run was recorded.
    pub path: String,
    /// `sha256:<hex>` of the file's bytes.
    pub sha256: String,
}

/// Where the command ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecMode {
    /// `<engine> run --rm name@sha256:…` started by repro.
    Container,
    /// Directly on the host (`--host`, or no image).
    Host,
}

impl ExecMode {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecMode::Container => "container",
            ExecMode::Host => "host",
        }
    }
}

/// How the image digest was obtained (guarantee 1: no claimed digest is unverified).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResolvedBy {
    /// The user wrote the digest in the reference.
    Pinned,
    /// The registry returned it for the manifest (body hash checked).
    Registry,
    /// The local engine reported it (`RepoDigests`).
    Engine,
    /// Not resolved; allowed explicitly with `--allow-unpinned`.
    Unpinned,
}

impl ResolvedBy {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ResolvedBy::Pinned => "pinned",
            ResolvedBy::Registry => "registry",
            ResolvedBy::Engine => "engine",
            ResolvedBy::Unpinned => "unpinned",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<ResolvedBy> {
        Some(match s {
            "pinned" => ResolvedBy::Pinned,
            "registry" => ResolvedBy::Registry,
            "engine" => ResolvedBy::Engine,
            "unpinned" => ResolvedBy::Unpinned,
            _ => return None,
        })
    }
}

/// The container image of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// The reference as the user wrote it.
    pub reference: String,
    /// The digest that ran (for a multi-arch tag: the platform manifest digest).
    pub digest: Option<String>,
    /// For a multi-arch tag: the digest of the index the tag points at.
    pub index_digest: Option<String>,
    /// `os/arch[/variant]` of the manifest that ran, when known.
    pub platform: Option<String>,
    /// How `digest` was obtained.
    pub resolved_by: ResolvedBy,
    /// OCI labels from the image config (`org.opencontainers.image.*`, …).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Image {
    /// The repository name without tag or digest (`127.0.0.1:5000/team/app`).
    pub fn repository(&self) -> String {
        repository_of(&self.reference)
    }

    /// `repository@digest`, the form that pins the run, when a digest is known.
    pub fn pinned(&self) -> Option<String> {
        self.digest
            .as_ref()
            .map(|d| format!("{}@{}", self.repository(), d))
    }
}

/// Strips any `@digest` and `:tag` from a reference as written (the domain's `:port` is kept).
pub fn repository_of(reference: &str) -> String {
    let no_digest = reference.split('@').next().unwrap_or(reference);
    let last_slash = no_digest.rfind('/').map(|i| i + 1).unwrap_or(0);
    match no_digest[last_slash..].rfind(':') {
        Some(i) => no_digest[..last_slash + i].to_string(),
        None => no_digest.to_string(),
    }
}

/// The code a run used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Code {
    /// Absolute path of the repository's work tree.
    pub repo_root: String,
    /// URL of the `origin` remote (or the first remote), credentials stripped.
    pub remote: Option<String>,
    /// Full 40-hex commit SHA of HEAD (null in a repository with no commits).
    pub commit: Option<String>,
    /// Branch name; null for a detached HEAD.
    pub branch: Option<String>,
    /// Whether the work tree or index differed from HEAD (untracked files count).
    pub dirty: bool,
    /// Untracked, non-ignored files (relative paths).
    #[serde(default)]
    pub untracked: Vec<String>,
    /// SHA-256 (hex) of `patch`, null when clean.
    pub patch_sha256: Option<String>,
    /// The binary git patch from HEAD to the work tree, untracked files included (raw bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<Bytes>,
}

/// The kind of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    /// `name@version`: a version label the user vouches for.
    Label,
    /// A local path, version = content digest.
    Path,
    /// A DVC-tracked path, version = its recorded DVC hash.
    Dvc,
    /// `name=URI@version`: a remote object with a version.
    Uri,
}

impl DatasetKind {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetKind::Label => "label",
            DatasetKind::Path => "path",
            DatasetKind::Dvc => "dvc",
            DatasetKind::Uri => "uri",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<DatasetKind> {
        Some(match s {
            "label" => DatasetKind::Label,
            "path" => DatasetKind::Path,
            "dvc" => DatasetKind::Dvc,
            "uri" => DatasetKind::Uri,
            _ => return None,
        })
    }
}

/// One dataset of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dataset {
    /// Name (given, or the path's last component).
    pub name: String,
    /// Kind of dataset.
    pub kind: DatasetKind,
    /// URI for `uri`; the path as given for `path`/`dvc` (relative to the repository root when inside it).
    pub uri: Option<String>,
    /// Version label, DVC hash, or the content digest for a path.
    pub version: Option<String>,
    /// Content digest (`sha256:…`) for a path dataset.
    pub digest: Option<String>,
    /// Number of files hashed, for a path dataset.
    pub files: Option<u64>,
    /// Total bytes hashed, for a path dataset.
    pub bytes: Option<u64>,
}

/// One output file hashed after the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// Path as given (relative to the working directory) .
    pub path: String,
    /// Content digest: SHA-256 hex for a file, the dataset digest for a directory; null when missing.
    pub sha256: Option<String>,
    /// Size in bytes; null when missing.
    pub bytes: Option<u64>,
    /// Whether a copy is in the object store (`repro get` gives it back); null for runs
    /// recorded before outputs were kept.
    #[serde(default)]
    pub kept: Option<bool>,
    /// Why no copy is kept (`keep_outputs = false`, over `keep_outputs_max`, disk full, removed
    /// by `repro gc --outputs`, …); null when kept.
    #[serde(default)]
    pub not_kept: Option<String>,
}

impl Output {
    /// An output as hashed, with nothing said about keeping it.
    pub fn hashed(path: String, sha256: Option<String>, bytes: Option<u64>) -> Output {
        Output {
            path,
            sha256,
            bytes,
            kept: None,
            not_kept: None,
        }
    }
}

/// One file of a run's output: the output itself when it is a file (`rel` empty), else one file
/// inside the output directory. These rows index `repro which` and the object store's references.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Position of the output in the run's `outputs`.
    pub pos: u32,
    /// Path inside the output directory (manifest bytes, `/`-separated); empty for a file output.
    pub rel: Vec<u8>,
    /// SHA-256 of the contents, 64 lowercase hex.
    pub sha256: String,
    pub bytes: u64,
}

/// A complete run record, in the `--json` shape of DESIGN.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub schema_version: u32,
    /// ULID, lowercase.
    pub id: String,
    pub name: Option<String>,
    pub status: Status,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// RFC 3339 UTC.
    pub started_at: String,
    pub ended_at: Option<String>,
    pub duration_ms: Option<i64>,
    /// argv exactly as given.
    pub command: Vec<Arg>,
    /// Working directory relative to the repository root (absolute when there is no repository).
    pub cwd: String,
    pub exec: Exec,
    pub image: Option<Image>,
    pub code: Option<Code>,
    pub datasets: Vec<Dataset>,
    pub outputs: Vec<Output>,
    pub params: BTreeMap<String, String>,
    /// The keys of `params` read from the command's arguments (`params_from_argv`,
    /// docs/params.md) rather than given with `--param`; sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params_from_argv: Vec<String>,
    /// The keys of `params` the job logged itself while it ran (`repro.log_params`, the
    /// `REPRO_PARAMS` channel, docs/python.md); sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params_from_job: Vec<String>,
    pub tags: Vec<String>,
    pub notes: Vec<String>,
    /// Only the variables named with `--env` (secret-looking ones redacted).
    pub env: BTreeMap<String, String>,
    pub host: String,
    pub user: String,
    /// `os/arch` of the host.
    pub platform: String,
    /// pid of the wrapper process (used to tell `running` from `lost`).
    pub pid: Option<i64>,
    /// Linux boot id of the host at run time.
    pub boot_id: Option<String>,
    /// Start time of the wrapper process (clock ticks since boot), so a reused pid is not mistaken for it.
    #[serde(default)]
    pub pid_start: Option<i64>,
    /// Inode of the wrapper's pid namespace (`/proc/self/ns/pid`): a wrapper in another
    /// namespace (a container sharing the database) cannot be seen, so it is not taken for lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<u64>,
    pub rerun_of: Option<String>,
    /// The Slurm job or Kubernetes pod the run ran in (`null` outside a scheduler); in `--json`
    /// `{"kind": "slurm", "job_id": …, …}` (see `record::scheduler`).
    #[serde(default, with = "crate::record::scheduler::json")]
    pub scheduler: Option<scheduler::SchedulerContext>,
}

/// What the process starting a run knows of itself: the start time, the host and the wrapper
/// process (so a killed wrapper can later be told `lost`), and the scheduler job it runs in.
/// `capture::host::start_facts` reads them from the world.
#[derive(Debug, Clone)]
pub struct StartFacts {
    pub started: chrono::DateTime<chrono::Utc>,
    pub host: String,
    pub user: String,
    pub platform: String,
    pub pid: i64,
    pub boot_id: Option<String>,
    pub pid_start: Option<i64>,
    pub pid_ns: Option<u64>,
    /// Inside a Slurm job or a Kubernetes pod: which one.
    pub scheduler: Option<scheduler::SchedulerContext>,
}

/// A time as stored: RFC 3339, UTC, milliseconds, `Z`.
pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Run {
    /// A `running` record started now by this process (id, start time, host and wrapper facts),
    /// with no image, code, data or annotations yet: the start of `repro run` and `repro rerun`.
    pub fn start(command: Vec<Arg>, cwd: String, exec: Exec, at: StartFacts) -> Run {
        let started = at.started;
        Run {
            schema_version: SCHEMA_VERSION,
            id: ulid::Ulid::from_datetime(started.into())
                .to_string()
                .to_ascii_lowercase(),
            name: None,
            status: Status::Running,
            exit_code: None,
            signal: None,
            started_at: rfc3339(started),
            ended_at: None,
            duration_ms: None,
            command,
            cwd,
            exec,
            image: None,
            code: None,
            datasets: Vec::new(),
            outputs: Vec::new(),
            params: BTreeMap::new(),
            params_from_argv: Vec::new(),
            params_from_job: Vec::new(),
            tags: Vec::new(),
            notes: Vec::new(),
            env: BTreeMap::new(),
            host: at.host,
            user: at.user,
            platform: at.platform,
            pid: Some(at.pid),
            boot_id: at.boot_id,
            pid_start: at.pid_start,
            pid_ns: at.pid_ns,
            rerun_of: None,
            scheduler: at.scheduler,
        }
    }

    /// First 12 characters of the id, as shown in tables.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }

    /// A one-line summary of how strongly the run is pinned.
    pub fn pin_grade(&self) -> String {
        let image = match &self.image {
            None => "image: none".to_string(),
            Some(i) => match i.resolved_by {
                ResolvedBy::Pinned => "image: pinned".into(),
                ResolvedBy::Registry => "image: resolved (registry)".into(),
                ResolvedBy::Engine => "image: resolved (engine)".into(),
                ResolvedBy::Unpinned => "image: UNPINNED".into(),
            },
        };
        let code = match &self.code {
            None => "code: none".to_string(),
            Some(c) if c.commit.is_none() => "code: no commit".into(),
            Some(c) if c.dirty => "code: dirty (patch recorded)".into(),
            Some(_) => "code: clean".into(),
        };
        let data = if self.datasets.is_empty() {
            "data: none".to_string()
        } else if self
            .datasets
            .iter()
            .all(|d| d.kind == DatasetKind::Path || d.kind == DatasetKind::Dvc)
        {
            "data: content-addressed".into()
        } else if self
            .datasets
            .iter()
            .any(|d| d.kind == DatasetKind::Path || d.kind == DatasetKind::Dvc)
        {
            "data: partly content-addressed".into()
        } else {
            "data: labelled".into()
        };
        format!("{image}, {code}, {data}")
    }

    /// The argv as `OsString`s, ready to spawn.
    pub fn argv_os(&self) -> Vec<OsString> {
        self.command
            .iter()
            .map(|a| OsString::from_vec(a.0.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_args_round_trip_through_json() {
        let args = vec![
            Arg(b"plain".to_vec()),
            Arg(vec![0x61, 0xff, 0x62]),
            Arg(vec![]),
        ];
        let json = serde_json::to_string(&args).unwrap();
        assert_eq!(json, r#"["plain",{"base64":"Yf9i"},""]"#);
        let back: Vec<Arg> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, args);
    }

    #[test]
    fn repository_strips_tag_and_digest_but_not_port() {
        assert_eq!(
            repository_of("127.0.0.1:5000/team/app:1.0"),
            "127.0.0.1:5000/team/app"
        );
        assert_eq!(
            repository_of("localhost:5000/app@sha256:abc"),
            "localhost:5000/app"
        );
        assert_eq!(repository_of("ubuntu"), "ubuntu");
        assert_eq!(repository_of("a/b:t@sha256:00"), "a/b");
    }
}
