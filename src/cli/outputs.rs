//! `repro outputs push`: args → [`ops::outputs::push`] → the artifact's digest (or JSON) → exit
//! code (docs/outputs.md).

use clap::{Args, Subcommand};

use crate::cli::{print_out, Ctx, RegistryArgs};
use crate::error::CliResult;
use crate::ops::outputs::{self as op, PushRequest};
use crate::output;

/// `repro outputs …`
#[derive(Debug, Subcommand)]
pub enum OutputsCmd {
    /// Push a run's kept outputs to an OCI registry as one artifact (one layer per file,
    /// `oras pull` gives the files back); recorded with the run, so `repro get` can pull them
    /// back when the local copy is gone
    Push(PushArgs),
}

/// Arguments of `repro outputs push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Run id or any unique prefix
    pub id: String,
    /// Where: HOST[:PORT]/REPOSITORY[:TAG] (the tag defaults to the run id)
    #[arg(long, value_name = "HOST/REPO[:TAG]")]
    pub to: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Machine-readable result: {"schema_version":1,"reference","digest",…}
    #[arg(long)]
    pub json: bool,
}

/// Runs `repro outputs SUBCOMMAND`.
pub fn cmd_outputs(ctx: &Ctx, cmd: &OutputsCmd) -> CliResult {
    match cmd {
        OutputsCmd::Push(args) => cmd_push(ctx, args),
    }
}

fn cmd_push(ctx: &Ctx, args: &PushArgs) -> CliResult {
    let opts = args.registry.options(&ctx.config)?;
    let mut store = ctx.open_store()?;
    let id = store.resolve_id(&args.id)?;
    let pushed = op::push(
        ctx,
        &mut store,
        opts,
        &PushRequest {
            id,
            to: args.to.clone(),
        },
    )?;
    for w in output::outputs::warnings(&pushed) {
        ctx.warn(w);
    }
    if args.json {
        return print_out(&output::outputs::json(&pushed));
    }
    ctx.status(output::outputs::status(&pushed));
    print_out(&format!("{}\n", pushed.pinned))
}
