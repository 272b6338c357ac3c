//! `repro doctor`: the checks of `ops::doctor`, rendered by `output::doctor`; exit 1 when a
//! check fails.

use std::time::Duration;

use clap::Args;

use crate::cli::{print_out, Ctx};
use crate::error::CliError;
use crate::ops::doctor::{check_probe_image, doctor, ConfigProblem, DoctorRequest};

/// Arguments of `repro doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Machine-readable output: {"schema_version":1,"ok":…,"checks":[{"check","status","detail","hint"}]}
    /// with status ok, warn, fail or skipped
    #[arg(long)]
    pub json: bool,
    /// Seconds allowed for each engine command (`info`, the probe image's pull, the probe container)
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub engine_timeout: u64,
    /// Image of the probe container, pinned (NAME@sha256:…) and pulled when missing; default: a
    /// busybox image already in the engine's store. It must have /bin/busybox
    #[arg(long, value_name = "REF@DIGEST")]
    pub probe_image: Option<String>,
}

/// Runs every check and prints the report; returns the exit code.
pub fn cmd_doctor(ctx: &Ctx, args: &DoctorArgs, config_error: Option<&CliError>) -> i32 {
    if let Some(r) = &args.probe_image {
        if let Err(e) = check_probe_image(r) {
            let e = CliError::usage(e.to_string())
                .hint("pin it by digest, e.g. --probe-image docker.io/library/busybox@sha256:…");
            eprintln!("{e}");
            return e.exit_code();
        }
    }
    let req = DoctorRequest {
        config: &ctx.config,
        config_error: config_error.map(|e| ConfigProblem {
            message: e.message.clone(),
            hint: e.hints.first().cloned(),
        }),
        db_path: ctx.db_path(),
        db_source: ctx.config.db.source.to_string(),
        engine_timeout: Duration::from_secs(args.engine_timeout),
        probe_image: args.probe_image.clone(),
    };
    let report = doctor(&req);
    let text = if args.json {
        crate::output::doctor::json(&report)
    } else {
        crate::output::doctor::text(&report, ctx.color)
    };
    if let Err(e) = print_out(&text) {
        eprintln!("{e}");
        return e.exit_code();
    }
    i32::from(!report.ok())
}
