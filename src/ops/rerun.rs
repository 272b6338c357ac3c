//! `rerun`: execute a recorded run again, now, with the same pins — recorded as a new run linked
//! to the original — and compare every output hash with the original's.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest as _;

use crate::capture::env::REDACTED;
use crate::exec::{pick_engine, Engine};
use crate::ops::output_diff::{first_difference, Difference};
use crate::ops::run::{Execution, Finished, RegistryFlags};
use crate::ops::verify::{verify_dataset, VerifyStatus};
use crate::ops::Events;
use crate::record::metrics::MetricSummary;
use crate::record::{DatasetKind, ExecMode, Output, Run};
use crate::script::plan::{container_dirs, Bindings, EnginePlan, PlanOptions};
use crate::store::objects::Objects;
use crate::store::Store;

/// What to re-run and how.
#[derive(Debug, Clone, Default)]
pub struct RerunRequest {
    /// The original run's id (resolved).
    pub id: String,
    /// Engine override (default: the recorded one).
    pub engine: Option<Engine>,
    /// Run on the host instead of in the pinned container.
    pub host: bool,
    /// Check out into this directory (empty or missing) instead of a temporary one.
    pub checkout: Option<PathBuf>,
    /// Keep the temporary checkout.
    pub keep: bool,
    /// Registry options for the engine's pull.
    pub registry: crate::capture::image::registry::RegistryOptions,
    /// Print the engine commands instead of running anything.
    pub dry_run: bool,
    /// The user accepted what [`review`] listed (`--trust`, or a confirmation on a terminal).
    pub trust: bool,
    /// `--metrics` paths read after the run (relative to the re-run's working directory).
    pub metrics: Vec<PathBuf>,
    /// How close each metric must come to the original's (`--rtol`, `--atol`).
    pub tolerance: Tolerance,
    /// Push the re-run to MLflow when it ends (`--mlflow`); never changes its outcome.
    pub mlflow: Option<crate::ops::mlflow::AfterRun>,
    /// Whether the re-run's outputs are kept in the object store.
    pub keep_outputs: crate::store::kept::KeepPolicy,
    /// The variables the re-run's environment snapshot records (`record_env`).
    pub record_env: Vec<String>,
    /// Refuse a host re-run whose environment differs from the recorded one (`--strict-env`).
    pub strict_env: bool,
    /// Build a fresh venv here with the recorded distributions and run in it (`--recreate-env`).
    pub recreate_env: Option<PathBuf>,
    /// How often system metrics are sampled while the re-run's job runs (config
    /// `sys_metrics_interval`; zero: off).
    pub sys_metrics_interval: std::time::Duration,
}

/// What a re-run would replay that needs the user's consent: a run recorded elsewhere replays
/// someone else's command, flags and mounts; any run with risky engine flags, mounts or
/// forwarded variables hands the container part of this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    /// `Some(host)` when the run was not recorded on this machine.
    pub recorded_on: Option<String>,
    /// The risky engine flags and mounts ([`crate::config::RISKY_FLAGS`]).
    pub risky: Vec<String>,
    /// Variables passed from this environment that look sensitive.
    pub risky_env: Vec<String>,
    /// Everything replayed, for the user to judge: command, image, engine flags, mounts, env.
    pub lines: Vec<String>,
}

/// Variables that are risky to hand to a replayed command from this environment.
fn risky_env_name(name: &str) -> bool {
    crate::capture::env::looks_secret(name)
        || name.starts_with("LD_")
        || matches!(
            name,
            "PATH" | "BASH_ENV" | "ENV" | "PYTHONPATH" | "PYTHONSTARTUP" | "PROMPT_COMMAND"
        )
}

/// Whether re-running `run` on this machine (`this_host`) needs consent, and why.
pub fn review(run: &Run, this_host: &str) -> Option<Review> {
    let container = run.exec.mode == ExecMode::Container && run.image.is_some();
    let recorded_on = (run.host != this_host).then(|| run.host.clone());
    let risky = if container {
        crate::config::risky_engine_args(&run.exec.engine_args)
    } else {
        Vec::new()
    };
    let risky_env: Vec<String> = run
        .env
        .keys()
        .filter(|k| risky_env_name(k))
        .cloned()
        .collect();
    if recorded_on.is_none() && risky.is_empty() && risky_env.is_empty() {
        return None;
    }
    let d = |s: &str| crate::script::quote::display(s.as_bytes());
    let mut lines = Vec::new();
    if let Some(h) = &recorded_on {
        lines.push(format!(
            "run {} was recorded on {} by {}, not on this machine ({})",
            run.id,
            d(h),
            d(&run.user),
            d(this_host)
        ));
    }
    lines.push(format!(
        "command: {}",
        crate::script::quote::display_argv(run.command.iter().map(|a| a.as_bytes()))
    ));
    match (&run.image, container) {
        (Some(img), true) => {
            lines.push(format!(
                "runs in: {}",
                d(&img.pinned().unwrap_or_else(|| img.reference.clone()))
            ));
            let (mounts, flags): (Vec<&String>, Vec<&String>) = run
                .exec
                .engine_args
                .iter()
                .partition(|a| a.starts_with("--volume=") || a.starts_with("--mount="));
            if !flags.is_empty() {
                let f: Vec<String> = flags.iter().map(|a| d(a)).collect();
                lines.push(format!("engine flags: {}", f.join(" ")));
            }
            if !mounts.is_empty() {
                let m: Vec<String> = mounts.iter().map(|a| d(a)).collect();
                lines.push(format!("mounts: {}", m.join(" ")));
            }
        }
        _ => lines.push("runs on: this host".into()),
    }
    if !run.env.is_empty() {
        let names: Vec<String> = run.env.keys().map(|k| d(k)).collect();
        lines.push(format!("variables passed: {}", names.join(" ")));
    }
    if !risky.is_empty() {
        let r: Vec<String> = risky.iter().map(|a| d(a)).collect();
        lines.push(format!("RISKY for this host: {}", r.join(" ")));
    }
    if !risky_env.is_empty() {
        lines.push(format!(
            "RISKY variables from your environment: {}",
            risky_env.join(" ")
        ));
    }
    Some(Review {
        recorded_on,
        risky,
        risky_env,
        lines,
    })
}

