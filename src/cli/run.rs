//! `repro run`: flags and configuration → a typed [`RunRequest`] → [`ops::run`] → exit code.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Args;

use crate::capture::image::ResolveMode;
use crate::cli::Ctx;
use crate::error::{CliError, CliResult};
use crate::exec::Engine;
use crate::ops::run::{RunFlags, RunRequest};

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
    pub resolve: Option<ResolveMode>,
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
    #[command(flatten)]
    pub registry: crate::cli::RegistryArgs,
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
    /// Output file or directory, hashed after the run and kept in the object store (`repro get`)
    #[arg(long = "output", value_name = "PATH")]
    pub outputs: Vec<String>,
    /// Keep a copy of every --output in the object store (the default; config `keep_outputs`)
    #[arg(long, overrides_with = "no_keep_outputs")]
    pub keep_outputs: bool,
    /// Only hash the outputs; keep no copy
    #[arg(long, overrides_with = "keep_outputs")]
    pub no_keep_outputs: bool,
    /// Record the command's `--key value`, `--key=value` and `key=value` arguments as params (the
    /// default; config `params_from_argv`; --param wins)
    #[arg(long, overrides_with = "no_params_from_argv")]
    pub params_from_argv: bool,
    /// Record only the --param params
    #[arg(long, overrides_with = "params_from_argv")]
    pub no_params_from_argv: bool,
    /// Metrics file (.jsonl/.json/.yaml/.csv/.tsv) or DVCLive directory read after the run (repeatable)
    #[arg(long = "metrics", value_name = "PATH")]
    pub metrics: Vec<PathBuf>,
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
    /// Sample CPU and memory (`sys/…` metrics) this often while the job runs (`10s`, `500ms`;
    /// `0s`: off) [default: 10s; config `sys_metrics_interval`]
    #[arg(long, value_name = "DUR")]
    pub sys_metrics_interval: Option<String>,
    /// The command and its arguments, after `--`
    #[arg(required = true, value_name = "CMD", num_args = 1.., allow_hyphen_values = true)]
    pub command: Vec<OsString>,
}

/// `--x` / `--no-x` (clap keeps only the last): `Some` when either was given.
fn tri(yes: bool, no: bool) -> Option<bool> {
    (yes || no).then_some(yes)
}

impl RunArgs {
    /// The flags as plain values for [`RunRequest::from_flags`].
    pub fn flags(&self) -> RunFlags {
        RunFlags {
            image: self.image.clone(),
            engine: self.engine,
            host: self.host,
            resolve: self.resolve,
            allow_latest: tri(self.allow_latest, self.no_allow_latest),
            allow_unpinned: tri(self.allow_unpinned, self.no_allow_unpinned),
            offline: self.offline,
            platform: self.platform.clone(),
            insecure_registries: self.registry.insecure_registries.clone(),
            ca_cert: self.registry.ca_cert.clone(),
            datasets: self.datasets.clone(),
            params: self.params.clone(),
            tags: self.tags.clone(),
            name: self.name.clone(),
            env: self.env.clone(),
            env_unredacted: self.env_unredacted,
            outputs: self.outputs.clone(),
            keep_outputs: tri(self.keep_outputs, self.no_keep_outputs),
            params_from_argv: tri(self.params_from_argv, self.no_params_from_argv),
            require_clean: tri(self.require_clean, self.no_require_clean),
            gpus: self.gpus.clone(),
            engine_args: self.engine_args.clone(),
            mounts: self.mounts.clone(),
            workdir: self.workdir.clone(),
            metrics: self.metrics.clone(),
            mlflow: self.mlflow,
            sys_metrics_interval: self.sys_metrics_interval.clone(),
            command: self.command.clone(),
        }
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
    crate::cli::exit_with(prepare_and_run(ctx, args))
}

fn prepare_and_run(ctx: &Ctx, args: &RunArgs) -> CliResult<i32> {
    let raw: Vec<OsString> = std::env::args_os().collect();
    check_separator(args, &raw)?;
    let cwd = std::env::current_dir()
        .map_err(|e| CliError::user(format!("cannot read the current directory: {e}")))?;
    let (req, notes) = RunRequest::from_flags(args.flags(), &ctx.config, cwd)?;
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
