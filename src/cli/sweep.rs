//! `repro sweep`: grid flags and `repro run` flags → a [`SweepPlan`] → [`ops::sweep`] →
//! summary table and exit code.

use std::ffi::OsString;

use clap::Args;

use crate::cli::run::RunArgs;
use crate::cli::{print_out, stdout_is_tty, Ctx};
use crate::error::{CliError, CliResult};
use crate::ops::run::RunRequest;
use crate::ops::sweep::{Member, SweepPlan};

/// Arguments of `repro sweep`.
#[derive(Debug, Args)]
#[command(trailing_var_arg = true)]
pub struct SweepArgs {
    /// A parameter and its values, KEY=V1,V2,… (repeatable; every combination is one run,
    /// written {KEY} in the command)
    #[arg(long = "grid", value_name = "KEY=V1,V2", required = true)]
    pub grid: Vec<String>,
    /// Run N combinations drawn at random (reproducibly, see --seed) instead of all
    #[arg(long, value_name = "N")]
    pub random: Option<usize>,
    /// Seed of --random [default: 0]
    #[arg(long, value_name = "S", requires = "random")]
    pub seed: Option<u64>,
    /// Rank the summary by this metric's last value: metric:KEY (highest best) or metric:KEY:min
    #[arg(long, value_name = "metric:KEY[:min|max]")]
    pub objective: Option<String>,
    /// Skip a combination whose identical run (clean commit, argv, params, image digest, dataset
    /// digests) already succeeded, and name that run; a tag is resolved now
    #[arg(long)]
    pub needed: bool,
    /// Run N combinations at once (each in its own repro process, its output lines prefixed
    /// with its combination) [default: 1, one after the other]
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Where the runs go: here (default) or as one Slurm job array, a task per combination
    /// (docs/sweep.md)
    #[arg(long, value_enum, value_name = "WHERE")]
    pub on: Option<crate::cli::rerun::On>,
    /// Extra sbatch argument, verbatim (repeatable; --on slurm), e.g. --sbatch-arg=--time=10
    #[arg(long = "sbatch-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub sbatch_args: Vec<OsString>,
    /// With --on slurm: the job directory (script, logs, reports; empty or missing) [default:
    /// ./repro-sweep-<12 chars of the sweep id>]
    #[arg(long, value_name = "DIR")]
    pub job_dir: Option<std::path::PathBuf>,
    /// With --on slurm: follow the array until every task has ended, then print the summary
    #[arg(long)]
    pub wait: bool,
    /// Internal: run one combination of a `--jobs` sweep (ID:POS:REPORT)
    #[arg(long = "sweep-member", value_name = "ID:POS:REPORT", hide = true)]
    pub member: Option<String>,
    /// Every `repro run` flag, applied to each run; then `--` and the command template
    #[command(flatten)]
    pub run: Box<RunArgs>,
}

/// With `--` on the command line everything before it is repro's: an unknown option there
/// must not become the command.
fn check_separator(args: &SweepArgs, raw: &[OsString]) -> CliResult<()> {
    let Some(at) = raw.iter().position(|a| a == "sweep") else {
        return Ok(());
    };
    let Some(sep) = raw[at..].iter().position(|a| a == "--") else {
        return Ok(());
    };
    if args.run.command.as_slice() != &raw[at + sep + 1..] {
        let first = args
            .run
            .command
            .first()
            .map(|a| a.to_string_lossy().into_owned());
        return Err(CliError::usage(format!(
            "unexpected argument '{}' before `--`",
            first.unwrap_or_default()
        ))
        .hint("everything before `--` is for repro (see `repro sweep --help`); the command goes after it"));
    }
    Ok(())
}

/// Runs `repro sweep`: 0 when every run succeeded, else the first failed run's exit code
/// (1 when that was 0-less, e.g. a run that could not start).
pub fn cmd_sweep(ctx: &Ctx, args: &SweepArgs) -> i32 {
    crate::cli::exit_with(plan_and_run(ctx, args))
}

