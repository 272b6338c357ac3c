//! `repro mlflow push`: share runs with an MLflow tracking server (see docs/mlflow.md).

use std::io::IsTerminal;

use clap::{Args, Subcommand};
use indicatif::ProgressBar;

use crate::cli::filter::FilterArgs;
use crate::cli::{print_out, Ctx};
use crate::error::{CliError, CliResult};
use crate::mlflow::Settings;
use crate::ops::mlflow::{
    push, Action, AfterRun, DeletedRuns, Event, OutputsPolicy, PushRequest, RunToPush,
};
use crate::output;

pub use crate::ops::mlflow::DEFAULT_EXPERIMENT;

/// `repro mlflow …`
#[derive(Debug, Subcommand)]
pub enum MlflowCmd {
    /// Push runs (all, or those the `ls` filters select) to an MLflow tracking server; idempotent
    Push(PushArgs),
}

/// Arguments of `repro mlflow push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Tracking server, http(s):// only [env: MLFLOW_TRACKING_URI]
    #[arg(long, value_name = "URI")]
    pub tracking_uri: Option<String>,
    /// Experiment to push into, created when missing [env: MLFLOW_EXPERIMENT_NAME] [default: repro]
    #[arg(long, value_name = "NAME")]
    pub experiment: Option<String>,
    /// Show what would be sent, without sending anything or changing the ledger
    #[arg(long)]
    pub dry_run: bool,
    /// Runs pushed at once
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub jobs: usize,
    /// Push runs whose MLflow run was deleted on the server again, as new MLflow runs
    #[arg(long, conflicts_with = "forget_deleted")]
    pub recreate_deleted: bool,
    /// Forget the link of runs whose MLflow run was deleted on the server and leave them out of MLflow
    #[arg(long)]
    pub forget_deleted: bool,
    /// MLflow context of the datasets (`training`, `evaluation`…) [config: mlflow_dataset_context] [default: training]
    #[arg(long, value_name = "CONTEXT")]
    pub dataset_context: Option<String>,
    /// Do not upload kept outputs as artifacts under outputs/ [config: mlflow_outputs = false]
    #[arg(long, overrides_with = "outputs")]
    pub no_outputs: bool,
    /// Upload kept outputs as artifacts under outputs/ (the default) [config: mlflow_outputs]
    #[arg(long, overrides_with = "no_outputs")]
    pub outputs: bool,
    /// Most bytes of kept outputs uploaded per run (e.g. 5GiB, unlimited) [config: mlflow_outputs_max, default 1GiB]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub outputs_max: Option<Limit>,
}

/// A size limit given on the command line (`None`: unlimited).
#[derive(Debug, Clone, Copy)]
pub struct Limit(Option<u64>);

fn parse_size(s: &str) -> Result<Limit, String> {
    crate::config::parse_size(s).map(Limit)
}

