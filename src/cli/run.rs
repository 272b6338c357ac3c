//! `repro run`: capture provenance, write the run as `running`, run the child, finish the record.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;

use crate::capture::image::registry::{Platform, RegistryOptions};
use crate::capture::image::{self, ResolveMode, ResolveOptions};
use crate::capture::{code, dataset, host};
use crate::cli::Ctx;
use crate::config::Config;
use crate::error::{CliError, CliResult};
use crate::exec::{self, Outcome, Spawn};
use crate::record::{Arg, Exec, ExecMode, Image, Output, ResolvedBy, Run, Status, SCHEMA_VERSION};
use crate::store::Finish;

/// Default mount point of the repository inside the container.
pub use crate::config::DEFAULT_WORKDIR;

/// Arguments of `repro run`.
#[derive(Debug, Clone, Args)]
#[command(trailing_var_arg = true)]
pub struct RunArgs {
    /// Container image; the command runs in exactly the digest it resolves to
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    /// Container engine [env: REPRO_ENGINE] (default: config, else podman, then docker on PATH)
    #[arg(long, value_name = "docker|podman")]
    pub engine: Option<String>,
    /// Run on the host even with --image (the image is recorded as declared)
    #[arg(long)]
    pub host: bool,
    /// How to pin a tag: registry, engine (its RepoDigests), or auto (registry, then engine) [default: auto]
    #[arg(long, value_name = "MODE")]
    pub resolve: Option<String>,
    /// Accept the tag `latest` (written or implied)
    #[arg(long, overrides_with = "no_allow_latest")]
    pub allow_latest: bool,
    /// Refuse `latest` even if the configuration allows it
    #[arg(long, overrides_with = "allow_latest")]
    pub no_allow_latest: bool,
    /// Run even when the image cannot be pinned to a digest (recorded as unpinned)
    #[arg(long, overrides_with = "no_allow_unpinned")]
    pub allow_unpinned: bool,
    /// Refuse an unpinnable image even if the configuration allows it
    #[arg(long, overrides_with = "allow_unpinned")]
    pub no_allow_unpinned: bool,
    /// Do not contact registries (a pinned digest is used as written)
    #[arg(long)]
    pub offline: bool,
    /// Platform to pick from a multi-arch image (default: this host's)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Registry reachable over plain HTTP (loopback registries always are); repeatable
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Extra CA certificate bundle (PEM) for registries
    #[arg(long, value_name = "PATH")]
    pub ca_cert: Option<PathBuf>,
    /// Dataset: NAME@VERSION, NAME=URI@VERSION, or [NAME=]PATH (hashed)
    #[arg(long = "dataset", value_name = "SPEC")]
    pub datasets: Vec<String>,
    /// Parameter annotation K=V
    #[arg(long = "param", value_name = "K=V")]
    pub params: Vec<String>,
    /// Tag annotation
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Human name for the run
    #[arg(long)]
    pub name: Option<String>,
    /// Record this environment variable (and pass it into the container)
    #[arg(long = "env", value_name = "VAR")]
    pub env: Vec<String>,
    /// Record secret-looking variables (*TOKEN*, *SECRET*, *PASSWORD*, *KEY*) in clear text
    #[arg(long)]
    pub env_unredacted: bool,
    /// Output file or directory, hashed after the run
    #[arg(long = "output", value_name = "PATH")]
    pub outputs: Vec<String>,
    /// Refuse to run when the working tree has uncommitted changes
    #[arg(long, overrides_with = "no_require_clean")]
    pub require_clean: bool,
    /// Allow a dirty tree even if the configuration requires a clean one
    #[arg(long, overrides_with = "require_clean")]
    pub no_require_clean: bool,
    /// GPUs for the container (`all`, `2`, `device=0,1`); recorded and replayed
    #[arg(long, value_name = "SPEC")]
    pub gpus: Option<String>,
    /// Extra engine flag for `<engine> run` (repeatable); recorded and replayed
    #[arg(long = "engine-arg", value_name = "FLAG", allow_hyphen_values = true)]
    pub engine_args: Vec<String>,
    /// Extra bind mount SRC:DST[:OPTS] (repeatable); recorded and replayed
    #[arg(long = "mount", value_name = "SRC:DST")]
    pub mounts: Vec<String>,
    /// Where the repository is mounted inside the container [default: /workspace]
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// The command and its arguments, after `--`
    #[arg(required = true, value_name = "CMD", num_args = 1.., allow_hyphen_values = true)]
    pub command: Vec<OsString>,
}

