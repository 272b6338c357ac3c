//! `repro show`: everything recorded about one run.

use clap::Args;

use crate::cli::{print_out, Ctx};
use crate::error::CliResult;
use crate::output;

/// Arguments of `repro show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Run id or any unique prefix
    pub id: String,
    /// Machine-readable output (DESIGN.md schema_version 1)
    #[arg(long)]
    pub json: bool,
}

/// Shows one run.
pub fn cmd_show(ctx: &Ctx, args: &ShowArgs) -> CliResult {
    let store = ctx.open_store()?;
    let id = store.resolve_id(&args.id)?;
    let run = store.get_run(&id)?;
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&output::run_json(&run)).expect("json");
        s.push('\n');
        s
    } else {
        output::show_text(&run, ctx.utc)
    };
    print_out(&text)
}
