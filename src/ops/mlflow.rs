//! `repro mlflow push`: sends runs to an MLflow tracking server, idempotently and incrementally.
//!
//! A ledger (src/store/mlflow.rs) remembers what each server holds. An unchanged run costs no
//! request; a changed one gets only what changed (tags, status, artifacts, new metric points).
//! A param changed locally is a conflict (MLflow params are immutable) and is reported, never
//! hidden. Without a ledger row the run is found again by its `repro.run_id` tag.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};

use crate::capture::host::{now, rfc3339};
use crate::error::Hinted;
use crate::mlflow::mapping::{self, Desired};
use crate::mlflow::{Client, KeyValue, MetricPoint, MlflowError, RemoteRun, Settings};
use crate::ops::Events;
use crate::record::Run;
use crate::store::mlflow::MlflowPush;
use crate::store::{Store, StoreError};

/// Failures that stop a push before any run is sent (or the ledger cannot be written).
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Mlflow(#[from] MlflowError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Hinted for PushError {
    fn hint(&self) -> Option<String> {
        match self {
            PushError::Mlflow(e) => e.hint(),
            PushError::Store(e) => e.hint(),
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
/// order) and timestamp (milliseconds; a point reported without a time gets the run's start
/// time). Both are deterministic, so a point sent again is the same point and stored once.
pub fn metric_history(store: &Store, run: &Run) -> Result<Vec<MetricPoint>, StoreError> {
    let start = mapping::millis(&run.started_at).unwrap_or(0);
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
        if mapping::sha256_hex(&bytes) != a.sha256 {
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
}

/// Progress events.
#[derive(Debug)]
pub enum Event<'a> {
    /// Planning done: `to_send` of `total` runs need requests.
    Planned { total: usize, to_send: usize },
    /// One run finished (sent, failed, or found unchanged).
    Pushed(&'a RunOutcome),
}

/// The result of a push.
#[derive(Debug)]
pub struct PushSummary {
    pub tracking_uri: String,
    pub experiment: String,
    pub experiment_id: Option<String>,
    /// In the order the runs were given.
    pub outcomes: Vec<RunOutcome>,
}

impl PushSummary {
    /// Runs that failed to push.
    pub fn failed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.error.is_some()).count()
    }

    /// Runs with param conflicts.
    pub fn conflicted(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| !o.conflicts.is_empty())
            .count()
    }
}

/// What the server is believed to hold for a run.
#[derive(Debug, Clone, Default)]
struct Baseline {
    mlflow_run_id: String,
    params: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
    /// Tags repro may delete when they are no longer wanted.
    owned_tags: Vec<String>,
    state_hash: Option<String>,
    inputs_hash: Option<String>,
    artifacts_hash: Option<String>,
    metric_counts: BTreeMap<String, usize>,
    artifact_uri: Option<String>,
}

impl Baseline {
    fn from_ledger(p: &MlflowPush) -> Baseline {
        let tags: BTreeMap<String, String> = serde_json::from_str(&p.tags_json).unwrap_or_default();
        Baseline {
            mlflow_run_id: p.mlflow_run_id.clone(),
            params: serde_json::from_str(&p.params_json).unwrap_or_default(),
            owned_tags: tags.keys().cloned().collect(),
            tags,
            state_hash: Some(p.state_hash.clone()),
            inputs_hash: Some(p.inputs_hash.clone()),
            artifacts_hash: Some(p.artifacts_hash.clone()),
            metric_counts: serde_json::from_str(&p.metrics_json).unwrap_or_default(),
            artifact_uri: None,
        }
    }

    fn from_server(r: &RemoteRun) -> Baseline {
        let tags: BTreeMap<String, String> = r
            .tags
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect();
        // Own tags repro pushed are listed in `repro.tags`; only those may be deleted.
        let owned_tags = tags
            .get("repro.tags")
            .map(|l| l.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        let state = mapping::sha256_hex(
            format!("{}\n{:?}\n{}", r.status, r.end_time, r.run_name).as_bytes(),
        );
        Baseline {
            mlflow_run_id: r.run_id.clone(),
            params: r
                .params
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.clone()))
                .collect(),
            tags,
            owned_tags,
            state_hash: Some(state),
            inputs_hash: None,
            artifacts_hash: None,
            metric_counts: BTreeMap::new(),
            artifact_uri: Some(r.artifact_uri.clone()),
        }
    }
}

/// The difference between what the server holds and what is wanted.
#[derive(Debug, Default)]
struct Diff {
    params: Vec<KeyValue>,
    conflicts: Vec<ParamConflict>,
    tags: Vec<KeyValue>,
    delete_tags: Vec<String>,
    state: bool,
    inputs: bool,
    artifacts: bool,
    metrics: Vec<MetricPoint>,
}

