//! `repro ls`: list recorded runs, newest first.

use clap::Args;

use crate::capture::host::effective_status;
use crate::cli::{print_out, stdout_is_tty, Ctx};
use crate::error::{CliError, CliResult};
use crate::output;
use crate::record::Status;
use crate::store::RunFilter;

/// Arguments of `repro ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only runs whose image reference contains this text
    #[arg(long)]
    pub image: Option<String>,
    /// Only runs whose commit starts with this prefix
    #[arg(long)]
    pub code: Option<String>,
    /// Only runs that used this dataset (NAME or NAME@VERSION)
    #[arg(long)]
    pub dataset: Option<String>,
    /// Only runs with this status (running, succeeded, failed, killed, lost)
    #[arg(long)]
    pub status: Option<String>,
    /// At most this many runs
    #[arg(long, default_value_t = 20)]
    pub limit: u64,
    /// Machine-readable output: {"schema_version":1,"runs":[…]}
    #[arg(long)]
    pub json: bool,
}

/// Lists runs.
pub fn cmd_ls(ctx: &Ctx, args: &LsArgs) -> CliResult {
    let status = match &args.status {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            CliError::usage(format!("unknown status '{s}'"))
                .hint("use one of running, succeeded, failed, killed, lost")
        })?),
    };
    let mut filter = RunFilter {
        image: args.image.clone(),
        code: args.code.clone(),
        dataset: args.dataset.as_ref().map(|d| match d.split_once('@') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (d.clone(), None),
        }),
        limit: Some(args.limit),
        ..Default::default()
    };
    // Lost runs are stored as `running`; liveness is decided when reading.
    let post: Option<Status> = match status {
        Some(Status::Lost) | Some(Status::Running) => {
            filter.statuses = vec![Status::Running];
            filter.limit = None;
            status
        }
        Some(s) => {
            filter.statuses = vec![s];
            None
        }
        None => None,
    };
    let store = ctx.open_store()?;
    let mut runs = store.list_runs(&filter)?;
    if let Some(want) = post {
        runs.retain(|r| effective_status(r).0 == want);
        runs.truncate(args.limit as usize);
    }
    let text = if args.json {
        output::runs_json(&runs)
    } else {
        output::runs_table_styled(&runs, stdout_is_tty(), ctx.color, ctx.utc)
    };
    print_out(&text)
}
