//! `repro rerun`: flags → [`RerunRequest`] → [`ops::rerun`] → output verdicts and exit code.

use std::path::PathBuf;

use clap::Args;

use crate::capture::image::registry::RegistryOptions;
use crate::cli::Ctx;
use crate::error::CliResult;
use crate::exec::Engine;
use crate::ops::rerun::{RerunRequest, RerunResult};

/// Arguments of `repro rerun`.
#[derive(Debug, Args)]
pub struct RerunArgs {
    /// Run id or any unique prefix
    pub id: String,
    /// Container engine (default: the one recorded)
    #[arg(long, value_enum)]
    pub engine: Option<Engine>,
    /// Run on the host instead of in the pinned container
    #[arg(long)]
    pub host: bool,
    /// Exit 1 when any output differs from the original's (after a successful command)
    #[arg(long)]
    pub check: bool,
    /// Check the code out into DIR (empty or missing) instead of a new temporary directory
    #[arg(long, value_name = "DIR")]
    pub checkout: Option<PathBuf>,
    /// Keep the temporary checkout (it is removed after the run otherwise)
    #[arg(long)]
    pub keep: bool,
    /// Registry reachable over plain HTTP (podman pulls with --tls-verify=false); repeatable
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Extra CA certificate (PEM) for the registry (podman pulls with --cert-dir)
    #[arg(long, value_name = "PATH")]
    pub ca_cert: Option<PathBuf>,
    /// Print the engine commands (pull, run), quoted for bash, and run nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Metrics file or DVCLive directory read after the run (repeatable; config `metrics` too)
    #[arg(long = "metrics", value_name = "PATH")]
    pub metrics: Vec<PathBuf>,
}

/// Runs `repro rerun` and returns the exit code.
pub fn cmd_rerun(ctx: &Ctx, args: &RerunArgs) -> i32 {
    match rerun(ctx, args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    }
}

fn rerun(ctx: &Ctx, args: &RerunArgs) -> CliResult<i32> {
    let mut store = ctx.open_store()?;
    let id = store.resolve_id(&args.id)?;
    let mut insecure = ctx.config.insecure_registries.values();
    for h in &args.insecure_registries {
        if !insecure.contains(h) {
            insecure.push(h.clone());
        }
    }
    let req = RerunRequest {
        id,
        engine: args.engine,
        host: args.host,
        checkout: args.checkout.clone(),
        keep: args.keep,
        registry: RegistryOptions {
            insecure_registries: insecure,
            ca_cert: args.ca_cert.clone(),
            ..RegistryOptions::default()
        },
        dry_run: args.dry_run,
        metrics: crate::ops::metrics::paths(&ctx.config.metrics.values(), &args.metrics),
    };
    match crate::ops::rerun::rerun(ctx, &mut store, &req)? {
        RerunResult::DryRun(cmds) => {
            let mut text = String::new();
            for argv in cmds {
                text.push('+');
                for a in argv {
                    use std::os::unix::ffi::OsStrExt;
                    text.push(' ');
                    text.push_str(
                        &crate::rerun::quote::bash(a.as_bytes()).unwrap_or_else(|_| "''".into()),
                    );
                }
                text.push('\n');
            }
            crate::cli::print_out(&text)?;
            Ok(0)
        }
        RerunResult::Ran { finished, outputs } => {
            let mut bad = 0;
            for o in &outputs {
                if !matches!(o.verdict, "match" | "missing in both") {
                    bad += 1;
                }
                eprintln!("repro: output {}: {}", o.path, o.verdict);
            }
            if args.check && bad > 0 && finished.exit == 0 {
                return Ok(1);
            }
            Ok(finished.exit)
        }
    }
}
