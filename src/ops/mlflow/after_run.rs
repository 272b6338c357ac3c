//! The push at the end of `repro run --mlflow` (or `mlflow_push = true`): one run, to the
//! configured server and experiment, never failing the run it follows.

use std::time::{Duration, Instant};

use super::{push, DeletedRuns, OutputsPolicy, PushRequest, RunToPush};
use crate::error::Hinted;
use crate::mlflow::{MlflowError, Settings};
use crate::ops::Events;
use crate::store::Store;

/// Experiment used when neither a flag, `MLFLOW_EXPERIMENT_NAME` nor the config names one.
pub const DEFAULT_EXPERIMENT: &str = "repro";

/// How long the push at the end of a run may take in all (waiting for another push's lock
/// included), unless `REPRO_MLFLOW_AFTER_RUN_TIMEOUT` (seconds) says otherwise.
pub const AFTER_RUN_TIMEOUT: Duration = Duration::from_secs(10);

/// `REPRO_MLFLOW_AFTER_RUN_TIMEOUT` (seconds, > 0), else [`AFTER_RUN_TIMEOUT`].
pub fn after_run_timeout(env: &dyn Fn(&str) -> Option<String>) -> Duration {
    env("REPRO_MLFLOW_AFTER_RUN_TIMEOUT")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .unwrap_or(AFTER_RUN_TIMEOUT)
}

/// `repro run --mlflow` (or `mlflow_push = true`): push the run when it finishes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AfterRun {
    /// `mlflow_tracking_uri` from the configuration (`MLFLOW_TRACKING_URI` wins).
    pub tracking_uri: Option<String>,
    /// `mlflow_experiment` from the configuration (`MLFLOW_EXPERIMENT_NAME` wins).
    pub experiment: Option<String>,
    /// `mlflow_outputs` and `mlflow_outputs_max` from the configuration.
    pub outputs: OutputsPolicy,
    /// `mlflow_dataset_context` from the configuration (`None`: `training`).
    pub dataset_context: Option<String>,
}

impl AfterRun {
    /// The push at the end of a run or re-run: with `--mlflow` (`flag`) or the config key
    /// `mlflow_push`, to the configured server and experiment; `None` when neither asks.
    pub fn when_asked(flag: bool, cfg: &crate::config::Config) -> Option<AfterRun> {
        (flag || cfg.mlflow_push.value).then(|| AfterRun {
            tracking_uri: cfg.mlflow_tracking_uri.value.clone(),
            experiment: cfg.mlflow_experiment.value.clone(),
            outputs: OutputsPolicy::from_config(cfg),
            dataset_context: cfg.mlflow_dataset_context.value.clone(),
        })
    }

    /// The server settings: `MLFLOW_TRACKING_URI`, else the configured URI; credentials and TLS
    /// from the `MLFLOW_TRACKING_*` variables.
    pub fn settings(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, MlflowError> {
        let from_env = env("MLFLOW_TRACKING_URI").filter(|v| !v.is_empty());
        Settings::from_env(from_env.or(self.tracking_uri.clone()).as_deref(), env)
    }

    /// `MLFLOW_EXPERIMENT_NAME`, else the configured experiment, else `repro`.
    pub fn experiment(&self, env: &dyn Fn(&str) -> Option<String>) -> String {
        env("MLFLOW_EXPERIMENT_NAME")
            .filter(|v| !v.is_empty())
            .or_else(|| self.experiment.clone().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| DEFAULT_EXPERIMENT.to_string())
    }
}

/// Pushes one finished run (the end of `repro run --mlflow`). Never fails the run: any problem
/// is one warning, and the run stays queued (no ledger row) for the next `repro mlflow push`.
/// The whole push is bounded by [`after_run_timeout`]: a server that never answers costs that
/// long, not a request timeout per request.
/// Returns whether the run is on the server, up to date.
pub fn after_run(ev: &dyn Events, store: &Store, run_id: &str, cfg: &AfterRun) -> bool {
    let env = |k: &str| std::env::var(k).ok();
    let queued = "it stays queued for `repro mlflow push`";
    let warn = |why: String| ev.warn(&format!("not pushed to MLflow: {why}; {queued}"));
    let settings = match cfg.settings(&env) {
        Ok(s) => Settings {
            deadline: Some(Instant::now() + after_run_timeout(&env)),
            ..s
        },
        Err(e) => {
            warn(with_hint(&e));
            return false;
        }
    };
    let run = match store.get_run(run_id) {
        Ok(r) => r,
        Err(e) => {
            warn(e.to_string());
            return false;
        }
    };
    let uri = settings.uri.clone();
    let req = PushRequest {
        settings,
        experiment: cfg.experiment(&env),
        runs: vec![RunToPush::new(run)],
        dry_run: false,
        jobs: 1,
        deleted: DeletedRuns::Report,
        outputs: cfg.outputs,
        dataset_context: cfg.dataset_context.clone().unwrap_or_default(),
    };
    match push(store, req, &mut |_| {}) {
        Err(e) => {
            warn(with_hint(&e));
            false
        }
        Ok(summary) => {
            let Some(o) = summary.outcomes.into_iter().next() else {
                return false;
            };
            if let Some(e) = &o.error {
                warn(with_hint(e));
                return false;
            }
            for line in &o.skipped {
                ev.warn(&format!(
                    "MLflow: output not uploaded: {}",
                    crate::sanitize::escape(line)
                ));
            }
            for c in &o.conflicts {
                ev.warn(&format!(
                    "MLflow: param '{}' is '{}' locally but '{}' on the server (MLflow params cannot change)",
                    c.key,
                    c.local.as_deref().unwrap_or("(removed)"),
                    c.pushed
                ));
            }
            ev.status(&format!(
                "pushed to MLflow at {uri}, experiment '{}': run {}",
                summary.experiment,
                o.mlflow_run_id.as_deref().unwrap_or("-")
            ));
            o.conflicts.is_empty()
        }
    }
}

fn with_hint(e: &dyn Hinted) -> String {
    match e.hint() {
        Some(h) => format!("{e} ({h})"),
        None => e.to_string(),
    }
}
