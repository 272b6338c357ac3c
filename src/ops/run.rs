//! `run`: capture provenance, write the run as `running`, pull the pinned image, run the child,
//! finish the record. [`execute`] is shared with `rerun`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::capture::code::CodeError;
use crate::capture::dataset::DatasetError;
use crate::capture::env::{looks_secret, REDACTED};
use crate::capture::image::registry::{Platform, PlatformError, RegistryOptions};
use crate::capture::image::{self, ImageError, ResolveMode, ResolveOptions};
use crate::capture::{code, dataset, host};
use crate::config::Config;
use crate::error::Hinted;
use crate::exec::{self, pick_engine, want_tty, Engine, NoEngine, Outcome, Spawn};
use crate::ops::Events;
use crate::record::{Arg, Exec, ExecMode, Output, OutputFile, ResolvedBy, Run, Status};
use crate::script::plan::{registry_of, Bindings, EnginePlan, PlanOptions};
use crate::store::kept::KeepPolicy;
use crate::store::objects::Objects;
use crate::store::{Finish, Store, StoreError};

pub use crate::script::plan::{RegistryFlags, DEFAULT_WORKDIR};

/// Why `repro run` (or the execution a re-run shares) could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A flag or configured value is malformed (a usage error).
    #[error("{message}")]
    BadFlag {
        /// What is wrong, naming the flag.
        message: String,
        /// How to write it.
        hint: String,
    },
    /// `--env NAME` names a variable this environment does not set.
    #[error("--env {0}: the variable is not set (or not UTF-8)")]
    EnvNotSet(String),
    /// No container engine to run or pin with.
    #[error(transparent)]
    Engine(#[from] NoEngine),
    /// `--platform` is not `os/arch[/variant]`.
    #[error(transparent)]
    Platform(#[from] PlatformError),
    /// The code could not be captured.
    #[error(transparent)]
    Code(#[from] CodeError),
    /// `--require-clean` and the working tree has changes.
    #[error("the working tree of {repo} is dirty ({modified} modified, {untracked} untracked file(s)) and --require-clean is set")]
    Dirty {
        repo: String,
        modified: usize,
        untracked: usize,
    },
    /// The image could not be resolved.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Container mode needs a digest to run.
    #[error("the image '{0}' has no digest to run in a container")]
    NoDigest(String),
    /// A dataset could not be parsed or captured.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// The run could not be recorded (nothing was started).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine could not pull or start the container; reported, recorded as `error`.
    #[error("the {engine} engine failed before the command started: {message}")]
    EngineFailed {
        engine: &'static str,
        message: String,
    },
    /// The engine exited 125-127 and never started the container; reported, recorded as `error`.
    #[error("the {engine} engine exited {code} before the container started (its message is above); the command never ran")]
    EngineExited {
        engine: &'static str,
        code: i32,
        /// What the engine's failure means, from a probe with the run's flags
        /// (`ops::engine_failure::start_hint`).
        hint: String,
    },
}

impl Hinted for RunError {
    fn hint(&self) -> Option<String> {
        match self {
            RunError::BadFlag { hint, .. } => Some(hint.clone()),
            RunError::EnvNotSet(name) => Some(format!(
                "export {name}=… before the run, or drop --env {name}"
            )),
            RunError::Engine(e) => e.hint(),
            RunError::Platform(e) => e.hint(),
            RunError::Code(e) => e.hint(),
            RunError::Dirty { .. } => Some(
                "commit or stash the changes (git status shows them), or drop --require-clean"
                    .into(),
            ),
            RunError::Image(e) => e.hint(),
            RunError::NoDigest(_) => {
                Some("pin it (name@sha256:…) or run on the host with --host".into())
            }
            RunError::Dataset(e) => e.hint(),
            RunError::Store(e) => e.hint(),
            RunError::EngineFailed { message, .. } => Some(engine_hint(message)),
            RunError::EngineExited { hint, .. } => Some(hint.clone()),
        }
    }

    fn is_usage(&self) -> bool {
        matches!(self, RunError::BadFlag { .. })
    }
}

/// A usage error for a malformed flag.
fn bad_flag(message: impl Into<String>, hint: impl Into<String>) -> RunError {
    RunError::BadFlag {
        message: message.into(),
        hint: hint.into(),
    }
}

/// Everything `repro run` needs, validated: built by the CLI from flags and configuration.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The command and its arguments.
    pub command: Vec<OsString>,
    /// `--image` as written.
    pub image: Option<String>,
    /// Container or host.
    pub mode: ExecMode,
    /// The engine: decided in container mode; on the host the one found (if any), asked only
    /// to pin a tag (`resolve = engine|auto`).
    pub engine: Option<Engine>,
    /// How to pin a tag.
    pub resolve: ResolveMode,
    pub allow_latest: bool,
    pub allow_unpinned: bool,
    pub offline: bool,
    pub platform: Option<Platform>,
    /// Registry options for repro's client; also decide the engine's pull flags.
    pub registry: RegistryOptions,
    /// Dataset specs.
    pub datasets: Vec<String>,
    pub params: BTreeMap<String, String>,
    /// The keys of `params` read from the command's arguments (sorted).
    pub params_from_argv: Vec<String>,
    pub tags: Vec<String>,
    pub name: Option<String>,
    /// Recorded variables (secret-looking ones redacted unless asked otherwise).
    pub env: BTreeMap<String, String>,
    /// `--output` paths, relative to the working directory.
    pub outputs: Vec<String>,
    /// Whether (and how much of) the outputs are kept in the object store.
    pub keep: KeepPolicy,
    pub require_clean: bool,
    pub gpus: Option<String>,
    /// Mounts (as `--volume=`) then engine flags, in order, repeats kept.
    pub engine_args: Vec<String>,
    /// Where the repository is mounted in the container.
    pub workdir: String,
    /// The working directory.
    pub cwd: PathBuf,
    /// `--metrics` files or DVCLive directories read after the run (relative to `cwd`).
    pub metrics: Vec<PathBuf>,
    /// Push the run to MLflow when it finishes (`--mlflow`); never changes its outcome.
    pub mlflow: Option<crate::ops::mlflow::AfterRun>,
    /// How often system metrics are sampled while the job runs (zero: off).
    pub sys_metrics_interval: std::time::Duration,
    /// The variables the environment snapshot records (`record_env`).
    pub record_env: Vec<String>,
}

/// The flags of `repro run` as plain values, before the configuration is applied. A tri-state
/// (`Some(false)` from `--no-…`) overrides the configuration either way.
#[derive(Debug, Clone, Default)]
pub struct RunFlags {
    pub image: Option<String>,
    pub engine: Option<Engine>,
    pub host: bool,
    pub resolve: Option<ResolveMode>,
    pub allow_latest: Option<bool>,
    pub allow_unpinned: Option<bool>,
    pub offline: bool,
    pub platform: Option<String>,
    pub insecure_registries: Vec<String>,
    pub ca_cert: Option<PathBuf>,
    pub datasets: Vec<String>,
    /// `K=V` as written.
    pub params: Vec<String>,
    /// `--params-from-argv` / `--no-params-from-argv`.
    pub params_from_argv: Option<bool>,
    pub tags: Vec<String>,
    pub name: Option<String>,
    /// Variable names.
    pub env: Vec<String>,
    pub env_unredacted: bool,
    pub outputs: Vec<String>,
    /// `--keep-outputs` / `--no-keep-outputs`.
    pub keep_outputs: Option<bool>,
    pub require_clean: Option<bool>,
    pub gpus: Option<String>,
    pub engine_args: Vec<String>,
    pub mounts: Vec<String>,
    pub workdir: Option<String>,
    /// `--metrics` files or DVCLive directories.
    pub metrics: Vec<PathBuf>,
    /// `--mlflow`: push the run when it finishes.
    pub mlflow: bool,
    /// `--sys-metrics-interval DUR` as written.
    pub sys_metrics_interval: Option<String>,
    pub command: Vec<OsString>,
}

/// `from_cfg` then the flags' values; `dedup` drops repeats (engine flags keep theirs).
fn merged(from_cfg: Vec<String>, flags: &[String], dedup: bool) -> Vec<String> {
    let mut out = from_cfg;
    for f in flags {
        if !dedup || !out.contains(f) {
            out.push(f.clone());
        }
    }
    out
}

impl RunRequest {
    /// Builds the request from the flags and the configuration (flags win; lists add up: the
    /// configuration's entries first, then the flags'). Returns notes for the user.
    pub fn from_flags(
        f: RunFlags,
        cfg: &Config,
        cwd: PathBuf,
    ) -> Result<(RunRequest, Vec<String>), RunError> {
        let mut notes = Vec::new();
        let mut params = BTreeMap::new();
        for p in &f.params {
            let (k, v) = p.split_once('=').ok_or_else(|| {
                bad_flag(
                    format!("--param '{p}' is not of the form KEY=VALUE"),
                    "write it as --param lr=0.1",
                )
            })?;
            if k.is_empty() {
                return Err(bad_flag(
                    format!("--param '{p}' has an empty key"),
                    "write it as --param lr=0.1",
                ));
            }
            params.insert(k.to_string(), v.to_string());
        }
        // The command's own `--key value` arguments, unless `--param` named the key.
        let mut from_argv = Vec::new();
        if f.params_from_argv.unwrap_or(cfg.params_from_argv.value) {
            for (k, v) in crate::capture::argv_params::params_from_os_argv(&f.command) {
                if !params.contains_key(&k) {
                    params.insert(k.clone(), v);
                    from_argv.push(k);
                }
            }
            from_argv.sort();
        }
        // A configured variable that is not set is skipped; one named with --env must be set.
        let mut env_names = Vec::new();
        for item in &cfg.env.0 {
            if std::env::var_os(&item.value).is_some() {
                env_names.push(item.value.clone());
            } else {
                notes.push(format!(
                    "{} is not set; not recorded (env from {})",
                    item.value, item.source
                ));
            }
        }
        let mut env = BTreeMap::new();
        for name in merged(env_names, &f.env, true) {
            if crate::config::check_env_name(&name).is_err() {
                return Err(bad_flag(
                    format!("--env '{name}' is not a variable name"),
                    "name the variable only (--env SEED); its value is read from the environment",
                ));
            }
            let value = std::env::var(&name).map_err(|_| RunError::EnvNotSet(name.clone()))?;
            let value = if !f.env_unredacted && looks_secret(&name) {
                REDACTED.to_string()
            } else {
                value
            };
            env.insert(name, value);
        }
        let mode = if f.image.is_some() && !f.host {
            ExecMode::Container
        } else {
            ExecMode::Host
        };
        let wanted = f.engine.or(cfg.engine.value);
        let engine = match mode {
            ExecMode::Container => Some(pick_engine(wanted)?),
            // Only asked to pin a tag; none is fine on the host.
            ExecMode::Host => pick_engine(wanted).ok(),
        };
        let mut engine_args = Vec::new();
        for m in merged(cfg.mounts.values(), &f.mounts, true) {
            crate::config::check_mount(&m).map_err(|e| {
                bad_flag(
                    format!("--mount {e}"),
                    "write it as --mount /data:/data[:ro]",
                )
            })?;
            engine_args.push(format!("--volume={m}"));
        }
        // Engine flags are an argv fragment (`--cap-add X`): order and repeats matter.
        engine_args.extend(merged(cfg.engine_args.values(), &f.engine_args, false));
        let workdir = f.workdir.unwrap_or_else(|| cfg.workdir.value.clone());
        crate::config::check_workdir(&workdir).map_err(|m| {
            bad_flag(
                format!("--workdir {m}"),
                "use a path inside the container such as /workspace",
            )
        })?;
        let platform = match &f.platform {
            Some(p) => Some(Platform::parse(p)?),
            None => None,
        };
        let registry = crate::capture::image::registry::options::registry_options(
            cfg.insecure_registries.values(),
            cfg.registry_timeout.value,
            &f.insecure_registries,
            f.ca_cert,
        );
        let sys_metrics_interval = match &f.sys_metrics_interval {
            Some(d) => crate::config::parse_interval(d).map_err(|m| {
                bad_flag(
                    format!("--sys-metrics-interval {m}"),
                    "write it as --sys-metrics-interval 10s (or 500ms, 1m; 0s turns sampling off)",
                )
            })?,
            None => cfg.sys_metrics_interval.value,
        };
        let req = RunRequest {
            command: f.command,
            image: f.image,
            mode,
            engine,
            resolve: f.resolve.unwrap_or(cfg.resolve.value),
            allow_latest: f.allow_latest.unwrap_or(cfg.allow_latest.value),
            allow_unpinned: f.allow_unpinned.unwrap_or(cfg.allow_unpinned.value),
            offline: f.offline,
            platform,
            registry,
            datasets: f.datasets,
            params,
            params_from_argv: from_argv,
            tags: f.tags,
            name: f.name,
            env,
            outputs: f.outputs,
            keep: keep_policy(cfg, f.keep_outputs),
            require_clean: f.require_clean.unwrap_or(cfg.require_clean.value),
            gpus: f.gpus,
            engine_args,
            workdir,
            cwd,
            metrics: crate::ops::metrics::paths(&cfg.metrics.values(), &f.metrics),
            mlflow: crate::ops::mlflow::AfterRun::when_asked(f.mlflow, cfg),
            sys_metrics_interval,
            record_env: cfg.record_env.value.clone(),
        };
        Ok((req, notes))
    }
}

/// How a recorded run is executed: where, what to hash afterwards, extra read-only mounts.
#[derive(Debug, Clone, Default)]
pub struct Execution {
    /// Working directory on the host.
    pub cwd: PathBuf,
    /// `--output` paths, relative to `cwd`.
    pub output_paths: Vec<String>,
    /// (host path, container path) mounted read-only in container mode; not recorded.
    pub extra_mounts: Vec<(PathBuf, String)>,
    /// Variables set for the child (and passed into the container by name).
    pub env: Vec<(String, String)>,
    /// Registry options of the engine's pull.
    pub registry: RegistryFlags,
    /// Host directory mounted at the workdir (default: the recorded repository, else `cwd`).
    pub mount_src: Option<PathBuf>,
    /// `--metrics` paths read after the run (relative to `cwd`).
    pub metrics: Vec<PathBuf>,
    /// Whether (and how much of) the outputs are copied into the object store.
    pub keep: KeepPolicy,
    /// The variables the environment snapshot records (`record_env`); `None`: the default list.
    pub record_env: Option<Vec<String>>,
}

/// How a run ended, for the CLI.
#[derive(Debug)]
pub struct Finished {
    /// The new run's id.
    pub id: String,
    /// repro's exit code: the child's (128+N for a signal), 1 for an engine error.
    pub exit: i32,
    /// What was written into the record.
    pub finish: Finish,
}

/// `repro run`: capture, record, execute.
pub fn run(ev: &dyn Events, store: &mut Store, req: &RunRequest) -> Result<Finished, RunError> {
    let captured = code::capture(&req.cwd)?;
    for w in &captured.warnings {
        ev.warn(w);
    }
    if let (true, Some(c)) = (req.require_clean, &captured.code) {
        if c.dirty {
            return Err(dirty_error(c));
        }
    }
    let image = image_of(ev, req)?;
    if let (ExecMode::Container, Some(img)) = (req.mode, &image) {
        if img.digest.is_none() {
            return Err(RunError::NoDigest(img.reference.clone()));
        }
    }
    let repo_root = captured.code.as_ref().map(|c| PathBuf::from(&c.repo_root));
    let datasets = datasets_of(ev, store, req, repo_root.as_deref())?;
    let exec = Exec {
        mode: req.mode,
        engine: req
            .engine
            .filter(|_| req.mode == ExecMode::Container)
            .map(|e| e.as_str().to_string()),
        workdir: (req.mode == ExecMode::Container).then(|| req.workdir.clone()),
        engine_args: req.engine_args.clone(),
        gpus: req.gpus.clone(),
        // What reaching the registry took is part of the plan every re-run renders.
        registry: image
            .as_ref()
            .and_then(|img| req.registry.host_settings(&registry_of(img)).access()),
    };
    let command = req.command.iter().cloned().map(Arg::from).collect();
    let registry = image
        .as_ref()
        .map(|img| RegistryFlags::for_image(img, &req.registry))
        .unwrap_or_default();
    let run = Run {
        name: req.name.clone(),
        image,
        code: captured.code.clone(),
        datasets,
        params: req.params.clone(),
        params_from_argv: req.params_from_argv.clone(),
        tags: req.tags.clone(),
        env: req.env.clone(),
        ..Run::start(
            command,
            captured.cwd.clone(),
            exec,
            crate::capture::host::start_facts(),
        )
    };
    let x = Execution {
        cwd: req.cwd.clone(),
        output_paths: req.outputs.clone(),
        keep: req.keep.clone(),
        registry,
        metrics: req.metrics.clone(),
        record_env: Some(req.record_env.clone()),
        ..Execution::default()
    };
    let sys = crate::ops::sys_metrics::SysMetrics::with_gpus(req.sys_metrics_interval);
    let finished = execute_sampled(ev, store, run, &x, sys)?;
    if let Some(m) = &req.mlflow {
        crate::ops::mlflow::after_run(ev, store, &finished.id, m);
    }
    Ok(finished)
}

/// `--require-clean` refused: say how many files are modified and how many untracked.
/// The image `req` names, resolved as a run resolves it (a tag pinned to its digest now).
pub fn image_of(
    ev: &dyn Events,
    req: &RunRequest,
) -> Result<Option<crate::record::Image>, RunError> {
    Ok(match &req.image {
        Some(r) => Some(resolve_image(ev, req, r)?),
        None => None,
    })
}

/// The datasets `req` names, hashed as a run hashes them (through the store's hash cache), and
/// their files indexed for `repro which`.
pub fn datasets_of(
    ev: &dyn Events,
    store: &mut Store,
    req: &RunRequest,
    repo_root: Option<&Path>,
) -> Result<Vec<crate::record::Dataset>, RunError> {
    let mut datasets = Vec::new();
    for s in &req.datasets {
        let spec = dataset::parse_spec(s, &req.cwd, repo_root)?;
        let (d, manifest) = dataset::capture_with_manifest(
            &spec,
            &dataset::HashOptions::default(),
            Some(store.conn()),
            None,
        )?;
        if let (Some(digest), Some(m)) = (&d.digest, manifest) {
            // Only an index for `repro which`: a failure to write it never stops the run.
            if let Err(e) = store.record_dataset_files(digest, &m) {
                ev.warn(&format!(
                    "cannot record the files of dataset {} for `repro which`: {}",
                    crate::sanitize::escape(&d.name),
                    crate::error::report(e)
                ));
            }
        }
        datasets.push(d);
    }
    Ok(datasets)
}

fn dirty_error(c: &crate::record::Code) -> RunError {
    let in_patch = c
        .patch
        .as_ref()
        .map(|p| {
            p.as_bytes()
                .split(|b| *b == b'\n')
                .filter(|l| l.starts_with(b"diff --git "))
                .count()
        })
        .unwrap_or(0);
    let untracked = c.untracked.len();
    let modified = in_patch.saturating_sub(untracked);
    RunError::Dirty {
        repo: c.repo_root.clone(),
        modified,
        untracked,
    }
}

fn resolve_image(
    ev: &dyn Events,
    req: &RunRequest,
    reference: &str,
) -> Result<crate::record::Image, ImageError> {
    let opts = ResolveOptions {
        mode: req.resolve,
        allow_latest: req.allow_latest,
        allow_unpinned: req.allow_unpinned,
        offline: req.offline,
        platform: req.platform.clone(),
        engine: req.engine,
        registry: req.registry.clone(),
    };
    let (image, warnings) = image::resolve(reference, &opts)?;
    for w in warnings {
        ev.warn(&w.to_string());
    }
    if image.resolved_by == ResolvedBy::Unpinned {
        ev.warn(&format!(
            "{reference} could not be pinned to a digest; the run is recorded as UNPINNED"
        ));
    }
    Ok(image)
}

/// A hint for an engine's pull or start failure, from its message (one mapping with `repro doctor`).
pub use crate::ops::engine_failure::engine_hint;

/// Pulls the plan's image unless the engine already has it. When the registry pull fails and
/// the plan has recorded archives, pulls from them and returns the reference to run instead
/// (its digest checked). `Err` carries the engine's message.
fn pull(ev: &dyn Events, plan: &EnginePlan, b: &Bindings) -> Result<Option<String>, String> {
    let engine = plan.engine.as_str();
    let present = Command::new(engine)
        .args(["image", "inspect", "--format", "{{.Id}}", &plan.image])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if present {
        ev.debug(&format!("{engine} already has {}", plan.image));
        return Ok(None);
    }
    let args = plan.pull_args(b);
    ev.status(&format!("pulling {}", plan.image));
    ev.debug(&format!("exec: {engine} {}", display(&args)));
    let out = Command::new(engine)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start {engine}: {e}"))?;
    if out.status.success() {
        return Ok(None);
    }
    let mut msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if msg.is_empty() {
        msg = format!("{engine} pull exited with {}", out.status);
    }
    let digest = plan.image.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    let Some(fb) = &plan.fallback else {
        if looks_missing(&msg) && !digest.is_empty() {
            return Err(format!(
                "the registry no longer has {digest} ({}) and no archive of it is recorded: {msg}",
                plan.image
            ));
        }
        return Err(msg);
    };
    ev.warn(&format!(
        "{} could not be pulled ({}); trying the recorded archives",
        plan.image,
        msg.lines().last().unwrap_or("")
    ));
    let flags: Vec<String> = args
        .iter()
        .skip(1)
        .take(args.len().saturating_sub(2))
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut run_engine = |a: &[String]| -> Result<String, String> {
        ev.debug(&format!("exec: {engine} {}", a.join(" ")));
        let o = Command::new(engine)
            .args(a)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot start {engine}: {e}"))?;
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&o.stderr).trim().to_string())
        }
    };
    let pulled = crate::ops::archive::pull_from_archives(
        plan.engine == Engine::Podman,
        fb,
        &flags,
        &mut run_engine,
    )
    .map_err(|e| format!("the registry pull failed ({msg}) and {e}"))?;
    // The archive's copy must be the recorded image: the engine reports its digest.
    let digests = run_engine(&[
        "image".into(),
        "inspect".into(),
        "--format".into(),
        "{{range .RepoDigests}}{{println .}}{{end}}".into(),
        pulled.clone(),
    ])?;
    if !digests
        .lines()
        .any(|l| l.trim().ends_with(&format!("@{}", fb.digest)))
    {
        return Err(format!(
            "{engine} does not report digest {} for {pulled} pulled from the archive (it reports: {})",
            fb.digest,
            digests.split_whitespace().collect::<Vec<_>>().join(" ")
        ));
    }
    ev.status(&format!("pulled {} from the archive ({pulled})", fb.digest));
    Ok(Some(pulled))
}

