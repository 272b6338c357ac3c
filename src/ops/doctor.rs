//! `repro doctor` as an operation: every check of the setup (configuration, database, git,
//! container engines — proven by starting a throw-away container with the flags `repro run`
//! uses —, registry credentials, MLflow, Slurm, shellcheck) as a typed report. Never prints.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::capture::image::auth::AuthConfig;
use crate::config::Config;
use crate::exec::which;
use crate::exec::Engine;
use crate::ops::engine_failure::{self, run_captured, Cause};
use crate::ops::run::{RunFlags, RunRequest};
use crate::record::{Arg, Exec, ExecMode, Image, ResolvedBy, Run};
use crate::script::plan::{Bindings, EnginePlan, PlanOptions};

/// The result of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
    /// Not checked, and the detail says why.
    Skipped,
}

impl Status {
    /// `ok`, `warn`, `fail`, `skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skipped => "skipped",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked (`database`, `engine podman`, `container podman`, …).
    pub name: String,
    pub status: Status,
    /// What was found (may hold text from engines and files: escape it for a terminal).
    pub detail: String,
    /// What to do about it.
    pub hint: Option<String>,
}

fn check(name: &str, status: Status, detail: impl Into<String>, hint: Option<String>) -> Check {
    Check {
        name: name.into(),
        status,
        detail: detail.into(),
        hint,
    }
}

/// Every check, in order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// No check failed.
    pub fn ok(&self) -> bool {
        !self.checks.iter().any(|c| c.status == Status::Fail)
    }
}

/// The configuration could not be read: the message and hint the CLI would print.
#[derive(Debug, Clone)]
pub struct ConfigProblem {
    pub message: String,
    pub hint: Option<String>,
}

/// What `repro doctor` checks and how.
#[derive(Debug)]
pub struct DoctorRequest<'a> {
    /// The configuration in effect (only the environment's when it could not be read).
    pub config: &'a Config,
    pub config_error: Option<ConfigProblem>,
    /// The database in effect and where that choice came from.
    pub db_path: PathBuf,
    pub db_source: String,
    /// Allowed for each engine command (info, pull, the probe container).
    pub engine_timeout: Duration,
    /// `--probe-image NAME@sha256:…`: the image of the probe container (pulled when missing).
    pub probe_image: Option<String>,
}

/// A `--probe-image` that is not `NAME@sha256:…`.
#[derive(Debug, thiserror::Error)]
#[error("--probe-image {given:?} is not a pinned reference: {problem}")]
pub struct ProbeImageError {
    pub given: String,
    pub problem: String,
}

/// Checks a `--probe-image` before anything runs: a reference with a digest.
pub fn check_probe_image(given: &str) -> Result<(), ProbeImageError> {
    let err = |problem: String| ProbeImageError {
        given: given.into(),
        problem,
    };
    let r = crate::capture::image::reference::parse_normalized(given)
        .map_err(|e| err(e.to_string()))?;
    match r.digest {
        Some(_) => Ok(()),
        None => Err(err("it names no digest (write NAME@sha256:…)".into())),
    }
}

/// Runs every check.
pub fn doctor(req: &DoctorRequest) -> Report {
    let mut checks = Vec::new();
    config_checks(req, &mut checks);
    checks.push(database_check(&req.db_path, &req.db_source));
    checks.push(filesystem_check(&req.db_path));
    checks.push(git_check());
    engine_checks(req, &mut checks);
    credential_checks(&mut checks);
    if let Some(c) = mlflow_check(req.config) {
        checks.push(c);
    }
    if let Some(c) = slurm_check(req.engine_timeout) {
        checks.push(c);
    }
    checks.push(shellcheck_check());
    Report { checks }
}

fn config_checks(req: &DoctorRequest, out: &mut Vec<Check>) {
    if let Some(e) = &req.config_error {
        out.push(check(
            "config",
            Status::Fail,
            e.message.clone(),
            e.hint.clone(),
        ));
        return;
    }
    for f in &req.config.files {
        let state = if f.found { "read" } else { "not found" };
        out.push(check(
            "config",
            Status::Ok,
            format!("{} file {} ({state})", f.kind, f.path.display()),
            None,
        ));
    }
    let overrides = req.config.repo_overrides();
    if !overrides.is_empty() {
        out.push(check(
            "config",
            Status::Warn,
            format!("the repository's .repro.toml sets {}", overrides.join("; ")),
            Some("these apply to every `repro run` here; check them if you did not write them (`repro config show`)".into()),
        ));
    }
}

