//! Configuration with one precedence — built-in defaults < user file < repository `.repro.toml`
//! < `REPRO_*` environment variables < flags — where every value remembers where it came from.
//!
//! Scalars: the highest layer that sets a value wins. Lists add up, lowest layer first, so a
//! team's mounts in `.repro.toml` and a user's `--mount` both apply (duplicates dropped).
//! A repository file is untrusted input (it arrives with `git clone`): it may not set `db`, and
//! every setting it makes is listed by `repro config show` and announced by `repro run`.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Hinted;

/// Name of the repository (team) configuration file, read from the repository root.
pub const REPO_FILE: &str = ".repro.toml";

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Built into repro.
    Default,
    /// The user file (`$XDG_CONFIG_HOME/repro/config.toml`).
    User(PathBuf),
    /// The repository's `.repro.toml`.
    Repo(PathBuf),
    /// A `REPRO_*` environment variable.
    Env(String),
    /// A command-line flag.
    Flag(String),
}

impl Source {
    /// `default`, `user`, `repo`, `env` or `flag`.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::User(_) => "user",
            Source::Repo(_) => "repo",
            Source::Env(_) => "env",
            Source::Flag(_) => "flag",
        }
    }

    /// The file path, variable name or flag; `null` for a default.
    pub fn detail(&self) -> Option<String> {
        match self {
            Source::Default => None,
            Source::User(p) | Source::Repo(p) => Some(p.display().to_string()),
            Source::Env(v) | Source::Flag(v) => Some(v.clone()),
        }
    }

    /// Whether the value came from an untrusted repository file.
    pub fn is_repo(&self) -> bool {
        matches!(self, Source::Repo(_))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => write!(f, "default"),
            Source::User(p) => write!(f, "user file {}", p.display()),
            Source::Repo(p) => write!(f, "repo file {}", p.display()),
            Source::Env(v) => write!(f, "env {v}"),
            Source::Flag(v) => write!(f, "flag {v}"),
        }
    }
}

impl Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("kind", self.kind())?;
        m.serialize_entry("detail", &self.detail())?;
        m.end()
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Setting<T> {
    fn default(value: T) -> Self {
        Setting {
            value,
            source: Source::Default,
        }
    }

    /// Replaces the value (a higher layer set it).
    pub fn set(&mut self, value: T, source: Source) {
        self.value = value;
        self.source = source;
    }
}

/// One element of a list setting and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    pub value: String,
    pub source: Source,
}

/// A list setting: the union of all layers, lowest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct List(pub Vec<Item>);

impl List {
    /// Adds values from one layer, keeping repeats: for argv fragments such as `engine_args`
    /// (`["--cap-add", "A", "--cap-add", "B"]`), where dropping a repeat changes the meaning.
    pub fn extend_all(&mut self, values: impl IntoIterator<Item = String>, source: &Source) {
        self.0.extend(values.into_iter().map(|value| Item {
            value,
            source: source.clone(),
        }));
    }

    /// Adds values from one layer, skipping ones already present.
    pub fn extend(&mut self, values: impl IntoIterator<Item = String>, source: &Source) {
        for v in values {
            if !self.0.iter().any(|i| i.value == v) {
                self.0.push(Item {
                    value: v,
                    source: source.clone(),
                });
            }
        }
    }

    /// The values alone.
    pub fn values(&self) -> Vec<String> {
        self.0.iter().map(|i| i.value.clone()).collect()
    }

    /// Values that came from a repository file.
    pub fn from_repo(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter(|i| i.source.is_repo())
            .map(|i| i.value.as_str())
            .collect()
    }
}

pub use crate::capture::image::ResolveMode;

/// When to use colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    Auto,
    Always,
    Never,
}

pub use crate::exec::Engine;

/// The keys a configuration file may hold (see docs/config.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLayer {
    db: Option<PathBuf>,
    engine: Option<Engine>,
    engine_args: Option<Vec<String>>,
    workdir: Option<String>,
    mounts: Option<Vec<String>>,
    insecure_registries: Option<Vec<String>>,
    resolve: Option<ResolveMode>,
    registry_timeout: Option<u64>,
    allow_latest: Option<bool>,
    allow_unpinned: Option<bool>,
    require_clean: Option<bool>,
    env: Option<Vec<String>>,
    mlflow_push: Option<bool>,
    mlflow_tracking_uri: Option<String>,
    mlflow_experiment: Option<String>,
    mlflow_dataset_context: Option<String>,
    color: Option<Color>,
    metrics: Option<Vec<String>>,
    record_env: Option<Vec<String>>,
    keep_outputs: Option<bool>,
    keep_outputs_max: Option<SizeValue>,
    params_from_argv: Option<bool>,
    mlflow_outputs: Option<bool>,
    mlflow_outputs_max: Option<SizeValue>,
    sys_metrics_interval: Option<String>,
}

/// A size in a file: bytes as a number, or text such as `"10GiB"`, `"500MB"`, `"unlimited"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

/// A configuration file that was looked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileStatus {
    /// `user` or `repo`.
    pub kind: &'static str,
    pub path: PathBuf,
    /// Whether it exists (and so was read).
    pub found: bool,
}

