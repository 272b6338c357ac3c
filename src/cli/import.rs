//! `repro import`: runs from `repro export` output. Idempotent by run id; a run whose provenance
//! differs from the stored one is reported as a conflict and never overwritten.

use std::fs::File;
use std::io;
use std::path::PathBuf;

use clap::Args;

use crate::cli::Ctx;
use crate::error::{CliError, CliResult};

/// Arguments of `repro import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A file written by `repro export`, or `-` for stdin
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Imports runs (validated first, then written in short batches); exits 1 when there were conflicts (after importing the rest).
pub fn cmd_import(ctx: &Ctx, args: &ImportArgs) -> CliResult {
    let mut store = ctx.open_store()?;
    let summary = if args.file.as_os_str() == "-" {
        store.import_lines(io::stdin().lock(), "stdin")?
    } else {
        let name = args.file.display().to_string();
        File::open(&args.file).map_err(|e| {
            CliError::user(format!("cannot open {name}: {e}"))
                .hint("give the path of a file written by `repro export`, or - for stdin")
        })?;
        store.import_file(&args.file)?
    };
    for c in &summary.conflicts {
        eprintln!(
            "repro: conflict: run {} (line {}) differs from the stored run in {}; kept the stored run",
            c.id,
            c.line,
            c.fields.join(", ")
        );
    }
    ctx.status(format!(
        "imported {}, unchanged {}, updated {}, conflicts {}{}",
        summary.imported,
        summary.unchanged,
        summary.updated,
        summary.conflicts.len(),
        if summary.promotions > 0 {
            format!(
                "; {} channel move(s) added to the trail",
                summary.promotions
            )
        } else {
            String::new()
        }
    ));
    if summary.conflicts.is_empty() {
        Ok(())
    } else {
        Err(CliError::user(format!(
            "{} run(s) conflict with stored runs of the same id and were not imported",
            summary.conflicts.len()
        ))
        .hint("the other runs were imported; compare with `repro show ID --json`"))
    }
}
