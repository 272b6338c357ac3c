//! `repro export`: matching runs as JSON lines (the DESIGN.md object, patch included), oldest first.

use std::io::{self, BufWriter, Write};

use clap::Args;

use crate::cli::filter::FilterArgs;
use crate::cli::Ctx;
use crate::error::{CliError, CliResult};

/// Arguments of `repro export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Writes runs to stdout, one JSON object per line.
pub fn cmd_export(ctx: &Ctx, args: &ExportArgs) -> CliResult {
    let store = ctx.open_store()?;
    let mut q = args.filter.to_query(&store)?;
    q.filter.oldest_first = true;
    q.filter.limit = None;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut failure: Option<io::Error> = None;
    // The store reads a `running` row whose wrapper died as `lost`: export says what `show` says.
    let mut store_failure: Option<crate::store::StoreError> = None;
    let n = store.visit(&q, &mut |run| {
        let line = match export_line(&store, &run) {
            Ok(l) => l,
            Err(e) => {
                store_failure = Some(e);
                return false;
            }
        };
        match writeln!(out, "{line}") {
            Ok(()) => true,
            Err(e) => {
                failure = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = store_failure {
        return Err(e.into());
    }
    let flushed = out.flush();
    match failure.map_or(flushed, Err) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => return Err(CliError::user(format!("cannot write to stdout: {e}"))),
    }
    ctx.status(format!("exported {n} run(s)"));
    Ok(())
}

/// One export line: the run object (patch included) and, when the run has metrics, their
/// summary (`metrics`) and full history (`history`) in the `show --json --history` shapes,
/// its `environment` as `show --json` prints it, and the channel moves that pointed a tag at
/// its digest (`promotions`, `repro notes --format json`'s fields without the local sequence).
fn export_line(
    store: &crate::store::Store,
    run: &crate::record::Run,
) -> Result<String, crate::store::StoreError> {
    let summaries = store.metric_summaries(&run.id)?;
    let environment = store.environment_of(&run.id)?;
    let promotions = store.promotions_of_run(&run.id)?;
    if summaries.is_empty() && environment.is_none() && promotions.is_empty() {
        return Ok(serde_json::to_string(run).expect("run serialises"));
    }
    let mut v = serde_json::to_value(run).expect("run serialises");
    if !promotions.is_empty() {
        // The trail's sequence number is this database's own: left out.
        let list: Vec<serde_json::Value> = promotions
            .iter()
            .map(|p| {
                let mut o = serde_json::to_value(p).expect("promotion serialises");
                if let Some(m) = o.as_object_mut() {
                    m.remove("id");
                    m.remove("run_id");
                }
                o
            })
            .collect();
        v["promotions"] = serde_json::Value::Array(list);
    }
    if let Some(e) = environment {
        v["environment"] = serde_json::to_value(&e).expect("environment serialises");
    }
    if summaries.is_empty() {
        return Ok(serde_json::to_string(&v).expect("run serialises"));
    }
    let mut h = Vec::with_capacity(summaries.len());
    for m in &summaries {
        h.push((m.key.clone(), store.metric_history(&run.id, &m.key)?));
    }
    v["metrics"] = crate::record::metrics::summary_json(&summaries);
    v["history"] = crate::record::metrics::history_json(&h);
    Ok(serde_json::to_string(&v).expect("run serialises"))
}