/// The effective configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub db: Setting<PathBuf>,
    pub engine: Setting<Option<Engine>>,
    pub engine_args: List,
    pub workdir: Setting<String>,
    pub mounts: List,
    pub insecure_registries: List,
    pub resolve: Setting<ResolveMode>,
    /// Deadline in seconds for resolving one image against a registry (`None`: 60 s).
    pub registry_timeout: Setting<Option<u64>>,
    pub allow_latest: Setting<bool>,
    pub allow_unpinned: Setting<bool>,
    pub require_clean: Setting<bool>,
    pub env: List,
    pub color: Setting<Color>,
    /// Metrics files or DVCLive directories read after every run (`--metrics`).
    pub metrics: List,
    /// The variables a run's environment snapshot records (docs/environment.md); the highest
    /// layer that sets it wins, `[]` records none.
    pub record_env: Setting<Vec<String>>,
    /// Push each run to MLflow when it finishes (`repro run --mlflow`).
    pub mlflow_push: Setting<bool>,
    /// MLflow tracking server (user file only; `MLFLOW_TRACKING_URI` wins).
    pub mlflow_tracking_uri: Setting<Option<String>>,
    /// MLflow experiment name (`MLFLOW_EXPERIMENT_NAME` wins).
    pub mlflow_experiment: Setting<Option<String>>,
    /// The datasets' `mlflow.data.context` in MLflow (`--dataset-context`; default `training`).
    pub mlflow_dataset_context: Setting<Option<String>>,
    /// Copy every `--output` into the object store when a run ends (`--no-keep-outputs`).
    pub keep_outputs: Setting<bool>,
    /// Most bytes of outputs kept for one run (`None`: no limit).
    pub keep_outputs_max: Setting<Option<u64>>,
    /// Record `--key value`, `--key=value` and `key=value` arguments of the command as params
    /// (`--no-params-from-argv`; docs/params.md).
    pub params_from_argv: Setting<bool>,
    /// Upload kept outputs as MLflow artifacts (`outputs/…`) on `repro mlflow push`
    /// (`--no-outputs`).
    pub mlflow_outputs: Setting<bool>,
    /// Most bytes of kept outputs uploaded to MLflow for one run (`None`: no limit).
    pub mlflow_outputs_max: Setting<Option<u64>>,
    /// How often system metrics (`sys/…`) are sampled while a job runs (zero: never).
    pub sys_metrics_interval: Setting<std::time::Duration>,
    /// The files looked for, in precedence order.
    pub files: Vec<FileStatus>,
}

/// Default `keep_outputs_max`: 10 GiB of outputs kept per run.
pub const DEFAULT_KEEP_OUTPUTS_MAX: u64 = 10 << 30;

/// Default `mlflow_outputs_max`: 1 GiB of kept outputs uploaded to MLflow per run.
pub const DEFAULT_MLFLOW_OUTPUTS_MAX: u64 = 1 << 30;

/// Parses a size: `123` (bytes), `10GiB`, `1.5 GB`, `500M`, `64KiB`; `unlimited` or `none` is
/// no limit (`Ok(None)`).
pub fn parse_size(text: &str) -> Result<Option<u64>, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        format!(
            "'{}' is not a size (e.g. 10GiB, 500MB, 1048576, unlimited)",
            text.escape_debug()
        )
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let v = n * mult as f64;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(Some(v as u64))
}

/// Default mount point of the repository inside the container.
pub const DEFAULT_WORKDIR: &str = "/workspace";

impl Default for Config {
    fn default() -> Self {
        Config {
            db: Setting::default(default_db_path(&|k| std::env::var_os(k))),
            engine: Setting::default(None),
            engine_args: List::default(),
            workdir: Setting::default(DEFAULT_WORKDIR.to_string()),
            mounts: List::default(),
            insecure_registries: List::default(),
            resolve: Setting::default(ResolveMode::Auto),
            registry_timeout: Setting::default(None),
            allow_latest: Setting::default(false),
            allow_unpinned: Setting::default(false),
            require_clean: Setting::default(false),
            env: List::default(),
            color: Setting::default(Color::Auto),
            metrics: List::default(),
            record_env: Setting::default(
                crate::capture::system::DEFAULT_VARS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
            mlflow_push: Setting::default(false),
            mlflow_tracking_uri: Setting::default(None),
            mlflow_experiment: Setting::default(None),
            mlflow_dataset_context: Setting::default(None),
            keep_outputs: Setting::default(true),
            keep_outputs_max: Setting::default(Some(DEFAULT_KEEP_OUTPUTS_MAX)),
            params_from_argv: Setting::default(true),
            mlflow_outputs: Setting::default(true),
            mlflow_outputs_max: Setting::default(Some(DEFAULT_MLFLOW_OUTPUTS_MAX)),
            sys_metrics_interval: Setting::default(DEFAULT_SYS_METRICS_INTERVAL),
            files: Vec::new(),
        }
    }
}

/// A configuration file or variable that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{}: {message}", line_text(*.line))]
    Invalid {
        path: PathBuf,
        /// The key at fault, when known.
        key: Option<String>,
        /// 1-based line, when known.
        line: Option<usize>,
        message: String,
    },
    #[error("{path}:{}: `db` cannot be set in a repository's {REPO_FILE}", line_text(*.line))]
    RepoDb { path: PathBuf, line: Option<usize> },
    #[error("the environment variable {var}={value:?} is not valid: {message}")]
    Env {
        var: String,
        value: String,
        message: String,
    },
}

fn line_text(line: Option<usize>) -> String {
    match line {
        Some(l) => format!("line {l}"),
        None => "?".into(),
    }
}

impl Hinted for ConfigError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            ConfigError::Read { .. } => "make the file readable, or remove it".into(),
            ConfigError::Invalid { key: Some(k), .. } if !KEYS.contains(&k.as_str()) => {
                format!("remove or rename `{k}` (docs/config.md lists every key)")
            }
            ConfigError::Invalid { .. } => "see docs/config.md for each key and its type".into(),
            ConfigError::RepoDb { .. } => "a checked-out repository must not choose where your runs are stored; set `db` in ~/.config/repro/config.toml or REPRO_DB instead".into(),
            ConfigError::Env { var, .. } => format!("fix or unset {var} (see docs/config.md)"),
        })
    }
}

/// Every key a file may set, for messages and docs.
pub const KEYS: &[&str] = &[
    "db",
    "engine",
    "engine_args",
    "workdir",
    "mounts",
    "insecure_registries",
    "resolve",
    "registry_timeout",
    "allow_latest",
    "allow_unpinned",
    "require_clean",
    "env",
    "color",
    "metrics",
    "record_env",
    "mlflow_push",
    "mlflow_tracking_uri",
    "mlflow_experiment",
    "mlflow_dataset_context",
    "keep_outputs",
    "keep_outputs_max",
    "params_from_argv",
    "mlflow_outputs",
    "mlflow_outputs_max",
    "sys_metrics_interval",
];

