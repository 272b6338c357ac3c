//! `repro rerun`: flags → [`RerunRequest`] → [`ops::rerun`] → output verdicts and exit code.

use std::path::PathBuf;

use clap::Args;

use crate::cli::Ctx;
use crate::error::CliResult;
use crate::exec::Engine;
use crate::ops::rerun::{Checks, RerunRequest, RerunResult, Tolerance};
use crate::ops::slurm_rerun::{
    self, EndOptions, JobEnd, PollRequest, Polled, SlurmRerun, SlurmRerunRequest,
};
use crate::slurm::Client;

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
    /// Exit 1 when any output, or any metric beyond --rtol/--atol, differs from the original's
    /// (after a successful command); a metric the re-run no longer reports fails too
    #[arg(long)]
    pub check: bool,
    /// Relative tolerance of the metric check: |now - original| <= atol + rtol * |original|
    /// (default 0: the same value)
    #[arg(long, value_name = "R", value_parser = tolerance, allow_negative_numbers = true)]
    pub rtol: Option<f64>,
    /// Absolute tolerance of the metric check (default 0)
    #[arg(long, value_name = "A", value_parser = tolerance, allow_negative_numbers = true)]
    pub atol: Option<f64>,
    /// Push the re-run to MLflow when it ends, linked to its original if that was pushed
    /// (as `repro run --mlflow`; config `mlflow_push`)
    #[arg(long)]
    pub mlflow: bool,
    /// Check the code out into DIR (empty or missing) instead of a new temporary directory
    #[arg(long, value_name = "DIR")]
    pub checkout: Option<PathBuf>,
    /// Keep the temporary checkout (it is removed after the run otherwise)
    #[arg(long)]
    pub keep: bool,
    // Registry options given now: they add to what the run recorded it needed.
    #[command(flatten)]
    pub registry: crate::cli::RegistryArgs,
    /// Print the engine commands (pull, run), quoted for bash, and run nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Where to re-run: here (default) or as a Slurm batch job (docs/cluster.md)
    #[arg(long, value_enum, value_name = "WHERE")]
    pub on: Option<On>,
    /// Extra sbatch argument, verbatim (repeatable; --on slurm), e.g. --sbatch-arg=--time=10
    #[arg(long = "sbatch-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub sbatch_args: Vec<std::ffi::OsString>,
    /// Container runtime of the Slurm job (--on slurm; default: apptainer if this host has it, else podman)
    #[arg(long, value_enum)]
    pub runtime: Option<crate::script::slurm::Runtime>,
    /// Follow the Slurm job until it ends and record its outcome (--on slurm, --poll)
    #[arg(long)]
    pub wait: bool,
    /// ID is a re-run submitted with --on slurm: ask Slurm and record its outcome if it has ended
    /// (--checkout names its job directory to hash the outputs)
    #[arg(long, conflicts_with_all = ["on", "dry_run", "host", "sbatch_args"])]
    pub poll: bool,
    /// Re-run a run recorded on another machine, or one with risky engine flags, mounts or
    /// variables, without asking (see docs/faq.md)
    #[arg(long)]
    pub trust: bool,
    /// Refuse to re-run on the host when the Python packages, Python, GPU driver or recorded
    /// variables differ from the run's (docs/environment.md); without it a difference is a warning
    #[arg(long)]
    pub strict_env: bool,
    /// Before a host re-run, build a fresh venv in DIR (empty or missing; default
    /// ./repro-venv-ID) with the recorded Python distributions pinned (uv when on PATH, else
    /// pip; PIP_FIND_LINKS/PIP_NO_INDEX work) and run in it; says which could not be pinned
    #[arg(long, value_name = "DIR", num_args = 0..=1)]
    pub recreate_env: Option<Option<PathBuf>>,
    /// Metrics file or DVCLive directory read after the run (repeatable; config `metrics` too)
    #[arg(long = "metrics", value_name = "PATH")]
    pub metrics: Vec<PathBuf>,
    /// Re-run N times (each a recorded re-run, recorded together as a repeat group) and report
    /// the spread of every metric and which outputs differ between the repeats (docs/noise.md)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000),
          conflicts_with_all = ["on", "poll", "dry_run", "check", "checkout"])]
    pub repeat: Option<u32>,
    /// With --repeat: print the report as JSON (docs/noise.md)
    #[arg(long, requires = "repeat")]
    pub json: bool,
}

/// Where `repro rerun` runs the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum On {
    /// On this machine (the default)
    Local,
    /// As a Slurm batch job submitted with sbatch
    Slurm,
}

/// A tolerance: a finite number, 0 or more.
fn tolerance(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(_) => Err(format!(
            "'{s}' is not a finite number of 0 or more (e.g. 1e-6)"
        )),
        Err(_) => Err(format!("'{s}' is not a number (e.g. 1e-6 or 0.01)")),
    }
}

/// Runs `repro rerun` and returns the exit code.
pub fn cmd_rerun(ctx: &Ctx, args: &RerunArgs) -> i32 {
    crate::cli::exit_with(rerun(ctx, args))
}