impl Diff {
    fn parts(&self) -> Vec<&'static str> {
        let mut p = Vec::new();
        if !self.params.is_empty() {
            p.push("params");
        }
        if !self.tags.is_empty() || !self.delete_tags.is_empty() {
            p.push("tags");
        }
        if !self.metrics.is_empty() {
            p.push("metrics");
        }
        if self.inputs {
            p.push("datasets");
        }
        if self.artifacts {
            p.push("artifacts");
        }
        if self.state {
            p.push("status");
        }
        p
    }
}

fn diff(want: &Desired, base: &Baseline) -> Diff {
    let mut d = Diff::default();
    for (k, v) in &want.params {
        match base.params.get(k) {
            None => d.params.push(KeyValue {
                key: k.clone(),
                value: v.clone(),
            }),
            Some(old) if old != v => d.conflicts.push(ParamConflict {
                key: k.clone(),
                pushed: old.clone(),
                local: Some(v.clone()),
            }),
            Some(_) => {}
        }
    }
    // A param moved to the artifact (value grew past the limit) also differs from the server's.
    for (k, old) in &base.params {
        if !want.params.contains_key(k) {
            d.conflicts.push(ParamConflict {
                key: k.clone(),
                pushed: old.clone(),
                local: None,
            });
        }
    }
    for (k, v) in &want.tags {
        if base.tags.get(k) != Some(v) {
            d.tags.push(KeyValue {
                key: k.clone(),
                value: v.clone(),
            });
        }
    }
    for k in &base.owned_tags {
        if !want.tags.contains_key(k) && base.tags.contains_key(k) {
            d.delete_tags.push(k.clone());
        }
    }
    d.state = base.state_hash.as_deref() != Some(want.state_hash().as_str());
    d.inputs =
        !want.inputs.is_empty() && base.inputs_hash.as_deref() != Some(want.inputs_hash().as_str());
    d.artifacts = base.artifacts_hash.as_deref() != Some(want.artifacts_hash().as_str());
    // Metric history only grows: send the points past those already pushed, per key. Points
    // keep their step and timestamp, so a point sent twice is stored once.
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &want.metrics {
        let n = seen.entry(p.key.as_str()).or_insert(0);
        if *n >= base.metric_counts.get(&p.key).copied().unwrap_or(0) {
            d.metrics.push(p.clone());
        }
        *n += 1;
    }
    d
}

struct Job {
    index: usize,
    repro_id: String,
    want: Desired,
    base: Option<Baseline>,
    /// The cheap change check at plan time, recorded with the ledger row.
    fingerprint: Option<String>,
}

/// The attestation part of the fingerprint: each attestation row with the size and mtime of
/// its file (a file changed, replaced or removed since the push changes what is uploaded).
fn attestation_stamp(rows: Option<&Vec<(String, Option<String>)>>) -> String {
    let mut s = String::new();
    for (sha256, path) in rows.into_iter().flatten() {
        let stamp = path
            .as_deref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| {
                let mtime = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos());
                (m.len(), mtime)
            });
        s.push_str(&format!("{sha256}\t{path:?}\t{stamp:?}\n"));
    }
    s
}

struct Done {
    index: usize,
    outcome: RunOutcome,
    ledger: Option<MlflowPush>,
}