/// Whether the container `name` ever started, from the engine's events (`start`): `None` when
/// the events cannot be read (podman with `events_logger = "none"`, an engine that keeps none),
/// so that only positive evidence turns a 125/126/127 into an engine error.
pub fn container_started(engine: Engine, name: &str, debug: &dyn Fn(&str)) -> Option<bool> {
    let mut cmd = Command::new(engine.as_str());
    cmd.args(["events", "--filter", &format!("container={name}")]);
    match engine {
        // podman replays what is logged and stops.
        Engine::Podman => cmd.args(["--stream=false", "--format", "{{.Status}}"]),
        // docker needs a window; the container was created after repro started.
        Engine::Docker => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let since = now.as_secs().saturating_sub(24 * 3600);
            cmd.args([
                "--since".to_string(),
                since.to_string(),
                "--until".to_string(),
                format!("{}.{:09}", now.as_secs(), now.subsec_nanos()),
                "--format".to_string(),
                "{{.Status}}".to_string(),
            ])
        }
    };
    let out = cmd.stdin(Stdio::null()).stderr(Stdio::piped()).output();
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            debug(&format!(
                "{} events of {name}: {}",
                engine.as_str(),
                text.split_whitespace().collect::<Vec<_>>().join(" ")
            ));
            Some(text.lines().any(|l| l.trim() == "start"))
        }
        Ok(o) => {
            debug(&format!(
                "cannot read the {} events of {name}: {}",
                engine.as_str(),
                String::from_utf8_lossy(&o.stderr).trim()
            ));
            None
        }
        Err(e) => {
            debug(&format!("cannot run {} events: {e}", engine.as_str()));
            None
        }
    }
}

