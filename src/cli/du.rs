//! `repro du`: args → [`ops::du`](crate::ops::du) → totals and runs largest first (or JSON).

use clap::Args;

use crate::cli::{print_out, stdout_is_tty, Ctx};
use crate::error::CliResult;
use crate::store::objects::Objects;

/// Arguments of `repro du`.
#[derive(Debug, Args)]
pub struct DuArgs {
    /// At most N runs, largest first
    #[arg(long, short = 'n', value_name = "N", default_value_t = 20)]
    pub limit: u64,
    /// Every run with kept outputs (no limit)
    #[arg(long, conflicts_with = "limit")]
    pub all: bool,
    /// Machine-readable: {"schema_version":1,"objects":{"count","bytes"},"disk_bytes",
    /// "referenced","orphans","temps","missing","runs":[…],"runs_total"}
    #[arg(long)]
    pub json: bool,
}

/// Prints what the object store of kept outputs takes.
pub fn cmd_du(ctx: &Ctx, args: &DuArgs) -> CliResult {
    let store = ctx.open_store()?;
    let objects = Objects::beside(store.path());
    let limit = (!args.all).then_some(args.limit);
    let report = crate::ops::du::du(&store, &objects, limit)?;
    print_out(&if args.json {
        crate::output::du::json(&report)
    } else {
        crate::output::du::text(&report, stdout_is_tty())
    })
}