/// What `repro run` needs after validation.
struct Request {
    image: Option<String>,
    mode: ExecMode,
    engine: Option<String>,
    params: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
    engine_args: Vec<String>,
}

fn validate(args: &RunArgs) -> CliResult<Request> {
    let mut params = BTreeMap::new();
    for p in &args.params {
        let (k, v) = p.split_once('=').ok_or_else(|| {
            CliError::usage(format!("--param '{p}' is not of the form KEY=VALUE"))
                .hint("write it as --param lr=0.1")
        })?;
        if k.is_empty() {
            return Err(CliError::usage(format!("--param '{p}' has an empty key"))
                .hint("write it as --param lr=0.1"));
        }
        params.insert(k.to_string(), v.to_string());
    }
    let mut env = BTreeMap::new();
    for name in &args.env {
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(
                CliError::usage(format!("--env '{name}' is not a variable name")).hint(
                    "name the variable only (--env SEED); its value is read from the environment",
                ),
            );
        }
        let value = std::env::var(name).map_err(|_| {
            CliError::user(format!(
                "--env {name}: the variable is not set (or not UTF-8)"
            ))
            .hint(format!(
                "export {name}=… before the run, or drop --env {name}"
            ))
        })?;
        let value = if !args.env_unredacted && looks_secret(name) {
            REDACTED.to_string()
        } else {
            value
        };
        env.insert(name.clone(), value);
    }
    let mode = if args.image.is_some() && !args.host {
        ExecMode::Container
    } else {
        ExecMode::Host
    };
    let engine = if mode == ExecMode::Container {
        Some(pick_engine(args.engine.as_deref())?)
    } else {
        None
    };
    if let Some(e) = &args.engine {
        if e != "docker" && e != "podman" {
            return Err(CliError::usage(format!("unknown engine '{e}'"))
                .hint("use --engine docker or --engine podman"));
        }
    }
    let mut engine_args = Vec::new();
    for m in &args.mounts {
        if !m.contains(':') {
            return Err(CliError::usage(format!("--mount '{m}' is not SRC:DST"))
                .hint("write it as --mount /data:/data[:ro]"));
        }
        engine_args.push(format!("--volume={m}"));
    }
    engine_args.extend(args.engine_args.iter().cloned());
    if !workdir(args).starts_with('/') {
        return Err(CliError::usage(format!(
            "--workdir '{}' is not an absolute path",
            workdir(args)
        ))
        .hint("use a path inside the container such as /workspace"));
    }
    Ok(Request {
        image: args.image.clone(),
        mode,
        engine,
        params,
        env,
        engine_args,
    })
}

/// The value recorded for a secret-looking variable (the real value still reaches the child).
pub const REDACTED: &str = "<redacted>";

/// Whether a variable name looks like it holds a secret.
pub fn looks_secret(name: &str) -> bool {
    let up = name.to_ascii_uppercase();
    ["TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL"]
        .iter()
        .any(|w| up.contains(w))
}

/// Picks the container engine: the one asked for, else podman, else docker, on PATH.
pub fn pick_engine(wanted: Option<&str>) -> CliResult<String> {
    let candidates: Vec<&str> = match wanted {
        Some(w) => vec![w],
        None => vec!["podman", "docker"],
    };
    for c in &candidates {
        if which(c).is_some() {
            return Ok(c.to_string());
        }
    }
    Err(CliError::user(match wanted {
        Some(w) => format!("the container engine '{w}' is not installed (not found on PATH)"),
        None => "no container engine found (neither podman nor docker is on PATH)".into(),
    })
    .hint("install podman or docker, or run on the host with --host"))
}

/// Finds a program on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

fn resolve_image(
    ctx: &Ctx,
    args: &RunArgs,
    reference: &str,
    engine: Option<&str>,
) -> CliResult<Image> {
    let resolve = args.resolve.as_deref().unwrap_or("auto");
    let mode = ResolveMode::parse(resolve).ok_or_else(|| {
        CliError::usage(format!("unknown --resolve '{resolve}'"))
            .hint("use --resolve registry, engine or auto")
    })?;
    let platform = match &args.platform {
        Some(p) => Some(Platform::parse(p)?),
        None => None,
    };
    let opts = ResolveOptions {
        mode,
        allow_latest: args.allow_latest,
        allow_unpinned: args.allow_unpinned,
        offline: args.offline,
        platform,
        engine: engine.map(str::to_string),
        registry: RegistryOptions {
            insecure_registries: args.insecure_registries.clone(),
            ca_cert: args.ca_cert.clone(),
            ..RegistryOptions::default()
        },
    };
    let (image, warnings) = image::resolve(reference, &opts)?;
    for w in warnings {
        ctx.warn(w);
    }
    if image.resolved_by == ResolvedBy::Unpinned {
        ctx.warn(format!(
            "{reference} could not be pinned to a digest; the run is recorded as UNPINNED"
        ));
    }
    Ok(image)
}