/// Whether an engine's pull message says the manifest is not in the registry.
fn looks_missing(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("manifest unknown") || m.contains("not found") || m.contains("404")
}

fn display(args: &[OsString]) -> String {
    crate::script::quote::display_argv(args.iter().map(|a| {
        use std::os::unix::ffi::OsStrExt;
        a.as_bytes()
    }))
}

/// A temporary `--cert-dir` holding the CA certificates (and the certs.d client certificate
/// pairs, which podman reads from there too); removed on drop.
struct CertDir(PathBuf);

impl CertDir {
    fn new(flags: &RegistryFlags, id: &str) -> Result<CertDir, String> {
        let dir = std::env::temp_dir().join(format!("repro-certs-{id}"));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let d = CertDir(dir);
        for (i, ca) in flags.ca_files.iter().enumerate() {
            std::fs::copy(ca, d.0.join(format!("ca-{i}.crt")))
                .map_err(|e| format!("cannot read the CA certificate {}: {e}", ca.display()))?;
        }
        for cd in &flags.cert_dirs {
            for e in std::fs::read_dir(cd).into_iter().flatten().flatten() {
                let p = e.path();
                let client = p.extension().is_some_and(|x| x == "cert" || x == "key");
                if let (true, Some(name)) = (client, p.file_name()) {
                    if !d.0.join(name).exists() {
                        std::fs::copy(&p, d.0.join(name))
                            .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
                    }
                }
            }
        }
        Ok(d)
    }
}