/// The built-in database path: `$XDG_DATA_HOME/repro/repro.db`, else `~/.local/share/repro/repro.db`
/// (`store::default_db_path` adds `REPRO_DB` in front; here that is the environment layer).
pub fn default_db_path(env: &dyn Fn(&str) -> Option<OsString>) -> PathBuf {
    let data = env("XDG_DATA_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| {
            env("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."))
                .join(".local/share")
        });
    data.join("repro").join("repro.db")
}

/// The user configuration file: `$XDG_CONFIG_HOME/repro/config.toml`, else `~/.config/repro/config.toml`.
pub fn user_config_path(env: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let base = env("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            env("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(base.join("repro").join("config.toml"))
}

/// `.repro.toml` at the root of the git repository containing `cwd`, if there is one.
pub fn repo_config_path(cwd: &Path) -> Option<PathBuf> {
    let repo = git2::Repository::discover(cwd).ok()?;
    Some(repo.workdir()?.join(REPO_FILE))
}

/// Loads the configuration for a process in `cwd` with the process environment.
pub fn load(cwd: &Path) -> Result<Config, ConfigError> {
    let env = |k: &str| std::env::var_os(k);
    load_from(
        user_config_path(&env).as_deref(),
        repo_config_path(cwd).as_deref(),
        &env,
    )
}

/// Defaults and the environment only (when a file is broken and `doctor` still has to run).
pub fn load_env_only() -> Config {
    load_from(None, None, &|k| std::env::var_os(k)).unwrap_or_default()
}

/// Loads the layers from the given files (missing files are skipped) and environment.
pub fn load_from(
    user_file: Option<&Path>,
    repo_file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Config, ConfigError> {
    let mut cfg = Config {
        db: Setting::default(default_db_path(env)),
        ..Config::default()
    };
    for (kind, path) in [("user", user_file), ("repo", repo_file)] {
        let Some(path) = path else { continue };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                cfg.files.push(FileStatus {
                    kind,
                    path: path.into(),
                    found: false,
                });
                continue;
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.into(),
                    source,
                })
            }
        };
        cfg.files.push(FileStatus {
            kind,
            path: path.into(),
            found: true,
        });
        let source = if kind == "user" {
            Source::User(path.into())
        } else {
            Source::Repo(path.into())
        };
        let layer = parse_file(path, &text, kind == "repo", env)?;
        cfg.apply(layer, &source);
    }
    cfg.apply_env(env)?;
    Ok(cfg)
}

fn parse_file(
    path: &Path,
    text: &str,
    untrusted: bool,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<FileLayer, ConfigError> {
    let mut layer: FileLayer = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_at(text, s.start));
        let key = line
            .and_then(|l| key_on_line(text, l))
            .or_else(|| backticked(e.message()));
        let msg = e.message().trim();
        let message = match &key {
            Some(k) if !msg.contains(&format!("`{k}`")) => format!("`{k}`: {msg}"),
            _ => msg.to_string(),
        };
        ConfigError::Invalid {
            path: path.into(),
            key,
            line,
            message,
        }
    })?;
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        path: path.into(),
        key: Some(key.into()),
        line: line_of_key(text, key),
        message: format!("`{key}`: {message}"),
    };
    if untrusted && layer.mlflow_tracking_uri.is_some() {
        // A cloned repository must not choose where runs (and MLFLOW_TRACKING_* credentials) go.
        return Err(invalid(
            "mlflow_tracking_uri",
            "cannot be set in a repository's .repro.toml (it would send your runs and MLflow credentials to a server the repository chooses); set it in ~/.config/repro/config.toml or MLFLOW_TRACKING_URI".into(),
        ));
    }
    if let Some(db) = layer.db.take() {
        if untrusted {
            return Err(ConfigError::RepoDb {
                path: path.into(),
                line: line_of_key(text, "db"),
            });
        }
        let db = expand_home(&db, env);
        if !db.is_absolute() {
            return Err(invalid(
                "db",
                format!(
                    "'{}' is not an absolute path (write /abs/path or ~/path)",
                    db.display()
                ),
            ));
        }
        layer.db = Some(db);
    }
    if let Some(w) = &layer.workdir {
        check_workdir(w).map_err(|m| invalid("workdir", m))?;
    }
    if let Some(t) = layer.registry_timeout {
        check_registry_timeout(t).map_err(|m| invalid("registry_timeout", m))?;
    }
    if let Some(t) = &layer.sys_metrics_interval {
        parse_interval(t).map_err(|m| invalid("sys_metrics_interval", m))?;
    }
    if let Some(SizeValue::Text(t)) = &layer.keep_outputs_max {
        parse_size(t).map_err(|m| invalid("keep_outputs_max", m))?;
    }
    if let Some(SizeValue::Text(t)) = &layer.mlflow_outputs_max {
        parse_size(t).map_err(|m| invalid("mlflow_outputs_max", m))?;
    }
    for m in layer.mounts.iter().flatten() {
        check_mount(m).map_err(|msg| invalid("mounts", msg))?;
    }
    for v in layer.env.iter().flatten() {
        check_env_name(v).map_err(|msg| invalid("env", msg))?;
    }
    Ok(layer)
}

