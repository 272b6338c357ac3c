//! `repro which FILE…`: args → [`ops::which`] → text or JSON → exit code, as `grep` has them:
//! 0 every path is known to a run, 1 some path is known to none, 2 a path could not be looked up.

use std::path::PathBuf;

use clap::Args;

use crate::cli::{print_out, Ctx};
use crate::error::CliError;
use crate::ops::which::{self as op, WhichFile, WhichRequest};
use crate::output;

/// Exit code when a path could not be hashed or looked up (as `grep` on an unreadable file).
const EXIT_ERROR: i32 = 2;

/// Arguments of `repro which`.
#[derive(Debug, Args)]
pub struct WhichArgs {
    /// Files or directories to look up by content (a directory by its dataset digest)
    #[arg(required = true, value_name = "FILE")]
    pub paths: Vec<PathBuf>,
    /// Machine-readable result: {"schema_version":1,"files":[{"path","sha256","bytes",
    /// "produced_by":[…],"read_by":[…],"error"}]}
    #[arg(long)]
    pub json: bool,
}

/// Names the runs that produced or read each path's content. Exit 0 when every path is known
/// to some run, 1 when one is known to none, 2 when one could not be looked up.
pub fn cmd_which(ctx: &Ctx, args: &WhichArgs) -> i32 {
    let store = match ctx.open_store() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_ERROR;
        }
    };
    let req = WhichRequest {
        paths: args.paths.clone(),
    };
    let mut failed = false;
    let mut found: Vec<WhichFile> = Vec::new();
    let mut all: Vec<(PathBuf, Result<WhichFile, String>)> = Vec::new();
    for (path, res) in op::which(&store, &req) {
        match res {
            Ok(f) => {
                found.push(f.clone());
                all.push((path, Ok(f)));
            }
            Err(e) => {
                failed = true;
                let e = CliError::from(e);
                // The message names the path, which may hold control characters.
                for line in e.to_string().lines() {
                    eprintln!("{}", crate::sanitize::escape(line));
                }
                all.push((path, Err(e.message)));
            }
        }
    }
    let text = if args.json {
        output::which::json(&all)
    } else {
        output::which::text(&found, ctx.utc)
    };
    if let Err(e) = print_out(&text) {
        eprintln!("{e}");
        return EXIT_ERROR;
    }
    if failed {
        EXIT_ERROR
    } else if found.iter().all(WhichFile::known) {
        0
    } else {
        1
    }
}