/// The database's filesystem and the journal the store uses there (docs/cluster.md).
pub fn filesystem_check(path: &Path) -> Check {
    use crate::error::Hinted;
    use crate::store::filesystem::{self, Journal, ALLOW_ENV};
    let name = "database filesystem";
    let (examined, fs) = match filesystem::probe(path) {
        Ok(x) => x,
        Err(e) => {
            let detail = format!("cannot examine the filesystem of {}: {e}", path.display());
            return check(name, Status::Warn, detail, None);
        }
    };
    let allow = filesystem::allowed(std::env::var(ALLOW_ENV).ok().as_deref());
    let kind = if fs.network { "network" } else { "local" };
    let on = format!("{} ({kind}, examined {})", fs.name, examined.display());
    match filesystem::journal(path, &fs, allow) {
        Ok(Journal::Wal) => check(name, Status::Ok, format!("{on}: WAL journal"), None),
        Ok(Journal::Rollback) => check(
            name,
            Status::Warn,
            format!("{on}: rollback journal ({ALLOW_ENV} is set)"),
            Some("safe only if the filesystem's locks work across hosts; a local disk per node with `repro export`/`repro import` is safer (docs/cluster.md)".into()),
        ),
        Err(e) => check(name, Status::Fail, format!("{on}: refused"), e.hint()),
    }
}

/// Opens the database read-only (never creating or migrating it) and checks schema and integrity.
pub fn database_check(path: &Path, source: &str) -> Check {
    let name = "database";
    let shown = format!("{} ({source})", path.display());
    if !path.exists() {
        let detail = format!("{shown}: does not exist yet; created on the first run");
        return check(name, Status::Ok, detail, None);
    }
    if path.is_dir() {
        let hint = Some("point --db or REPRO_DB at a file".into());
        return check(name, Status::Fail, format!("{shown} is a directory"), hint);
    }
    if let Err(e) = std::fs::File::open(path) {
        return check(
            name,
            Status::Fail,
            format!("{shown}: cannot read: {e}"),
            Some(format!(
                "check its owner and permissions (it should be yours, mode 600): chmod 600 {}",
                path.display()
            )),
        );
    }
    let corrupt = |e: &dyn std::fmt::Display| {
        check(
            name,
            Status::Fail,
            format!("{shown}: not a usable repro database: {e}"),
            Some(
                "restore it from a backup, or move it aside and let repro create a new one".into(),
            ),
        )
    };
    let found = match crate::store::Store::inspect(path) {
        Ok(found) => found,
        Err(e) => return corrupt(&e),
    };
    if !found.is_sound() {
        return corrupt(&format!("integrity check: {}", found.integrity.join("; ")));
    }
    let (version, latest, runs) = (found.version, found.latest, found.runs);
    if found.pending_spills > 0 {
        return check(
            name,
            Status::Warn,
            format!(
                "{shown}: {} run outcome(s) wait in {} (the database was unavailable when they ended)",
                found.pending_spills,
                crate::store::spill_dir(path).display()
            ),
            Some("they are recorded by the next repro command that can write the database".into()),
        );
    }
    let runs = runs.map(|n| format!(", {n} runs")).unwrap_or_default();
    if version > latest {
        return check(
            name,
            Status::Fail,
            format!("{shown}: schema version {version} is newer than this repro ({latest})"),
            Some("upgrade repro; the database is left unchanged".into()),
        );
    }
    if version < latest {
        return check(
            name,
            Status::Warn,
            format!("{shown}: schema version {version} of {latest}, integrity ok{runs}"),
            Some("it is upgraded on the next command that writes to it".into()),
        );
    }
    let detail = format!("{shown}: schema version {version} (latest), integrity ok{runs}");
    check(name, Status::Ok, detail, None)
}

