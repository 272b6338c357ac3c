//! `repro gc`: delete runs matching filters — never without a filter, never a live run, and only
//! after confirmation (a prompt on a terminal, `--yes` otherwise) — with the kept objects only
//! they needed; or, with `--outputs`, remove kept copies of outputs by a retention policy.

use clap::Args;

use crate::cli::filter::{parse_when, FilterArgs};
use crate::cli::{print_out, stdout_is_tty, Ctx};
use crate::error::{CliError, CliResult};
use crate::ops::gc::{self as op, KeepBest, OutputsPolicy};
use crate::output::formats::{self, human_bytes, Column};
use crate::store::objects::Objects;

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
    #[arg(long, conflicts_with = "outputs")]
    pub include_running: bool,
    /// Remove the kept copies of the matching runs' outputs instead of the runs (the records
    /// stay, marked not kept); an output stays when any --keep-* rule holds for its run
    #[arg(long)]
    pub outputs: bool,
    /// With --outputs: keep the outputs of runs that have any tag
    #[arg(long, requires = "outputs")]
    pub keep_tagged: bool,
    /// With --outputs: keep the outputs of runs with this tag (repeatable)
    #[arg(long = "keep-tag", value_name = "TAG", requires = "outputs")]
    pub keep_tags: Vec<String>,
    /// With --outputs: keep the outputs of the best N matching runs by --sort
    #[arg(long, value_name = "N", requires_all = ["outputs", "sort"])]
    pub keep_best: Option<u64>,
    /// With --keep-best: what "best" means, as `ls --sort` takes it: metric:KEY[:STAT] (highest
    /// first; runs without the metric are never best), started, duration, …
    #[arg(long, value_name = "FIELD", requires = "keep_best")]
    pub sort: Option<String>,
    /// With --keep-best: the lowest are best (a loss)
    #[arg(long, requires = "keep_best")]
    pub reverse: bool,
    /// With --outputs: keep the outputs of runs started within WHEN (30m, 24h, 7d, 2w) or
    /// since a date (YYYY-MM-DD) or time (RFC 3339)
    #[arg(long, value_name = "WHEN", requires = "outputs")]
    pub keep_newer_than: Option<String>,
    /// With --outputs: remove no kept output, only objects no run keeps and stale temporary files
    #[arg(long, requires = "outputs", conflicts_with_all = ["keep_tagged", "keep_tags", "keep_best", "keep_newer_than"])]
    pub orphans: bool,
    /// With --outputs: the plan and what was done as JSON (see docs/outputs.md)
    #[arg(long, requires = "outputs")]
    pub json: bool,
}

impl GcArgs {
    fn any_keep_rule(&self) -> bool {
        self.keep_tagged
            || !self.keep_tags.is_empty()
            || self.keep_best.is_some()
            || self.keep_newer_than.is_some()
    }
}

/// Deletes matching runs, or removes kept outputs by policy (`--outputs`).
pub fn cmd_gc(ctx: &Ctx, args: &GcArgs) -> CliResult {
    if args.outputs {
        return gc_outputs(ctx, args);
    }
    if !args.filter.any() {
        return Err(
            CliError::usage("refusing to delete every run: gc needs at least one filter")
                .hint("e.g. repro gc --status lost --until 30d"),
        );
    }
    let mut store = ctx.open_store()?;
    let mut q = args.filter.to_query(&store)?;
    q.filter.limit = None;
    let objects = Objects::beside(store.path());
    let plan = op::plan_runs(&store, &objects, &q, args.include_running)?;
    if plan.live > 0 {
        ctx.warn(format!(
            "kept {} run(s) that may still be running (running, or running? when this host cannot tell); --include-running deletes them too",
            plan.live
        ));
    }
    let runs = &plan.runs;
    if runs.is_empty() {
        ctx.status("no runs match; nothing deleted");
        return Ok(());
    }
    let frees = (plan.frees.count > 0).then(|| {
        format!(
            "with them go {} of kept outputs in {} object(s) no other run needs",
            human_bytes(plan.frees.bytes),
            plan.frees.count
        )
    });
    let cols = [
        Column::Id,
        Column::Name,
        Column::Status,
        Column::Started,
        Column::Image,
        Column::Command,
    ];
    if args.dry_run {
        print_out(&formats::runs_table(runs, &cols, stdout_is_tty(), ctx.utc))?;
        ctx.status(format!("would delete {} run(s) (dry run)", runs.len()));
        if let Some(f) = &frees {
            ctx.status(f);
        }
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
        if let Some(f) = &frees {
            eprintln!("{f}");
        }
        if !crate::cli::ask_yes(&format!(
            "Delete {} run(s)? This cannot be undone.",
            runs.len()
        ))? {
            ctx.status("nothing deleted");
            return Ok(());
        }
    }
    let (n, swept) = op::delete_runs(ctx, &mut store, &objects, &plan)?;
    ctx.status(format!(
        "deleted {n} run(s); removed {} object(s), {}",
        swept.objects.count,
        human_bytes(swept.objects.bytes)
    ));
    Ok(())
}

