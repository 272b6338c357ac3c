//! `repro export`: matching runs as JSON lines (the DESIGN.md object, patch included), oldest first.

use std::io::{self, BufWriter, Write};

use clap::Args;

use crate::cli::ls::FilterArgs;
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
    let mut keep = |r: &crate::record::Run| q.keeps(r);
    let keep: Option<&mut dyn FnMut(&crate::record::Run) -> bool> =
        q.want.is_some().then_some(&mut keep as _);
    // The store reads a `running` row whose wrapper died as `lost`: export says what `show` says.
    let n = store.visit_runs(&q.filter, keep, &mut |run| {
        let line = serde_json::to_string(&run).expect("run serialises");
        match writeln!(out, "{line}") {
            Ok(()) => true,
            Err(e) => {
                failure = Some(e);
                false
            }
        }
    })?;
    let flushed = out.flush();
    match failure.map_or(flushed, Err) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => return Err(CliError::user(format!("cannot write to stdout: {e}"))),
    }
    ctx.status(format!("exported {n} run(s)"));
    Ok(())
}