fn git_check() -> Check {
    let here = std::env::current_dir()
        .ok()
        .and_then(|d| git2::Repository::discover(d).ok())
        .and_then(|r| r.workdir().map(|w| w.display().to_string()));
    let here = match here {
        Some(root) => format!("; here: repository {root}"),
        None => "; here: not in a git repository (runs record no code)".into(),
    };
    match which("git") {
        Some(p) => check("git", Status::Ok, format!("{}{here}", version_of(&p)), None),
        None => check(
            "git",
            Status::Fail,
            format!("git not found on PATH{here}"),
            Some("install git: re-run scripts check out the recorded commit with it".into()),
        ),
    }
}

fn engine_checks(req: &DoctorRequest, out: &mut Vec<Check>) {
    let configured = req.config.engine.value;
    let mut found = 0;
    for engine in [Engine::Podman, Engine::Docker] {
        let name = format!("engine {}", engine.as_str());
        let Some(path) = which(engine.as_str()) else {
            if configured == Some(engine) {
                out.push(check(
                    &name,
                    Status::Warn,
                    format!(
                        "configured ({}) but not found on PATH",
                        req.config.engine.source
                    ),
                    Some(format!(
                        "install {}, or choose another engine",
                        engine.as_str()
                    )),
                ));
            }
            continue;
        };
        found += 1;
        let info = info_check(engine, &path, req.engine_timeout);
        let answers = info.status == Status::Ok;
        out.push(info);
        let probe_name = format!("container {}", engine.as_str());
        if answers {
            out.push(probe_check(req, engine, &probe_name));
        } else {
            let why = format!("`{} info` does not answer", engine.as_str());
            out.push(check(&probe_name, Status::Skipped, why, None));
        }
    }
    if found == 0 {
        out.push(check(
            "engine",
            Status::Warn,
            "no container engine found (neither podman nor docker is on PATH)",
            Some(
                "install podman or docker to run --image runs in a container; --host still works"
                    .into(),
            ),
        ));
    }
}

/// `<engine> info`: the engine answers (it does not prove it can run a container).
fn info_check(engine: Engine, path: &Path, timeout: Duration) -> Check {
    let e = engine.as_str();
    let name = format!("engine {e}");
    let version = version_of(path);
    match run_captured(Command::new(path).arg("info"), timeout) {
        Ok(c) if c.success() => check(
            &name,
            Status::Ok,
            format!("{version}; `{e} info` answers"),
            None,
        ),
        Ok(c) => check(
            &name,
            Status::Warn,
            format!("{version}; `{e} info` failed: {}", c.message()),
            Some(match (engine, Cause::of(&c.stderr)) {
                (_, cause @ (Cause::Cgroups | Cause::RootlessStorage)) => cause.hint().into(),
                (Engine::Docker, _) => {
                    "start the Docker daemon, or add yourself to the docker group".into()
                }
                (Engine::Podman, _) => {
                    "run `podman info` to see why (rootless setup: subuid/subgid, storage)".into()
                }
            }),
        ),
        Err(err) => check(
            &name,
            Status::Warn,
            format!("{version}; `{e} info`: {err}"),
            Some(format!("check that `{e} info` answers")),
        ),
    }
}

/// What the probe container prints: proof that the command really ran.
const PROBE_MARK: &str = "repro-doctor-probe-ok";

/// Starts a throw-away container the way `repro run --image IMAGE -- /bin/busybox echo …`
/// would, with the configured engine flags and mounts.
fn probe_check(req: &DoctorRequest, engine: Engine, name: &str) -> Check {
    let e = engine.as_str();
    let (image, local) = match &req.probe_image {
        Some(r) => (r.clone(), false),
        None => match local_busybox(engine, req.engine_timeout) {
            Some(r) => (r, true),
            None => {
                return check(
                    name,
                    Status::Skipped,
                    format!("no small image available locally (no busybox image in {e}'s store)"),
                    Some(format!("give --probe-image NAME@sha256:… (a busybox image) to prove {e} can run containers")),
                )
            }
        },
    };
    let plan = match probe_plan(req, engine, &image) {
        Ok(p) => p,
        Err(msg) => return check(name, Status::Fail, msg, None),
    };
    let dir = std::env::temp_dir().join(format!("repro-doctor-{}", ulid::Ulid::new()));
    if let Err(err) = std::fs::create_dir_all(&dir) {
        let detail = format!("cannot create {}: {err}", dir.display());
        return check(name, Status::Fail, detail, None);
    }
    let result = pull_and_run(req, &plan, &dir, local);
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(()) => check(
            name,
            Status::Ok,
            format!(
                "started a container from {} with repro run's flags",
                plan.image
            ),
            None,
        ),
        Err((stage, msg)) => {
            let hint = match Cause::of(&msg) {
                Cause::NotExecutable => format!("{} has no /bin/busybox to run: give a busybox image with --probe-image NAME@sha256:…", plan.image),
                cause => cause.hint().to_string(),
            };
            let detail = format!("{stage} {} failed: {msg}", plan.image);
            check(name, Status::Fail, detail, Some(hint))
        }
    }
}