/// `repro gc --outputs`.
fn gc_outputs(ctx: &Ctx, args: &GcArgs) -> CliResult {
    if !args.orphans && !args.any_keep_rule() && !args.filter.any() {
        return Err(CliError::usage(
            "refusing to remove every kept output: gc --outputs needs a keep rule or a filter",
        )
        .hint("e.g. repro gc --outputs --keep-tagged --keep-best 5 --sort metric:val_acc --keep-newer-than 7d; --orphans removes only objects no run keeps"));
    }
    let mut store = ctx.open_store()?;
    let policy = policy(args, &store)?;
    let objects = Objects::beside(store.path());
    let plan = op::plan_outputs(&store, &objects, &policy)?;
    for u in &plan.unreadable {
        ctx.warn(format!(
            "{}: its manifest cannot be read (`repro verify --store`)",
            crate::sanitize::escape(u)
        ));
    }
    let nothing = plan.remove.is_empty()
        && plan.frees.count == 0
        && plan.orphans.count == 0
        && plan.temps.count == 0;
    let tty = stdout_is_tty();
    if args.dry_run || nothing {
        return print_out(&if args.json {
            crate::output::gc::json(&plan, true, None)
        } else {
            format!(
                "{}{}",
                crate::output::gc::removals_table(&plan, tty, usize::MAX),
                crate::output::gc::plan_summary(&plan, true)
            )
        });
    }
    if !args.yes {
        if !crate::cli::interactive() {
            return Err(CliError::usage(format!(
                "refusing to remove the kept copies of {} output(s) without confirmation",
                plan.remove.len()
            ))
            .hint("pass --yes to remove them, or --dry-run to list them"));
        }
        eprint!(
            "{}{}",
            crate::output::gc::removals_table(&plan, false, 20),
            crate::output::gc::plan_summary(&plan, false)
        );
        if !crate::cli::ask_yes("Remove them? Only re-running or a pushed copy brings them back.")?
        {
            ctx.status("nothing removed");
            return Ok(());
        }
    }
    let date = crate::capture::host::now().format("%Y-%m-%d").to_string();
    let (n, swept) = op::remove_outputs(ctx, &mut store, &objects, &plan, &date)?;
    print_out(&if args.json {
        crate::output::gc::json(&plan, false, Some((n, &swept)))
    } else {
        crate::output::gc::done_text(n, &swept)
    })
}

/// The retention policy of the flags.
fn policy(args: &GcArgs, store: &crate::store::Store) -> CliResult<OutputsPolicy> {
    let mut considered = args.filter.to_query(store)?;
    considered.filter.limit = None;
    let keep_best = match (args.keep_best, &args.sort) {
        (Some(n), Some(sort)) => {
            let (key, metric_sort) = crate::cli::ls::parse_sort(sort, args.reverse)?;
            let mut q = considered.clone();
            q.filter.sort = key;
            q.filter.oldest_first = args.reverse;
            q.filter.limit = Some(n);
            q.metric_sort = metric_sort.clone();
            Some(KeepBest {
                n,
                query: q,
                metric: metric_sort.map(|(m, _)| m),
                label: format!(
                    "best {n} by {sort}{}",
                    if args.reverse { " (lowest)" } else { "" }
                ),
            })
        }
        _ => None,
    };
    let keep_newer = match &args.keep_newer_than {
        Some(w) => Some((
            parse_when(w, crate::capture::host::now())
                .map_err(|m| CliError::usage(format!("--keep-newer-than: {m}")))?,
            format!("newer than {w}"),
        )),
        None => None,
    };
    Ok(OutputsPolicy {
        considered,
        keep_tagged: args.keep_tagged,
        keep_tags: args.keep_tags.clone(),
        keep_best,
        keep_newer,
        orphans_only: args.orphans,
    })
}
