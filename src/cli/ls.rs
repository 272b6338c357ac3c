//! `repro ls`: list recorded runs, newest first, filtered, sorted, in a table or for scripts.

use clap::{Args, ValueEnum};

use crate::cli::filter::FilterArgs;
use crate::cli::{print_out, stdout_is_tty, Ctx};
use crate::error::{CliError, CliResult};
use crate::ops::ls;
use crate::ops::metric_keys::MetricKeyError;
use crate::ops::query::LsRequest;
use crate::output::formats::LsColumn;
use crate::output::formats::{self, Column};
use crate::record::Run;
use crate::store::metrics::MetricSort;
use crate::store::Store;

/// Output format of `ls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table (bordered and fitted to the terminal on a TTY, plain columns otherwise)
    Table,
    /// {"schema_version":1,"runs":[…]}
    Json,
    /// One run object per line
    Jsonl,
    /// RFC 4180 CSV with a header row, full ids, digests and times
    Csv,
}

/// Arguments of `repro ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only the runs of this sweep (`repro sweep`; id or prefix)
    #[arg(long, value_name = "ID")]
    pub sweep: Option<String>,
    /// Only the runs whose image digest CHANNEL holds (as last recorded by `repro promote`;
    /// `repro channels` checks the registry)
    #[arg(long, value_name = "CHANNEL")]
    pub promoted: Option<String>,
    /// Sort by: started (newest first), duration (longest first), status, name, host, image, or
    /// metric:KEY[:last|min|max|count][:asc|:desc] (highest first unless :asc; --reverse flips).
    /// Repeat with metric keys to break ties: --sort metric:val_acc --sort metric:val_loss:asc
    #[arg(long, value_name = "FIELD", default_value = "started")]
    pub sort: Vec<String>,
    /// Reverse the order
    #[arg(long)]
    pub reverse: bool,
    /// At most N runs
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: u64,
    /// Every matching run (no limit)
    #[arg(long, conflicts_with = "limit")]
    pub all: bool,
    /// Columns of the table or CSV, comma-separated (see --help for names)
    #[arg(long, value_name = "COL,…", help = formats::COLUMNS_HELP)]
    pub columns: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Same as --format json
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

pub use crate::ops::query::{parse_sort, parse_sorts, MetricOrder, Sorts};

/// Lists runs.
pub fn cmd_ls(ctx: &Ctx, args: &LsArgs) -> CliResult {
    // Checked before the store is opened (and perhaps created), as before.
    parse_sorts(&args.sort, args.reverse)?;
    let columns = match &args.columns {
        None => Column::DEFAULT.iter().map(|c| LsColumn::Run(*c)).collect(),
        Some(list) => LsColumn::parse_list(list).map_err(|m| {
            CliError::usage(m).hint(format!(
                "columns: {}, sweep, metric:KEY[:STAT] (STAT: last, min, max, count) or param:KEY",
                Column::names().join(", ")
            ))
        })?,
    };
    let store = ctx.open_store()?;
    let q = LsRequest {
        filters: args.filter.filters(),
        sweep: args.sweep.clone(),
        promoted: args.promoted.clone(),
        sort: args.sort.clone(),
        reverse: args.reverse,
        limit: (!args.all).then_some(args.limit),
    }
    .to_query(&store)?;
    let metric_columns: Vec<&MetricSort> = columns
        .iter()
        .filter_map(|c| match c {
            LsColumn::Metric(m) => Some(m),
            _ => None,
        })
        .collect();
    match ls::check_keys(&store, &q, &metric_columns) {
        Ok(()) => {}
        Err(MetricKeyError::Store(e)) => return Err(e.into()),
        // The message names the flag itself (`… (in --sort)`).
        Err(e) => {
            let hint = crate::error::Hinted::hint(&e);
            let err = CliError::usage(e.to_string());
            return Err(match hint {
                Some(h) => err.hint(h),
                None => err,
            });
        }
    }
    let runs = store.query(&q)?;
    let format = if args.json { Format::Json } else { args.format };
    print_out(&render(ctx, &store, &runs, &columns, format)?)?;
    if let Some(cut) = ls::cut(&store, &q, runs.len() as u64)? {
        ctx.status(formats::cut_note(cut));
    }
    Ok(())
}

/// The text of `ls` in `format`.
fn render(
    ctx: &Ctx,
    store: &Store,
    runs: &[Run],
    columns: &[LsColumn],
    format: Format,
) -> CliResult<String> {
    Ok(match format {
        Format::Json | Format::Jsonl => {
            // The objects of `show --json` (without `--history`): the run and its metric summary.
            let mut objects = Vec::with_capacity(runs.len());
            for r in runs {
                let summaries = ls::summaries(store, r)?;
                let mut o = crate::record::json::run_json_with_metrics(r, &summaries);
                // As `show --json` has it (docs/environment.md).
                if let Some(e) = store.environment_of(&r.id)? {
                    o["environment"] = serde_json::to_value(&e).expect("environment serialises");
                }
                objects.push(o);
            }
            if format == Format::Json {
                crate::record::json::runs_json_values(objects)
            } else {
                formats::values_jsonl(&objects)
            }
        }
        Format::Csv | Format::Table => {
            let mut cells = formats::MetricCells::default();
            if columns.contains(&LsColumn::Sweep) {
                cells.set_sweeps(ls::sweeps(store, runs)?);
            }
            let metrics: Vec<&MetricSort> = columns
                .iter()
                .filter_map(|c| match c {
                    LsColumn::Metric(m) => Some(m),
                    _ => None,
                })
                .collect();
            for (m, values) in metrics
                .iter()
                .zip(ls::metric_columns(store, runs, &metrics)?)
            {
                cells.insert(m, values);
            }
            if format == Format::Csv {
                formats::ls_csv(runs, columns, &cells)
            } else {
                formats::ls_table(runs, columns, &cells, stdout_is_tty(), ctx.color, ctx.utc)
            }
        }
    })
}