/// The plan `repro run` would make for the probe: the run request built from the same
/// configuration (engine flags, mounts, workdir, registry options).
fn probe_plan(req: &DoctorRequest, engine: Engine, image: &str) -> Result<EnginePlan, String> {
    let command: Vec<OsString> = ["/bin/busybox", "echo", PROBE_MARK]
        .iter()
        .map(OsString::from)
        .collect();
    let flags = RunFlags {
        image: Some(image.to_string()),
        engine: Some(engine),
        command: command.clone(),
        ..RunFlags::default()
    };
    let cwd = std::env::current_dir().unwrap_or_else(|_| std::env::temp_dir());
    let (run_req, _) = RunRequest::from_flags(flags, req.config, cwd)
        .map_err(|e| format!("the configuration does not make a run: {e}"))?;
    let digest = image.rsplit_once('@').map(|(_, d)| d.to_string());
    let exec = Exec {
        mode: ExecMode::Container,
        engine: Some(engine.as_str().into()),
        workdir: Some(run_req.workdir.clone()),
        engine_args: run_req.engine_args.clone(),
        gpus: None,
        registry: None,
    };
    let mut run = Run::start(
        command.into_iter().map(Arg::from).collect(),
        String::new(),
        exec,
        crate::capture::host::start_facts(),
    );
    let img = Image {
        reference: image.to_string(),
        digest,
        index_digest: None,
        platform: None,
        resolved_by: ResolvedBy::Pinned,
        labels: Default::default(),
    };
    let registry = crate::script::plan::RegistryFlags::for_image(&img, &run_req.registry);
    run.image = Some(img);
    let opts = PlanOptions {
        name: Some(format!("repro-doctor-{}", run.id)),
        tty: false,
        registry,
    };
    EnginePlan::of(&run, engine, &opts).ok_or_else(|| "no container plan for the probe".into())
}

/// Pulls the probe image when the engine lacks it, then runs the probe container. `Err` holds
/// the stage (`pulling`, `running`) and the engine's message.
fn pull_and_run(
    req: &DoctorRequest,
    plan: &EnginePlan,
    dir: &Path,
    local: bool,
) -> Result<(), (&'static str, String)> {
    let e = plan.engine.as_str();
    let t = req.engine_timeout;
    let inspect = ["image", "inspect", "--format", "{{.Id}}", &plan.image];
    let present = run_captured(Command::new(e).args(inspect), t).is_ok_and(|c| c.success());
    if !present && !local {
        // No --cert-dir: the engine reads the certs.d directories itself.
        let b = Bindings::default();
        let pulled = run_captured(Command::new(e).args(plan.pull_args(&b)), t)
            .map_err(|m| ("pulling", m))?;
        if !pulled.success() {
            return Err(("pulling", pulled.message()));
        }
    }
    let name = format!(
        "repro-doctor-{}",
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    );
    let args = engine_failure::probe_args(plan, &name, None, dir);
    let ran = engine_failure::run_probe(e, &args, &name, t).map_err(|m| ("running", m))?;
    if ran.success() && ran.stdout.contains(PROBE_MARK) {
        return Ok(());
    }
    let mut msg = ran.message();
    if msg.is_empty() {
        msg = format!("exited {:?} without printing {PROBE_MARK}", ran.code);
    }
    Err(("running", msg))
}