/// `~/x` → `$HOME/x`.
fn expand_home(p: &Path, env: &dyn Fn(&str) -> Option<OsString>) -> PathBuf {
    match (p.strip_prefix("~"), env("HOME")) {
        (Ok(rest), Some(home)) if !home.is_empty() => PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}

/// A container workdir: an absolute path without `:` (it becomes `--volume=SRC:WORKDIR`, where
/// a `:` would add volume options such as `:U`, which chowns the host repository) and without
/// control characters (a newline would break the re-run script's lines).
pub fn check_workdir(w: &str) -> Result<(), String> {
    let shown = w.escape_debug();
    if !w.starts_with('/') {
        Err(format!(
            "'{shown}' is not an absolute path inside the container (e.g. /workspace)"
        ))
    } else if w.contains(':') {
        Err(format!(
            "'{shown}' contains ':', which the engine would read as volume options (e.g. :U chowns the host repository)"
        ))
    } else if w.chars().any(char::is_control) {
        Err(format!("'{shown}' contains a control character"))
    } else {
        crate::record::paths::check_workdir(w)
    }
}

/// Seconds allowed for resolving one image against a registry: 1 to 3600.
pub fn check_registry_timeout(secs: u64) -> Result<(), String> {
    if (1..=3600).contains(&secs) {
        Ok(())
    } else {
        Err(format!(
            "{secs} is not a number of seconds between 1 and 3600"
        ))
    }
}

/// Default `sys_metrics_interval`: a sample every 10 s, as MLflow's system metrics.
pub const DEFAULT_SYS_METRICS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// The shortest sampling interval but zero (off): shorter ones cost more than they tell.
pub const MIN_SYS_METRICS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Parses a sampling interval: a number and a unit (`500ms`, `10s`, `1.5m`, `1h`); `0` (any
/// unit) turns sampling off. Between 100 ms and 24 h otherwise.
pub fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = |why: &str| {
        format!(
            "'{}' is not a sampling interval ({why}; e.g. 10s, 500ms, 1m, or 0s for off)",
            text.escape_debug()
        )
    };
    let n: f64 = num.parse().map_err(|_| bad("a number and a unit"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "" if n == 0.0 => 0.0,
        "" => return Err(bad("the unit is missing")),
        _ => return Err(bad("units are ms, s, m, h")),
    };
    if secs == 0.0 {
        return Ok(std::time::Duration::ZERO);
    }
    if !(MIN_SYS_METRICS_INTERVAL.as_secs_f64()..=86_400.0).contains(&secs) {
        return Err(bad("between 100ms and 24h, or 0s"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// Engine flags that widen what a container may do to the host: one list for the `.repro.toml`
/// announcement, `repro rerun`'s confirmation and the re-run script's header. Flags named with
/// `=host` are risky only with the value `host`; volume flags only for a risky host path.
pub const RISKY_FLAGS: &[&str] = &[
    "--privileged",
    "--cap-add",
    "--device",
    "--security-opt",
    "--volumes-from",
    "--group-add",
    "--pid=host",
    "--network=host",
    "--net=host",
    "--ipc=host",
    "--uts=host",
    "--userns=host",
    "--cgroupns=host",
];

/// Host paths whose mount hands the container the host (and any `*.sock`, e.g. the docker or
/// podman socket).
pub const RISKY_MOUNT_SOURCES: &[&str] = &[
    "/",
    "/etc",
    "/root",
    "/home",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/run",
    "/var/run",
    "/var/lib/docker",
    "/var/lib/containers",
];

/// Whether mounting host path `src` is risky (see [`RISKY_MOUNT_SOURCES`]).
pub fn risky_mount_source(src: &str) -> bool {
    let trimmed = src.trim_end_matches('/');
    let p = if trimmed.is_empty() { "/" } else { trimmed };
    RISKY_MOUNT_SOURCES.contains(&p) || p.ends_with(".sock") || p.contains("/docker.sock")
}

/// Flags that take a value (`--flag VALUE` as two words), among those the risk check reads.
const VALUE_FLAGS: &[&str] = &[
    "--cap-add",
    "--device",
    "--security-opt",
    "--volumes-from",
    "--group-add",
    "--pid",
    "--network",
    "--net",
    "--ipc",
    "--uts",
    "--userns",
    "--cgroupns",
    "--volume",
    "-v",
    "--mount",
];

/// The risky entries of an engine-flag list (mounts included, as `--volume=SRC:DST`), each as
/// written (`--cap-add SYS_ADMIN`, `--volume=/:/host`), in order.
pub fn risky_engine_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with('-') => (n, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let takes = VALUE_FLAGS.contains(&name);
        let (value, shown) = match (&inline, takes) {
            (Some(v), _) => (Some(v.clone()), a.clone()),
            (None, true) if i + 1 < args.len() => {
                i += 1;
                (Some(args[i].clone()), format!("{a} {}", args[i]))
            }
            _ => (None, a.clone()),
        };
        i += 1;
        let risky = match (name, value.as_deref()) {
            ("--volume" | "-v", Some(v)) => risky_mount_source(v.split(':').next().unwrap_or(v)),
            ("--mount", Some(v)) => v.split(',').any(|kv| {
                kv.split_once('=')
                    .is_some_and(|(k, p)| matches!(k, "source" | "src") && risky_mount_source(p))
            }),
            (n, Some(v)) if RISKY_FLAGS.contains(&format!("{n}={v}").as_str()) => true,
            (n, _) => RISKY_FLAGS.contains(&n),
        };
        if risky {
            out.push(shown);
        }
    }
    out
}

/// A mount must be `SRC:DST[:OPTS]`.
pub fn check_mount(m: &str) -> Result<(), String> {
    if m.contains(':') {
        Ok(())
    } else {
        Err(format!("'{m}' is not SRC:DST[:OPTS] (e.g. /data:/data:ro)"))
    }
}

/// An environment variable name (letters, digits, `_`, not starting with a digit).
pub fn check_env_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!("'{name}' is not a variable name"))
    }
}

/// 1-based line of byte offset `pos`.
fn line_at(text: &str, pos: usize) -> usize {
    text[..pos.min(text.len())].matches('\n').count() + 1
}

/// The key written on `line` (`key = …`), if the line is an assignment.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let (k, _) = l.split_once('=')?;
    let k = k.trim().trim_matches('"');
    (!k.is_empty() && !k.starts_with('[') && !k.starts_with('#')).then(|| k.to_string())
}

/// The first line assigning `key`.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.split_once('=')
                .is_some_and(|(k, _)| k.trim().trim_matches('"') == key)
        })
        .map(|i| i + 1)
}

