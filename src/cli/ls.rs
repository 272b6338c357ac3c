//! `repro ls`: list recorded runs, newest first, filtered, sorted, in a table or for scripts.

use clap::{Args, ValueEnum};

use crate::cli::filter::{usage_with_hint, FilterArgs};
use crate::cli::{print_out, stdout_is_tty, Ctx};
use crate::error::{CliError, CliResult};
use crate::output::formats::LsColumn;
use crate::output::formats::{self, Column};
use crate::record::Run;
use crate::store::metrics::{is_metric_expr, parse_metric_sort, MetricSort};
use crate::store::{SortKey, Store};

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
    /// Sort by: started (newest first), duration (longest first), status, name, host, image, or
    /// metric:KEY[:last|min|max|count] (highest first; --reverse: lowest first)
    #[arg(long, value_name = "FIELD", default_value = "started")]
    pub sort: String,
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

/// A `--sort` value (an `ls` sort key, or `metric:KEY[:STAT]`, highest first unless
/// `reverse`): the key and the metric order (`repro gc --keep-best` sorts the same way).
pub fn parse_sort(sort: &str, reverse: bool) -> CliResult<(SortKey, Option<(MetricSort, bool)>)> {
    if is_metric_expr(sort) {
        let ms = parse_metric_sort(sort).map_err(|e| usage_with_hint("--sort", e))?;
        return Ok((SortKey::Started, Some((ms, !reverse))));
    }
    let key = SortKey::parse(sort).ok_or_else(|| {
        CliError::usage(format!("cannot sort by '{sort}'")).hint(format!(
            "use one of {}, or metric:KEY[:STAT]",
            SortKey::NAMES.join(", ")
        ))
    })?;
    Ok((key, None))
}

/// Lists runs.
pub fn cmd_ls(ctx: &Ctx, args: &LsArgs) -> CliResult {
    let (sort, metric_sort) = parse_sort(&args.sort, args.reverse)?;
    let columns = match &args.columns {
        None => Column::DEFAULT.iter().map(|c| LsColumn::Run(*c)).collect(),
        Some(list) => LsColumn::parse_list(list).map_err(|m| {
            CliError::usage(m).hint(format!(
                "columns: {}, or metric:KEY[:STAT] (STAT: last, min, max, count)",
                Column::names().join(", ")
            ))
        })?,
    };
    let store = ctx.open_store()?;
    let mut q = args.filter.to_query(&store)?;
    q.filter.sort = sort;
    q.filter.sweep = args.sweep.clone();
    q.metric_sort = metric_sort;
    q.filter.oldest_first = args.reverse;
    q.filter.limit = (!args.all).then_some(args.limit);
    let runs = store.query(&q)?;
    let format = if args.json { Format::Json } else { args.format };
    print_out(&render(ctx, &store, &runs, &columns, format)?)
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
                let summaries = store.metric_summaries(&r.id)?;
                objects.push(crate::record::json::run_json_with_metrics(r, &summaries));
            }
            if format == Format::Json {
                crate::record::json::runs_json_values(objects)
            } else {
                formats::values_jsonl(&objects)
            }
        }
        Format::Csv | Format::Table => {
            let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
            let mut cells = formats::MetricCells::default();
            for c in columns {
                if let LsColumn::Metric(m) = c {
                    cells.insert(m, store.metric_values(&ids, &m.key, m.stat)?);
                }
            }
            if format == Format::Csv {
                formats::ls_csv(runs, columns, &cells)
            } else {
                formats::ls_table(runs, columns, &cells, stdout_is_tty(), ctx.color, ctx.utc)
            }
        }
    })
}