fn rerun(ctx: &Ctx, args: &RerunArgs) -> CliResult<i32> {
    let mut store = ctx.open_store()?;
    let id = store.resolve_id(&args.id)?;
    // A Slurm --poll only reads the job's state; everything else replays the record.
    let trust = args.trust || args.dry_run || args.poll || crate::cli::confirm_rerun(&store, &id)?;
    let registry = args.registry.options(&ctx.config)?;
    let metrics = crate::ops::metrics::paths(&ctx.config.metrics.values(), &args.metrics);
    let tolerance = Tolerance {
        rtol: args.rtol.unwrap_or(0.0),
        atol: args.atol.unwrap_or(0.0),
    };
    let mlflow = crate::ops::mlflow::AfterRun::when_asked(args.mlflow, &ctx.config);
    if args.on == Some(On::Slurm) || args.poll {
        if !trust {
            let run = store.get_run(&id)?;
            if let Some(r) = crate::ops::rerun::review(&run, &crate::capture::host::hostname()) {
                return Err(crate::ops::rerun::untrusted_error(&r).into());
            }
        }
        let end = EndOptions {
            metrics,
            tolerance,
            mlflow,
            keep_outputs: crate::ops::run::keep_policy(&ctx.config, None),
        };
        return slurm(ctx, &mut store, args, id, registry, end);
    }
    if !args.sbatch_args.is_empty() || args.wait || args.runtime.is_some() {
        return Err(crate::error::CliError::usage(
            "--sbatch-arg, --runtime and --wait apply to --on slurm and --poll only",
        )
        .hint("add --on slurm to submit the re-run to Slurm"));
    }
    let recreate_env = args.recreate_env.clone().map(|d| {
        d.unwrap_or_else(|| PathBuf::from(format!("repro-venv-{}", &id[..id.len().min(10)])))
    });
    let req = RerunRequest {
        id,
        engine: args.engine,
        host: args.host,
        checkout: args.checkout.clone(),
        keep: args.keep,
        registry,
        dry_run: args.dry_run,
        trust,
        metrics,
        tolerance,
        mlflow: mlflow.filter(|_| !args.dry_run),
        keep_outputs: crate::ops::run::keep_policy(&ctx.config, None),
        record_env: ctx.config.record_env.value.clone(),
        strict_env: args.strict_env,
        recreate_env,
        sys_metrics_interval: ctx.config.sys_metrics_interval.value,
    };
    if let Some(n) = args.repeat {
        let report = crate::ops::repeat::repeat(ctx, &mut store, &req, n)?;
        crate::cli::print_out(&if args.json {
            crate::output::repeat::repeat_json(&report)
        } else {
            crate::output::repeat::repeat_text(&report, crate::cli::stdout_is_tty())
        })?;
        return Ok(report.exit_code());
    }
    match crate::ops::rerun::rerun(ctx, &mut store, &req)? {
        RerunResult::DryRun(cmds) => {
            crate::cli::print_out(&crate::output::rerun::dry_run_text(&cmds))?;
            Ok(0)
        }
        RerunResult::Ran { finished, checks } => {
            report(&checks);
            Ok(checks.exit_code(finished.exit, args.check))
        }
    }
}

/// The verdicts on stderr: every output; the metrics that fail, and one line for all of them.
fn report(checks: &Checks) {
    for line in crate::output::rerun::check_lines(checks) {
        eprintln!("repro: {line}");
    }
}

/// `--on slurm` and `--poll`: the request for `ops::slurm_rerun` and what it prints.
fn slurm(
    ctx: &Ctx,
    store: &mut crate::store::Store,
    args: &RerunArgs,
    id: String,
    registry: crate::capture::image::registry::RegistryOptions,
    end: EndOptions,
) -> CliResult<i32> {
    if args.poll {
        let req = PollRequest {
            id: id.clone(),
            wait: args.wait,
            dir: args.checkout.clone(),
            client: Client::new(),
            end,
        };
        return match slurm_rerun::poll(ctx, store, &req)? {
            Polled::AlreadyFinished(status) => {
                ctx.status(format!("run {id} is already {status}"));
                Ok(0)
            }
            Polled::Active(jobs) => {
                let mut text = String::new();
                for j in &jobs {
                    text.push_str(&format!(
                        "{} {}\n",
                        j.display_id(),
                        slurm_rerun::state_name(&j.state)
                    ));
                }
                crate::cli::print_out(&text)?;
                Ok(0)
            }
            Polled::Ended(end) => Ok(ended(ctx, args, &end)),
        };
    }
    let req = SlurmRerunRequest {
        id,
        host: args.host,
        runtime: args.runtime,
        sbatch_args: args.sbatch_args.clone(),
        dir: args.checkout.clone(),
        registry,
        client: Client::new(),
        wait: args.wait,
        end,
    };
    let mut printed = Ok(());
    let done = slurm_rerun::rerun(ctx, store, &req, &mut |sub| {
        printed = crate::cli::print_out(&format!("{}\n", sub.job_id));
        ctx.status(format!("recorded as run {}", sub.run_id));
    })?;
    printed?;
    match done {
        SlurmRerun::Submitted(sub) => {
            ctx.status(format!(
                "follow it with `repro rerun {} --poll [--wait]`",
                &sub.run_id[..12]
            ));
            Ok(0)
        }
        SlurmRerun::Ended(_, end) => Ok(ended(ctx, args, &end)),
    }
}

fn ended(ctx: &Ctx, args: &RerunArgs, end: &JobEnd) -> i32 {
    let o = &end.outcome;
    ctx.status(format!(
        "Slurm job ended: {}{}",
        o.status,
        o.reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    ));
    if end.checked {
        report(&end.checks);
    } else if args.check {
        ctx.warn(
            "outputs and metrics not compared: give --checkout the job directory to compare them",
        );
    }
    end.exit_code(args.check)
}