/// The first `quoted` word of a message (serde names the unknown field like that).
fn backticked(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(msg[start..start + len].to_string())
}

/// Variables of the environment layer (lists are comma-separated).
pub const ENV_VARS: &[(&str, &str)] = &[
    ("REPRO_DB", "db"),
    ("REPRO_ENGINE", "engine"),
    ("REPRO_WORKDIR", "workdir"),
    ("REPRO_RESOLVE", "resolve"),
    ("REPRO_REGISTRY_TIMEOUT", "registry_timeout"),
    ("REPRO_ALLOW_LATEST", "allow_latest"),
    ("REPRO_ALLOW_UNPINNED", "allow_unpinned"),
    ("REPRO_REQUIRE_CLEAN", "require_clean"),
    ("REPRO_INSECURE_REGISTRIES", "insecure_registries"),
    ("REPRO_ENV", "env"),
    ("REPRO_COLOR", "color"),
    ("REPRO_KEEP_OUTPUTS", "keep_outputs"),
    ("REPRO_KEEP_OUTPUTS_MAX", "keep_outputs_max"),
    ("REPRO_PARAMS_FROM_ARGV", "params_from_argv"),
    ("REPRO_MLFLOW_OUTPUTS", "mlflow_outputs"),
    ("REPRO_MLFLOW_OUTPUTS_MAX", "mlflow_outputs_max"),
    ("REPRO_SYS_METRICS_INTERVAL", "sys_metrics_interval"),
];