impl Drop for CertDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes the run as `running`, pulls its image (container mode), runs it, and finishes the
/// record. A pull or engine-start failure finishes it as `error` and starts no child.
pub fn execute(
    ev: &dyn Events,
    store: &mut Store,
    run: Run,
    x: &Execution,
) -> Result<Finished, RunError> {
    execute_sampled(ev, store, run, x, Default::default())
}

/// [`execute`], sampling system metrics (`sys/…`) while the child runs as `sys` says.
pub fn execute_sampled(
    ev: &dyn Events,
    store: &mut Store,
    run: Run,
    x: &Execution,
    sys: crate::ops::sys_metrics::SysMetrics,
) -> Result<Finished, RunError> {
    let cwd = x.cwd.as_path();
    // Nothing unrecorded runs: if this fails, the command is not started.
    store.insert_run_waiting(&run, &mut |e| ev.warn(&format!("{e}; waiting for it")))?;
    ev.status(&format!("run {} started", run.id));
    crate::ops::environment::record(ev, store, &run, x);
    let metrics_file = crate::ops::metrics::prepare(ev, store, &run.id);
    let channels = crate::ops::channels::Channels::prepare(ev, store, &run.id);
    let t0 = Instant::now();
    let mut plan = engine_plan(ev, store, &run, x);
    let (mut spawn, engine_error) = match &mut plan {
        Some(plan) => container_spawn(ev, &run, x, plan, metrics_file.clone(), channels.as_ref()),
        None => (host_spawn(&run, cwd), None),
    };
    // The job's working directory as it sees it: declared outputs are made relative to it.
    let job_dir = match &plan {
        Some(_) => crate::script::plan::container_dirs(&run).1,
        None => cwd.to_string_lossy().into_owned(),
    };
    spawn.env = x
        .env
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .chain(
            crate::ops::metrics::child_env(&run.id, metrics_file.as_deref())
                .into_iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        )
        .chain(
            channels
                .iter()
                .flat_map(|c| c.env(&job_dir))
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        )
        .collect();
    // Only while the child runs: the live reader notes when each metrics line appeared.
    let live = crate::ops::metrics::LiveMetrics::start(metrics_file.as_deref());
    let mut sampler = None;
    let (outcome, forwarded) = match engine_error {
        Some(e) => (Outcome::NotStarted(std::io::Error::other(e)), None),
        None => {
            ev.debug(&format!(
                "exec: {} {}",
                spawn.program.to_string_lossy(),
                display(&spawn.args)
            ));
            exec::run(&spawn, |pid| sampler = sys.start(&spawn, pid))
        }
    };
    let live_stamps = live.stop();
    let sampled = sampler.map(|s| s.stop()).unwrap_or_default();
    let elapsed = t0.elapsed();
    let (status, exit_code, signal, exit) =
        judge(ev, &run, plan.as_ref(), &spawn, &outcome, forwarded);
    let sent = channels.map(|c| c.collect(ev)).unwrap_or_default();
    // `--output` paths first, then those the job declared (`repro.output`), without repeats.
    let mut output_paths = x.output_paths.clone();
    for p in sent.outputs {
        if !output_paths.contains(&p) {
            output_paths.push(p);
        }
    }
    let keeping = keep_lock(ev, store, &output_paths, &x.keep);
    let (outputs, output_files) = if matches!(status, Status::Error) {
        (Vec::new(), Vec::new())
    } else {
        keep_outputs(ev, store, &output_paths, cwd, &x.keep)
    };
    let fin = Finish {
        status,
        exit_code,
        signal,
        ended_at: host::rfc3339(host::now()),
        duration_ms: elapsed.as_millis() as i64,
        outputs,
        output_files,
    };
    record_finish(ev, store, &run, &fin);
    drop(keeping);
    record_job_params(ev, store, &run, sent.params);
    let stamps = crate::ops::metrics::with_end(live_stamps, &fin.ended_at);
    crate::ops::metrics::collect_stamped(
        ev,
        store,
        &run.id,
        metrics_file.as_deref(),
        &stamps,
        &x.metrics,
        cwd,
    );
    crate::ops::sys_metrics::store(ev, store, &run.id, &sampled);
    Ok(Finished {
        id: run.id,
        exit,
        finish: fin,
    })
}