fn workdir(args: &RunArgs) -> &str {
    args.workdir.as_deref().unwrap_or(DEFAULT_WORKDIR)
}

/// Fills what the flags left unset from the configuration (flags win; lists add up: the
/// configuration's entries first, then the flags'). Returns notes for the user.
pub fn apply_config(args: &mut RunArgs, cfg: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    if args.engine.is_none() {
        args.engine = cfg.engine.value.map(|e| e.as_str().to_string());
    }
    if args.resolve.is_none() {
        args.resolve = Some(cfg.resolve.value.as_str().to_string());
    }
    if args.workdir.is_none() {
        args.workdir = Some(cfg.workdir.value.clone());
    }
    args.allow_latest = !args.no_allow_latest && (args.allow_latest || cfg.allow_latest.value);
    args.allow_unpinned =
        !args.no_allow_unpinned && (args.allow_unpinned || cfg.allow_unpinned.value);
    args.require_clean = !args.no_require_clean && (args.require_clean || cfg.require_clean.value);
    fn merged(from_cfg: Vec<String>, flags: &[String], dedup: bool) -> Vec<String> {
        let mut out = from_cfg;
        for f in flags {
            if !dedup || !out.contains(f) {
                out.push(f.clone());
            }
        }
        out
    }
    // Engine flags are an argv fragment (`--cap-add X`): order and repeats matter.
    args.engine_args = merged(cfg.engine_args.values(), &args.engine_args, false);
    args.mounts = merged(cfg.mounts.values(), &args.mounts, true);
    args.insecure_registries = merged(
        cfg.insecure_registries.values(),
        &args.insecure_registries,
        true,
    );
    // A configured variable that is not set is skipped; one named with --env must be set.
    let mut env = Vec::new();
    for item in &cfg.env.0 {
        if std::env::var_os(&item.value).is_some() {
            env.push(item.value.clone());
        } else {
            notes.push(format!(
                "{} is not set; not recorded (env from {})",
                item.value, item.source
            ));
        }
    }
    args.env = merged(env, &args.env, true);
    if !cfg.dataset_ignore.0.is_empty() && !args.datasets.is_empty() {
        notes.push(
            "dataset_ignore from the configuration is not applied by the dataset hasher yet; \
             put the patterns in the dataset's .reproignore"
                .into(),
        );
    }
    notes
}

/// Runs `repro run` and returns the process exit code (the child's, when it ran).
pub fn cmd_run(ctx: &Ctx, args: &RunArgs) -> i32 {
    let mut args = args.clone();
    for note in apply_config(&mut args, &ctx.config) {
        ctx.status(note);
    }
    // A repository's .repro.toml is untrusted: say what it changed before anything runs.
    let overrides = ctx.config.repo_overrides();
    if !overrides.is_empty() {
        let file = ctx
            .config
            .files
            .iter()
            .find(|f| f.kind == "repo")
            .map(|f| f.path.display().to_string())
            .unwrap_or_default();
        ctx.warn(format!("{file} sets: {}", overrides.join("; ")));
    }
    let args = &args;
    match prepare_and_run(ctx, args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    }
}

fn prepare_and_run(ctx: &Ctx, args: &RunArgs) -> CliResult<i32> {
    let req = validate(args)?;
    let cwd = std::env::current_dir()
        .map_err(|e| CliError::user(format!("cannot read the current directory: {e}")))?;
    let captured = code::capture(&cwd)?;
    for w in &captured.warnings {
        ctx.warn(w);
    }
    if let (true, Some(c)) = (args.require_clean, &captured.code) {
        code::require_clean(c)?;
    }
    let image = match &req.image {
        Some(r) => Some(resolve_image(ctx, args, r, req.engine.as_deref())?),
        None => None,
    };
    if let (ExecMode::Container, Some(img)) = (req.mode, &image) {
        if img.digest.is_none() {
            return Err(CliError::user(format!(
                "the image '{}' has no digest to run in a container",
                img.reference
            ))
            .hint("pin it (name@sha256:…) or run on the host with --host"));
        }
    }
    let repo_root = captured.code.as_ref().map(|c| PathBuf::from(&c.repo_root));
    let mut store = ctx.open_store()?;
    let datasets = capture_datasets(&args.datasets, &cwd, repo_root.as_deref(), &store)?;
    let exec = Exec {
        mode: req.mode,
        engine: req.engine.clone(),
        workdir: (req.mode == ExecMode::Container).then(|| workdir(args).to_string()),
        engine_args: req.engine_args.clone(),
        gpus: args.gpus.clone(),
    };
    let command = args.command.iter().cloned().map(Arg::from).collect();
    let run = Run {
        name: args.name.clone(),
        image,
        code: captured.code.clone(),
        datasets,
        params: req.params.clone(),
        tags: args.tags.clone(),
        env: req.env.clone(),
        ..new_running(command, captured.cwd.clone(), exec)
    };
    let plan = Plan {
        cwd: cwd.clone(),
        output_paths: args.outputs.clone(),
        ..Plan::default()
    };
    execute(ctx, &mut store, run, &plan).map(|(code, _)| code)
}