impl Config {
    fn apply(&mut self, l: FileLayer, src: &Source) {
        if let Some(v) = l.db {
            self.db.set(v, src.clone());
        }
        if let Some(v) = l.engine {
            self.engine.set(Some(v), src.clone());
        }
        if let Some(v) = l.workdir {
            self.workdir.set(v, src.clone());
        }
        if let Some(v) = l.resolve {
            self.resolve.set(v, src.clone());
        }
        if let Some(v) = l.registry_timeout {
            self.registry_timeout.set(Some(v), src.clone());
        }
        if let Some(v) = l.allow_latest {
            self.allow_latest.set(v, src.clone());
        }
        if let Some(v) = l.keep_outputs {
            self.keep_outputs.set(v, src.clone());
        }
        if let Some(v) = l.params_from_argv {
            self.params_from_argv.set(v, src.clone());
        }
        if let Some(v) = l.keep_outputs_max {
            let size = match v {
                SizeValue::Bytes(b) => Some(b),
                // Checked when the file was read.
                SizeValue::Text(t) => parse_size(&t).unwrap_or(Some(DEFAULT_KEEP_OUTPUTS_MAX)),
            };
            self.keep_outputs_max.set(size, src.clone());
        }
        if let Some(v) = l.mlflow_outputs {
            self.mlflow_outputs.set(v, src.clone());
        }
        if let Some(v) = l.sys_metrics_interval {
            // Checked when the file was read.
            let d = parse_interval(&v).unwrap_or(DEFAULT_SYS_METRICS_INTERVAL);
            self.sys_metrics_interval.set(d, src.clone());
        }
        if let Some(v) = l.mlflow_outputs_max {
            let size = match v {
                SizeValue::Bytes(b) => Some(b),
                // Checked when the file was read.
                SizeValue::Text(t) => parse_size(&t).unwrap_or(Some(DEFAULT_MLFLOW_OUTPUTS_MAX)),
            };
            self.mlflow_outputs_max.set(size, src.clone());
        }
        if let Some(v) = l.allow_unpinned {
            self.allow_unpinned.set(v, src.clone());
        }
        if let Some(v) = l.require_clean {
            self.require_clean.set(v, src.clone());
        }
        if let Some(v) = l.color {
            self.color.set(v, src.clone());
        }
        if let Some(v) = l.mlflow_push {
            self.mlflow_push.set(v, src.clone());
        }
        if let Some(v) = l.mlflow_tracking_uri {
            self.mlflow_tracking_uri.set(Some(v), src.clone());
        }
        if let Some(v) = l.record_env {
            self.record_env.set(v, src.clone());
        }
        if let Some(v) = l.mlflow_experiment {
            self.mlflow_experiment.set(Some(v), src.clone());
        }
        if let Some(v) = l.mlflow_dataset_context {
            self.mlflow_dataset_context.set(Some(v), src.clone());
        }
        self.engine_args
            .extend_all(l.engine_args.unwrap_or_default(), src);
        self.mounts.extend(l.mounts.unwrap_or_default(), src);
        self.insecure_registries
            .extend(l.insecure_registries.unwrap_or_default(), src);
        self.env.extend(l.env.unwrap_or_default(), src);
        self.metrics.extend(l.metrics.unwrap_or_default(), src);
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<OsString>) -> Result<(), ConfigError> {
        let get = |var: &str| -> Result<Option<String>, ConfigError> {
            match env(var).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => v.into_string().map(Some).map_err(|v| ConfigError::Env {
                    var: var.into(),
                    value: v.to_string_lossy().into_owned(),
                    message: "not UTF-8".into(),
                }),
            }
        };
        let bad = |var: &str, value: &str, message: &str| ConfigError::Env {
            var: var.into(),
            value: value.into(),
            message: message.into(),
        };
        let src = |var: &str| Source::Env(var.into());
        if let Some(v) = get("REPRO_DB")? {
            self.db.set(PathBuf::from(v), src("REPRO_DB"));
        }
        if let Some(v) = get("REPRO_ENGINE")? {
            let Some(e) = Engine::parse(&v) else {
                return Err(bad("REPRO_ENGINE", &v, "use docker or podman"));
            };
            self.engine.set(Some(e), src("REPRO_ENGINE"));
        }
        if let Some(v) = get("REPRO_WORKDIR")? {
            check_workdir(&v).map_err(|m| bad("REPRO_WORKDIR", &v, &m))?;
            self.workdir.set(v, src("REPRO_WORKDIR"));
        }
        if let Some(v) = get("REPRO_RESOLVE")? {
            let r = ResolveMode::parse(&v)
                .ok_or_else(|| bad("REPRO_RESOLVE", &v, "use registry, engine or auto"))?;
            self.resolve.set(r, src("REPRO_RESOLVE"));
        }
        if let Some(v) = get("REPRO_REGISTRY_TIMEOUT")? {
            let t = v.trim().parse::<u64>().map_err(|_| {
                bad(
                    "REPRO_REGISTRY_TIMEOUT",
                    &v,
                    "use a number of seconds between 1 and 3600",
                )
            })?;
            check_registry_timeout(t).map_err(|m| bad("REPRO_REGISTRY_TIMEOUT", &v, &m))?;
            self.registry_timeout
                .set(Some(t), src("REPRO_REGISTRY_TIMEOUT"));
        }
        if let Some(v) = get("REPRO_KEEP_OUTPUTS_MAX")? {
            let size = parse_size(&v).map_err(|m| bad("REPRO_KEEP_OUTPUTS_MAX", &v, &m))?;
            self.keep_outputs_max
                .set(size, src("REPRO_KEEP_OUTPUTS_MAX"));
        }
        if let Some(v) = get("REPRO_MLFLOW_OUTPUTS_MAX")? {
            let size = parse_size(&v).map_err(|m| bad("REPRO_MLFLOW_OUTPUTS_MAX", &v, &m))?;
            self.mlflow_outputs_max
                .set(size, src("REPRO_MLFLOW_OUTPUTS_MAX"));
        }
        if let Some(v) = get("REPRO_SYS_METRICS_INTERVAL")? {
            let d = parse_interval(&v).map_err(|m| bad("REPRO_SYS_METRICS_INTERVAL", &v, &m))?;
            self.sys_metrics_interval
                .set(d, src("REPRO_SYS_METRICS_INTERVAL"));
        }
        if let Some(v) = get("REPRO_COLOR")? {
            let c = match v.as_str() {
                "auto" => Color::Auto,
                "always" => Color::Always,
                "never" => Color::Never,
                _ => return Err(bad("REPRO_COLOR", &v, "use auto, always or never")),
            };
            self.color.set(c, src("REPRO_COLOR"));
        }
        for (var, setting) in [
            ("REPRO_ALLOW_LATEST", &mut self.allow_latest),
            ("REPRO_ALLOW_UNPINNED", &mut self.allow_unpinned),
            ("REPRO_REQUIRE_CLEAN", &mut self.require_clean),
            ("REPRO_KEEP_OUTPUTS", &mut self.keep_outputs),
            ("REPRO_PARAMS_FROM_ARGV", &mut self.params_from_argv),
            ("REPRO_MLFLOW_OUTPUTS", &mut self.mlflow_outputs),
        ] {
            if let Some(v) = get(var)? {
                let b =
                    parse_bool(&v).ok_or_else(|| bad(var, &v, "use 1/0, true/false, yes/no"))?;
                setting.set(b, src(var));
            }
        }
        for (var, list) in [
            ("REPRO_INSECURE_REGISTRIES", &mut self.insecure_registries),
            ("REPRO_ENV", &mut self.env),
        ] {
            if let Some(v) = get(var)? {
                let items: Vec<String> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                if var == "REPRO_ENV" {
                    for i in &items {
                        check_env_name(i).map_err(|m| bad(var, &v, &m))?;
                    }
                }
                list.extend(items, &src(var));
            }
        }
        Ok(())
    }

    /// Settings a repository file made that widen what a run may do, as `key = value` lines,
    /// so `repro run` can say so before it runs anything.
    pub fn repo_overrides(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (key, list) in [
            ("engine_args", &self.engine_args),
            ("mounts", &self.mounts),
            ("insecure_registries", &self.insecure_registries),
            ("env", &self.env),
            // Files every run in the repository reads (a committed symlink could point anywhere).
            ("metrics", &self.metrics),
        ] {
            let vals = list.from_repo();
            if !vals.is_empty() {
                out.push(format!("{key} = {vals:?}"));
            }
        }
        let mut from_repo: Vec<String> = self
            .mounts
            .from_repo()
            .iter()
            .map(|m| format!("--volume={m}"))
            .collect();
        from_repo.extend(self.engine_args.from_repo().iter().map(|a| a.to_string()));
        let risky = risky_engine_args(&from_repo);
        if !risky.is_empty() {
            out.push(format!("RISKY for the host: {}", risky.join(" ")));
        }
        for (key, s) in [
            ("allow_latest", &self.allow_latest),
            ("allow_unpinned", &self.allow_unpinned),
        ] {
            if s.source.is_repo() && s.value {
                out.push(format!("{key} = true"));
            }
        }
        if self.mlflow_push.source.is_repo() && self.mlflow_push.value {
            out.push("mlflow_push = true".into());
        }
        // Where the team's runs are sent.
        if self.mlflow_experiment.source.is_repo() {
            if let Some(e) = &self.mlflow_experiment.value {
                out.push(format!("mlflow_experiment = {e:?}"));
            }
        }
        if self.engine.source.is_repo() {
            if let Some(e) = self.engine.value {
                out.push(format!("engine = {:?}", e.as_str()));
            }
        }
        // Pinning through the local engine trusts whatever image carries the tag locally.
        if self.resolve.source.is_repo() && self.resolve.value != ResolveMode::Registry {
            out.push(format!("resolve = {:?}", self.resolve.value.as_str()));
        }
        if self.require_clean.source.is_repo() && !self.require_clean.value {
            out.push("require_clean = false".into());
        }
        // Where the repository is mounted in the container.
        if self.workdir.source.is_repo() {
            out.push(format!("workdir = {:?}", self.workdir.value));
        }
        out
    }

    /// The settings as (key, value text, source) rows, for `repro config show`.
    pub fn rows(&self) -> Vec<(&'static str, String, Source)> {
        let mut rows = vec![
            (
                "db",
                self.db.value.display().to_string(),
                self.db.source.clone(),
            ),
            (
                "engine",
                self.engine
                    .value
                    .map(|e| e.as_str().to_string())
                    .unwrap_or_else(|| "(auto: podman, then docker)".into()),
                self.engine.source.clone(),
            ),
            (
                "workdir",
                self.workdir.value.clone(),
                self.workdir.source.clone(),
            ),
            (
                "resolve",
                self.resolve.value.as_str().into(),
                self.resolve.source.clone(),
            ),
            (
                "registry_timeout",
                self.registry_timeout
                    .value
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "(60 s)".into()),
                self.registry_timeout.source.clone(),
            ),
            (
                "allow_latest",
                self.allow_latest.value.to_string(),
                self.allow_latest.source.clone(),
            ),
            (
                "allow_unpinned",
                self.allow_unpinned.value.to_string(),
                self.allow_unpinned.source.clone(),
            ),
            (
                "require_clean",
                self.require_clean.value.to_string(),
                self.require_clean.source.clone(),
            ),
            (
                "color",
                format!("{:?}", self.color.value).to_ascii_lowercase(),
                self.color.source.clone(),
            ),
            (
                "keep_outputs",
                self.keep_outputs.value.to_string(),
                self.keep_outputs.source.clone(),
            ),
            (
                "params_from_argv",
                self.params_from_argv.value.to_string(),
                self.params_from_argv.source.clone(),
            ),
            (
                "keep_outputs_max",
                self.keep_outputs_max
                    .value
                    .map(|b| format!("{b} bytes"))
                    .unwrap_or_else(|| "unlimited".into()),
                self.keep_outputs_max.source.clone(),
            ),
            (
                "sys_metrics_interval",
                format_interval(self.sys_metrics_interval.value),
                self.sys_metrics_interval.source.clone(),
            ),
            (
                "record_env",
                format!("{:?}", self.record_env.value),
                self.record_env.source.clone(),
            ),
            (
                "mlflow_push",
                self.mlflow_push.value.to_string(),
                self.mlflow_push.source.clone(),
            ),
            (
                "mlflow_tracking_uri",
                self.mlflow_tracking_uri
                    .value
                    .clone()
                    .unwrap_or_else(|| "(MLFLOW_TRACKING_URI)".into()),
                self.mlflow_tracking_uri.source.clone(),
            ),
            (
                "mlflow_experiment",
                self.mlflow_experiment
                    .value
                    .clone()
                    .unwrap_or_else(|| "(MLFLOW_EXPERIMENT_NAME, else repro)".into()),
                self.mlflow_experiment.source.clone(),
            ),
            (
                "mlflow_outputs",
                self.mlflow_outputs.value.to_string(),
                self.mlflow_outputs.source.clone(),
            ),
            (
                "mlflow_outputs_max",
                self.mlflow_outputs_max
                    .value
                    .map(|b| format!("{b} bytes"))
                    .unwrap_or_else(|| "unlimited".into()),
                self.mlflow_outputs_max.source.clone(),
            ),
            (
                "mlflow_dataset_context",
                self.mlflow_dataset_context
                    .value
                    .clone()
                    .unwrap_or_else(|| "training".into()),
                self.mlflow_dataset_context.source.clone(),
            ),
        ];
        for (key, list) in [
            ("engine_args", &self.engine_args),
            ("mounts", &self.mounts),
            ("insecure_registries", &self.insecure_registries),
            ("env", &self.env),
            // Files every run in the repository reads (a committed symlink could point anywhere).
            ("metrics", &self.metrics),
        ] {
            if list.0.is_empty() {
                rows.push((key, "[]".into(), Source::Default));
            }
            for i in &list.0 {
                rows.push((key, i.value.clone(), i.source.clone()));
            }
        }
        rows
    }
}

