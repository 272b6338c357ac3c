//! `repro get`: args → [`ops::get`] → one line per file (or JSON) → exit code.

use std::path::PathBuf;

use clap::Args;

use crate::cli::{print_out, Ctx, RegistryArgs};
use crate::error::CliResult;
use crate::ops::get::{self as op, GetRequest};
use crate::output;

/// Arguments of `repro get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Run id or any unique prefix
    pub id: String,
    /// Outputs to get, as `repro show` lists them, or files inside a directory output
    /// (DIR/file) [default: every kept output]
    pub paths: Vec<String>,
    /// Directory the recorded paths are written under
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub to: PathBuf,
    /// Replace files that exist with other contents
    #[arg(long)]
    pub force: bool,
    /// Machine-readable result: {"schema_version":1,"files":[…],"skipped":[…]}
    #[arg(long)]
    pub json: bool,
    // When the kept copy is gone, the outputs come from the artifact `repro outputs push`
    // recorded; these options reach its registry.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Writes a run's kept outputs back.
pub fn cmd_get(ctx: &Ctx, args: &GetArgs) -> CliResult {
    let store = ctx.open_store()?;
    let id = store.resolve_id(&args.id)?;
    let req = GetRequest {
        id,
        paths: args.paths.clone(),
        to: args.to.clone(),
        force: args.force,
        registry: Some(args.registry.options(&ctx.config)?),
    };
    let res = op::get(ctx, &store, &req)?;
    for (path, why) in &res.skipped {
        ctx.warn(format!(
            "output {} not kept: {}",
            crate::sanitize::escape(path),
            crate::sanitize::escape(why)
        ));
    }
    if args.json {
        print_out(&output::get::json(&res))
    } else {
        print_out(&output::get::text(&res))
    }
}