/// A `running` record started now by this process (id, start time, host and wrapper facts),
/// with no image, code, data or annotations yet. Shared with `repro rerun`.
pub fn new_running(command: Vec<Arg>, cwd: String, exec: Exec) -> Run {
    let started = host::now();
    Run {
        schema_version: SCHEMA_VERSION,
        id: ulid::Ulid::from_datetime(started.into())
            .to_string()
            .to_ascii_lowercase(),
        name: None,
        status: Status::Running,
        exit_code: None,
        signal: None,
        started_at: host::rfc3339(started),
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
        tags: Vec::new(),
        notes: Vec::new(),
        env: BTreeMap::new(),
        host: host::hostname(),
        user: host::username(),
        platform: host::platform(),
        pid: Some(std::process::id() as i64),
        boot_id: host::boot_id(),
        pid_start: host::process_start(std::process::id()),
        pid_ns: host::pid_namespace(),
        rerun_of: None,
    }
}

/// Writes the run as `running`, runs it, and finishes the record. Shared with `repro rerun`.
pub fn execute(
    ctx: &Ctx,
    store: &mut crate::store::Store,
    run: Run,
    plan: &Plan,
) -> CliResult<(i32, Finish)> {
    let cwd = plan.cwd.as_path();
    let output_paths = plan.output_paths.as_slice();
    // Nothing unrecorded runs: if this fails, the command is not started.
    store.insert_run_waiting(&run, &mut |e| ctx.warn(format!("{e}; waiting for it")))?;
    ctx.status(format!("run {} started", run.id));
    let mut spawn = build_spawn(&run, cwd, &plan.extra_mounts);
    spawn.env = plan
        .env
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect();
    ctx.debug(format!(
        "exec: {} {}",
        spawn.program.to_string_lossy(),
        spawn
            .args
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    ));
    let t0 = Instant::now();
    let (outcome, forwarded) = exec::run(&spawn, |_| {});
    let elapsed = t0.elapsed();
    let exit = outcome.exit_code();
    let (status, exit_code, signal) = classify(&run, &outcome, forwarded);
    if let Outcome::NotStarted(e) = &outcome {
        eprintln!(
            "repro: cannot start {}: {e}",
            spawn.program.to_string_lossy()
        );
    }
    let outputs: Vec<Output> = hash_outputs(ctx, output_paths, cwd);
    let ended = host::now();
    let fin = Finish {
        status,
        exit_code,
        signal,
        ended_at: host::rfc3339(ended),
        duration_ms: elapsed.as_millis() as i64,
        outputs,
    };
    let landed = store.finish_durably(&run, &fin, FINISH_BUDGET, &mut |e| {
        ctx.warn(format!("{e}; retrying to record the outcome"))
    });
    match landed {
        Ok(crate::store::Landed::Spilled(f)) => ctx.warn(format!(
            "the database stayed unavailable: outcome of run {} kept in {} (recorded by the next repro command)",
            run.id,
            f.display()
        )),
        Ok(crate::store::Landed::Stored(crate::store::Finished::Restored)) => ctx.warn(format!(
            "the record of run {} had been deleted while it ran (repro gc?); recorded it again",
            run.id
        )),
        Ok(_) => ctx.status(format!(
            "run {} {} ({}) in {}",
            run.id,
            status,
            match signal {
                Some(s) => exec::signal_name(s),
                None => format!("exit {}", exit_code.unwrap_or(exit)),
            },
            crate::output::human_duration(fin.duration_ms)
        )),
        // Never mask the child's exit code with a bookkeeping failure.
        Err(e) => eprintln!(
            "repro: warning: could not finish the record of run {}: {}",
            run.id,
            crate::error::CliError::from(e)
        ),
    }
    Ok((exit, fin))
}

