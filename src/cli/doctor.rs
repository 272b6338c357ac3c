//! `repro doctor`: one line per check (ok / warn / FAIL) with a hint for each problem; exit 1
//! when something required (configuration, database, git) is broken.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use serde_json::json;

use crate::capture::image::auth::AuthConfig;
use crate::cli::{print_out, Ctx};
use crate::error::CliError;
use crate::exec::which;

/// Arguments of `repro doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Machine-readable output: {"schema_version":1,"ok":…,"checks":[{"check","status","detail","hint"}]}
    #[arg(long)]
    pub json: bool,
    /// Seconds allowed for each `<engine> info`
    #[arg(long, value_name = "SECS", default_value_t = 20)]
    pub engine_timeout: u64,
}

/// The result of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: String,
    pub status: Level,
    pub detail: String,
    pub hint: Option<String>,
}

fn check(name: &str, status: Level, detail: impl Into<String>, hint: Option<String>) -> Check {
    Check {
        check: name.into(),
        status,
        detail: detail.into(),
        hint,
    }
}

/// Runs every check and prints the report; returns the exit code.
pub fn cmd_doctor(ctx: &Ctx, args: &DoctorArgs, config_error: Option<&CliError>) -> i32 {
    let mut checks = Vec::new();
    config_checks(ctx, config_error, &mut checks);
    checks.push(database_check(
        &ctx.db_path(),
        &ctx.config.db.source.to_string(),
    ));
    checks.push(filesystem_check(&ctx.db_path()));
    checks.push(git_check());
    engine_checks(ctx, Duration::from_secs(args.engine_timeout), &mut checks);
    credential_checks(&mut checks);
    checks.push(match which("shellcheck") {
        Some(p) => check(
            "shellcheck",
            Level::Ok,
            format!("{} ({})", p.display(), shellcheck_version(&p)),
            None,
        ),
        None => check(
            "shellcheck",
            Level::Warn,
            "not found on PATH",
            Some("install shellcheck to lint re-run scripts (apt install shellcheck)".into()),
        ),
    });
    let failed = checks.iter().any(|c| c.status == Level::Fail);
    let text = if args.json {
        let doc = json!({"schema_version": 1, "ok": !failed, "checks": checks});
        let mut s = serde_json::to_string_pretty(&doc).expect("json");
        s.push('\n');
        s
    } else {
        render(&checks, ctx.color)
    };
    if let Err(e) = print_out(&text) {
        eprintln!("{e}");
        return e.exit_code();
    }
    i32::from(failed)
}

fn render(checks: &[Check], color: bool) -> String {
    let width = checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
    let mut s = String::new();
    for c in checks {
        let label = format!("{:<4}", c.status.label());
        let label = if color {
            let code = match c.status {
                Level::Ok => "32",
                Level::Warn => "33",
                Level::Fail => "1;31",
            };
            format!("\x1b[{code}m{label}\x1b[0m")
        } else {
            label
        };
        s.push_str(&format!("{label}  {:<width$}  {}\n", c.check, c.detail));
        if let Some(h) = &c.hint {
            s.push_str(&format!("{:4}  {:<width$}  hint: {h}\n", "", ""));
        }
    }
    s
}