/// A sampling interval as written in the config: `10s`, `500ms`, `0s` (off).
pub fn format_interval(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// `1/true/yes/on` or `0/false/no/off`.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Fuzzing entry point (`fuzz/fuzz_targets/config.rs`): a hostile `.repro.toml` (committed in a
/// repository, so untrusted) never panics the parser, the validation or the error reporting.
#[doc(hidden)]
pub fn fuzz_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let no_env = |_: &str| None;
    for untrusted in [true, false] {
        if let Err(e) = parse_file(Path::new("/repo/.repro.toml"), text, untrusted, &no_env) {
            let _ = e.to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    fn parse(text: &str) -> Result<FileLayer, ConfigError> {
        parse_file(Path::new("/r/.repro.toml"), text, true, &no_env)
    }

    #[test]
    fn engine_args_keep_repeats() {
        let mut c = Config::default();
        let layer = parse("engine_args = [\"--cap-add\", \"A\", \"--cap-add\", \"B\"]\n").unwrap();
        c.apply(layer, &Source::Default);
        assert_eq!(c.engine_args.values(), ["--cap-add", "A", "--cap-add", "B"]);
    }

    #[test]
    fn unknown_key_names_file_key_and_line() {
        let e = parse("engine = \"podman\"\n\nmountz = [\"/a:/b\"]\n").unwrap_err();
        match &e {
            ConfigError::Invalid { key, line, .. } => {
                assert_eq!(key.as_deref(), Some("mountz"));
                assert_eq!(*line, Some(3));
            }
            other => panic!("{other:?}"),
        }
        let text = e.to_string();
        assert!(text.starts_with("/r/.repro.toml:line 3:"), "{text}");
        assert!(text.contains("mountz"), "{text}");
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let e = parse("# team\nallow_latest = \"yes\"\n").unwrap_err();
        match &e {
            ConfigError::Invalid { key, line, .. } => {
                assert_eq!(key.as_deref(), Some("allow_latest"));
                assert_eq!(*line, Some(2));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn repo_file_cannot_set_db() {
        let e = parse("\ndb = \"/tmp/x.db\"\n").unwrap_err();
        assert!(
            matches!(e, ConfigError::RepoDb { line: Some(2), .. }),
            "{e:?}"
        );
    }

    #[test]
    fn workdir_is_absolute_without_colon_or_control_characters() {
        for bad in ["workspace", "/workspace:U", "/work\nspace", "/w\x1b[2J"] {
            assert!(check_workdir(bad).is_err(), "{bad:?} accepted");
            let e = parse(&format!("workdir = {:?}\n", bad)).unwrap_err();
            assert!(e.to_string().contains("workdir"), "{e}");
        }
        assert!(check_workdir("/workspace/sub dir").is_ok());
        let e = load_from(None, None, &|k| {
            (k == "REPRO_WORKDIR").then(|| OsString::from("/w:U"))
        })
        .unwrap_err();
        assert!(e.to_string().contains("REPRO_WORKDIR"), "{e}");
    }

    #[test]
    fn risky_engine_flags_and_mounts() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let r = risky_engine_args(&v(&[
            "--shm-size=8g",
            "--privileged",
            "--cap-add",
            "SYS_ADMIN",
            "--network=none",
            "--network",
            "host",
            "--volume=/data:/data:ro",
            "--volume=/:/host",
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
            "--mount",
            "type=bind,source=/etc,target=/e",
            "--pid=host",
            "--device=/dev/fuse",
            "--security-opt=seccomp=unconfined",
        ]));
        assert_eq!(
            r,
            v(&[
                "--privileged",
                "--cap-add SYS_ADMIN",
                "--network host",
                "--volume=/:/host",
                "-v /var/run/docker.sock:/var/run/docker.sock",
                "--mount type=bind,source=/etc,target=/e",
                "--pid=host",
                "--device=/dev/fuse",
                "--security-opt=seccomp=unconfined",
            ])
        );
        assert!(risky_engine_args(&v(&["--shm-size", "8g", "--volume=/scratch:/s"])).is_empty());
    }

    #[test]
    fn sys_metrics_interval_parses_units_and_zero_and_refuses_the_rest() {
        use std::time::Duration;
        assert_eq!(parse_interval("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_interval(" 500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_interval("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_interval("0"), Ok(Duration::ZERO));
        for bad in ["10", "fast", "5x", "50ms", "25h", "-1s", ""] {
            let e = parse_interval(bad).unwrap_err();
            assert!(e.contains("not a sampling interval"), "{bad}: {e}");
        }
        let tmp = tempfile::tempdir().unwrap();
        let user = tmp.path().join("config.toml");
        std::fs::write(&user, "sys_metrics_interval = \"2s\"\n").unwrap();
        let c = load_from(Some(&user), None, &no_env).unwrap();
        assert_eq!(c.sys_metrics_interval.value, Duration::from_secs(2));
        assert_eq!(format_interval(c.sys_metrics_interval.value), "2s");
        let c = load_from(None, None, &no_env).unwrap();
        assert_eq!(c.sys_metrics_interval.value, DEFAULT_SYS_METRICS_INTERVAL);
        assert!(parse("sys_metrics_interval = \"often\"\n").is_err());
        assert!(load_from(None, None, &|k| {
            (k == "REPRO_SYS_METRICS_INTERVAL").then(|| OsString::from("1"))
        })
        .is_err());
    }

    #[test]
    fn registry_timeout_from_file_and_env() {
        let tmp = tempfile::tempdir().unwrap();
        let user = tmp.path().join("config.toml");
        std::fs::write(&user, "registry_timeout = 7\n").unwrap();
        let c = load_from(Some(&user), None, &no_env).unwrap();
        assert_eq!(c.registry_timeout.value, Some(7));
        let c = load_from(Some(&user), None, &|k| {
            (k == "REPRO_REGISTRY_TIMEOUT").then(|| OsString::from("3"))
        })
        .unwrap();
        assert_eq!(c.registry_timeout.value, Some(3));
        assert!(parse("registry_timeout = 0\n").is_err());
        assert!(load_from(None, None, &|k| {
            (k == "REPRO_REGISTRY_TIMEOUT").then(|| OsString::from("soon"))
        })
        .is_err());
    }

    #[test]
    fn every_relaxation_of_a_repo_file_is_announced() {
        let mut c = Config::default();
        let u = Source::User("/u".into());
        let r = Source::Repo("/r".into());
        c.apply(
            toml::from_str("require_clean = true\nresolve = \"registry\"").unwrap(),
            &u,
        );
        c.apply(
            toml::from_str("require_clean = false\nresolve = \"engine\"\nworkdir = \"/src\"")
                .unwrap(),
            &r,
        );
        let o = c.repo_overrides();
        assert!(o.contains(&"resolve = \"engine\"".to_string()), "{o:?}");
        assert!(o.contains(&"require_clean = false".to_string()), "{o:?}");
        assert!(o.contains(&"workdir = \"/src\"".to_string()), "{o:?}");
    }

    #[test]
    fn lists_add_up_and_scalars_replace() {
        let mut c = Config::default();
        let u = Source::User("/u".into());
        let r = Source::Repo("/r".into());
        c.apply(
            toml::from_str("mounts = [\"/a:/a\"]\nresolve = \"engine\"").unwrap(),
            &u,
        );
        c.apply(
            toml::from_str("mounts = [\"/b:/b\", \"/a:/a\"]\nresolve = \"registry\"").unwrap(),
            &r,
        );
        assert_eq!(c.mounts.values(), vec!["/a:/a", "/b:/b"]);
        assert_eq!(c.mounts.0[0].source, u);
        assert_eq!(c.resolve.value, ResolveMode::Registry);
        assert_eq!(c.resolve.source, r);
        assert_eq!(c.repo_overrides(), vec!["mounts = [\"/b:/b\"]".to_string()]);
    }
}