/// Why a re-run could not be made. The CLI turns it into the user-facing error.
#[derive(Debug, thiserror::Error)]
pub enum RerunError {
    /// The record could not be read or written.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The re-run needs consent that was not given ([`review`]).
    #[error("refusing to re-run without confirmation: {why}\n  {lines}")]
    Untrusted { why: &'static str, lines: String },
    /// A variable recorded redacted must be set now.
    #[error("{name} was recorded redacted and is not set now")]
    Redacted { name: String },
    /// A container re-run needs the recorded digest.
    #[error("run {id} has no image digest ({reference} was recorded unpinned); it cannot be re-run pinned")]
    Unpinned { id: String, reference: String },
    /// The run's repository had no commit.
    #[error("run {id} was recorded in a repository with no commit")]
    NoCommit { id: String },
    /// `--checkout` names a directory that is not empty.
    #[error("{} is not empty", path.display())]
    NotEmpty { path: PathBuf },
    /// The checkout directory could not be made.
    #[error("cannot create {}: {reason}", path.display())]
    CreateDir { path: PathBuf, reason: String },
    /// Neither the remote nor the recorded repository gave the commit.
    #[error("cannot check out commit {commit} of run {id}")]
    Checkout {
        id: String,
        commit: String,
        /// What each source answered; empty when there was none.
        tried: Vec<String>,
    },
    /// The recorded patch is not the one its SHA-256 names.
    #[error("the recorded patch of run {id} does not match its recorded SHA-256 {recorded}")]
    PatchAltered { id: String, recorded: String },
    /// The recorded patch does not apply to the checkout.
    #[error("the recorded patch of run {id} does not apply: {reason}")]
    Patch { id: String, reason: String },
    /// A path dataset is gone from where the re-run reads it.
    #[error("dataset {name} is gone from {}", path.display())]
    DatasetMissing { name: String, path: PathBuf },
    /// A path dataset differs from the record where the re-run reads it.
    #[error("dataset {name} at {} has changed: digest {actual} (the run used {recorded}){detail}", path.display())]
    DatasetChanged {
        name: String,
        path: PathBuf,
        actual: String,
        recorded: String,
        detail: String,
    },
    /// A dataset outside the checkout could not be linked into it (host re-run).
    #[error("cannot link dataset {name}: {reason}")]
    Link { name: String, reason: String },
    /// The record's `cwd` or `exec.workdir` would leave the checkout.
    #[error("run {id} cannot be re-run: its {reason}")]
    UnsafePath { id: String, reason: String },
    /// A CA certificate of the recorded plan is gone or changed.
    #[error(transparent)]
    Ca(#[from] crate::script::plan::CaError),
    /// The shared run machinery (recording, the child) failed.
    #[error(transparent)]
    Run(#[from] crate::ops::run::RunError),
    /// No container engine to re-run with.
    #[error(transparent)]
    NoEngine(#[from] crate::exec::NoEngine),
    /// `--recreate-env` could not build the environment.
    #[error(transparent)]
    Recreate(#[from] crate::ops::recreate_env::RecreateError),
    /// `--recreate-env` of a container re-run: the image is the environment.
    #[error("--recreate-env applies to a host re-run; run {id} re-runs in its pinned image")]
    RecreateInContainer { id: String },
    /// `--strict-env`: the environment here differs from the recorded one.
    #[error("the environment differs from the one run {id} recorded ({count} change(s)): {first}")]
    EnvDrift {
        id: String,
        count: usize,
        first: String,
    },
}

impl crate::error::Hinted for RerunError {
    fn hint(&self) -> Option<String> {
        let restore = "restore the data the run used, or record a new run";
        Some(match self {
            RerunError::Store(e) => return e.hint(),
            RerunError::Untrusted { .. } => "read what it would replay above; if you trust it, run again with --trust (or answer y on a terminal)".into(),
            RerunError::Redacted { name } => format!("export {name}=… and run `repro rerun` again"),
            RerunError::Unpinned { .. } => "re-run it on the host with --host, or run it anew with a pinned image".into(),
            RerunError::NoCommit { .. } => "commit the code before recording runs you want to re-run".into(),
            RerunError::NotEmpty { .. } => "give --checkout an empty or missing directory".into(),
            RerunError::Checkout { tried, .. } if tried.is_empty() => {
                "the recorded repository path is gone and no remote was recorded".into()
            }
            RerunError::Checkout { tried, .. } => tried.join("; "),
            RerunError::PatchAltered { .. } => {
                "the record was altered; re-run from a clean commit or record a new run".into()
            }
            RerunError::DatasetMissing { .. } | RerunError::DatasetChanged { .. } => restore.into(),
            RerunError::Ca(e) => return e.hint(),
            RerunError::UnsafePath { .. } => "the record was altered after it was made (import refuses such runs); record the run anew".into(),
            RerunError::Run(e) => return e.hint(),
            RerunError::Recreate(e) => return e.hint(),
            RerunError::RecreateInContainer { .. } => "add --host, or drop --recreate-env".into(),
            RerunError::EnvDrift { id, .. } => format!("`repro diff` against a run recorded here lists every change; install the recorded packages (docs/environment.md) or re-run {id} without --strict-env"),
            RerunError::NoEngine(e) => return e.hint(),
            _ => return None,
        })
    }
}

/// The refusal when a re-run needs consent that was not given.
pub fn untrusted_error(r: &Review) -> RerunError {
    RerunError::Untrusted {
        why: if r.recorded_on.is_some() {
            "it was recorded on another machine"
        } else {
            "it replays risky engine flags, mounts or variables"
        },
        lines: r.lines.join("\n  "),
    }
}

/// One output compared with the original's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputCheck {
    pub path: String,
    /// `match`, `missing in both`, `MISSING now`, `MISMATCH`.
    pub verdict: &'static str,
    /// For a `MISMATCH`: where the two first differ (from the kept copies).
    pub difference: Option<Difference>,
}

impl OutputCheck {
    /// Whether this output makes `--check` fail.
    pub fn failed(&self) -> bool {
        !matches!(self.verdict, "match" | "missing in both")
    }
}

/// How close a re-run's metric must come to the original's: `|now - original| <= atol + rtol *
/// |original|` (`numpy.isclose` with the original as the reference). The default (both 0) asks
/// for the same value. NaN matches NaN and an infinity only the same infinity.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tolerance {
    pub rtol: f64,
    pub atol: f64,
}

impl Tolerance {
    /// Whether `now` is within tolerance of `original`.
    pub fn close(&self, now: f64, original: f64) -> bool {
        if now == original || (now.is_nan() && original.is_nan()) {
            return true;
        }
        if !now.is_finite() || !original.is_finite() {
            return false;
        }
        (now - original).abs() <= self.atol + self.rtol * original.abs()
    }
}

/// The verdict on one metric of a re-run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricVerdict {
    /// The last value is within tolerance of the original's.
    Match,
    /// The last value is outside the tolerance.
    OutOfTolerance,
    /// The original reported it; the re-run did not.
    MissingNow,
    /// Only the re-run reported it (not a failure).
    New,
}

/// One metric's last value compared with the original's.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricCheck {
    pub key: String,
    pub original: Option<f64>,
    pub now: Option<f64>,
    pub verdict: MetricVerdict,
}

impl MetricCheck {
    /// Whether this metric makes `--check` fail.
    pub fn failed(&self) -> bool {
        matches!(
            self.verdict,
            MetricVerdict::OutOfTolerance | MetricVerdict::MissingNow
        )
    }
}

/// Compares the last value of every metric of the original (`old`) with the re-run's (`new`).
pub fn compare_metrics(
    old: &[MetricSummary],
    new: &[MetricSummary],
    tol: Tolerance,
) -> Vec<MetricCheck> {
    let mut out: Vec<MetricCheck> = old
        .iter()
        .map(|o| {
            let now = new.iter().find(|n| n.key == o.key).map(|n| n.last);
            let verdict = match now {
                None => MetricVerdict::MissingNow,
                Some(v) if tol.close(v, o.last) => MetricVerdict::Match,
                Some(_) => MetricVerdict::OutOfTolerance,
            };
            MetricCheck {
                key: o.key.clone(),
                original: Some(o.last),
                now,
                verdict,
            }
        })
        .collect();
    out.extend(
        new.iter()
            .filter(|n| !old.iter().any(|o| o.key == n.key))
            .map(|n| MetricCheck {
                key: n.key.clone(),
                original: None,
                now: Some(n.last),
                verdict: MetricVerdict::New,
            }),
    );
    out
}

/// Everything a re-run is checked on: its outputs and its metrics against the original's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checks {
    pub outputs: Vec<OutputCheck>,
    pub metrics: Vec<MetricCheck>,
    /// The tolerance the metrics were compared with.
    pub tolerance: Tolerance,
}

