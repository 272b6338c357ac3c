//! `rerun`: execute a recorded run again, now, with the same pins — recorded as a new run linked
//! to the original — and compare every output hash with the original's.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest as _;

use crate::capture::env::REDACTED;
use crate::error::{CliError, CliResult};
use crate::exec::pick_engine;
use crate::exec::Engine;
use crate::ops::run::{execute, registry_flags, Execution, Finished};
use crate::ops::verify::{verify_dataset, VerifyStatus};
use crate::ops::Events;
use crate::record::metrics::MetricSummary;
use crate::record::{DatasetKind, ExecMode, Output, Run};
use crate::script::plan::{container_dirs, Bindings, EnginePlan, PlanOptions};
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

/// The refusal when a re-run needs consent that was not given.
pub fn untrusted_error(r: &Review) -> CliError {
    let why = if r.recorded_on.is_some() {
        "it was recorded on another machine"
    } else {
        "it replays risky engine flags, mounts or variables"
    };
    CliError::user(format!(
        "refusing to re-run without confirmation: {why}\n  {}",
        r.lines.join("\n  ")
    ))
    .hint("read what it would replay above; if you trust it, run again with --trust (or answer y on a terminal)")
}

/// One output compared with the original's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputCheck {
    pub path: String,
    /// `match`, `missing in both`, `MISSING now`, `MISMATCH`.
    pub verdict: &'static str,
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
    ) -> CliResult<Checks> {
        Ok(Checks {
            outputs: new_outputs
                .map(|n| compare_outputs(&orig.outputs, n))
                .unwrap_or_default(),
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
fn checkout(ev: &dyn Events, orig: &Run, dir: &Path) -> CliResult<()> {
    let c = orig.code.as_ref().expect("caller checks");
    let commit = c.commit.as_deref().ok_or_else(|| {
        CliError::user(format!(
            "run {} was recorded in a repository with no commit",
            orig.id
        ))
        .hint("commit the code before recording runs you want to re-run")
    })?;
    let mut sources: Vec<String> = Vec::new();
    if let Some(r) = &c.remote {
        sources.push(r.clone());
    }
    if Path::new(&c.repo_root).exists() {
        sources.push(c.repo_root.clone());
    }
    let mut errors = Vec::new();
    let parent = dir.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::user(format!("cannot create {}: {e}", dir.display())))?;
    let mut done = false;
    for src in &sources {
        let target = dir.to_string_lossy().into_owned();
        let attempt = git(
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
        .and_then(|_| {
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
        });
        match attempt {
            Ok(()) => {
                ev.status(&format!(
                    "checked out {commit} from {src} into {}",
                    dir.display()
                ));
                done = true;
                break;
            }
            Err(e) => {
                errors.push(format!("{src}: {e}"));
                let _ = std::fs::remove_dir_all(dir.join(".git"));
            }
        }
    }
    if !done {
        return Err(CliError::user(format!(
            "cannot check out commit {commit} of run {}",
            orig.id
        ))
        .hint(if sources.is_empty() {
            "the recorded repository path is gone and no remote was recorded".to_string()
        } else {
            errors.join("; ")
        }));
    }
    if let Some(patch) = &c.patch {
        let sum = hex::encode(sha2::Sha256::digest(patch.as_bytes()));
        if c.patch_sha256.as_deref() != Some(sum.as_str()) {
            return Err(CliError::user(format!(
                "the recorded patch of run {} does not match its recorded SHA-256 {}",
                orig.id,
                c.patch_sha256.as_deref().unwrap_or("(none)")
            ))
            .hint("the record was altered; re-run from a clean commit or record a new run"));
        }
        let patch_file = dir.join(".git/repro-recorded.patch");
        std::fs::write(&patch_file, patch.as_bytes())
            .map_err(|e| CliError::user(format!("cannot write the patch: {e}")))?;
        git(dir, &["apply", "--binary", ".git/repro-recorded.patch"]).map_err(|e| {
            CliError::user(format!(
                "the recorded patch of run {} does not apply: {e}",
                orig.id
            ))
        })?;
        ev.status("applied the recorded patch of uncommitted changes");
    }
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

/// `repro rerun`.
pub fn rerun(ev: &dyn Events, store: &mut Store, req: &RerunRequest) -> CliResult<RerunResult> {
    let orig = store.get_run(&req.id)?;
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
    let engine = match mode {
        ExecMode::Container => {
            let wanted = req
                .engine
                .or(orig.exec.engine.as_deref().and_then(Engine::parse));
            Some(if req.dry_run {
                wanted.unwrap_or(Engine::Podman)
            } else {
                pick_engine(wanted)?
            })
        }
        ExecMode::Host => None,
    };

    // Named variables: the current value, else the recorded one; a redacted one must be set now.
    let mut env = Vec::new();
    for (k, v) in &orig.env {
        match std::env::var(k) {
            Ok(now) => env.push((k.clone(), now)),
            Err(_) if v == REDACTED && !req.dry_run => {
                return Err(
                    CliError::user(format!("{k} was recorded redacted and is not set now"))
                        .hint(format!("export {k}=… and run `repro rerun` again")),
                )
            }
            Err(_) => env.push((k.clone(), v.clone())),
        }
    }

    let mut exec = orig.exec.clone();
    exec.mode = mode;
    exec.engine = engine.map(|e| e.as_str().to_string());
    if mode == ExecMode::Host {
        exec.workdir = None;
    }
    let registry = orig
        .image
        .as_ref()
        .map(|i| registry_flags(i, &req.registry))
        .unwrap_or_default();

    if req.dry_run {
        return Ok(RerunResult::DryRun(dry_run(
            &orig, exec, engine, req, registry,
        )));
    }

    // Code: the recorded commit and patch in a fresh checkout.
    let mut temp = None;
    let (cwd, checkout_root) = match &orig.code {
        None => (PathBuf::from(&orig.cwd), None),
        Some(_) => {
            let dir = match &req.checkout {
                Some(d) => {
                    require_empty(d)?;
                    d.clone()
                }
                None => {
                    let base = std::env::temp_dir().join(format!("repro-rerun-{}", &orig.id[..12]));
                    let mut d = base.clone();
                    let mut n = 1;
                    while d.exists() {
                        n += 1;
                        d = PathBuf::from(format!("{}-{n}", base.display()));
                    }
                    temp = Some(TempCheckout {
                        dir: d.clone(),
                        keep: req.keep,
                    });
                    d
                }
            };
            checkout(ev, &orig, &dir)?;
            let root = dir.canonicalize().unwrap_or(dir);
            (root.join(&orig.cwd), Some(root))
        }
    };

    let extra_mounts = datasets(store, &orig, mode, checkout_root.as_deref())?;

    let run = new_run(&orig, exec);
    let x = Execution {
        cwd,
        output_paths: orig.outputs.iter().map(|o| o.path.clone()).collect(),
        extra_mounts,
        env,
        registry,
        // The container mounts the checkout, not the recorded repository path.
        mount_src: checkout_root.clone(),
        metrics: req.metrics.clone(),
    };
    let finished = execute(ev, store, run, &x)?;
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
    let checks = Checks::of(
        store,
        &orig,
        &finished.id,
        Some(&finished.finish.outputs),
        req.tolerance,
    )?;
    if let Some(m) = &req.mlflow {
        crate::ops::mlflow::after_run(ev, store, &finished.id, m);
    }
    Ok(RerunResult::Ran { finished, checks })
}

/// How a re-run executes: on the host when asked or when the run had no image, else as
/// recorded; a container re-run needs the recorded digest.
pub(crate) fn rerun_mode(orig: &Run, host: bool) -> CliResult<ExecMode> {
    let mode = if host || orig.image.is_none() {
        ExecMode::Host
    } else {
        orig.exec.mode
    };
    if mode == ExecMode::Container {
        if let Some(img) = orig.image.as_ref().filter(|i| i.digest.is_none()) {
            return Err(CliError::user(format!(
                "run {} has no image digest ({} was recorded unpinned); it cannot be re-run pinned",
                orig.id, img.reference
            ))
            .hint("re-run it on the host with --host, or run it anew with a pinned image"));
        }
    }
    Ok(mode)
}

/// The new run of a re-run of `orig` with `exec`: the original's provenance (its code state —
/// remote, commit, patch — not the checkout), linked to it by `rerun_of`.
pub(crate) fn new_run(orig: &Run, exec: crate::record::Exec) -> Run {
    Run {
        name: orig.name.clone(),
        image: orig.image.clone(),
        code: orig.code.clone(),
        datasets: orig.datasets.clone(),
        params: orig.params.clone(),
        tags: orig.tags.clone(),
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
pub(crate) fn require_empty(d: &Path) -> CliResult<()> {
    let used = d.exists()
        && std::fs::read_dir(d)
            .map(|mut r| r.next().is_some())
            .unwrap_or(true);
    if used {
        return Err(CliError::user(format!("{} is not empty", d.display()))
            .hint("give --checkout an empty or missing directory"));
    }
    Ok(())
}

fn dry_run(
    orig: &Run,
    exec: crate::record::Exec,
    engine: Option<Engine>,
    req: &RerunRequest,
    registry: crate::script::plan::RegistryFlags,
) -> Vec<Vec<OsString>> {
    let src = req
        .checkout
        .clone()
        .or_else(|| orig.code.as_ref().map(|c| PathBuf::from(&c.repo_root)))
        .unwrap_or_else(|| PathBuf::from(&orig.cwd));
    let run = Run {
        exec,
        ..orig.clone()
    };
    match engine.and_then(|e| {
        EnginePlan::of(
            &run,
            e,
            &PlanOptions {
                name: None,
                tty: false,
                registry,
            },
        )
    }) {
        Some(plan) => {
            let b = Bindings {
                src,
                extra_mounts: Vec::new(),
                cert_dir: Some(PathBuf::from("CERT_DIR")),
                metrics: Some(PathBuf::from("METRICS_FILE")),
            };
            let e = OsString::from(plan.engine.as_str());
            let mut pull = vec![e.clone()];
            pull.extend(plan.pull_args(&b));
            let mut r = vec![e];
            r.extend(plan.run_args(&b));
            vec![pull, r]
        }
        None => vec![run.argv_os()],
    }
}

/// Path datasets are re-hashed where they were and must still match; returns the read-only
/// mounts that make data outside the checkout visible in the container.
fn datasets(
    store: &Store,
    orig: &Run,
    mode: ExecMode,
    checkout_root: Option<&Path>,
) -> CliResult<Vec<(PathBuf, String)>> {
    let mut extra_mounts = Vec::new();
    for d in &orig.datasets {
        if d.kind != DatasetKind::Path {
            continue;
        }
        let Some(uri) = &d.uri else { continue };
        // The same check as `repro verify`, against the recorded repository (or cwd).
        let base = match &orig.code {
            Some(c) => PathBuf::from(&c.repo_root),
            None => PathBuf::from(&orig.cwd),
        };
        let item = verify_dataset(d, &base, Some(store.conn()));
        let original = item.path.clone().unwrap_or_else(|| base.join(uri));
        match item.status {
            VerifyStatus::Match => {}
            VerifyStatus::Missing => {
                return Err(CliError::user(format!(
                    "dataset {} is gone from {}",
                    d.name,
                    original.display()
                ))
                .hint("restore the data the run used, or record a new run"))
            }
            _ => {
                return Err(CliError::user(format!(
                    "dataset {} at {} has changed: digest {} (the run used {}){}",
                    d.name,
                    original.display(),
                    item.actual.as_deref().unwrap_or("?"),
                    d.digest.as_deref().unwrap_or("?"),
                    item.detail.map(|x| format!(" ({x})")).unwrap_or_default()
                ))
                .hint("restore the data the run used, or record a new run"))
            }
        }
        // Data inside the repository is usually not committed: make it visible in the checkout.
        if let (Some(root), false) = (checkout_root, Path::new(uri).is_absolute()) {
            let inside = root.join(uri);
            if !inside.exists() {
                match mode {
                    ExecMode::Host => {
                        if let Some(p) = inside.parent() {
                            let _ = std::fs::create_dir_all(p);
                        }
                        std::os::unix::fs::symlink(&original, &inside).map_err(|e| {
                            CliError::user(format!("cannot link dataset {}: {e}", d.name))
                        })?;
                    }
                    ExecMode::Container => {
                        let (workdir, _) = container_dirs(orig);
                        extra_mounts.push((
                            original.clone(),
                            format!("{}/{uri}", workdir.trim_end_matches('/')),
                        ));
                    }
                }
            }
        } else if Path::new(uri).is_absolute() && mode == ExecMode::Container {
            extra_mounts.push((original.clone(), uri.clone()));
        }
    }
    Ok(extra_mounts)
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
