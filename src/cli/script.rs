//! `repro script`: a re-run script for a recorded run (bash, Kubernetes Job, Slurm).

use std::path::PathBuf;

use clap::Args;

use crate::cli::{print_out, Ctx};
use crate::error::{CliError, CliResult};

/// Arguments of `repro script`.
#[derive(Debug, Args)]
pub struct ScriptArgs {
    /// Run id or any unique prefix
    pub id: String,
    /// Container engine used by the bash script (default: the one recorded)
    #[arg(long, value_name = "docker|podman")]
    pub engine: Option<String>,
    /// Write the script to FILE (mode 0755) instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Renders the script.
pub fn cmd_script(ctx: &Ctx, args: &ScriptArgs) -> CliResult {
    let store = ctx.open_store()?;
    let id = store.resolve_id(&args.id)?;
    let _run = store.get_run(&id)?;
    let _ = print_out;
    Err(CliError::user("script rendering is being integrated"))
}