/// The container plan of a recorded run (`None` on the host), with the recorded archives as
/// its fallback when the registry no longer has the digest.
fn engine_plan(ev: &dyn Events, store: &Store, run: &Run, x: &Execution) -> Option<EnginePlan> {
    let engine = run
        .exec
        .engine
        .as_deref()
        .and_then(Engine::parse)
        .unwrap_or(Engine::Podman);
    let opts = PlanOptions {
        name: Some(format!("repro-{}", run.id)),
        tty: want_tty(),
        registry: x.registry.clone(),
    };
    EnginePlan::of(run, engine, &opts).map(|p| {
        let fb = run.image.as_ref().and_then(|img| {
            crate::ops::archive::recorded_fallback(store, img).unwrap_or_else(|e| {
                ev.warn(&format!("cannot read the recorded archives: {e}"));
                None
            })
        });
        p.with_fallback(fb)
    })
}

/// The engine's `run` for `plan`, after pulling its image (from the recorded archives when the
/// registry fails; `plan` then runs the archived reference). The second value is the engine's
/// message when the pull (or the certificate directory for it) failed: nothing may start then.
fn container_spawn(
    ev: &dyn Events,
    run: &Run,
    x: &Execution,
    plan: &mut EnginePlan,
    metrics: Option<PathBuf>,
    channels: Option<&crate::ops::channels::Channels>,
) -> (Spawn, Option<String>) {
    let engine = plan.engine;
    let mut b = Bindings {
        src: x.mount_src.clone().unwrap_or_else(|| {
            run.code
                .as_ref()
                .map(|c| PathBuf::from(&c.repo_root))
                .unwrap_or_else(|| x.cwd.clone())
        }),
        extra_mounts: x.extra_mounts.clone(),
        cert_dir: None,
        metrics,
        channels: channels.map(|c| c.dir.clone()),
    };
    let mut engine_error = None;
    // Only the pull reads the certificates; the directory is removed when this returns.
    let cert = match (x.registry.needs_cert_dir(), engine) {
        (true, Engine::Podman) => match CertDir::new(&x.registry, &run.id) {
            Ok(d) => Some(d),
            Err(e) => {
                engine_error = Some(e);
                None
            }
        },
        _ => None,
    };
    b.cert_dir = cert.as_ref().map(|c| c.0.clone());
    if engine_error.is_none() {
        match pull(ev, plan, &b) {
            Ok(Some(archived)) => *plan = plan.clone().running(archived),
            Ok(None) => {}
            Err(e) => engine_error = Some(e),
        }
    }
    let spawn = Spawn {
        program: engine.as_str().into(),
        args: plan.run_args(&b),
        cwd: x.cwd.clone(),
        env: Vec::new(),
        container: Some((engine.as_str().to_string(), format!("repro-{}", run.id))),
    };
    (spawn, engine_error)
}