/// A busybox image in the engine's store, as `NAME@sha256:…`.
fn local_busybox(engine: Engine, timeout: Duration) -> Option<String> {
    let format = "{{.Repository}}\t{{.Digest}}";
    let listed = run_captured(
        Command::new(engine.as_str()).args(["images", "--digests", "--format", format]),
        timeout,
    )
    .ok()
    .filter(|c| c.success())?;
    listed.stdout.lines().find_map(|l| {
        let (repo, digest) = l.trim().split_once('\t')?;
        let base = repo.rsplit('/').next()?;
        (base == "busybox" && digest.starts_with("sha256:")).then(|| format!("{repo}@{digest}"))
    })
}

/// Names of credential sources and the registries they cover; never any secret.
fn credential_checks(out: &mut Vec<Check>) {
    let cfg = AuthConfig::from_env();
    let mut any = false;
    for file in cfg.auth_files.iter().filter(|f| f.is_file()) {
        any = true;
        out.push(match read_json(file) {
            Ok(v) => check(
                "credentials",
                Status::Ok,
                format!("{}: {}", file.display(), registries(&v)),
                None,
            ),
            Err(e) => unreadable(file, e),
        });
    }
    if let Some(file) = cfg.docker_config.as_ref().filter(|f| f.is_file()) {
        any = true;
        out.push(match read_json(file) {
            Err(e) => unreadable(file, e),
            Ok(v) => docker_config_check(file, &v),
        });
    }
    if !any {
        out.push(check(
            "credentials",
            Status::Ok,
            "no registry credential files (anonymous registry access only)",
            None,
        ));
    }
}

fn docker_config_check(file: &Path, v: &serde_json::Value) -> Check {
    let mut parts = vec![registries(v)];
    let mut helpers: Vec<(String, String)> = Vec::new();
    if let Some(h) = v.get("credHelpers").and_then(|h| h.as_object()) {
        for (reg, helper) in h {
            if let Some(helper) = helper.as_str() {
                helpers.push((reg.clone(), helper.to_string()));
            }
        }
    }
    if let Some(store) = v.get("credsStore").and_then(|s| s.as_str()) {
        parts.push(format!("credsStore {store}"));
        helpers.push(("(default)".into(), store.to_string()));
    }
    let mut missing = Vec::new();
    for (reg, helper) in &helpers {
        if reg != "(default)" {
            parts.push(format!("credHelper {helper} for {reg}"));
        }
        let bin = format!("docker-credential-{helper}");
        if which(&bin).is_none() && !missing.contains(&bin) {
            missing.push(bin);
        }
    }
    if missing.is_empty() {
        let detail = format!("{}: {}", file.display(), parts.join("; "));
        return check("credentials", Status::Ok, detail, None);
    }
    check(
        "credentials",
        Status::Warn,
        format!(
            "{}: {}; helper(s) not on PATH: {}",
            file.display(),
            parts.join("; "),
            missing.join(", ")
        ),
        Some(
            "install the helper(s) or remove them from config.json; private registries will fail"
                .into(),
        ),
    )
}

fn unreadable(file: &Path, e: String) -> Check {
    check(
        "credentials",
        Status::Warn,
        format!("{}: cannot read: {e}", file.display()),
        Some(
            "fix the file (it must be JSON), or log in again with `docker login` / `podman login`"
                .into(),
        ),
    )
}

