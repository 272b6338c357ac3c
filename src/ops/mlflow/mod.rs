//! `repro mlflow push`: sends runs to an MLflow tracking server, idempotently and incrementally.
//!
//! A ledger (src/store/mlflow.rs) remembers what each server holds. An unchanged run costs no
//! request; a changed one gets only what changed (tags, status, artifacts, new metric points).
//! A param changed locally is a conflict (MLflow params are immutable) and is reported, never
//! hidden. Without a ledger row the run is found again by its `repro.run_id` tag.
//!
//! `plan` maps a run to what the MLflow run should hold and diffs it against what the server
//! holds; `push` sends it; `outputs` plans and uploads the kept outputs (`outputs/…`, streamed
//! from the object store, recorded file by file in the artifact ledger); `after_run` is the
//! push at the end of `repro run --mlflow`.

mod after_run;
pub mod outputs;
pub mod plan;
mod push;

pub use after_run::{after_run, AfterRun, DEFAULT_EXPERIMENT};
pub use push::push;

use crate::error::Hinted;
use crate::mlflow::{MetricPoint, MlflowError, Settings};
use crate::record::Run;
use crate::store::{Store, StoreError};

/// Failures that stop a push before any run is sent (or the ledger cannot be written).
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Mlflow(#[from] MlflowError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot take the push lock {path}: {detail}")]
    Lock { path: String, detail: String },
}

impl Hinted for PushError {
    fn hint(&self) -> Option<String> {
        match self {
            PushError::Mlflow(e) => e.hint(),
            PushError::Store(e) => e.hint(),
            PushError::Lock { .. } => Some("another `repro mlflow push` to the same server and experiment holds it; wait for it, or check the directory's permissions".into()),
        }
    }
}

/// One run to push, with its metric history: `None` reads it from the metric store (only for
/// runs that need a push), `Some` is used as given.
#[derive(Debug, Clone)]
pub struct RunToPush {
    pub run: Run,
    pub metrics: Option<Vec<MetricPoint>>,
    /// `false`: `run` is its `runs` row only ([`Store::select_run_rows`]); the push loads its
    /// datasets, params, tags, notes… only when the cheap change check says it changed.
    pub loaded: bool,
}

impl RunToPush {
    /// A complete run whose metric history comes from the store.
    pub fn new(run: Run) -> RunToPush {
        RunToPush {
            run,
            metrics: None,
            loaded: true,
        }
    }

    /// A run read by [`Store::select_run_rows`] (children not loaded yet), whose metric
    /// history comes from the store.
    pub fn row(run: Run) -> RunToPush {
        RunToPush {
            run,
            metrics: None,
            loaded: false,
        }
    }
}

/// A run's metric history from the metric store, as MLflow points: the original step (a point
/// reported without one gets its position in the key's history, so the history keeps its
/// order) and timestamp (milliseconds; a point stored without a time — a `--metrics` file read
/// at the end — gets the run's end time, or its start while it runs; `REPRO_METRICS` points
/// carry the time repro first saw them). Both are deterministic, so a point sent again is the
/// same point and stored once.
pub fn metric_history(store: &Store, run: &Run) -> Result<Vec<MetricPoint>, StoreError> {
    let start = run
        .ended_at
        .as_deref()
        .and_then(plan::millis)
        .or_else(|| plan::millis(&run.started_at))
        .unwrap_or(0);
    let mut out: Vec<MetricPoint> = Vec::new();
    let mut seq = 0i64;
    for p in store.metric_points(&run.id)? {
        if out.last().is_none_or(|l| *l.key != *p.key) {
            seq = 0;
        }
        out.push(MetricPoint {
            key: p.key.to_string(),
            value: p.value,
            timestamp: p.time.map(|t| (t * 1000.0).round() as i64).unwrap_or(start),
            step: p.step.unwrap_or(seq),
        });
        seq += 1;
    }
    Ok(out)
}

/// The attestation uploaded with a run: the first of its recorded attestations (signed ones
/// first, each group newest first, as `show` cites them) whose file still exists and still has
/// the recorded SHA-256. Returns (file name, bytes); `None` when no such file is left.
pub fn attestation_file(
    store: &Store,
    run_id: &str,
) -> Result<Option<(String, Vec<u8>)>, StoreError> {
    for a in store.attestations(run_id)? {
        let Some(path) = a.path.as_deref() else {
            continue;
        };
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        if plan::sha256_hex(&bytes) != a.sha256 {
            continue;
        }
        let name = std::path::Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "attestation.json".into());
        return Ok(Some((name, bytes)));
    }
    Ok(None)
}

/// What to push where.
#[derive(Debug, Clone)]
pub struct PushRequest {
    pub settings: Settings,
    /// Experiment name (created when missing).
    pub experiment: String,
    pub runs: Vec<RunToPush>,
    /// Plan only: no request, no ledger change.
    pub dry_run: bool,
    /// Runs pushed at once (the bounded request pool).
    pub jobs: usize,
    /// What to do with a run whose MLflow run was deleted on the server.
    pub deleted: DeletedRuns,
    /// The datasets' `mlflow.data.context` (empty: [`plan::DEFAULT_DATASET_CONTEXT`]).
    pub dataset_context: String,
    /// Whether kept outputs are uploaded as artifacts, and how much per run.
    pub outputs: OutputsPolicy,
}

