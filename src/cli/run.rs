//! `repro run`: flags and configuration → a typed [`RunRequest`] → [`ops::run`] → exit code.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

use clap::Args;

use crate::capture::image::registry::{Platform, RegistryOptions};
use crate::capture::image::ResolveMode;
use crate::cli::Ctx;
use crate::config::{Config, Resolve};
use crate::error::{CliError, CliResult};
use crate::exec::Engine;
use crate::ops::run::{pick_engine, RunRequest};
use crate::record::ExecMode;

pub use crate::ops::run::{looks_secret, which, REDACTED};
pub use crate::rerun::plan::DEFAULT_WORKDIR;

/// Arguments of `repro run`.
#[derive(Debug, Clone, Args)]
#[command(trailing_var_arg = true)]
pub struct RunArgs {
    /// Container image; the command runs in exactly the digest it resolves to
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    /// Container engine [env: REPRO_ENGINE] (default: config, else podman, then docker on PATH)
    #[arg(long, value_enum)]
    pub engine: Option<Engine>,
    /// Run on the host even with --image (the image is recorded as declared)
    #[arg(long)]
    pub host: bool,
    /// How to pin a tag: registry, engine (its RepoDigests), or auto (registry, then engine) [default: auto]
    #[arg(long, value_enum, value_name = "MODE")]
    pub resolve: Option<Resolve>,
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
    /// Push the run to MLflow when it finishes (see `repro mlflow push`; config `mlflow_push`)
    #[arg(long)]
    pub mlflow: bool,
    /// The command and its arguments, after `--`
    #[arg(required = true, value_name = "CMD", num_args = 1.., allow_hyphen_values = true)]
    pub command: Vec<OsString>,
}

/// Builds the request from the flags and the configuration (flags win; lists add up: the
/// configuration's entries first, then the flags'). Returns notes for the user.
pub fn request(args: &RunArgs, cfg: &Config, cwd: PathBuf) -> CliResult<(RunRequest, Vec<String>)> {
    let mut notes = Vec::new();
    fn merged(from_cfg: Vec<String>, flags: &[String], dedup: bool) -> Vec<String> {
        let mut out = from_cfg;
        for f in flags {
            if !dedup || !out.contains(f) {
                out.push(f.clone());
            }
        }
        out
    }
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
    for name in merged(env_names, &args.env, true) {
        if crate::config::check_env_name(&name).is_err() {
            return Err(
                CliError::usage(format!("--env '{name}' is not a variable name")).hint(
                    "name the variable only (--env SEED); its value is read from the environment",
                ),
            );
        }
        let value = std::env::var(&name).map_err(|_| {
            CliError::user(format!(
                "--env {name}: the variable is not set (or not UTF-8)"
            ))
            .hint(format!(
                "export {name}=… before the run, or drop --env {name}"
            ))
        })?;
        let value = if !args.env_unredacted && looks_secret(&name) {
            REDACTED.to_string()
        } else {
            value
        };
        env.insert(name, value);
    }
    let mode = if args.image.is_some() && !args.host {
        ExecMode::Container
    } else {
        ExecMode::Host
    };
    let engine = match mode {
        ExecMode::Container => Some(pick_engine(args.engine.or(cfg.engine.value))?),
        ExecMode::Host => None,
    };
    let mut engine_args = Vec::new();
    for m in merged(cfg.mounts.values(), &args.mounts, true) {
        crate::config::check_mount(&m).map_err(|e| {
            CliError::usage(format!("--mount {e}")).hint("write it as --mount /data:/data[:ro]")
        })?;
        engine_args.push(format!("--volume={m}"));
    }
    // Engine flags are an argv fragment (`--cap-add X`): order and repeats matter.
    engine_args.extend(merged(cfg.engine_args.values(), &args.engine_args, false));
    let workdir = args
        .workdir
        .clone()
        .unwrap_or_else(|| cfg.workdir.value.clone());
    crate::config::check_workdir(&workdir).map_err(|m| {
        CliError::usage(format!("--workdir {m}"))
            .hint("use a path inside the container such as /workspace")
    })?;
    let platform = match &args.platform {
        Some(p) => Some(Platform::parse(p)?),
        None => None,
    };
    let req = RunRequest {
        command: args.command.clone(),
        image: args.image.clone(),
        mode,
        engine,
        resolve: resolve_mode(args.resolve.unwrap_or(cfg.resolve.value)),
        allow_latest: !args.no_allow_latest && (args.allow_latest || cfg.allow_latest.value),
        allow_unpinned: !args.no_allow_unpinned
            && (args.allow_unpinned || cfg.allow_unpinned.value),
        offline: args.offline,
        platform,
        registry: RegistryOptions {
            insecure_registries: merged(
                cfg.insecure_registries.values(),
                &args.insecure_registries,
                true,
            ),
            ca_cert: args.ca_cert.clone(),
            ..RegistryOptions::default()
        },
        datasets: args.datasets.clone(),
        params,
        tags: args.tags.clone(),
        name: args.name.clone(),
        env,
        outputs: args.outputs.clone(),
        require_clean: !args.no_require_clean && (args.require_clean || cfg.require_clean.value),
        gpus: args.gpus.clone(),
        engine_args,
        workdir,
        cwd,
        mlflow: (args.mlflow || cfg.mlflow_push.value).then(|| crate::ops::mlflow::AfterRun {
            tracking_uri: cfg.mlflow_tracking_uri.value.clone(),
            experiment: cfg.mlflow_experiment.value.clone(),
        }),
    };
    Ok((req, notes))
}

/// The capture layer's resolve mode for the configured one.
pub fn resolve_mode(r: Resolve) -> ResolveMode {
    match r {
        Resolve::Registry => ResolveMode::Registry,
        Resolve::Engine => ResolveMode::Engine,
        Resolve::Auto => ResolveMode::Auto,
    }
}

/// With `--` on the command line everything before it is repro's: an unknown option there
/// (`repro run --hots -- true`) must not become the command.
fn check_separator(args: &RunArgs, raw: &[OsString]) -> CliResult<()> {
    let Some(run_at) = raw.iter().position(|a| a == "run") else {
        return Ok(());
    };
    let Some(sep) = raw[run_at..].iter().position(|a| a == "--") else {
        return Ok(());
    };
    let after = &raw[run_at + sep + 1..];
    if args.command.as_slice() != after {
        let first = args
            .command
            .first()
            .map(|a| a.to_string_lossy().into_owned());
        return Err(CliError::usage(format!(
            "unexpected argument '{}' before `--`",
            first.unwrap_or_default()
        ))
        .hint("everything before `--` is for repro (see `repro run --help`); the command goes after it"));
    }
    Ok(())
}

/// Runs `repro run` and returns the process exit code (the child's, when it ran).
pub fn cmd_run(ctx: &Ctx, args: &RunArgs) -> i32 {
    match prepare_and_run(ctx, args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    }
}

fn prepare_and_run(ctx: &Ctx, args: &RunArgs) -> CliResult<i32> {
    let raw: Vec<OsString> = std::env::args_os().collect();
    check_separator(args, &raw)?;
    let cwd = std::env::current_dir()
        .map_err(|e| CliError::user(format!("cannot read the current directory: {e}")))?;
    let (req, notes) = request(args, &ctx.config, cwd)?;
    for note in notes {
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
    let mut store = ctx.open_store()?;
    Ok(crate::ops::run::run(ctx, &mut store, &req)?.exit)
}