/// The recorded command run directly on the host.
fn host_spawn(run: &Run, cwd: &Path) -> Spawn {
    let mut it = run.argv_os().into_iter();
    let program = it.next().unwrap_or_default();
    Spawn {
        program,
        args: it.collect(),
        cwd: cwd.to_path_buf(),
        env: Vec::new(),
        container: None,
    }
}

/// The record's status, exit code and signal, and repro's exit code, for how the child ended;
/// reports an engine that failed before the command started.
fn judge(
    ev: &dyn Events,
    run: &Run,
    plan: Option<&EnginePlan>,
    spawn: &Spawn,
    outcome: &Outcome,
    forwarded: Option<i32>,
) -> (Status, Option<i32>, Option<i32>, i32) {
    let (mut status, exit_code, signal) = classify(run, outcome, forwarded);
    let mut exit = outcome.exit_code();
    // 125/126/127 is the engine's own failure (bad flag, runtime error, command not found in
    // the image) only when the container never started; a job exiting 125 stays `failed`.
    if let (Some(p), Outcome::Exited(c @ 125..=127), None) = (plan, outcome, forwarded) {
        let name = format!("repro-{}", run.id);
        if container_started(p.engine, &name, &|m| ev.debug(m)) == Some(false) {
            status = Status::Error;
            let err = RunError::EngineExited {
                engine: p.engine.as_str(),
                code: *c,
                hint: crate::ops::engine_failure::start_hint(p, *c, &|m| ev.debug(m)),
            };
            ev.error(&crate::error::report(err));
        }
    }
    if let Outcome::NotStarted(e) = outcome {
        exit = 1;
        match plan {
            Some(p) => {
                let err = RunError::EngineFailed {
                    engine: p.engine.as_str(),
                    message: e.to_string(),
                };
                ev.error(&crate::error::report(err));
            }
            None => {
                exit = 127;
                ev.error(&format!(
                    "cannot start {}: {e}",
                    spawn.program.to_string_lossy()
                ));
            }
        }
    }
    (status, exit_code, signal, exit)
}