fn config_checks(ctx: &Ctx, error: Option<&CliError>, out: &mut Vec<Check>) {
    if let Some(e) = error {
        out.push(check(
            "config",
            Level::Fail,
            e.message.clone(),
            e.hints.first().cloned(),
        ));
        return;
    }
    for f in &ctx.config.files {
        let state = if f.found { "read" } else { "not found" };
        out.push(check(
            "config",
            Level::Ok,
            format!("{} file {} ({state})", f.kind, f.path.display()),
            None,
        ));
    }
    let overrides = ctx.config.repo_overrides();
    if !overrides.is_empty() {
        out.push(check(
            "config",
            Level::Warn,
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
            return check(
                name,
                Level::Warn,
                format!("cannot examine the filesystem of {}: {e}", path.display()),
                None,
            )
        }
    };
    let allow = filesystem::allowed(std::env::var(ALLOW_ENV).ok().as_deref());
    let kind = if fs.network { "network" } else { "local" };
    let on = format!("{} ({kind}, examined {})", fs.name, examined.display());
    match filesystem::journal(path, &fs, allow) {
        Ok(Journal::Wal) => check(name, Level::Ok, format!("{on}: WAL journal"), None),
        Ok(Journal::Rollback) => check(
            name,
            Level::Warn,
            format!("{on}: rollback journal ({ALLOW_ENV} is set)"),
            Some("safe only if the filesystem's locks work across hosts; a local disk per node with `repro export`/`repro import` is safer (docs/cluster.md)".into()),
        ),
        Err(e) => check(name, Level::Fail, format!("{on}: refused"), e.hint()),
    }
}

/// Opens the database read-only (never creating or migrating it) and checks schema and integrity.
pub fn database_check(path: &Path, source: &str) -> Check {
    let name = "database";
    let shown = format!("{} ({source})", path.display());
    if !path.exists() {
        return check(
            name,
            Level::Ok,
            format!("{shown}: does not exist yet; created on the first run"),
            None,
        );
    }
    if path.is_dir() {
        return check(
            name,
            Level::Fail,
            format!("{shown} is a directory"),
            Some("point --db or REPRO_DB at a file".into()),
        );
    }
    if let Err(e) = std::fs::File::open(path) {
        return check(
            name,
            Level::Fail,
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
            Level::Fail,
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
            Level::Warn,
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
            Level::Fail,
            format!("{shown}: schema version {version} is newer than this repro ({latest})"),
            Some("upgrade repro; the database is left unchanged".into()),
        );
    }
    if version < latest {
        return check(
            name,
            Level::Warn,
            format!("{shown}: schema version {version} of {latest}, integrity ok{runs}"),
            Some("it is upgraded on the next command that writes to it".into()),
        );
    }
    check(
        name,
        Level::Ok,
        format!("{shown}: schema version {version} (latest), integrity ok{runs}"),
        None,
    )
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
        Some(p) => check(
            "git",
            Level::Ok,
            format!("{}{here}", first_line_of(&p, &["--version"], 5)),
            None,
        ),
        None => check(
            "git",
            Level::Fail,
            format!("git not found on PATH{here}"),
            Some("install git: re-run scripts check out the recorded commit with it".into()),
        ),
    }
}

fn engine_checks(ctx: &Ctx, timeout: Duration, out: &mut Vec<Check>) {
    let configured = ctx.config.engine.value.map(|e| e.as_str());
    let mut found = 0;
    for engine in ["podman", "docker"] {
        let Some(path) = which(engine) else {
            if configured == Some(engine) {
                out.push(check(
                    &format!("engine {engine}"),
                    Level::Warn,
                    format!(
                        "configured ({}) but not found on PATH",
                        ctx.config.engine.source
                    ),
                    Some(format!("install {engine}, or choose another engine")),
                ));
            }
            continue;
        };
        found += 1;
        let name = format!("engine {engine}");
        let version = first_line_of(&path, &["--version"], 5);
        match run_quick(&path, &["info"], timeout) {
            Ok((true, _)) => out.push(check(
                &name,
                Level::Ok,
                format!("{version}; `{engine} info` works (it can run containers)"),
                None,
            )),
            Ok((false, err)) => out.push(check(
                &name,
                Level::Warn,
                format!("{version}; `{engine} info` failed: {err}"),
                Some(if engine == "docker" {
                    "start the Docker daemon, or add yourself to the docker group".into()
                } else {
                    "run `podman info` to see why (rootless setup: subuid/subgid, storage)".into()
                }),
            )),
            Err(e) => out.push(check(
                &name,
                Level::Warn,
                format!("{version}; `{engine} info`: {e}"),
                Some(format!("check that `{engine} info` answers")),
            )),
        }
    }
    if found == 0 {
        out.push(check(
            "engine",
            Level::Warn,
            "no container engine found (neither podman nor docker is on PATH)",
            Some(
                "install podman or docker to run --image runs in a container; --host still works"
                    .into(),
            ),
        ));
    }
}