impl Checks {
    /// Compares the re-run `new_id` (its outputs `new_outputs`) with the original.
    pub fn of(
        store: &Store,
        orig: &Run,
        new_id: &str,
        new_outputs: Option<&[Output]>,
        tolerance: Tolerance,
    ) -> Result<Checks, crate::store::StoreError> {
        Checks::of_in(store, orig, new_id, new_outputs, tolerance, None)
    }

    /// [`Checks::of`], with the directory the re-run wrote its outputs in (`new_cwd`), where
    /// an output that was not kept is read to say where it first differs.
    pub fn of_in(
        store: &Store,
        orig: &Run,
        new_id: &str,
        new_outputs: Option<&[Output]>,
        tolerance: Tolerance,
        new_cwd: Option<&Path>,
    ) -> Result<Checks, crate::store::StoreError> {
        let objects = Objects::beside(store.path());
        let mut outputs = new_outputs
            .map(|n| compare_outputs(&orig.outputs, n))
            .unwrap_or_default();
        for c in outputs.iter_mut().filter(|c| c.verdict == "MISMATCH") {
            let old = orig.outputs.iter().find(|o| o.path == c.path);
            let new = new_outputs.and_then(|n| n.iter().find(|o| o.path == c.path));
            if let (Some(a), Some(b)) = (
                old.and_then(|o| o.sha256.as_deref()),
                new.and_then(|o| o.sha256.as_deref()),
            ) {
                let work = new_cwd.map(|d| d.join(&c.path));
                c.difference = Some(first_difference(&objects, a, b, work.as_deref()));
            }
        }
        Ok(Checks {
            outputs,
            metrics: compare_metrics(
                &store.metric_summaries(&orig.id)?,
                &store.metric_summaries(new_id)?,
                tolerance,
            ),
            tolerance,
        })
    }