/// Records the outcome (retried, else spilled to a file) and says how the run ended. Never
/// fails: a bookkeeping failure must not mask the child's exit code.
fn record_finish(ev: &dyn Events, store: &mut Store, run: &Run, fin: &Finish) {
    let landed = store.finish_durably(run, fin, FINISH_BUDGET, &mut |e| {
        ev.warn(&format!("{e}; retrying to record the outcome"))
    });
    match landed {
        Ok(crate::store::Landed::Spilled(f)) => ev.warn(&format!(
            "the database stayed unavailable: outcome of run {} kept in {} (recorded by the next repro command)",
            run.id,
            f.display()
        )),
        Ok(crate::store::Landed::Stored(crate::store::Finished::Restored)) => ev.warn(&format!(
            "the record of run {} had been deleted while it ran (repro gc?); recorded it again",
            run.id
        )),
        Ok(_) => ev.status(&format!(
            "run {} {} ({}) in {}",
            run.id,
            fin.status,
            match (fin.signal, fin.exit_code) {
                (Some(s), _) => exec::signal_name(s),
                (None, Some(c)) => format!("exit {c}"),
                (None, None) => "the command did not start".into(),
            },
            crate::record::text::human_duration(fin.duration_ms)
        )),
        Err(e) => ev.warn(&format!(
            "could not finish the record of run {}: {}",
            run.id,
            crate::error::report(e)
        )),
    }
}

/// Stores the params the job logged (`REPRO_PARAMS`): a `--param` of the same key wins (said
/// when the values differ); one read from the argv, or logged by the job a re-run repeats, is
/// replaced. A warning when they cannot be
/// stored: the run's outcome stands.
pub(crate) fn record_job_params(
    ev: &dyn Events,
    store: &mut Store,
    run: &Run,
    logged: BTreeMap<String, String>,
) {
    let mut set = Vec::new();
    for (k, v) in logged {
        // Read from the argv, or logged by a job (the original's, copied into a re-run): the
        // job's own value replaces it.
        let explicit = run
            .params
            .get(&k)
            .filter(|_| !run.params_from_argv.contains(&k) && !run.params_from_job.contains(&k));
        match explicit {
            Some(given) if *given != v => ev.warn(&format!(
                "param {}: --param {} wins over the {} the job logged",
                crate::sanitize::escape(&k),
                crate::sanitize::escape(given),
                crate::sanitize::escape(&v)
            )),
            Some(_) => {}
            None => set.push((k, v)),
        }
    }
    if let Err(e) = store.record_job_params(&run.id, &set) {
        ev.warn(&format!(
            "could not record the params the job logged: {}",
            crate::error::report(e)
        ));
    }
}

/// How long the outcome is retried against a locked database before it is spilled to a file.
const FINISH_BUDGET: std::time::Duration = std::time::Duration::from_secs(120);