/// Names of credential sources and the registries they cover; never any secret.
fn credential_checks(out: &mut Vec<Check>) {
    let cfg = AuthConfig::from_env();
    let mut any = false;
    for file in &cfg.auth_files {
        if !file.is_file() {
            continue;
        }
        any = true;
        match read_json(file) {
            Ok(v) => out.push(check(
                "credentials",
                Level::Ok,
                format!("{}: {}", file.display(), registries(&v, "auths")),
                None,
            )),
            Err(e) => out.push(unreadable(file, e)),
        }
    }
    if let Some(file) = cfg.docker_config.as_ref().filter(|f| f.is_file()) {
        any = true;
        match read_json(file) {
            Err(e) => out.push(unreadable(file, e)),
            Ok(v) => {
                let mut parts = vec![registries(&v, "auths")];
                let mut missing = Vec::new();
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
                    out.push(check(
                        "credentials",
                        Level::Ok,
                        format!("{}: {}", file.display(), parts.join("; ")),
                        None,
                    ));
                } else {
                    out.push(check(
                        "credentials",
                        Level::Warn,
                        format!(
                            "{}: {}; helper(s) not on PATH: {}",
                            file.display(),
                            parts.join("; "),
                            missing.join(", ")
                        ),
                        Some("install the helper(s) or remove them from config.json; private registries will fail".into()),
                    ));
                }
            }
        }
    }
    if !any {
        out.push(check(
            "credentials",
            Level::Ok,
            "no registry credential files (anonymous registry access only)",
            None,
        ));
    }
}

fn unreadable(file: &Path, e: String) -> Check {
    check(
        "credentials",
        Level::Warn,
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

fn registries(v: &serde_json::Value, key: &str) -> String {
    match v.get(key).and_then(|a| a.as_object()) {
        Some(m) if !m.is_empty() => {
            let names: Vec<&str> = m.keys().map(String::as_str).collect();
            format!("logins for {}", names.join(", "))
        }
        _ => "no logins".into(),
    }
}

/// `version: 0.9.0` from `shellcheck --version`.
fn shellcheck_version(p: &Path) -> String {
    match run_quick_output(p, &["--version"], Duration::from_secs(5)) {
        Ok((_, out, _)) => out
            .lines()
            .find(|l| l.starts_with("version:"))
            .unwrap_or("version unknown")
            .trim()
            .to_string(),
        Err(_) => "version unknown".into(),
    }
}

/// First line of a quick command's output, or `?`.
fn first_line_of(program: &Path, args: &[&str], secs: u64) -> String {
    match run_quick_output(program, args, Duration::from_secs(secs)) {
        Ok((_, out, _)) => out.lines().next().unwrap_or("?").trim().to_string(),
        Err(_) => "?".into(),
    }
}

/// Runs a command with a deadline; (success, first stderr line).
fn run_quick(program: &Path, args: &[&str], timeout: Duration) -> Result<(bool, String), String> {
    let (ok, _, err) = run_quick_output(program, args, timeout)?;
    let err = err
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    Ok((ok, err))
}

fn run_quick_output(
    program: &Path,
    args: &[&str],
    timeout: Duration,
) -> Result<(bool, String, String), String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    // Read both pipes on threads so a chatty child cannot block on a full pipe.
    let mut so = child.stdout.take();
    let mut se = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = so.as_mut() {
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = se.as_mut() {
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {}s", timeout.as_secs()));
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    let out = t_out.join().unwrap_or_default();
    let err = t_err.join().unwrap_or_default();
    Ok((status.success(), out, err))
}
