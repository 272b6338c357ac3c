//! `repro script`: a re-run script for a recorded run (bash, Kubernetes Job, Slurm).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use clap::Args;

use crate::cli::{print_out, Ctx};
use crate::config::Config;
use crate::error::{CliError, CliResult};
use crate::script::{slurm, Engine, ScriptOptions, Target};

/// Arguments of `repro script`.
#[derive(Debug, Args)]
pub struct ScriptArgs {
    /// Run id or any unique prefix
    pub id: String,
    /// What to generate
    #[arg(long, value_enum, default_value_t = Target::Bash)]
    pub target: Target,
    /// Container engine used by the bash script (default: the one recorded)
    #[arg(long, value_enum)]
    pub engine: Option<Engine>,
    #[command(flatten)]
    pub registry: crate::cli::RegistryArgs,
    /// Container runtime of the Slurm script
    #[arg(long, value_enum, default_value_t = slurm::Runtime::Apptainer)]
    pub runtime: slurm::Runtime,
    /// Image of the Kubernetes init container that checks out the code, pinned by digest
    /// (`NAME@sha256:…`, with sh, git, base64, sha256sum); needed when the run has a commit
    #[arg(long, value_name = "REF@DIGEST")]
    pub git_image: Option<String>,
    /// Bash target, host run: first build a fresh venv in the work directory with the recorded
    /// Python distributions pinned (uv when present, else pip), and run the command in it
    #[arg(long)]
    pub recreate_env: bool,
    /// Write the script to FILE (scripts get mode 0755) instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// The script options of `repro script`: the registry options given now (configuration and
/// flags; they add to what the run recorded) and the recorded archives to fall back to.
pub fn options(
    args: &ScriptArgs,
    cfg: &Config,
    fallback: Option<crate::script::plan::PullFallback>,
) -> CliResult<ScriptOptions> {
    Ok(ScriptOptions {
        target: args.target,
        engine: args.engine,
        registry: args.registry.options(cfg)?,
        runtime: args.runtime,
        git_image: args.git_image.clone(),
        fallback,
        python_env: None,
    })
}

/// Renders the script.
pub fn cmd_script(ctx: &Ctx, args: &ScriptArgs) -> CliResult {
    let store = ctx.open_store()?;
    let id = store.resolve_id(&args.id)?;
    let run = store.get_run(&id)?;
    let fallback = match &run.image {
        Some(img) => crate::ops::archive::recorded_fallback(&store, img)?,
        None => None,
    };
    let mut opts = options(args, &ctx.config, fallback)?;
    if args.recreate_env {
        opts.python_env = store.environment_of(&id)?.and_then(|e| e.python);
        if opts.python_env.is_none() {
            return Err(crate::error::CliError::user(format!(
                "run {id} recorded no Python environment to recreate"
            ))
            .hint("render the script without --recreate-env"));
        }
    }
    let text = crate::script::render(&run, &opts)?;
    match &args.output {
        None => print_out(&text),
        Some(path) => {
            let mode = if args.target == Target::K8s {
                0o644
            } else {
                0o755
            };
            let write = || -> std::io::Result<()> {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(mode)
                    .open(path)?;
                f.write_all(text.as_bytes())
            };
            write().map_err(|e| {
                CliError::user(format!("cannot write {}: {e}", path.display()))
                    .hint("choose a writable path for -o")
            })?;
            ctx.status(format!("wrote {}", path.display()));
            Ok(())
        }
    }
}
