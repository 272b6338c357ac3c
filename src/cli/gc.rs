//! `repro gc`: delete runs matching filters — never without a filter, never a live run, and only
//! after confirmation (a prompt on a terminal, `--yes` otherwise).

use clap::Args;

use crate::cli::filter::FilterArgs;
use crate::cli::{print_out, stdout_is_tty, Ctx};
use crate::error::{CliError, CliResult};
use crate::output::formats::{self, Column};
use crate::record::Status;

/// Arguments of `repro gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Delete without asking (required when not on a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// List what would be deleted and delete nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Also delete matching runs that may still be going (`running`, or `running?` when their
    /// liveness cannot be decided from here). Their wrappers re-insert them when they finish.
    #[arg(long)]
    pub include_running: bool,
}

/// Deletes matching runs.
pub fn cmd_gc(ctx: &Ctx, args: &GcArgs) -> CliResult {
    if !args.filter.any() {
        return Err(
            CliError::usage("refusing to delete every run: gc needs at least one filter")
                .hint("e.g. repro gc --status lost --until 30d"),
        );
    }
    let mut store = ctx.open_store()?;
    let mut q = args.filter.to_query(&store)?;
    q.filter.limit = None;
    // A run that may still be going keeps its row: its wrapper will finish it.
    let (runs, live): (Vec<_>, Vec<_>) = store
        .query(&q)?
        .into_iter()
        .partition(|r| r.status != Status::Running || args.include_running);
    let live = live.len();
    if live > 0 {
        ctx.warn(format!(
            "kept {live} run(s) that may still be running (running, or running? when this host cannot tell); --include-running deletes them too"
        ));
    }
    if runs.is_empty() {
        ctx.status("no runs match; nothing deleted");
        return Ok(());
    }
    let cols = [
        Column::Id,
        Column::Name,
        Column::Status,
        Column::Started,
        Column::Image,
        Column::Command,
    ];
    if args.dry_run {
        print_out(&formats::runs_table(&runs, &cols, stdout_is_tty(), ctx.utc))?;
        ctx.status(format!("would delete {} run(s) (dry run)", runs.len()));
        return Ok(());
    }
    if !args.yes {
        if !crate::cli::interactive() {
            return Err(CliError::usage(format!(
                "refusing to delete {} run(s) without confirmation",
                runs.len()
            ))
            .hint("pass --yes to delete them, or --dry-run to list them"));
        }
        eprint!(
            "{}",
            formats::runs_table(&runs[..runs.len().min(20)], &cols, false, ctx.utc)
        );
        if runs.len() > 20 {
            eprintln!("… and {} more", runs.len() - 20);
        }
        if !crate::cli::ask_yes(&format!(
            "Delete {} run(s)? This cannot be undone.",
            runs.len()
        ))? {
            ctx.status("nothing deleted");
            return Ok(());
        }
    }
    let ids: Vec<String> = runs.into_iter().map(|r| r.id).collect();
    let n = store.delete_runs(&ids)?;
    ctx.status(format!("deleted {n} run(s)"));
    Ok(())
}