/// How long the outcome is retried against a locked database before it is spilled to a file.
const FINISH_BUDGET: std::time::Duration = std::time::Duration::from_secs(120);

/// How to execute a recorded run: where, what to hash afterwards, extra read-only mounts.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Working directory on the host.
    pub cwd: PathBuf,
    /// `--output` paths, relative to `cwd`.
    pub output_paths: Vec<String>,
    /// (host path, container path) mounted read-only in container mode; not recorded.
    pub extra_mounts: Vec<(PathBuf, String)>,
    /// Variables set for the child (and passed into the container by name).
    pub env: Vec<(String, String)>,
}

fn hash_outputs(ctx: &Ctx, paths: &[String], cwd: &Path) -> Vec<Output> {
    paths
        .iter()
        .map(|p| match dataset::hash_output(&cwd.join(p)) {
            Ok(o) => Output {
                path: p.clone(),
                ..o
            },
            Err(e) => {
                ctx.warn(format!("cannot hash output {p}: {e}"));
                Output {
                    path: p.clone(),
                    sha256: None,
                    bytes: None,
                }
            }
        })
        .collect()
}

fn capture_datasets(
    specs: &[String],
    cwd: &Path,
    repo_root: Option<&Path>,
    store: &crate::store::Store,
) -> CliResult<Vec<crate::record::Dataset>> {
    let mut out = Vec::new();
    for s in specs {
        let spec = dataset::parse_spec(s, cwd, repo_root)?;
        out.push(dataset::capture(
            &spec,
            &dataset::HashOptions::default(),
            Some(store.conn()),
            None,
        )?);
    }
    Ok(out)
}

fn classify(
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
        Outcome::NotStarted(_) => (Status::Failed, Some(127), None),
    }
}

/// The engine invocation (container mode) or the plain command (host mode).
pub fn build_spawn(run: &Run, cwd: &Path, extra_mounts: &[(PathBuf, String)]) -> Spawn {
    let argv = run.argv_os();
    match (run.exec.mode, &run.image) {
        (ExecMode::Container, Some(img)) => {
            let engine = run.exec.engine.clone().unwrap_or_else(|| "podman".into());
            let name = format!("repro-{}", run.id);
            let workdir = run
                .exec
                .workdir
                .clone()
                .unwrap_or_else(|| DEFAULT_WORKDIR.into());
            let (mount_src, inner) = match &run.code {
                Some(c) => (
                    PathBuf::from(&c.repo_root),
                    if run.cwd == "." {
                        workdir.clone()
                    } else {
                        format!("{}/{}", workdir.trim_end_matches('/'), run.cwd)
                    },
                ),
                None => (cwd.to_path_buf(), workdir.clone()),
            };
            let mut a: Vec<OsString> = vec!["run".into(), "--rm".into(), "-i".into()];
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                a.push("-t".into());
            }
            a.push(format!("--name={name}").into());
            let mut vol = OsString::from("--volume=");
            vol.push(mount_src.as_os_str());
            vol.push(format!(":{workdir}"));
            a.push(vol);
            a.push(format!("--workdir={inner}").into());
            for k in run.env.keys() {
                a.push("--env".into());
                a.push(k.into());
            }
            if let Some(g) = &run.exec.gpus {
                a.extend(exec::gpu_flags(&engine, g).into_iter().map(OsString::from));
            }
            for (src, dst) in extra_mounts {
                let mut m = OsString::from("--volume=");
                m.push(src.as_os_str());
                m.push(format!(":{dst}:ro"));
                a.push(m);
            }
            a.extend(run.exec.engine_args.iter().map(OsString::from));
            a.push(engine_image_name(img).into());
            a.extend(argv);
            Spawn {
                program: engine.clone().into(),
                args: a,
                cwd: cwd.to_path_buf(),
                env: Vec::new(),
                container: Some((engine, name)),
            }
        }
        _ => {
            let mut it = argv.into_iter();
            let program = it.next().unwrap_or_default();
            Spawn {
                program,
                args: it.collect(),
                cwd: cwd.to_path_buf(),
                env: Vec::new(),
                container: None,
            }
        }
    }
}

/// `name@digest` with the name normalised (`ubuntu` → `docker.io/library/ubuntu`), so that no
/// engine applies its own short-name resolution; the reference as written when unpinned.
pub fn engine_image_name(img: &Image) -> String {
    let name = image::reference::parse_normalized(&img.reference)
        .map(|r| r.name())
        .unwrap_or_else(|_| img.repository());
    match &img.digest {
        Some(d) => format!("{name}@{d}"),
        None => img.reference.clone(),
    }
}