fn read_json(path: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

fn registries(v: &serde_json::Value) -> String {
    match v.get("auths").and_then(|a| a.as_object()) {
        Some(m) if !m.is_empty() => {
            let names: Vec<&str> = m.keys().map(String::as_str).collect();
            format!("logins for {}", names.join(", "))
        }
        _ => "no logins".into(),
    }
}

/// The tracking server answers MLflow's REST API (when one is configured: `mlflow_tracking_uri`
/// or `MLFLOW_TRACKING_URI`). Reads only: `runs/get` of a run id that cannot exist, which an
/// MLflow server answers with an MLflow error code.
fn mlflow_check(cfg: &Config) -> Option<Check> {
    use crate::error::Hinted;
    use crate::mlflow::{Client, MlflowError};
    let after = crate::ops::mlflow::AfterRun {
        tracking_uri: cfg.mlflow_tracking_uri.value.clone(),
        experiment: None,
        outputs: Default::default(),
        dataset_context: None,
    };
    let env = |k: &str| std::env::var(k).ok();
    let settings = match after.settings(&env) {
        Err(MlflowError::NoUri) => return None,
        Err(e) => return Some(check("mlflow", Status::Fail, e.to_string(), e.hint())),
        Ok(s) => s,
    };
    let uri = settings.uri.clone();
    let answer = Client::new(&settings).and_then(|c| c.get_run("repro-doctor-no-such-run"));
    Some(match answer {
        Ok(_) => check("mlflow", Status::Ok, format!("{uri} answers"), None),
        Err(MlflowError::Rejected { status, code, .. }) if !code.is_empty() => check(
            "mlflow",
            Status::Ok,
            format!(
                "{uri} answers the MLflow API (HTTP {status} {code} for a run that does not exist)"
            ),
            None,
        ),
        Err(e @ MlflowError::Rejected { .. }) => check(
            "mlflow",
            Status::Fail,
            format!("{uri} answers, but not as an MLflow tracking server: {e}"),
            Some(
                "point mlflow_tracking_uri / MLFLOW_TRACKING_URI at the tracking server's root URL"
                    .into(),
            ),
        ),
        Err(e) => check("mlflow", Status::Fail, e.to_string(), e.hint()),
    })
}

/// Slurm answers (when `sbatch` or `squeue` is on PATH, or `SLURM_CONF` is set): `squeue`
/// lists this user's jobs. A failure is `fail` when `SLURM_CONF` asks for a cluster, else
/// `warn` (the tools may be installed without a cluster to reach).
fn slurm_check(timeout: Duration) -> Option<Check> {
    let configured = std::env::var_os("SLURM_CONF").filter(|v| !v.is_empty());
    let on_path = which("sbatch").is_some() || which("squeue").is_some();
    if configured.is_none() && !on_path {
        return None;
    }
    let Some(squeue) = which("squeue") else {
        return Some(check(
            "slurm",
            if configured.is_some() {
                Status::Fail
            } else {
                Status::Warn
            },
            "sbatch is on PATH but squeue is not",
            Some(
                "install Slurm's client commands (squeue, sacct) to submit and follow jobs".into(),
            ),
        ));
    };
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let mut cmd = Command::new(&squeue);
    cmd.args(["--noheader", "--format=%i", &format!("--user={uid}")]);
    let failed = |detail: String| {
        let status = if configured.is_some() {
            Status::Fail
        } else {
            Status::Warn
        };
        let hint = "check slurm.conf (SLURM_CONF) and that slurmctld is reachable (`scontrol ping`); ignore this if you do not submit to Slurm";
        Some(check("slurm", status, detail, Some(hint.into())))
    };
    match run_captured(&mut cmd, timeout) {
        Ok(c) if c.success() => {
            let jobs = c.stdout.lines().filter(|l| !l.trim().is_empty()).count();
            let detail = format!("`squeue` answers ({jobs} job(s) of yours in the queue)");
            Some(check("slurm", Status::Ok, detail, None))
        }
        Ok(c) => failed(format!("`squeue` failed: {}", c.message())),
        Err(e) => failed(format!("`squeue`: {e}")),
    }
}

fn shellcheck_check() -> Check {
    match which("shellcheck") {
        Some(p) => {
            let version = run_captured(Command::new(&p).arg("--version"), Duration::from_secs(5))
                .ok()
                .and_then(|c| {
                    c.stdout
                        .lines()
                        .find(|l| l.starts_with("version:"))
                        .map(|l| l.trim().to_string())
                })
                .unwrap_or_else(|| "version unknown".into());
            check(
                "shellcheck",
                Status::Ok,
                format!("{} ({version})", p.display()),
                None,
            )
        }
        None => check(
            "shellcheck",
            Status::Warn,
            "not found on PATH",
            Some("install shellcheck to lint re-run scripts (apt install shellcheck)".into()),
        ),
    }
}

/// First line of `PROGRAM --version`, or `?`.
fn version_of(program: &Path) -> String {
    run_captured(
        Command::new(program).arg("--version"),
        Duration::from_secs(5),
    )
    .ok()
    .and_then(|c| c.stdout.lines().next().map(|l| l.trim().to_string()))
    .unwrap_or_else(|| "?".into())
}
