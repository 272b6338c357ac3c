//! `repro diff A B`: two run ids → [`crate::ops::diff`] → only what differs (image, code, datasets,
//! argv element by element, params, env, host, outcome, duration) and every metric with its
//! delta, side by side ([`crate::output::diff`]) or as JSON.

use clap::Args;

use crate::cli::{print_out, stdout_is_tty, Ctx};
use crate::error::{CliError, CliResult};
pub use crate::ops::diff::{diff_runs, metric_deltas, revision_warnings, Change};
use crate::output::diff::{diff_json, diff_text, DiffView};

/// Arguments of `repro diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// First run (id or unique prefix)
    pub a: String,
    /// Second run (id or unique prefix)
    pub b: String,
    /// Machine-readable output:
    /// {"schema_version":1,"a":…,"b":…,"differences":[…],"metrics":[…],"noise_group":…,"warnings":[…]};
    /// a metric delta is judged against A's recorded repeats (`rerun A --repeat N`, docs/noise.md)
    #[arg(long)]
    pub json: bool,
}

/// Compares two runs.
pub fn cmd_diff(ctx: &Ctx, args: &DiffArgs) -> CliResult {
    let store = ctx.open_store()?;
    let ia = store.resolve_id(&args.a)?;
    let ib = store.resolve_id(&args.b)?;
    if ia == ib {
        return Err(CliError::user(format!(
            "'{}' and '{}' are the same run {ia}",
            args.a, args.b
        ))
        .hint("give two different runs; list them with `repro ls`"));
    }
    let a = store.get_run(&ia)?;
    let b = store.get_run(&ib)?;
    let changes = diff_runs(&a, &b);
    let metrics = metric_deltas(&store.metric_summaries(&ia)?, &store.metric_summaries(&ib)?);
    let warnings = revision_warnings([("A", &a), ("B", &b)]);
    let noise = crate::ops::diff::Noise::of(&store, &ia)?;
    let environment = crate::ops::diff::environment_drift(&store, &ia, &ib)?;
    let view = DiffView {
        a: &a,
        b: &b,
        changes: &changes,
        metrics: &metrics,
        warnings: &warnings,
        noise: noise.as_ref(),
        environment: environment.as_deref(),
    };
    print_out(&if args.json {
        diff_json(&view)
    } else {
        diff_text(&view, stdout_is_tty())
    })
}