fn plan_and_run(ctx: &Ctx, args: &SweepArgs) -> CliResult<i32> {
    let raw: Vec<OsString> = std::env::args_os().collect();
    check_separator(args, &raw)?;
    let cwd = std::env::current_dir()
        .map_err(|e| CliError::user(format!("cannot read the current directory: {e}")))?;
    let (base, notes) = RunRequest::from_flags(args.run.flags(), &ctx.config, cwd)?;
    let random = args.random.map(|n| (n, args.seed.unwrap_or(0)));
    // Everything is checked before the store is opened: a bad template records nothing.
    let plan = SweepPlan::new(
        base,
        &args.grid,
        random,
        args.objective.as_deref(),
        args.needed,
    )?;
    // A `--jobs` member's notes were said by the sweep that started it.
    for note in notes.into_iter().filter(|_| args.member.is_none()) {
        ctx.status(note);
    }
    let overrides = ctx.config.repo_overrides();
    if !overrides.is_empty() && args.member.is_none() {
        ctx.warn(format!(
            "the repository's .repro.toml sets: {}",
            overrides.join("; ")
        ));
    }
    let mut store = ctx.open_store()?;
    if let Some(spec) = &args.member {
        let member = Member::parse(spec)?;
        return Ok(crate::ops::sweep::run_member(
            ctx, &mut store, &plan, &member,
        )?);
    }
    let on_slurm = args.on == Some(crate::cli::rerun::On::Slurm);
    if !on_slurm && (args.wait || !args.sbatch_args.is_empty() || args.job_dir.is_some()) {
        return Err(
            CliError::usage("--wait, --sbatch-arg and --job-dir need --on slurm")
                .hint("add --on slurm, or drop them"),
        );
    }
    if on_slurm {
        return submit_to_slurm(ctx, args, &plan, &raw, &mut store);
    }
    let out = match args.jobs {
        Some(0) => {
            return Err(CliError::usage("--jobs 0 runs nothing")
                .hint("give --jobs N with N ≥ 1 (runs at once)"))
        }
        Some(n) if n > 1 => {
            let line = member_line(&raw)?;
            let member = |m: &Member| line.command(m);
            crate::ops::sweep::sweep_parallel(ctx, &mut store, &plan, n, &member, &Prefixed)?
        }
        _ => crate::ops::sweep::sweep(ctx, &mut store, &plan)?,
    };
    report(ctx, &plan, &out)?;
    Ok(out.exit_code())
}

/// This process's command line, as its members run it.
fn member_line(raw: &[OsString]) -> CliResult<crate::ops::sweep::MemberLine> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::user(format!("cannot find the repro executable: {e}")))?;
    Ok(crate::ops::sweep::MemberLine::of(exe, raw))
}

/// The summary table on stdout, the status line, and how many failed.
fn report(ctx: &Ctx, plan: &SweepPlan, out: &crate::ops::sweep::SweepOutcome) -> CliResult<()> {
    let objective = plan.objective.as_ref().map(|o| o.key.as_str());
    print_out(&crate::output::sweep::summary(
        out,
        objective,
        stdout_is_tty(),
    ))?;
    ctx.status(crate::output::sweep::status_line(out));
    if out.failed() > 0 {
        ctx.warn(format!(
            "{} of {} run(s) failed",
            out.failed(),
            out.runs.len()
        ));
    }
    Ok(())
}

/// `--on slurm`: submits the array (and with `--wait` follows it and prints the summary).
fn submit_to_slurm(
    ctx: &Ctx,
    args: &SweepArgs,
    plan: &SweepPlan,
    raw: &[OsString],
    store: &mut crate::store::Store,
) -> CliResult<i32> {
    if args.jobs == Some(0) {
        return Err(CliError::usage("--jobs 0 runs nothing")
            .hint("give --jobs N with N ≥ 1 (tasks at once)"));
    }
    let line = member_line(raw)?;
    let db = std::path::absolute(ctx.db_path())
        .map_err(|e| CliError::user(format!("cannot resolve the database path: {e}")))?;
    let req = crate::ops::sweep_slurm::SlurmSweep {
        client: crate::slurm::Client::new(),
        sbatch_args: args.sbatch_args.clone(),
        dir: args.job_dir.clone(),
        jobs: args.jobs,
        wait: args.wait,
        db,
        line,
        interval: crate::ops::slurm_rerun::INTERVAL,
    };
    let sub = crate::ops::sweep_slurm::submit(ctx, store, plan, &req)?;
    if let Some(job) = &sub.job_id {
        print_out(&format!("{job}\n"))?;
    }
    let Some(out) = sub.outcome else {
        ctx.status(format!(
            "follow it with `squeue -j {}`; its runs appear in `repro ls --sweep {}` as the tasks start",
            sub.job_id.as_deref().unwrap_or(""),
            sub.id
        ));
        return Ok(0);
    };
    report(ctx, plan, &out)?;
    Ok(out.exit_code())
}

/// `--jobs` members' output: each line on this process's stdout or stderr, after `[lr=0.1 wd=0] `.
struct Prefixed;

impl crate::ops::sweep::MemberOutput for Prefixed {
    fn line(&self, label: &str, stderr: bool, line: &[u8]) {
        let text = crate::output::sweep::member_line(label, line);
        // A closed stdout (`| head`) must not stop the members: their lines are dropped.
        if stderr {
            let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), &text);
        } else {
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), &text);
        }
    }
}