/// Pushes `req.runs`; per-run failures are in the outcomes, fatal ones (no server, bad
/// credentials before anything was sent, the ledger) are the error.
pub fn push(
    store: &Store,
    req: PushRequest,
    events: &mut dyn FnMut(Event),
) -> Result<PushSummary, PushError> {
    let uri = req.settings.uri.clone();
    let mut ledger = store.mlflow_pushes(&uri, &req.experiment)?;
    let total = req.runs.len();
    let mut outcomes: Vec<Option<RunOutcome>> = (0..total).map(|_| None).collect();
    let ids: HashMap<String, usize> = req
        .runs
        .iter()
        .enumerate()
        .map(|(i, r)| (r.run.id.clone(), i))
        .collect();

    // Plan: no network. A re-run whose original is pushed in this same call waits for it, so it
    // can carry `mlflow.parentRunId`.
    let mut pending: Vec<usize> = Vec::new();
    let mut jobs_now: Vec<Job> = Vec::new();
    let mut to_send = 0;
    // The cheap change check reads the change numbers and attestation rows of every run at
    // once (runs given as rows are loaded in full only when it finds a change). A run given with its own metric history has no fingerprint: it is always compared
    // by its full hash.
    let fp_ids: Vec<&str> = req
        .runs
        .iter()
        .filter(|r| r.metrics.is_none())
        .map(|r| r.run.id.as_str())
        .collect();
    let fp_inputs = store.fingerprint_inputs(&fp_ids)?;
    let fingerprint_of = |i: usize, ledger: &HashMap<String, MlflowPush>| -> Option<String> {
        let r = &req.runs[i];
        if r.metrics.is_some() {
            return None;
        }
        let parent = r
            .run
            .rerun_of
            .as_ref()
            .and_then(|p| ledger.get(p))
            .map(|p| p.mlflow_run_id.as_str());
        let changes = fp_inputs.changes.get(&r.run.id).copied();
        let attestations = attestation_stamp(fp_inputs.attestations.get(&r.run.id));
        Some(mapping::fingerprint(&r.run, changes, parent, &attestations))
    };
    // Ledger rows found unchanged by their full hash but without (or with an outdated)
    // fingerprint: it is filled in, so the next push takes the cheap path.
    let mut refresh: Vec<(String, String)> = Vec::new();
    let plan_one = |i: usize,
                    ledger: &HashMap<String, MlflowPush>|
     -> Result<(Desired, Option<Baseline>), StoreError> {
        let r = &req.runs[i];
        let parent = r
            .run
            .rerun_of
            .as_ref()
            .and_then(|p| ledger.get(p))
            .map(|p| p.mlflow_run_id.as_str());
        // Only a run the cheap check found changed (or not yet pushed) is loaded in full.
        let mut full;
        let run = if r.loaded {
            &r.run
        } else {
            full = r.run.clone();
            store.load_run_children(&mut full)?;
            &full
        };
        let stored;
        let metrics = match &r.metrics {
            Some(m) => m,
            None => {
                stored = metric_history(store, run)?;
                &stored
            }
        };
        let attestation = attestation_file(store, &run.id)?;
        let want = mapping::desired(
            run,
            metrics,
            parent,
            attestation
                .as_ref()
                .map(|(n, b)| (n.as_str(), b.as_slice())),
        )
        .with_metric_summary(run, &store.metric_summaries(&run.id)?);
        Ok((want, ledger.get(&r.run.id).map(Baseline::from_ledger)))
    };
    for (i, r) in req.runs.iter().enumerate() {
        let waits = r
            .run
            .rerun_of
            .as_ref()
            .is_some_and(|p| ids.contains_key(p) && !ledger.contains_key(p));
        if waits {
            pending.push(i);
            to_send += 1;
            continue;
        }
        let fingerprint = fingerprint_of(i, &ledger);
        let unchanged = |p: &MlflowPush| RunOutcome {
            run_id: r.run.id.clone(),
            mlflow_run_id: Some(p.mlflow_run_id.clone()),
            action: Action::Unchanged,
            conflicts: Vec::new(),
            requests: 0,
            error: None,
        };
        if let Some(p) = ledger.get(&r.run.id) {
            if fingerprint.is_some() && p.fingerprint == fingerprint {
                outcomes[i] = Some(unchanged(p));
                continue;
            }
        }
        let (want, base) = plan_one(i, &ledger)?;
        if let Some(p) = ledger.get(&r.run.id) {
            if p.pushed_hash == want.hash() {
                outcomes[i] = Some(unchanged(p));
                if let Some(fp) = fingerprint {
                    refresh.push((r.run.id.clone(), fp));
                }
                continue;
            }
        }
        to_send += 1;
        jobs_now.push(Job {
            index: i,
            repro_id: r.run.id.clone(),
            want,
            base,
            fingerprint,
        });
    }
    if !req.dry_run {
        store.set_mlflow_fingerprints(&uri, &req.experiment, &refresh)?;
    }
    events(Event::Planned { total, to_send });
    for o in outcomes.iter().flatten() {
        events(Event::Pushed(o));
    }

    let mut summary = PushSummary {
        tracking_uri: uri.clone(),
        experiment: req.experiment.clone(),
        experiment_id: ledger.values().next().map(|p| p.experiment_id.clone()),
        outcomes: Vec::new(),
    };
    if req.dry_run {
        for job in jobs_now {
            let (action, conflicts) = match &job.base {
                None => (Action::CreateOrRelink, Vec::new()),
                Some(b) => {
                    let d = diff(&job.want, b);
                    (Action::Update { parts: d.parts() }, d.conflicts)
                }
            };
            let o = RunOutcome {
                run_id: job.repro_id,
                mlflow_run_id: job.base.map(|b| b.mlflow_run_id),
                action,
                conflicts,
                requests: 0,
                error: None,
            };
            events(Event::Pushed(&o));
            outcomes[job.index] = Some(o);
        }
        for i in pending {
            let o = RunOutcome {
                run_id: req.runs[i].run.id.clone(),
                mlflow_run_id: None,
                action: Action::CreateOrRelink,
                conflicts: Vec::new(),
                requests: 0,
                error: None,
            };
            events(Event::Pushed(&o));
            outcomes[i] = Some(o);
        }
        summary.outcomes = outcomes.into_iter().flatten().collect();
        return Ok(summary);
    }
    if to_send == 0 {
        summary.outcomes = outcomes.into_iter().flatten().collect();
        return Ok(summary);
    }

    let client = Client::new(&req.settings)?;
    let experiment_id = client.experiment_id(&req.experiment)?;
    summary.experiment_id = Some(experiment_id.clone());
    // Runs without a ledger row are looked up by their `repro.run_id` tag all at once (a lost
    // ledger re-links them), not with one `runs/search` each.
    let new_ids: Vec<&str> = jobs_now
        .iter()
        .filter(|j| j.base.is_none())
        .map(|j| j.repro_id.as_str())
        .chain(
            pending
                .iter()
                .map(|&i| req.runs[i].run.id.as_str())
                .filter(|id| !ledger.contains_key(*id)),
        )
        .collect();
    let known = Known::search(&client, &experiment_id, &new_ids);
    let abort = AtomicBool::new(false);
    let inputs_lock = Mutex::new(());
    let workers = req.jobs.clamp(1, 64);
    loop {
        let queue = Mutex::new(jobs_now.into_iter().collect::<VecDeque<Job>>());
        let (tx, rx) = mpsc::channel::<Done>();
        let mut write_error: Option<StoreError> = None;
        std::thread::scope(|s| {
            for _ in 0..workers {
                let tx = tx.clone();
                let (queue, client, abort, experiment_id, experiment, inputs_lock, known) = (
                    &queue,
                    &client,
                    &abort,
                    &experiment_id,
                    &req.experiment,
                    &inputs_lock,
                    &known,
                );
                s.spawn(move || {
                    while let Some(job) = queue.lock().map(|mut q| q.pop_front()).ok().flatten() {
                        let done = if abort.load(Ordering::Relaxed) {
                            Done {
                                index: job.index,
                                outcome: RunOutcome {
                                    run_id: job.repro_id,
                                    mlflow_run_id: job.base.map(|b| b.mlflow_run_id),
                                    action: Action::Create,
                                    conflicts: Vec::new(),
                                    requests: 0,
                                    error: Some(MlflowError::Unreachable {
                                        uri: client.uri().to_string(),
                                        detail: "not sent: an earlier request failed the same way"
                                            .into(),
                                    }),
                                },
                                ledger: None,
                            }
                        } else {
                            let done = push_one(
                                client,
                                experiment,
                                experiment_id,
                                inputs_lock,
                                known,
                                job,
                            );
                            if matches!(
                                done.outcome.error,
                                Some(
                                    MlflowError::Unreachable { .. }
                                        | MlflowError::Unauthorized { .. }
                                        | MlflowError::Tls { .. }
                                )
                            ) {
                                abort.store(true, Ordering::Relaxed);
                            }
                            done
                        };
                        if tx.send(done).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            // Each acknowledged run is written to the ledger at once: an interrupted push keeps
            // what the server already holds, and the next one resumes from there.
            for done in rx {
                if let Some(row) = &done.ledger {
                    if let Err(e) = store.record_mlflow_push(row) {
                        abort.store(true, Ordering::Relaxed);
                        write_error.get_or_insert(e);
                    } else {
                        ledger.insert(row.run_id.clone(), row.clone());
                    }
                }
                events(Event::Pushed(&done.outcome));
                outcomes[done.index] = Some(done.outcome);
            }
        });
        if let Some(e) = write_error {
            return Err(e.into());
        }
        if pending.is_empty() {
            break;
        }
        // Next wave: re-runs whose original is now pushed (or failed: they go without the link).
        let (ready, rest): (Vec<usize>, Vec<usize>) = pending.into_iter().partition(|&i| {
            let p = req.runs[i].run.rerun_of.as_deref().unwrap_or("");
            !(ids.contains_key(p) && outcomes[ids[p]].is_none())
        });
        let (ready, rest) = if ready.is_empty() {
            (rest, Vec::new())
        } else {
            (ready, rest)
        };
        pending = rest;
        jobs_now = ready
            .into_iter()
            .map(|i| {
                let (want, base) = plan_one(i, &ledger)?;
                Ok(Job {
                    index: i,
                    repro_id: req.runs[i].run.id.clone(),
                    want,
                    base,
                    fingerprint: fingerprint_of(i, &ledger),
                })
            })
            .collect::<Result<Vec<Job>, StoreError>>()?;
    }
    summary.outcomes = outcomes.into_iter().flatten().collect();
    Ok(summary)
}

/// Runs per page of the batched look-up.
const SEARCH_PAGE: usize = 1000;

/// The MLflow runs of an experiment tagged with the repro run ids a push has no ledger row for.
#[derive(Debug, Default)]
struct Known {
    /// repro run id → MLflow run id (the first one found).
    runs: HashMap<String, String>,
    /// Every tagged run of the experiment was listed: a run not in `runs` is new.
    complete: bool,
}

impl Known {
    /// Lists the experiment's runs tagged `repro.run_id` (one paginated `runs/search`) when
    /// more than one run needs the look-up; at most as many pages as there are such runs, so it
    /// never costs more requests than one search per run. An incomplete or failed listing
    /// leaves the runs not found to their own search (whose error, if any, is the run's).
    fn search(client: &Client, experiment_id: &str, ids: &[&str]) -> Known {
        let mut known = Known::default();
        if ids.len() < 2 {
            return known;
        }
        let wanted: std::collections::HashSet<&str> = ids.iter().copied().collect();
        let mut token: Option<String> = None;
        for _ in 0..ids.len() {
            let Ok((runs, next)) =
                client.search_repro_runs(experiment_id, token.as_deref(), SEARCH_PAGE)
            else {
                return known;
            };
            for (repro_id, mlflow_id) in runs {
                if wanted.contains(repro_id.as_str()) {
                    known.runs.entry(repro_id).or_insert(mlflow_id);
                }
            }
            match next {
                Some(t) => token = Some(t),
                None => {
                    known.complete = true;
                    return known;
                }
            }
        }
        known
    }
}

fn push_one(
    client: &Client,
    experiment: &str,
    experiment_id: &str,
    inputs_lock: &Mutex<()>,
    known: &Known,
    job: Job,
) -> Done {
    let mut requests = 0usize;
    let mut mlflow_run_id = job.base.as_ref().map(|b| b.mlflow_run_id.clone());
    let mut action = Action::Create;
    let mut conflicts = Vec::new();
    let result = (|| -> Result<MlflowPush, MlflowError> {
        let want = &job.want;
        let base = match job.base.clone() {
            Some(b) => {
                action = Action::Update { parts: Vec::new() };
                b
            }
            None => {
                let found = match known.runs.get(&job.repro_id) {
                    Some(id) => Some(id.clone()),
                    None if known.complete => None,
                    None => {
                        requests += 1;
                        client
                            .find_by_repro_id(experiment_id, &job.repro_id)?
                            .map(|r| r.run_id)
                    }
                };
                match found {
                    Some(found) => {
                        action = Action::Relinked { parts: Vec::new() };
                        requests += 1;
                        let full = client.get_run(&found)?;
                        Baseline::from_server(&full)
                    }
                    None => {
                        // Only the key tags at creation; the rest goes with log-batch.
                        let first: Vec<KeyValue> =
                            ["repro.run_id", "mlflow.user", "mlflow.source.type"]
                                .iter()
                                .filter_map(|k| {
                                    want.tags.get(*k).map(|v| KeyValue {
                                        key: k.to_string(),
                                        value: v.clone(),
                                    })
                                })
                                .collect();
                        requests += 1;
                        let created = client.create_run(
                            experiment_id,
                            &want.run_name,
                            &want.user,
                            want.start_time,
                            &first,
                        )?;
                        let mut b = Baseline::from_server(&created);
                        b.owned_tags.clear();
                        b.params.clear();
                        // A new run is RUNNING without an end time: `runs/update` decides.
                        b.state_hash = None;
                        b
                    }
                }
            }
        };
        mlflow_run_id = Some(base.mlflow_run_id.clone());
        let run_id = base.mlflow_run_id.as_str();
        let d = diff(want, &base);
        conflicts = d.conflicts.clone();
        match &mut action {
            Action::Update { parts } | Action::Relinked { parts } => *parts = d.parts(),
            _ => {}
        }
        requests += client.log_batch(run_id, &d.params, &d.tags, &d.metrics)?;
        for k in &d.delete_tags {
            requests += 1;
            client.delete_tag(run_id, k)?;
        }
        if d.inputs {
            // MLflow's server inserts a dataset shared by runs of an experiment with a racy
            // check-then-insert (a UNIQUE constraint error under concurrency): one at a time,
            // and one retry for another pusher's race.
            let _one = inputs_lock.lock().unwrap_or_else(|p| p.into_inner());
            requests += 1;
            match client.log_inputs(run_id, &want.inputs) {
                Err(MlflowError::Rejected { message, .. })
                    if message.contains("UNIQUE constraint") =>
                {
                    requests += 1;
                    client.log_inputs(run_id, &want.inputs)?;
                }
                other => other?,
            }
        }
        if d.artifacts {
            let artifact_uri = match &base.artifact_uri {
                Some(u) => u.clone(),
                None => {
                    requests += 1;
                    client.get_run(run_id)?.artifact_uri
                }
            };
            for (path, bytes) in &want.artifacts {
                requests += 1;
                client.upload_artifact(&artifact_uri, path, bytes)?;
            }
        }
        // Status last: a FINISHED run on the server has everything else.
        if d.state {
            requests += 1;
            client.update_run(run_id, want.status, want.end_time, &want.run_name)?;
        }
        let mut params = base.params.clone();
        for kv in &d.params {
            params.insert(kv.key.clone(), kv.value.clone());
        }
        // Only the tags repro set; tags added in MLflow's UI are not repro's to track.
        let tags = &want.tags;
        let mut counts = base.metric_counts.clone();
        for (k, n) in want.metric_counts() {
            counts.insert(k, n);
        }
        let hash = if conflicts.is_empty() {
            want.hash()
        } else {
            // Never "unchanged" while a conflict stands: every push reports it again.
            format!("conflict:{}", want.hash())
        };
        Ok(MlflowPush {
            tracking_uri: client.uri().to_string(),
            experiment: experiment.to_string(),
            run_id: job.repro_id.clone(),
            mlflow_run_id: run_id.to_string(),
            experiment_id: experiment_id.to_string(),
            pushed_hash: hash,
            params_json: serde_json::to_string(&params).expect("json"),
            tags_json: serde_json::to_string(tags).expect("json"),
            state_hash: want.state_hash(),
            inputs_hash: want.inputs_hash(),
            artifacts_hash: want.artifacts_hash(),
            metrics_json: serde_json::to_string(&counts).expect("json"),
            pushed_at: rfc3339(now()),
            // A standing conflict must be found (and reported) again by every push.
            fingerprint: job.fingerprint.clone().filter(|_| conflicts.is_empty()),
        })
    })();
    let (ledger, error) = match result {
        Ok(row) => (Some(row), None),
        Err(e) => (None, Some(e)),
    };
    Done {
        index: job.index,
        outcome: RunOutcome {
            run_id: job.repro_id,
            mlflow_run_id,
            action,
            conflicts,
            requests,
            error,
        },
        ledger,
    }
}

/// Experiment used when neither a flag, `MLFLOW_EXPERIMENT_NAME` nor the config names one.
pub const DEFAULT_EXPERIMENT: &str = "repro";

/// `repro run --mlflow` (or `mlflow_push = true`): push the run when it finishes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AfterRun {
    /// `mlflow_tracking_uri` from the configuration (`MLFLOW_TRACKING_URI` wins).
    pub tracking_uri: Option<String>,
    /// `mlflow_experiment` from the configuration (`MLFLOW_EXPERIMENT_NAME` wins).
    pub experiment: Option<String>,
}

impl AfterRun {
    /// The push at the end of a run or re-run: with `--mlflow` (`flag`) or the config key
    /// `mlflow_push`, to the configured server and experiment; `None` when neither asks.
    pub fn when_asked(flag: bool, cfg: &crate::config::Config) -> Option<AfterRun> {
        (flag || cfg.mlflow_push.value).then(|| AfterRun {
            tracking_uri: cfg.mlflow_tracking_uri.value.clone(),
            experiment: cfg.mlflow_experiment.value.clone(),
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
/// Returns whether the run is on the server, up to date.
pub fn after_run(ev: &dyn Events, store: &Store, run_id: &str, cfg: &AfterRun) -> bool {
    let env = |k: &str| std::env::var(k).ok();
    let queued = "it stays queued for `repro mlflow push`";
    let warn = |why: String| ev.warn(&format!("not pushed to MLflow: {why}; {queued}"));
    let settings = match cfg.settings(&env) {
        Ok(s) => s,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn want() -> Desired {
        Desired {
            run_name: "r".into(),
            user: "u".into(),
            start_time: 1,
            end_time: Some(2),
            status: "FINISHED",
            params: [("lr".to_string(), "0.1".to_string())]
                .into_iter()
                .collect(),
            tags: [
                ("a".to_string(), "1".to_string()),
                ("best".to_string(), String::new()),
            ]
            .into_iter()
            .collect(),
            inputs: Vec::new(),
            artifacts: vec![("repro/run.json".into(), b"{}".to_vec())],
            metrics: (0..3)
                .map(|s| MetricPoint {
                    key: "loss".into(),
                    value: 0.0,
                    timestamp: s,
                    step: s,
                })
                .collect(),
        }
    }

    fn pushed(w: &Desired) -> Baseline {
        Baseline {
            mlflow_run_id: "m".into(),
            params: w.params.clone(),
            tags: w.tags.clone(),
            owned_tags: w.tags.keys().cloned().collect(),
            state_hash: Some(w.state_hash()),
            inputs_hash: Some(w.inputs_hash()),
            artifacts_hash: Some(w.artifacts_hash()),
            metric_counts: w.metric_counts(),
            artifact_uri: None,
        }
    }

    /// The cheap path decides alone: a ledger row whose fingerprint matches is unchanged even
    /// when its full hash is stale (so the run was not loaded and the full hash not computed);
    /// a row without fingerprint goes through the full comparison, which fills it in. Every kind
    /// of change made through the store (run columns, tags, notes, params, outputs, env,
    /// datasets, attestations, metric points) moves the change stamp, so a run read as its
    /// `runs` row only is never found unchanged by mistake. The server address is closed: any
    /// request would fail the run.
    #[test]
    fn the_fingerprint_decides_unchanged_runs_and_every_stored_change_passes_it() {
        use crate::record::{Exec, ExecMode, Output, Status};
        use crate::store::attest::AttestationRecord;
        use crate::store::query::RunFilter;
        use crate::store::Finish;
        let mut store = Store::open_in_memory().unwrap();
        let mut run = Run::start(
            vec!["true".into()],
            ".".into(),
            Exec {
                mode: ExecMode::Host,
                engine: None,
                workdir: None,
                engine_args: vec![],
                gpus: None,
                registry: None,
            },
            crate::capture::host::start_facts(),
        );
        run.tags = vec!["best".into()];
        store.insert_run(&run).unwrap();
        let id = run.id.clone();
        let settings = Settings::from_env(Some("http://127.0.0.1:9"), &|_| None).unwrap();
        let uri = settings.uri.clone();
        // As `repro mlflow push` selects: the `runs` row only.
        let row = |store: &Store| {
            let rows = store.select_run_rows(&RunFilter::default(), None).unwrap();
            assert_eq!(rows.len(), 1);
            assert!(rows[0].tags.is_empty(), "children are not loaded");
            RunToPush::row(rows[0].clone())
        };
        let action = |store: &Store, r: RunToPush, dry_run: bool| {
            let req = PushRequest {
                settings: settings.clone(),
                experiment: "e".into(),
                runs: vec![r],
                dry_run,
                jobs: 1,
            };
            let s = push(store, req, &mut |_| {}).unwrap();
            let o = &s.outcomes[0];
            assert!(o.error.is_none(), "{:?}", o.error);
            assert_eq!(o.requests, 0);
            o.action.clone()
        };
        let ledger = |store: &Store| store.mlflow_pushes(&uri, "e").unwrap()[&id].clone();
        // Records the run as pushed in its current state, the way a row from before migration
        // 10 looks (no fingerprint, the right full hash); a push fills the fingerprint in; then
        // the full hash is made stale, so only the fingerprint can say "unchanged".
        let settle = |store: &Store| {
            let full = store.get_run(&id).unwrap();
            let m = metric_history(store, &full).unwrap();
            let att = attestation_file(store, &id).unwrap();
            let sent = mapping::desired(
                &full,
                &m,
                None,
                att.as_ref().map(|(n, b)| (n.as_str(), b.as_slice())),
            )
            .with_metric_summary(&full, &store.metric_summaries(&id).unwrap());
            store
                .record_mlflow_push(&MlflowPush {
                    tracking_uri: uri.clone(),
                    experiment: "e".into(),
                    run_id: id.clone(),
                    mlflow_run_id: "m1".into(),
                    experiment_id: "1".into(),
                    pushed_hash: sent.hash(),
                    params_json: serde_json::to_string(&sent.params).unwrap(),
                    tags_json: serde_json::to_string(&sent.tags).unwrap(),
                    state_hash: sent.state_hash(),
                    inputs_hash: sent.inputs_hash(),
                    artifacts_hash: sent.artifacts_hash(),
                    metrics_json: serde_json::to_string(&sent.metric_counts()).unwrap(),
                    pushed_at: "2026-12-01T00:00:00.000Z".into(),
                    fingerprint: None,
                })
                .unwrap();
            // A dry run compares in full but writes nothing.
            assert_eq!(action(store, row(store), true), Action::Unchanged);
            assert_eq!(ledger(store).fingerprint, None);
            assert_eq!(action(store, row(store), false), Action::Unchanged);
            let filled = ledger(store);
            assert!(filled.fingerprint.is_some());
            store
                .record_mlflow_push(&MlflowPush {
                    pushed_hash: "stale".into(),
                    ..filled
                })
                .unwrap();
            assert_eq!(action(store, row(store), false), Action::Unchanged);
            // A complete run (as `repro run --mlflow` gives it) has the same fingerprint.
            let full = store.get_run(&id).unwrap();
            assert_eq!(
                action(store, RunToPush::new(full), false),
                Action::Unchanged
            );
        };
        let changed = |store: &Store, what: &str| {
            assert!(
                matches!(action(store, row(store), true), Action::Update { .. }),
                "{what} was not seen"
            );
        };

        settle(&store);
        store.add_note(&id, "later").unwrap();
        changed(&store, "a note");
        settle(&store);
        // `INSERT OR IGNORE`: the statement's conflict policy must not reach the triggers.
        store.change_tags(&id, &["shipped".into()], &[]).unwrap();
        changed(&store, "a tag added");
        settle(&store);
        store.change_tags(&id, &[], &["best".into()]).unwrap();
        changed(&store, "a tag removed");
        settle(&store);
        store
            .set_params(&id, &[("lr".into(), "0.1".into())], &[])
            .unwrap();
        changed(&store, "a param");
        settle(&store);
        store
            .set_params(&id, &[("lr".into(), "0.2".into())], &[])
            .unwrap();
        changed(&store, "a param's value");
        settle(&store);
        store
            .finish_run(
                &id,
                &Finish {
                    status: Status::Failed,
                    exit_code: Some(1),
                    signal: None,
                    ended_at: run.started_at.clone(),
                    duration_ms: 0,
                    outputs: vec![Output {
                        path: "model.bin".into(),
                        sha256: None,
                        bytes: None,
                    }],
                },
            )
            .unwrap();
        changed(&store, "status, end time and outputs");
        settle(&store);
        store
            .insert_metrics(
                &id,
                &[crate::record::metrics::MetricPoint {
                    key: "loss".into(),
                    step: Some(0),
                    value: 0.5,
                    time: None,
                }],
            )
            .unwrap();
        changed(&store, "a metric point");
        settle(&store);
        store
            .insert_metrics(
                &id,
                &[crate::record::metrics::MetricPoint {
                    key: "loss".into(),
                    step: Some(1),
                    value: 0.25,
                    time: None,
                }],
            )
            .unwrap();
        changed(&store, "a second point of the same series");
        settle(&store);
        store
            .conn()
            .execute(
                "INSERT INTO run_env (run_id, name, value) VALUES (?1, 'SEED', '1')",
                [&id],
            )
            .unwrap();
        changed(&store, "an env variable");
        settle(&store);
        store
            .conn()
            .execute(
                "INSERT INTO run_datasets (run_id, pos, name, kind) VALUES (?1, 0, 'mnist', 'label')",
                [&id],
            )
            .unwrap();
        changed(&store, "a dataset");
        settle(&store);
        store
            .conn()
            .execute(
                "UPDATE run_datasets SET version = 'v2' WHERE run_id = ?1",
                [&id],
            )
            .unwrap();
        changed(&store, "a dataset's version");
        settle(&store);
        let dir = tempfile::tempdir().unwrap();
        let doc = dir.path().join("att.json");
        std::fs::write(&doc, b"{}").unwrap();
        store
            .record_attestation(&AttestationRecord {
                run_id: id.clone(),
                sha256: mapping::sha256_hex(b"{}"),
                keyid: None,
                path: Some(doc.to_string_lossy().into_owned()),
                created_at: "2026-12-01T00:00:00.000Z".into(),
            })
            .unwrap();
        changed(&store, "an attestation");
        settle(&store);
        std::fs::remove_file(&doc).unwrap();
        changed(&store, "the attestation file removed");
        settle(&store);
        store
            .conn()
            .execute("DELETE FROM run_notes WHERE run_id = ?1", [&id])
            .unwrap();
        changed(&store, "a note deleted");
    }

    #[test]
    fn only_what_changed_is_sent_and_changed_params_are_conflicts() {
        let w = want();
        let base = pushed(&w);
        assert!(diff(&w, &base).parts().is_empty());

        let mut t = want();
        t.tags.remove("best");
        t.tags.insert("shipped".into(), String::new());
        let d = diff(&t, &base);
        assert_eq!(d.parts(), ["tags"]);
        assert_eq!(
            d.tags,
            [KeyValue {
                key: "shipped".into(),
                value: String::new()
            }]
        );
        assert_eq!(d.delete_tags, ["best"]);

        let mut p = want();
        p.params.insert("lr".into(), "0.2".into());
        p.params.insert("new".into(), "x".into());
        let d = diff(&p, &base);
        assert_eq!(
            d.params,
            [KeyValue {
                key: "new".into(),
                value: "x".into()
            }]
        );
        assert_eq!(
            d.conflicts,
            [ParamConflict {
                key: "lr".into(),
                pushed: "0.1".into(),
                local: Some("0.2".into())
            }]
        );

        let mut m = want();
        m.metrics.push(MetricPoint {
            key: "loss".into(),
            value: 0.0,
            timestamp: 9,
            step: 9,
        });
        m.metrics.push(MetricPoint {
            key: "acc".into(),
            value: 1.0,
            timestamp: 9,
            step: 9,
        });
        m.metrics
            .sort_by(|a, b| (a.key.as_str(), a.step).cmp(&(b.key.as_str(), b.step)));
        let d = diff(&m, &base);
        assert_eq!(d.parts(), ["metrics"]);
        let sent: Vec<(&str, i64)> = d.metrics.iter().map(|p| (p.key.as_str(), p.step)).collect();
        assert_eq!(sent, [("acc", 9), ("loss", 9)]);

        let mut s = want();
        s.status = "FAILED";
        assert_eq!(diff(&s, &base).parts(), ["status"]);
    }
}