/// What a push does with a run's kept outputs (`mlflow_outputs`, `mlflow_outputs_max`,
/// `--no-outputs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputsPolicy {
    /// Upload them under `outputs/`.
    pub upload: bool,
    /// Most bytes of outputs uploaded for one run; `None`: no limit.
    pub max_bytes: Option<u64>,
}

impl Default for OutputsPolicy {
    /// Upload, up to the default `mlflow_outputs_max`.
    fn default() -> Self {
        OutputsPolicy {
            upload: true,
            max_bytes: Some(crate::config::DEFAULT_MLFLOW_OUTPUTS_MAX),
        }
    }
}

impl OutputsPolicy {
    /// The policy of the configuration (`mlflow_outputs`, `mlflow_outputs_max`).
    pub fn from_config(cfg: &crate::config::Config) -> OutputsPolicy {
        OutputsPolicy {
            upload: cfg.mlflow_outputs.value,
            max_bytes: cfg.mlflow_outputs_max.value,
        }
    }

    /// The part of the push fingerprint that says what is done with outputs.
    fn stamp(&self) -> String {
        match (self.upload, self.max_bytes) {
            (false, _) => "off".into(),
            (true, max) => format!("on {max:?}"),
        }
    }
}

/// The kept-output files a push uploaded for one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputsSent {
    pub files: usize,
    pub bytes: u64,
    /// Of them, sent as multipart uploads.
    pub multipart: usize,
}

/// What a push does with a run whose MLflow run was deleted (moved to MLflow's trash).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeletedRuns {
    /// Say so and fail the run (the default): nothing is sent to a deleted run.
    #[default]
    Report,
    /// `--recreate-deleted`: push the run again as a new MLflow run.
    Recreate,
    /// `--forget-deleted`: forget the link and leave the run out of MLflow from now on.
    Forget,
}

/// What a push did (or, in a dry run, would do) to one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing changed since the last push: no request.
    Unchanged,
    /// A new MLflow run.
    Create,
    /// Not in the ledger but found on the server by its `repro.run_id` tag, then brought up to date.
    Relinked { parts: Vec<&'static str> },
    /// Only the parts that changed were sent.
    Update { parts: Vec<&'static str> },
    /// In a dry run: not in the ledger; the push will look it up by tag, then create or re-link.
    CreateOrRelink,
    /// Its MLflow run (this id) was deleted on the server: nothing sent (the error says what to do).
    Deleted { mlflow_run_id: String },
    /// Its MLflow run was deleted and `--recreate-deleted` pushed it again as a new run.
    Recreated { deleted: String },
    /// Its MLflow run was deleted and the link forgotten (`--forget-deleted`, now or before):
    /// it is left out of MLflow.
    LeftDeleted,
}

/// A local param that differs from the value the server holds (MLflow params are immutable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamConflict {
    pub key: String,
    /// On the server.
    pub pushed: String,
    /// Locally now; `None` when the param was removed locally.
    pub local: Option<String>,
}

/// The outcome for one run.
#[derive(Debug)]
pub struct RunOutcome {
    pub run_id: String,
    pub mlflow_run_id: Option<String>,
    pub action: Action,
    pub conflicts: Vec<ParamConflict>,
    /// Requests sent for this run.
    pub requests: usize,
    /// Why this run was not (fully) pushed; it stays queued for the next push.
    pub error: Option<MlflowError>,
    /// Kept-output files uploaded by this push.
    pub outputs: OutputsSent,
    /// Outputs (or files of them) not uploaded, each `PATH: why`; never a failure of the push.
    pub skipped: Vec<String>,
}

/// Progress events.
#[derive(Debug)]
pub enum Event<'a> {
    /// Planning done: `to_send` of `total` runs need requests.
    Planned { total: usize, to_send: usize },
    /// One run finished (sent, failed, or found unchanged).
    Pushed(&'a RunOutcome),
    /// Another push to the same server and experiment holds the lock: waiting for it.
    Waiting { lock: &'a std::path::Path },
}

/// The result of a push.
#[derive(Debug)]
pub struct PushSummary {
    pub tracking_uri: String,
    pub experiment: String,
    pub experiment_id: Option<String>,
    /// In the order the runs were given.
    pub outcomes: Vec<RunOutcome>,
    /// Requests made for the whole push, not for one run (the look-up of deleted runs).
    pub check_requests: usize,
}

impl PushSummary {
    /// Runs that failed to push.
    pub fn failed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.error.is_some()).count()
    }

    /// Every request made.
    pub fn requests(&self) -> usize {
        self.check_requests + self.outcomes.iter().map(|o| o.requests).sum::<usize>()
    }

    /// Runs sent by this push and acknowledged by the server (their ledger rows written).
    pub fn written(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| {
                o.error.is_none()
                    && !matches!(
                        o.action,
                        Action::Unchanged | Action::CreateOrRelink | Action::LeftDeleted
                    )
                    && !matches!(&o.action, Action::Update { parts } if parts.is_empty())
            })
            .count()
    }

    /// Runs with param conflicts.
    pub fn conflicted(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| !o.conflicts.is_empty())
            .count()
    }
}