/// Runs `repro mlflow SUBCOMMAND`.
pub fn cmd_mlflow(ctx: &Ctx, cmd: &MlflowCmd) -> CliResult {
    match cmd {
        MlflowCmd::Push(args) => cmd_push(ctx, args),
    }
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// Pushes the selected runs.
pub fn cmd_push(ctx: &Ctx, args: &PushArgs) -> CliResult {
    // --tracking-uri / --experiment, else MLFLOW_TRACKING_URI / MLFLOW_EXPERIMENT_NAME, else
    // the configuration's mlflow_tracking_uri / mlflow_experiment.
    let mut outputs = OutputsPolicy::from_config(&ctx.config);
    if args.no_outputs {
        outputs.upload = false;
    } else if args.outputs {
        outputs.upload = true;
    }
    if let Some(Limit(max)) = args.outputs_max {
        outputs.max_bytes = max;
    }
    let cfg = AfterRun {
        tracking_uri: ctx.config.mlflow_tracking_uri.value.clone(),
        experiment: ctx.config.mlflow_experiment.value.clone(),
        outputs,
        dataset_context: ctx.config.mlflow_dataset_context.value.clone(),
    };
    let settings = match &args.tracking_uri {
        Some(u) => Settings::from_env(Some(u), &env)?,
        None => cfg.settings(&env)?,
    };
    let experiment = args
        .experiment
        .clone()
        .unwrap_or_else(|| cfg.experiment(&env));
    let dataset_context = args
        .dataset_context
        .clone()
        .or_else(|| cfg.dataset_context.clone())
        .unwrap_or_default();
    if !dataset_context.is_empty() && !crate::ops::mlflow::plan::valid_key(&dataset_context) {
        return Err(CliError::usage(
            "--dataset-context takes a short name such as training or evaluation (letters, digits, _ - . : / and spaces)",
        ));
    }
    if args.jobs == 0 {
        return Err(CliError::usage("--jobs must be at least 1"));
    }
    let store = ctx.open_store()?;
    let mut q = args.filter.to_query(&store)?;
    // Oldest first: an original is pushed before its re-runs.
    q.filter.oldest_first = true;
    q.filter.limit = None;
    // The `runs` rows only: the push loads the rest of a run (and its metric history) only when
    // its change stamp differs from the ledger's.
    let runs = store.query_rows(&q)?;
    let runs: Vec<RunToPush> = runs.into_iter().map(RunToPush::row).collect();
    let uri = settings.uri.clone();
    let req = PushRequest {
        settings,
        experiment: experiment.clone(),
        runs,
        dry_run: args.dry_run,
        jobs: args.jobs,
        dataset_context,
        deleted: if args.recreate_deleted {
            DeletedRuns::Recreate
        } else if args.forget_deleted {
            DeletedRuns::Forget
        } else {
            DeletedRuns::Report
        },
        outputs,
    };
    let tty = std::io::stderr().is_terminal() && !ctx.quiet;
    let mut bar: Option<ProgressBar> = None;
    let mut lines = String::new();
    let mut on_event = |e: Event| {
        match e {
        Event::Waiting { lock } => ctx.status(format!(
            "waiting for another `repro mlflow push` to {uri} (experiment '{experiment}') to finish (lock {})",
            lock.display()
        )),
        Event::Planned { to_send, .. } => {
            if tty && to_send > 1 && !args.dry_run {
                bar = Some(output::mlflow::progress(to_send));
            }
        }
        Event::Pushed(o) => {
            if o.action != Action::Unchanged {
                if let Some(pb) = &bar {
                    pb.inc(1);
                }
            }
            if o.action != Action::Unchanged || ctx.verbose {
                lines.push_str(&output::mlflow::describe(o));
            }
        }
    }
    };
    let result = push(&store, req, &mut on_event);
    if let Some(pb) = bar.take() {
        pb.finish_and_clear();
    }
    let summary = result?;
    print_out(&lines)?;
    ctx.status(output::mlflow::summary(&summary, &uri, args.dry_run));
    for w in output::mlflow::conflicts(&summary) {
        ctx.warn(w);
    }
    for w in output::mlflow::skipped_outputs(&summary) {
        ctx.warn(w);
    }
    let failed = summary.failed();
    let total = summary.outcomes.len();
    let conflicted = summary.conflicted();
    let written = summary.written();
    let failing: Vec<&str> = summary
        .outcomes
        .iter()
        .filter(|o| o.error.is_some())
        .map(|o| o.run_id.as_str())
        .collect();
    let named = output::mlflow::id_list(&failing);
    if let Some(err) = summary.outcomes.into_iter().find_map(|o| o.error) {
        let mut e = CliError::from(err);
        e.message = format!(
            "{failed} of {total} runs not pushed (they stay queued; push again to retry): {named}; the first error: {}",
            e.message
        );
        if written > 0 {
            // The client's hint says nothing changed locally: this push did record runs.
            for h in &mut e.hints {
                if let Some(rest) = h.strip_prefix("nothing was changed locally; ") {
                    *h = rest.to_string();
                }
            }
            e.hints.insert(
                0,
                format!("{written} runs were pushed and recorded in the push ledger; the lines on stdout say what happened to each run"),
            );
        }
        return Err(e);
    }
    if conflicted > 0 {
        return Err(CliError::user(format!(
            "{conflicted} runs have params that differ from the server's (see warnings)"
        ))
        .hint("MLflow params are immutable: set the param back with `repro param`, or delete the MLflow run and push again"));
    }
    Ok(())
}