    /// How many outputs and metrics make `--check` fail.
    pub fn failures(&self) -> usize {
        self.outputs.iter().filter(|o| o.failed()).count()
            + self.metrics.iter().filter(|m| m.failed()).count()
    }

    /// repro's exit code: the run's, or 1 under `check` when the run succeeded but an output
    /// or a metric differs (a failed run keeps its own code).
    pub fn exit_code(&self, run_exit: i32, check: bool) -> i32 {
        if check && run_exit == 0 && self.failures() > 0 {
            1
        } else {
            run_exit
        }
    }
}

/// What a re-run produced.
#[derive(Debug)]
pub enum RerunResult {
    /// The run was executed.
    Ran { finished: Finished, checks: Checks },
    /// `dry_run`: the engine argv lists (pull, run), or the host argv.
    DryRun(Vec<Vec<OsString>>),
}

fn git(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Checks out the recorded commit (remote first, then the recorded repository, as the bash
/// script does, with `protocol.ext.allow=never`) and applies the recorded patch after checking
/// its SHA-256.
fn checkout(ev: &dyn Events, orig: &Run, dir: &Path) -> Result<(), RerunError> {
    let c = orig.code.as_ref().expect("caller checks");
    let commit = c.commit.as_deref().ok_or_else(|| RerunError::NoCommit {
        id: orig.id.clone(),
    })?;
    let mut sources: Vec<String> = Vec::new();
    if let Some(r) = &c.remote {
        sources.push(r.clone());
    }
    if Path::new(&c.repo_root).exists() {
        sources.push(c.repo_root.clone());
    }
    let mut tried = Vec::new();
    let parent = dir.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(|e| RerunError::CreateDir {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let target = dir.to_string_lossy().into_owned();
    let clone = |src: &str| {
        git(
            parent,
            &[
                "-c",
                "protocol.ext.allow=never",
                "clone",
                "--quiet",
                "--no-checkout",
                "--",
                src,
                &target,
            ],
        )
    };
    let detach = || {
        git(
            dir,
            &[
                "-c",
                "advice.detachedHead=false",
                "checkout",
                "--quiet",
                "--detach",
                commit,
            ],
        )
    };
    let from = sources
        .iter()
        .find(|src| match clone(src).and_then(|_| detach()) {
            Ok(()) => true,
            Err(e) => {
                tried.push(format!("{src}: {e}"));
                let _ = std::fs::remove_dir_all(dir.join(".git"));
                false
            }
        });
    let Some(src) = from else {
        return Err(RerunError::Checkout {
            id: orig.id.clone(),
            commit: commit.to_string(),
            tried,
        });
    };
    ev.status(&format!(
        "checked out {commit} from {src} into {}",
        dir.display()
    ));
    if let Some(patch) = &c.patch {
        apply_patch(ev, orig, patch, c.patch_sha256.as_deref(), dir)?;
    }
    Ok(())
}

/// Applies the recorded patch to the checkout after checking its SHA-256.
fn apply_patch(
    ev: &dyn Events,
    orig: &Run,
    patch: &crate::record::Arg,
    sha256: Option<&str>,
    dir: &Path,
) -> Result<(), RerunError> {
    let sum = hex::encode(sha2::Sha256::digest(patch.as_bytes()));
    if sha256 != Some(sum.as_str()) {
        return Err(RerunError::PatchAltered {
            id: orig.id.clone(),
            recorded: sha256.unwrap_or("(none)").to_string(),
        });
    }
    let failed = |reason: String| RerunError::Patch {
        id: orig.id.clone(),
        reason,
    };
    std::fs::write(dir.join(".git/repro-recorded.patch"), patch.as_bytes())
        .map_err(|e| failed(format!("cannot write it: {e}")))?;
    git(dir, &["apply", "--binary", ".git/repro-recorded.patch"]).map_err(failed)?;
    ev.status("applied the recorded patch of uncommitted changes");
    Ok(())
}

/// A temporary checkout removed on drop unless kept.
struct TempCheckout {
    dir: PathBuf,
    keep: bool,
}

impl Drop for TempCheckout {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Where the re-run checks the code out: `--checkout DIR` (which must be empty), else the first
/// free `$TMPDIR/repro-rerun-<id>[-N]`, as an absolute path; `None` when no code was recorded.
/// The dry run and the real run take it from here, so the mount the dry run prints is the one
/// that runs.
fn checkout_dir(orig: &Run, req: &RerunRequest) -> Result<Option<(PathBuf, bool)>, RerunError> {
    if orig.code.is_none() {
        return Ok(None);
    }
    let (dir, temp) = match &req.checkout {
        Some(d) => {
            require_empty(d)?;
            (d.clone(), false)
        }
        None => {
            let base = std::env::temp_dir().join(format!("repro-rerun-{}", &orig.id[..12]));
            let mut d = base.clone();
            let mut n = 1;
            while d.exists() {
                n += 1;
                d = PathBuf::from(format!("{}-{n}", base.display()));
            }
            (d, true)
        }
    };
    // As the checkout will be canonicalized once it exists: its parent resolved now.
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let dir = match (dir.parent().map(Path::canonicalize), dir.file_name()) {
        (Some(Ok(parent)), Some(name)) => parent.join(name),
        _ => dir,
    };
    Ok(Some((dir, temp)))
}

/// The variables handed to the re-run: the current value, else the recorded one; a redacted
/// one must be set now (except in a dry run, which only shows).
fn replay_env(orig: &Run, dry_run: bool) -> Result<Vec<(String, String)>, RerunError> {
    let mut env = Vec::new();
    for (k, v) in &orig.env {
        match std::env::var(k) {
            Ok(now) => env.push((k.clone(), now)),
            Err(_) if v == REDACTED && !dry_run => {
                return Err(RerunError::Redacted { name: k.clone() })
            }
            Err(_) => env.push((k.clone(), v.clone())),
        }
    }
    Ok(env)
}

/// The engine of a container re-run: the one asked for, else the recorded one (detected when
/// neither is usable).
fn rerun_engine(
    orig: &Run,
    req: &RerunRequest,
    mode: ExecMode,
) -> Result<Option<Engine>, RerunError> {
    if mode == ExecMode::Host {
        return Ok(None);
    }
    let wanted = req
        .engine
        .or(orig.exec.engine.as_deref().and_then(Engine::parse));
    Ok(Some(if req.dry_run {
        wanted.unwrap_or(Engine::Podman)
    } else {
        pick_engine(wanted)?
    }))
}

/// `repro rerun`.
pub fn rerun(
    ev: &dyn Events,
    store: &mut Store,
    req: &RerunRequest,
) -> Result<RerunResult, RerunError> {
    let orig = store.get_run(&req.id)?;
    // Import refuses these already; a record written another way must not leave the checkout.
    crate::record::paths::check_run(&orig).map_err(|reason| RerunError::UnsafePath {
        id: orig.id.clone(),
        reason,
    })?;
    // Nothing runs (no checkout, no pull) before consent; a dry run only shows.
    if let Some(r) = review(&orig, &crate::capture::host::hostname()) {
        if req.dry_run {
            for l in &r.lines {
                ev.warn(l);
            }
        } else if !req.trust {
            return Err(untrusted_error(&r));
        }
    }
    let mode = rerun_mode(&orig, req.host)?;
    let engine = rerun_engine(&orig, req, mode)?;
    let mut env = replay_env(&orig, req.dry_run)?;

    // The run's engine plan: what it recorded it needed to reach its registry, plus what is
    // given now; the new run records the union.
    let registry = RegistryFlags::for_run(&orig, &req.registry);
    if mode == ExecMode::Container {
        crate::script::plan::ca_pem(&orig, &registry)?;
    }
    let mut exec = orig.exec.clone();
    exec.mode = mode;
    exec.engine = engine.map(|e| e.as_str().to_string());
    if mode == ExecMode::Host {
        exec.workdir = None;
    }
    exec.registry = registry_access(&orig, &req.registry);
    let run = new_run(&orig, exec);
    if let (Some(dir), false) = (&req.recreate_env, req.dry_run) {
        if mode != ExecMode::Host {
            return Err(RerunError::RecreateInContainer {
                id: orig.id.clone(),
            });
        }
        let recorded = store.environment_of(&orig.id)?;
        let made = crate::ops::recreate_env::recreate(
            ev,
            &orig.id,
            recorded.as_ref().and_then(|e| e.python.as_ref()),
            dir,
        )?;
        env.retain(|(k, _)| k != "VIRTUAL_ENV" && k != "PATH");
        env.extend(made.child_env());
    }
    if mode == ExecMode::Host && !req.dry_run {
        env_drift_check(ev, store, &orig, &run, &env, req)?;
    }
    let dir = checkout_dir(&orig, req)?;

    if req.dry_run {
        let root = dir.as_ref().map(|(d, _)| d.as_path());
        let placed = place_datasets(&orig, mode, root, &Probe::Commit)?;
        let x = execution(&orig, root, placed.mounts, env, registry, req);
        return Ok(RerunResult::DryRun(dry_run_argv(store, &run, engine, &x)));
    }

    // Code: the recorded commit and patch in a fresh checkout.
    let mut temp = None;
    if let Some((d, is_temp)) = &dir {
        if *is_temp {
            temp = Some(TempCheckout {
                dir: d.clone(),
                keep: req.keep,
            });
        }
        checkout(ev, &orig, d)?;
    }
    let root = dir
        .as_ref()
        .map(|(d, _)| d.canonicalize().unwrap_or_else(|_| d.clone()));
    let placed = place_datasets(&orig, mode, root.as_deref(), &Probe::Checkout)?;
    verify_placed(store, &placed)?;
    link_placed(&placed)?;
    let x = execution(&orig, root.as_deref(), placed.mounts, env, registry, req);
    let sys = crate::ops::sys_metrics::SysMetrics::with_gpus(req.sys_metrics_interval);
    let finished = crate::ops::run::execute_sampled(ev, store, run, &x, sys)?;
    if let Some(t) = &temp {
        if t.keep {
            ev.status(&format!("kept the checkout in {}", t.dir.display()));
        } else {
            ev.status(&format!(
                "removed the checkout {} (--keep keeps it)",
                t.dir.display()
            ));
        }
    }
    let checks = Checks::of_in(
        store,
        &orig,
        &finished.id,
        Some(&finished.finish.outputs),
        req.tolerance,
        Some(&x.cwd),
    )?;
    if let Some(m) = &req.mlflow {
        crate::ops::mlflow::after_run(ev, store, &finished.id, m);
    }
    Ok(RerunResult::Ran { finished, checks })
}

/// How the re-run executes: in the checkout (or the recorded cwd without code), mounting it at
/// the workdir, with the datasets found outside it mounted read-only.
fn execution(
    orig: &Run,
    root: Option<&Path>,
    extra_mounts: Vec<(PathBuf, String)>,
    env: Vec<(String, String)>,
    registry: RegistryFlags,
    req: &RerunRequest,
) -> Execution {
    Execution {
        cwd: match root {
            Some(r) => r.join(&orig.cwd),
            None => PathBuf::from(&orig.cwd),
        },
        output_paths: orig.outputs.iter().map(|o| o.path.clone()).collect(),
        extra_mounts,
        env,
        registry,
        // The container mounts the checkout, not the recorded repository path.
        mount_src: root.map(Path::to_path_buf),
        metrics: req.metrics.clone(),
        keep: req.keep_outputs.clone(),
        record_env: Some(req.record_env.clone()),
    }
}

/// A host re-run compares the environment here with the recorded one: a warning with the first
/// differences, or (`--strict-env`) a refusal before anything is checked out or recorded.
fn env_drift_check(
    ev: &dyn Events,
    store: &Store,
    orig: &Run,
    run: &Run,
    env: &[(String, String)],
    req: &RerunRequest,
) -> Result<(), RerunError> {
    let Some(recorded) = store.environment_of(&orig.id)? else {
        return Ok(());
    };
    let x = Execution {
        env: env.to_vec(),
        record_env: Some(req.record_env.clone()),
        ..Execution::default()
    };
    let now = crate::ops::environment::current(run, &x);
    let changes = crate::ops::env_drift::drift(&recorded, &now);
    if changes.is_empty() {
        return Ok(());
    }
    let first = crate::sanitize::escape(&crate::ops::env_drift::headline(&changes, 3)).into_owned();
    if req.strict_env {
        return Err(RerunError::EnvDrift {
            id: orig.id.clone(),
            count: changes.len(),
            first,
        });
    }
    ev.warn(&format!(
        "the environment differs from the one run {} recorded: {first}",
        orig.id
    ));
    Ok(())
}

/// How a re-run executes: on the host when asked or when the run had no image, else as
/// recorded; a container re-run needs the recorded digest.
pub(crate) fn rerun_mode(orig: &Run, host: bool) -> Result<ExecMode, RerunError> {
    let mode = if host || orig.image.is_none() {
        ExecMode::Host
    } else {
        orig.exec.mode
    };
    if mode == ExecMode::Container {
        if let Some(img) = orig.image.as_ref().filter(|i| i.digest.is_none()) {
            return Err(RerunError::Unpinned {
                id: orig.id.clone(),
                reference: img.reference.clone(),
            });
        }
    }
    Ok(mode)
}

/// The new run of a re-run of `orig` with `exec`: the original's provenance (its code state —
/// remote, commit, patch — not the checkout), linked to it by `rerun_of`.
/// What the re-run records it needed to reach the registry: what the original recorded, plus
/// what the options given now add for the image's registry.
pub(crate) fn registry_access(
    orig: &Run,
    now: &crate::capture::image::registry::RegistryOptions,
) -> Option<crate::record::RegistryAccess> {
    crate::capture::image::registry::options::add_access(
        orig.exec.registry.as_ref(),
        orig.image.as_ref().and_then(|img| {
            now.host_settings(&crate::script::plan::registry_of(img))
                .access()
        }),
    )
}

/// The record of a re-run of `orig`: its provenance (name, image, code, data, params, the
/// variables it recorded) and a link to it; not its tags and notes, which annotate that run (a
/// re-run of the run tagged `best` is not itself the best).
pub(crate) fn new_run(orig: &Run, exec: crate::record::Exec) -> Run {
    Run {
        name: orig.name.clone(),
        image: orig.image.clone(),
        code: orig.code.clone(),
        datasets: orig.datasets.clone(),
        params: orig.params.clone(),
        params_from_argv: orig.params_from_argv.clone(),
        params_from_job: orig.params_from_job.clone(),
        env: orig.env.clone(),
        rerun_of: Some(orig.id.clone()),
        ..Run::start(
            orig.command.clone(),
            orig.cwd.clone(),
            exec,
            crate::capture::host::start_facts(),
        )
    }
}

/// Refuses a `--checkout` directory that exists and is not empty.
pub(crate) fn require_empty(d: &Path) -> Result<(), RerunError> {
    let used = d.exists()
        && std::fs::read_dir(d)
            .map(|mut r| r.next().is_some())
            .unwrap_or(true);
    if used {
        return Err(RerunError::NotEmpty {
            path: d.to_path_buf(),
        });
    }
    Ok(())
}

/// The engine argv (pull, run) of the re-run, bound exactly as `execute` binds the plan: the
/// new run's container name and metrics file, the checkout mounted at the workdir, the datasets
/// outside it, the registry options and the `--cert-dir` the pull gets. Only the new run's id
/// differs from the real run's (each run gets its own).
fn dry_run_argv(
    store: &Store,
    run: &Run,
    engine: Option<Engine>,
    x: &Execution,
) -> Vec<Vec<OsString>> {
    let plan = engine.and_then(|e| {
        EnginePlan::of(
            run,
            e,
            &PlanOptions {
                name: Some(format!("repro-{}", run.id)),
                tty: crate::exec::want_tty(),
                registry: x.registry.clone(),
            },
        )
    });
    let Some(plan) = plan else {
        return vec![run.argv_os()];
    };
    let metrics = (store.path() != Path::new(":memory:")).then(|| {
        let dir = crate::ops::metrics::metrics_dir(store.path());
        dir.canonicalize()
            .unwrap_or(dir)
            .join(format!("{}.jsonl", run.id))
    });
    let b = Bindings {
        src: x.mount_src.clone().unwrap_or_else(|| x.cwd.clone()),
        extra_mounts: x.extra_mounts.clone(),
        cert_dir: (x.registry.needs_cert_dir() && plan.engine == Engine::Podman)
            .then(|| std::env::temp_dir().join(format!("repro-certs-{}", run.id))),
        channels: metrics.as_ref().and_then(|m| {
            m.parent()?
                .parent()
                .map(|d| d.join("channels").join(&run.id))
        }),
        metrics,
    };
    let e = OsString::from(plan.engine.as_str());
    let mut pull = vec![e.clone()];
    pull.extend(plan.pull_args(&b));
    let mut r = vec![e];
    r.extend(plan.run_args(&b));
    vec![pull, r]
}

/// How to tell whether a relative dataset path is in the re-run's source tree.
enum Probe {
    /// The checkout exists: look in it (the recorded commit with its patch applied).
    Checkout,
    /// Before the checkout (a dry run): ask git whether the recorded commit tracks the path.
    Commit,
}

/// Where each path dataset is verified and read, and what makes it visible to the command.
#[derive(Debug, Default)]
struct Placed {
    /// (dataset, the directory its path is resolved against where it is verified and read).
    verify: Vec<(crate::record::Dataset, PathBuf)>,
    /// (host path, container path) mounted read-only: data outside the checkout.
    mounts: Vec<(PathBuf, String)>,
    /// (data outside the checkout, its place inside it) for a host re-run.
    links: Vec<(String, PathBuf, PathBuf)>,
}

/// The one rule every re-run path follows (the bash and Slurm scripts in their dataset
/// section): a relative path dataset is verified and read in the checkout when the recorded
/// commit has it, else at its recorded place (under the recorded repository, or the cwd without
/// code), which is mounted (container) or linked (host) into the checkout; an absolute one
/// where it was.
fn place_datasets(
    orig: &Run,
    mode: ExecMode,
    root: Option<&Path>,
    probe: &Probe,
) -> Result<Placed, RerunError> {
    let recorded_base = match &orig.code {
        Some(c) => PathBuf::from(&c.repo_root),
        None => PathBuf::from(&orig.cwd),
    };
    let (workdir, _) = container_dirs(orig);
    let mut placed = Placed::default();
    for d in orig.datasets.iter().filter(|d| d.kind == DatasetKind::Path) {
        let Some(uri) = &d.uri else { continue };
        let absolute = Path::new(uri).is_absolute();
        let in_tree = match (root, absolute) {
            (Some(r), false) => match probe {
                Probe::Checkout => std::fs::symlink_metadata(r.join(uri)).is_ok(),
                Probe::Commit => tracked_in_commit(orig, uri),
            },
            _ => false,
        };
        let base = match (in_tree, root) {
            (true, Some(r)) => r.to_path_buf(),
            _ => recorded_base.clone(),
        };
        let at = base.join(uri);
        placed.verify.push((d.clone(), base));
        match (root, absolute, in_tree, mode) {
            (Some(_), false, true, _) => {}
            (Some(r), false, false, ExecMode::Host) => {
                placed.links.push((d.name.clone(), at, r.join(uri)));
            }
            (Some(_), false, false, ExecMode::Container) => placed
                .mounts
                .push((at, format!("{}/{uri}", workdir.trim_end_matches('/')))),
            (_, true, _, ExecMode::Container) => placed.mounts.push((at, uri.clone())),
            _ => {}
        }
    }
    Ok(placed)
}

/// Whether the run's recorded commit tracks `path` (relative to the repository root), asked of
/// the recorded repository; `false` when it cannot say.
fn tracked_in_commit(orig: &Run, path: &str) -> bool {
    let Some((root, commit)) = orig
        .code
        .as_ref()
        .and_then(|c| c.commit.as_deref().map(|k| (&c.repo_root, k)))
    else {
        return false;
    };
    let spec = format!("{commit}:{}", path.trim_start_matches("./"));
    Command::new("git")
        .args(["-C", root, "cat-file", "-e", &spec])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Path datasets are re-hashed where the re-run reads them and must still match the record.
fn verify_placed(store: &Store, placed: &Placed) -> Result<(), RerunError> {
    for (d, base) in &placed.verify {
        // The same check as `repro verify`, at the place the re-run reads.
        let item = verify_dataset(d, base, Some(store.conn()));
        let at = item
            .path
            .clone()
            .unwrap_or_else(|| base.join(d.uri.as_deref().unwrap_or("")));
        match item.status {
            VerifyStatus::Match => {}
            VerifyStatus::Missing => {
                return Err(RerunError::DatasetMissing {
                    name: d.name.clone(),
                    path: at,
                })
            }
            _ => {
                return Err(RerunError::DatasetChanged {
                    name: d.name.clone(),
                    path: at,
                    actual: item.actual.unwrap_or_else(|| "?".into()),
                    recorded: d.digest.clone().unwrap_or_else(|| "?".into()),
                    detail: item.detail.map(|x| format!(" ({x})")).unwrap_or_default(),
                })
            }
        }
    }
    Ok(())
}

/// A host re-run sees data outside the checkout through a symlink at its recorded place.
fn link_placed(placed: &Placed) -> Result<(), RerunError> {
    for (name, from, to) in &placed.links {
        if let Some(p) = to.parent() {
            let _ = std::fs::create_dir_all(p);
        }
        std::os::unix::fs::symlink(from, to).map_err(|e| RerunError::Link {
            name: name.clone(),
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

/// Compares each original output with the new one.
pub fn compare_outputs(old: &[Output], new: &[Output]) -> Vec<OutputCheck> {
    old.iter()
        .map(|o| {
            let n = new.iter().find(|n| n.path == o.path);
            let verdict = match (n.and_then(|n| n.sha256.as_ref()), o.sha256.as_ref()) {
                (Some(a), Some(b)) if a == b => "match",
                (None, None) => "missing in both",
                (None, Some(_)) => "MISSING now",
                _ => "MISMATCH",
            };
            OutputCheck {
                path: o.path.clone(),
                verdict,
                difference: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::diff::one_point as m;

    #[test]
    fn tolerance_is_numpy_isclose_against_the_original() {
        let exact = Tolerance::default();
        assert!(exact.close(0.5, 0.5));
        assert!(!exact.close(0.5 + 1e-12, 0.5));
        let t = Tolerance {
            rtol: 0.1,
            atol: 0.0,
        };
        // The original is the reference: 10% of 1.0, not of 1.1.
        assert!(t.close(1.09, 1.0));
        assert!(!t.close(1.0, 1.12));
        assert!(
            !t.close(0.0, 1e-9),
            "rtol alone never accepts a change from 0"
        );
        let a = Tolerance {
            rtol: 0.0,
            atol: 0.5,
        };
        assert!(a.close(-0.5, 0.0) && !a.close(-0.51, 0.0));
        // NaN matches NaN only; an infinity only itself, whatever the tolerance.
        let wide = Tolerance {
            rtol: 1e9,
            atol: 1e9,
        };
        assert!(wide.close(f64::NAN, f64::NAN));
        assert!(!wide.close(f64::NAN, 1.0) && !wide.close(1.0, f64::NAN));
        assert!(wide.close(f64::INFINITY, f64::INFINITY));
        assert!(!wide.close(f64::NEG_INFINITY, f64::INFINITY));
        assert!(!wide.close(1e300, f64::INFINITY));
        assert!(!Tolerance::default().close(f64::MAX, -f64::MAX));
    }

    #[test]
    fn metrics_missing_now_fail_and_new_ones_do_not() {
        let c = compare_metrics(
            &[m("acc", 0.9), m("gone", 1.0)],
            &[m("acc", 0.9), m("new", 2.0)],
            Tolerance::default(),
        );
        let v: Vec<(&str, MetricVerdict, bool)> = c
            .iter()
            .map(|x| (x.key.as_str(), x.verdict, x.failed()))
            .collect();
        assert_eq!(
            v,
            [
                ("acc", MetricVerdict::Match, false),
                ("gone", MetricVerdict::MissingNow, true),
                ("new", MetricVerdict::New, false),
            ]
        );
    }
}