/// Whether to keep outputs, from the flag (`--keep-outputs`/`--no-keep-outputs`) and the
/// configuration (`keep_outputs`, `keep_outputs_max`).
pub fn keep_policy(cfg: &crate::config::Config, flag: Option<bool>) -> KeepPolicy {
    let off = match flag {
        Some(false) => Some("--no-keep-outputs".to_string()),
        Some(true) => None,
        None if !cfg.keep_outputs.value => Some("keep_outputs = false".to_string()),
        None => None,
    };
    KeepPolicy {
        off,
        max_bytes: cfg.keep_outputs_max.value,
    }
}

/// The object store's lock for keeping outputs, to hold until the outcome that names the
/// objects is recorded: `repro gc` cannot delete an object this run reuses in between (see
/// `Objects::lock`). `None` when nothing is kept, or the lock cannot be had (keeping then says
/// why it fails).
pub(crate) fn keep_lock(
    ev: &dyn Events,
    store: &Store,
    paths: &[String],
    policy: &KeepPolicy,
) -> Option<crate::store::objects::ObjectsLock> {
    if paths.is_empty() || policy.off.is_some() {
        return None;
    }
    let on_wait = &mut || ev.status("waiting for repro gc to finish deleting kept objects");
    Objects::beside(store.path())
        .lock(crate::store::objects::LockMode::Keep, on_wait)
        .map_err(|e| ev.debug(&format!("object store lock: {}", crate::error::report(e))))
        .ok()
}

/// Hashes the outputs and keeps copies in the object store beside the database (see
/// `store::kept`); whatever happens, the run's status and exit code stay as they are.
pub(crate) fn keep_outputs(
    ev: &dyn Events,
    store: &Store,
    paths: &[String],
    cwd: &Path,
    policy: &KeepPolicy,
) -> (Vec<Output>, Vec<OutputFile>) {
    if paths.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let objects = Objects::beside(store.path());
    let kept = crate::store::kept::keep_outputs(&objects, paths, cwd, policy);
    for w in &kept.warnings {
        ev.warn(w);
    }
    (kept.outputs, kept.files)
}

/// The record's status, exit code and signal for how the child ended.
pub fn classify(
    run: &Run,
    outcome: &Outcome,
    forwarded: Option<i32>,
) -> (Status, Option<i32>, Option<i32>) {
    match outcome {
        Outcome::Exited(0) => (Status::Succeeded, Some(0), None),
        Outcome::Exited(c) => {
            // An engine client reports a container killed by signal N as 128+N.
            if run.exec.mode == ExecMode::Container && *c > 128 && *c < 128 + 65 {
                let sig = c - 128;
                if forwarded == Some(sig) || sig == libc::SIGKILL {
                    return (Status::Killed, Some(*c), Some(sig));
                }
            }
            (Status::Failed, Some(*c), None)
        }
        Outcome::Signaled(s) => (Status::Killed, None, Some(*s)),
        // The engine could not pull or start: not the command's failure.
        Outcome::NotStarted(_) if run.exec.mode == ExecMode::Container => {
            (Status::Error, None, None)
        }
        Outcome::NotStarted(_) => (Status::Failed, Some(127), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::sample_run;

    #[test]
    fn exit_classification() {
        let mut run = sample_run();
        let c = |run: &Run, o: Outcome, f| classify(run, &o, f);
        assert_eq!(
            c(&run, Outcome::Exited(0), None),
            (Status::Succeeded, Some(0), None)
        );
        assert_eq!(
            c(&run, Outcome::Exited(3), None),
            (Status::Failed, Some(3), None)
        );
        // 130 from the engine client: killed only when repro forwarded SIGINT.
        assert_eq!(
            c(&run, Outcome::Exited(130), Some(2)),
            (Status::Killed, Some(130), Some(2))
        );
        assert_eq!(
            c(&run, Outcome::Exited(130), None),
            (Status::Failed, Some(130), None)
        );
        assert_eq!(
            c(&run, Outcome::Exited(137), None),
            (Status::Killed, Some(137), Some(9))
        );
        assert_eq!(
            c(&run, Outcome::Signaled(15), None),
            (Status::Killed, None, Some(15))
        );
        let not_started = || Outcome::NotStarted(std::io::Error::other("x"));
        assert_eq!(c(&run, not_started(), None), (Status::Error, None, None));
        run.exec.mode = ExecMode::Host;
        assert_eq!(
            c(&run, Outcome::Exited(137), None),
            (Status::Failed, Some(137), None)
        );
        assert_eq!(
            c(&run, not_started(), None),
            (Status::Failed, Some(127), None)
        );
    }

    #[test]
    fn hints_name_the_cause() {
        assert!(engine_hint(
            "Get \"https://127.0.0.1:5000/v2/\": http: server gave HTTP response to HTTPS client"
        )
        .contains("--insecure-registry"));
        assert!(engine_hint("x509: certificate signed by unknown authority").contains("--ca-cert"));
        assert!(engine_hint("unauthorized: authentication required").contains("login"));
        assert!(
            engine_hint("crun: setrlimit `RLIMIT_NOFILE`: Operation not permitted")
                .contains("ulimit")
        );
    }

    #[test]
    fn dirty_message_counts_modified_and_untracked() {
        let mut c = sample_run().code.unwrap();
        c.patch = Some(Arg::from(
            "diff --git a/x b/x\n+1\ndiff --git a/y b/y\n+2\ndiff --git a/n b/n\nnew file\n",
        ));
        c.untracked = vec!["n".into()];
        let msg = dirty_error(&c).to_string();
        assert!(msg.contains("2 modified, 1 untracked"), "{msg}");
    }
}
