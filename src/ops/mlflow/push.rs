//! The push itself: plan every run without a request (the cheap change check, then the full
//! hash), then send the runs that changed on a bounded pool of threads, in waves (a re-run whose
//! original is pushed in the same call waits for it, so it can carry `mlflow.parentRunId`).
//! Each acknowledged run is written to the ledger at once.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use super::outputs::{self, UploadError};
use super::plan::{self, attestation_stamp, diff, Baseline, Desired, Diff};
use super::{
    attestation_file, metric_history, Action, DeletedRuns, Event, OutputsSent, PushError,
    PushRequest, PushSummary, RunOutcome,
};
use crate::capture::host::{now, rfc3339};
use crate::mlflow::{Client, KeyValue, MlflowError, Upload};
use crate::store::mlflow::{FingerprintInputs, MlflowPush, UploadedArtifact};
use crate::store::objects::Objects;
use crate::store::{Store, StoreError};

/// The ledger of one server and experiment: repro run id → what was pushed.
type Ledger = HashMap<String, MlflowPush>;

/// `pushed_hash` of a ledger row whose MLflow run was deleted and the link forgotten
/// (`--forget-deleted`): the run is left out of MLflow until `--recreate-deleted`.
const LEFT_DELETED: &str = "left-deleted";

/// What a worker tells the thread that writes the ledger.
enum Msg {
    /// One kept-output file the server acknowledged: recorded at once, so an interrupted push
    /// does not send it again.
    Uploaded(UploadedArtifact),
    /// One run finished.
    Done(Box<Done>),
}

/// One run to send.
struct Job {
    index: usize,
    repro_id: String,
    want: Desired,
    base: Option<Baseline>,
    /// The deleted MLflow run this job replaces (`--recreate-deleted`).
    recreates: Option<String>,
    /// The cheap change check at plan time, recorded with the ledger row.
    fingerprint: Option<String>,
    /// The kept-output files the artifact ledger lists for this run on this server, for any of
    /// its MLflow runs (the one it is pushed to is known once the baseline is).
    uploaded: Vec<UploadedArtifact>,
}

/// One run sent (or failed), with the ledger row to write.
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
    // One push per (server, experiment) at a time: the ledger is read under the lock, so a
    // second push sees what the first created instead of creating it again.
    let _lock = if req.dry_run {
        None
    } else {
        PushLock::take(store, &uri, &req.experiment, req.settings.deadline, events)?
    };
    let mut ledger = store.mlflow_pushes(&uri, &req.experiment)?;
    let deleted = if req.dry_run {
        Deleted::default()
    } else {
        Deleted::check(store, &req, &mut ledger)?
    };
    let mut planner = Planner::new(store, &req)?;
    planner.recreated = deleted.recreated;
    let mut first = planner.first_wave(&ledger)?;
    // Runs whose MLflow run is deleted are decided before anything is sent to them.
    for (id, o) in deleted.decided {
        let Some(&i) = planner.ids.get(&id) else {
            continue;
        };
        if let Some(pos) = first.jobs.iter().position(|j| j.index == i) {
            first.jobs.remove(pos);
            first.to_send -= 1;
        }
        if let Some(pos) = first.pending.iter().position(|&p| p == i) {
            first.pending.remove(pos);
            first.to_send -= 1;
        }
        first.outcomes[i] = Some(o);
    }
    if !req.dry_run {
        store.set_mlflow_fingerprints(&uri, &req.experiment, &first.refresh)?;
    }
    events(Event::Planned {
        total: req.runs.len(),
        to_send: first.to_send,
    });
    for o in first.outcomes.iter().flatten() {
        events(Event::Pushed(o));
    }
    let mut summary = PushSummary {
        tracking_uri: uri,
        experiment: req.experiment.clone(),
        experiment_id: ledger.values().next().map(|p| p.experiment_id.clone()),
        outcomes: Vec::new(),
        check_requests: deleted.requests,
    };
    let Wave {
        mut outcomes,
        jobs,
        mut pending,
        to_send,
        ..
    } = first;
    if req.dry_run {
        dry_run(&req, jobs, pending, &mut outcomes, events);
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
    let new_ids: Vec<&str> = jobs
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
    let sender = Sender {
        known: Known::search(&client, &experiment_id, &new_ids),
        client: &client,
        experiment: &req.experiment,
        experiment_id: &experiment_id,
        inputs_lock: Mutex::new(()),
        abort: AtomicBool::new(false),
        workers: req.jobs.clamp(1, 64),
        objects: planner.objects.clone(),
    };
    let mut jobs = jobs;
    loop {
        sender.wave(store, jobs, &mut ledger, &mut outcomes, events)?;
        if pending.is_empty() {
            break;
        }
        let ready;
        (ready, pending) = planner.next_wave(pending, &outcomes);
        jobs = ready
            .into_iter()
            .map(|i| planner.job(i, &ledger))
            .collect::<Result<Vec<Job>, StoreError>>()?;
    }
    summary.outcomes = outcomes.into_iter().flatten().collect();
    Ok(summary)
}

/// The plan of the first wave: no network.
struct Wave {
    /// Runs decided already (unchanged), by index.
    outcomes: Vec<Option<RunOutcome>>,
    /// Runs to send now.
    jobs: Vec<Job>,
    /// Re-runs waiting for their original, pushed in this same call.
    pending: Vec<usize>,
    /// Runs that need requests.
    to_send: usize,
    /// Ledger rows found unchanged by their full hash but without (or with an outdated)
    /// fingerprint: it is filled in, so the next push takes the cheap path.
    refresh: Vec<(String, String)>,
}

/// Decides what each run of a request needs, from the store and the ledger.
struct Planner<'a> {
    store: &'a Store,
    req: &'a PushRequest,
    /// repro run id → position in `req.runs`.
    ids: HashMap<String, usize>,
    fp_inputs: FingerprintInputs,
    /// repro run id → its deleted MLflow run, for the runs `--recreate-deleted` pushes again.
    recreated: HashMap<String, String>,
    /// The object store of kept outputs beside the database.
    objects: Objects,
}

impl<'a> Planner<'a> {
    /// The cheap change check reads the change numbers and attestation rows of every run at
    /// once (runs given as rows are loaded in full only when it finds a change). A run given
    /// with its own metric history has no fingerprint: it is always compared by its full hash.
    fn new(store: &'a Store, req: &'a PushRequest) -> Result<Planner<'a>, StoreError> {
        let fp_ids: Vec<&str> = req
            .runs
            .iter()
            .filter(|r| r.metrics.is_none())
            .map(|r| r.run.id.as_str())
            .collect();
        Ok(Planner {
            store,
            req,
            ids: req
                .runs
                .iter()
                .enumerate()
                .map(|(i, r)| (r.run.id.clone(), i))
                .collect(),
            fp_inputs: store.fingerprint_inputs(&fp_ids)?,
            recreated: HashMap::new(),
            objects: Objects::beside(store.path()),
        })
    }

    /// The MLflow run id of the run that run `i` re-runs, when that one is pushed.
    fn parent<'l>(&self, i: usize, ledger: &'l Ledger) -> Option<&'l str> {
        self.req.runs[i]
            .run
            .rerun_of
            .as_ref()
            .and_then(|p| ledger.get(p))
            .map(|p| p.mlflow_run_id.as_str())
    }

    fn fingerprint(&self, i: usize, ledger: &Ledger) -> Option<String> {
        let r = &self.req.runs[i];
        if r.metrics.is_some() {
            return None;
        }
        let changes = self.fp_inputs.changes.get(&r.run.id).copied();
        let attestations = attestation_stamp(self.fp_inputs.attestations.get(&r.run.id));
        Some(plan::fingerprint(
            &r.run,
            changes,
            self.parent(i, ledger),
            &attestations,
            &self.req.outputs.stamp(),
            &self.req.dataset_context,
        ))
    }

    /// What run `i` should be on the server, and what the ledger says it is.
    fn desired(
        &self,
        i: usize,
        ledger: &Ledger,
    ) -> Result<(Desired, Option<Baseline>), StoreError> {
        let r = &self.req.runs[i];
        // Only a run the cheap check found changed (or not yet pushed) is loaded in full.
        let mut full;
        let run = if r.loaded {
            &r.run
        } else {
            full = r.run.clone();
            self.store.load_run_children(&mut full)?;
            &full
        };
        let stored;
        let metrics = match &r.metrics {
            Some(m) => m,
            None => {
                stored = metric_history(self.store, run)?;
                &stored
            }
        };
        let attestation = attestation_file(self.store, &run.id)?;
        let want = plan::desired(
            run,
            metrics,
            self.parent(i, ledger),
            attestation
                .as_ref()
                .map(|(n, b)| (n.as_str(), b.as_slice())),
        )
        .with_metric_summary(run, &self.store.metric_summaries(&run.id)?)
        .with_environment(self.store.environment_of(&run.id)?.as_ref())
        .with_dataset_context(&self.req.dataset_context);
        let (files, skipped) = outputs::plan(&self.objects, run, &self.req.outputs);
        let want = want.with_outputs(files, skipped);
        Ok((want, ledger.get(&r.run.id).map(Baseline::from_ledger)))
    }

    /// The artifact ledger's rows of a run (only read when it has outputs to upload).
    fn uploaded(&self, run_id: &str, want: &Desired) -> Result<Vec<UploadedArtifact>, StoreError> {
        if want.outputs.is_empty() {
            return Ok(Vec::new());
        }
        self.store.mlflow_artifacts(&self.req.settings.uri, run_id)
    }

    fn job(&self, i: usize, ledger: &Ledger) -> Result<Job, StoreError> {
        let (want, base) = self.desired(i, ledger)?;
        let id = &self.req.runs[i].run.id;
        Ok(Job {
            index: i,
            repro_id: id.clone(),
            uploaded: self.uploaded(id, &want)?,
            want,
            base,
            recreates: self.recreated.get(id).cloned(),
            fingerprint: self.fingerprint(i, ledger),
        })
    }

    /// Every run found unchanged (by its fingerprint, else by its full hash) is decided; the
    /// others are jobs, or wait for their original.
    fn first_wave(&self, ledger: &Ledger) -> Result<Wave, StoreError> {
        let mut wave = Wave {
            outcomes: (0..self.req.runs.len()).map(|_| None).collect(),
            jobs: Vec::new(),
            pending: Vec::new(),
            to_send: 0,
            refresh: Vec::new(),
        };
        for (i, r) in self.req.runs.iter().enumerate() {
            let waits = r
                .run
                .rerun_of
                .as_ref()
                .is_some_and(|p| self.ids.contains_key(p) && !ledger.contains_key(p));
            if waits {
                wave.pending.push(i);
                wave.to_send += 1;
                continue;
            }
            let fingerprint = self.fingerprint(i, ledger);
            let unchanged = |p: &MlflowPush| RunOutcome {
                run_id: r.run.id.clone(),
                mlflow_run_id: Some(p.mlflow_run_id.clone()),
                action: Action::Unchanged,
                conflicts: Vec::new(),
                requests: 0,
                error: None,
                outputs: OutputsSent::default(),
                skipped: Vec::new(),
            };
            if let Some(p) = ledger.get(&r.run.id) {
                if fingerprint.is_some() && p.fingerprint == fingerprint {
                    wave.outcomes[i] = Some(unchanged(p));
                    continue;
                }
            }
            let (want, base) = self.desired(i, ledger)?;
            if let Some(p) = ledger.get(&r.run.id) {
                if p.pushed_hash == want.hash() {
                    wave.outcomes[i] = Some(unchanged(p));
                    if let Some(fp) = fingerprint {
                        wave.refresh.push((r.run.id.clone(), fp));
                    }
                    continue;
                }
            }
            wave.to_send += 1;
            wave.jobs.push(Job {
                index: i,
                repro_id: r.run.id.clone(),
                uploaded: self.uploaded(&r.run.id, &want)?,
                want,
                base,
                recreates: self.recreated.get(&r.run.id).cloned(),
                fingerprint,
            });
        }
        Ok(wave)
    }

    /// Splits the waiting re-runs into those whose original is now pushed (or failed: they go
    /// without the link) and those still waiting; when none is ready, all go.
    fn next_wave(
        &self,
        pending: Vec<usize>,
        outcomes: &[Option<RunOutcome>],
    ) -> (Vec<usize>, Vec<usize>) {
        let (ready, rest): (Vec<usize>, Vec<usize>) = pending.into_iter().partition(|&i| {
            let p = self.req.runs[i].run.rerun_of.as_deref().unwrap_or("");
            !(self.ids.contains_key(p) && outcomes[self.ids[p]].is_none())
        });
        if ready.is_empty() {
            (rest, Vec::new())
        } else {
            (ready, rest)
        }
    }
}

/// A dry run: what each run to send would get, without a request.
fn dry_run(
    req: &PushRequest,
    jobs: Vec<Job>,
    pending: Vec<usize>,
    outcomes: &mut [Option<RunOutcome>],
    events: &mut dyn FnMut(Event),
) {
    for job in jobs {
        let (action, conflicts) = match &job.base {
            None => (Action::CreateOrRelink, Vec::new()),
            Some(b) => {
                let d = diff(&job.want, &with_uploaded(b.clone(), &job.uploaded));
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
            outputs: OutputsSent::default(),
            skipped: job.want.outputs_skipped,
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
            outputs: OutputsSent::default(),
            skipped: Vec::new(),
        };
        events(Event::Pushed(&o));
        outcomes[i] = Some(o);
    }
}

/// `base` with the kept-output files its MLflow run holds, from the artifact ledger's `rows`.
fn with_uploaded(mut base: Baseline, rows: &[UploadedArtifact]) -> Baseline {
    base.uploaded = rows
        .iter()
        .filter(|a| a.mlflow_run_id == base.mlflow_run_id)
        .map(|a| (a.path.clone(), a.sha256.clone()))
        .collect();
    base
}

/// Sends jobs to one server and experiment on a bounded pool of threads.
struct Sender<'a> {
    client: &'a Client,
    experiment: &'a str,
    experiment_id: &'a str,
    known: Known,
    /// MLflow's dataset insert races with itself (see `send`): one `log-inputs` at a time.
    inputs_lock: Mutex<()>,
    /// Set when a request failed in a way every other one would (server gone, credentials,
    /// TLS): the remaining jobs are not sent.
    abort: AtomicBool,
    workers: usize,
    /// Where kept outputs are read from.
    objects: Objects,
}

impl Sender<'_> {
    /// Sends `jobs`; each acknowledged run is written to the ledger at once, so an interrupted
    /// push keeps what the server already holds and the next one resumes from there. A ledger
    /// write that fails stops the push (its error).
    fn wave(
        &self,
        store: &Store,
        jobs: Vec<Job>,
        ledger: &mut Ledger,
        outcomes: &mut [Option<RunOutcome>],
        events: &mut dyn FnMut(Event),
    ) -> Result<(), StoreError> {
        let queue = Mutex::new(jobs.into_iter().collect::<VecDeque<Job>>());
        let (tx, rx) = mpsc::channel::<Msg>();
        let mut write_error: Option<StoreError> = None;
        std::thread::scope(|s| {
            for _ in 0..self.workers {
                let tx = tx.clone();
                let queue = &queue;
                s.spawn(move || {
                    while let Some(job) = queue.lock().map(|mut q| q.pop_front()).ok().flatten() {
                        let done = self.one(job, &tx);
                        if tx.send(Msg::Done(Box::new(done))).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            for msg in rx {
                let done = match msg {
                    Msg::Uploaded(a) => {
                        if let Err(e) = store.record_mlflow_artifact(&a) {
                            self.abort.store(true, Ordering::Relaxed);
                            write_error.get_or_insert(e);
                        }
                        continue;
                    }
                    Msg::Done(done) => *done,
                };
                if let Some(row) = &done.ledger {
                    if let Err(e) = store.record_mlflow_push(row) {
                        self.abort.store(true, Ordering::Relaxed);
                        write_error.get_or_insert(e);
                    } else {
                        ledger.insert(row.run_id.clone(), row.clone());
                    }
                }
                events(Event::Pushed(&done.outcome));
                outcomes[done.index] = Some(done.outcome);
            }
        });
        match write_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Sends one job, unless an earlier request failed the way this one would.
    fn one(&self, job: Job, tx: &mpsc::Sender<Msg>) -> Done {
        if self.abort.load(Ordering::Relaxed) {
            return Done {
                index: job.index,
                outcome: RunOutcome {
                    run_id: job.repro_id,
                    mlflow_run_id: job.base.map(|b| b.mlflow_run_id),
                    action: Action::Create,
                    conflicts: Vec::new(),
                    requests: 0,
                    error: Some(MlflowError::Unreachable {
                        uri: self.client.uri().to_string(),
                        detail: "not sent: an earlier request failed the same way".into(),
                    }),
                    outputs: OutputsSent::default(),
                    skipped: Vec::new(),
                },
                ledger: None,
            };
        }
        let done = self.push_one(job, tx);
        if matches!(
            done.outcome.error,
            Some(
                MlflowError::Unreachable { .. }
                    | MlflowError::Unauthorized { .. }
                    | MlflowError::Tls { .. }
            )
        ) {
            self.abort.store(true, Ordering::Relaxed);
        }
        done
    }

    fn push_one(&self, job: Job, tx: &mpsc::Sender<Msg>) -> Done {
        let mut requests = 0usize;
        let mut mlflow_run_id = job.base.as_ref().map(|b| b.mlflow_run_id.clone());
        let mut action = Action::Create;
        let mut conflicts = Vec::new();
        let mut sent = OutputsSent::default();
        let mut skipped = job.want.outputs_skipped.clone();
        let result = (|| -> Result<MlflowPush, MlflowError> {
            let base = self.baseline(&job, &mut action, &mut requests)?;
            let base = with_uploaded(base, &job.uploaded);
            mlflow_run_id = Some(base.mlflow_run_id.clone());
            let d = diff(&job.want, &base);
            conflicts = d.conflicts.clone();
            match &mut action {
                Action::Update { parts } | Action::Relinked { parts } => *parts = d.parts(),
                _ => {}
            }
            let mut out = OutputsOut {
                job: &job,
                tx,
                sent: &mut sent,
                damaged: Vec::new(),
            };
            self.send(&job.want, &base, &d, &mut requests, &mut out)?;
            let damaged = std::mem::take(&mut out.damaged);
            let complete = damaged.is_empty();
            skipped.extend(damaged);
            Ok(self.ledger_row(&job, &base, &d, complete))
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
                outputs: sent,
                skipped,
            },
            ledger,
        }
    }

    /// What the server holds for the job's run: the ledger's word; else the run found by its
    /// `repro.run_id` tag (re-linked); else a new MLflow run.
    fn baseline(
        &self,
        job: &Job,
        action: &mut Action,
        requests: &mut usize,
    ) -> Result<Baseline, MlflowError> {
        let client = self.client;
        if let Some(b) = job.base.clone() {
            *action = Action::Update { parts: Vec::new() };
            return Ok(b);
        }
        let found = match self.known.runs.get(&job.repro_id) {
            Some(id) => Some(id.clone()),
            None if self.known.complete => None,
            None => {
                *requests += 1;
                client
                    .find_by_repro_id(self.experiment_id, &job.repro_id)?
                    .map(|r| r.run_id)
            }
        };
        if let Some(found) = found {
            *action = Action::Relinked { parts: Vec::new() };
            *requests += 1;
            let full = client.get_run(&found)?;
            return Ok(Baseline::from_server(&full));
        }
        // Only the key tags at creation; the rest goes with log-batch.
        let want = &job.want;
        let first: Vec<KeyValue> = ["repro.run_id", "mlflow.user", "mlflow.source.type"]
            .iter()
            .filter_map(|k| {
                want.tags.get(*k).map(|v| KeyValue {
                    key: k.to_string(),
                    value: v.clone(),
                })
            })
            .collect();
        *action = match &job.recreates {
            Some(deleted) => Action::Recreated {
                deleted: deleted.clone(),
            },
            None => Action::Create,
        };
        *requests += 1;
        let created = client.create_run(
            self.experiment_id,
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
        Ok(b)
    }

    /// Sends what differs: params, tags and metrics, deleted tags, datasets, artifacts, and
    /// the status last (a FINISHED run on the server has everything else).
    fn send(
        &self,
        want: &Desired,
        base: &Baseline,
        d: &Diff,
        requests: &mut usize,
        out: &mut OutputsOut,
    ) -> Result<(), MlflowError> {
        let client = self.client;
        let run_id = base.mlflow_run_id.as_str();
        *requests += client.log_batch(run_id, &d.params, &d.tags, &d.metrics)?;
        for k in &d.delete_tags {
            *requests += 1;
            client.delete_tag(run_id, k)?;
        }
        if d.inputs {
            // MLflow's server inserts a dataset shared by runs of an experiment with a racy
            // check-then-insert (a UNIQUE constraint error under concurrency): one at a time,
            // and one retry for another pusher's race.
            let _one = self.inputs_lock.lock().unwrap_or_else(|p| p.into_inner());
            *requests += 1;
            match client.log_inputs(run_id, &want.inputs) {
                Err(MlflowError::Rejected { message, .. })
                    if message.contains("UNIQUE constraint") =>
                {
                    *requests += 1;
                    client.log_inputs(run_id, &want.inputs)?;
                }
                other => other?,
            }
        }
        let mut artifact_uri = base.artifact_uri.clone();
        let mut artifact_uri = |requests: &mut usize| -> Result<String, MlflowError> {
            if artifact_uri.is_none() {
                *requests += 1;
                artifact_uri = Some(client.get_run(run_id)?.artifact_uri);
            }
            Ok(artifact_uri.clone().unwrap_or_default())
        };
        if d.artifacts {
            let artifact_uri = artifact_uri(requests)?;
            for (path, bytes) in &want.artifacts {
                *requests += 1;
                client.upload_artifact(&artifact_uri, path, bytes)?;
            }
        }
        if !d.outputs.is_empty() {
            let artifact_uri = artifact_uri(requests)?;
            for f in &d.outputs {
                self.upload_output(&artifact_uri, run_id, f, requests, out)?;
            }
        }
        if d.state {
            *requests += 1;
            client.update_run(run_id, want.status, want.end_time, &want.run_name)?;
        }
        Ok(())
    }

    /// Uploads one kept-output file and has it recorded in the artifact ledger at once; a kept
    /// copy that is gone or damaged is a line in `out.damaged`, not a failure of the run.
    fn upload_output(
        &self,
        artifact_uri: &str,
        mlflow_run_id: &str,
        f: &plan::OutputArtifact,
        requests: &mut usize,
        out: &mut OutputsOut,
    ) -> Result<(), MlflowError> {
        match outputs::upload(self.client, &self.objects, artifact_uri, f, requests) {
            Ok(how) => {
                out.sent.files += 1;
                out.sent.bytes += f.bytes;
                if matches!(how, Upload::Multipart { .. }) {
                    out.sent.multipart += 1;
                }
                let _ = out.tx.send(Msg::Uploaded(UploadedArtifact {
                    tracking_uri: self.client.uri().to_string(),
                    mlflow_run_id: mlflow_run_id.to_string(),
                    path: f.path.clone(),
                    run_id: out.job.repro_id.clone(),
                    sha256: f.sha256.clone(),
                    bytes: f.bytes,
                    uploaded_at: rfc3339(now()),
                }));
                Ok(())
            }
            Err(UploadError::Object(line)) => {
                out.damaged.push(line);
                Ok(())
            }
            Err(UploadError::Mlflow(e)) => Err(e),
        }
    }

    /// The ledger row once the server acknowledged everything `d` sent; `complete` is false
    /// when a kept-output file could not be read as recorded (the next push tries it again).
    fn ledger_row(&self, job: &Job, base: &Baseline, d: &Diff, complete: bool) -> MlflowPush {
        let want = &job.want;
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
        let hash = if !d.conflicts.is_empty() {
            // Never "unchanged" while a conflict stands: every push reports it again.
            format!("conflict:{}", want.hash())
        } else if !complete {
            // Nor while a kept output could not be uploaded: the next push tries again.
            format!("incomplete:{}", want.hash())
        } else {
            want.hash()
        };
        MlflowPush {
            tracking_uri: self.client.uri().to_string(),
            experiment: self.experiment.to_string(),
            run_id: job.repro_id.clone(),
            mlflow_run_id: base.mlflow_run_id.clone(),
            experiment_id: self.experiment_id.to_string(),
            pushed_hash: hash,
            params_json: serde_json::to_string(&params).expect("json"),
            tags_json: serde_json::to_string(tags).expect("json"),
            state_hash: want.state_hash(),
            inputs_hash: want.inputs_hash(),
            artifacts_hash: want.artifacts_hash(),
            metrics_json: serde_json::to_string(&counts).expect("json"),
            pushed_at: rfc3339(now()),
            // A standing conflict must be found (and reported) again by every push.
            fingerprint: job
                .fingerprint
                .clone()
                .filter(|_| d.conflicts.is_empty() && complete),
        }
    }
}

/// Where the uploads of one job report to.
struct OutputsOut<'a> {
    job: &'a Job,
    tx: &'a mpsc::Sender<Msg>,
    sent: &'a mut OutputsSent,
    /// Files not uploaded because their kept copy is gone or damaged, each a line.
    damaged: Vec<String>,
}

/// Runs whose MLflow run was deleted on the server, found before anything is sent.
#[derive(Default)]
struct Deleted {
    /// Outcomes decided without a request: reported (`Action::Deleted`, failed) or left out.
    decided: Vec<(String, RunOutcome)>,
    /// repro run id → deleted MLflow run id, for `--recreate-deleted` (out of the ledger in
    /// memory; the store's row is replaced once the new run is acknowledged).
    recreated: HashMap<String, String>,
    /// Requests made to find them.
    requests: usize,
}

impl Deleted {
    /// Lists the deleted repro runs (MLflow's trash) of the experiments the ledger links the
    /// selected runs to — one paginated `runs/search` per experiment, only when some selected run
    /// has a ledger row — and applies `req.deleted` to those found: a push never reports a run
    /// "unchanged" whose MLflow run is gone, nor sends to it ("must be in the 'active' state").
    fn check(store: &Store, req: &PushRequest, ledger: &mut Ledger) -> Result<Deleted, PushError> {
        let mut out = Deleted::default();
        let left = |id: &str, mlflow: &str| RunOutcome {
            run_id: id.to_string(),
            mlflow_run_id: Some(mlflow.to_string()),
            action: Action::LeftDeleted,
            conflicts: Vec::new(),
            requests: 0,
            error: None,
            outputs: OutputsSent::default(),
            skipped: Vec::new(),
        };
        // MLflow run id → repro run id, of the linked runs selected.
        let mut linked: HashMap<String, String> = HashMap::new();
        let mut experiments: BTreeSet<String> = BTreeSet::new();
        for r in &req.runs {
            let Some(p) = ledger.get(&r.run.id) else {
                continue;
            };
            if p.pushed_hash == LEFT_DELETED {
                if req.deleted == DeletedRuns::Recreate {
                    out.recreated
                        .insert(r.run.id.clone(), p.mlflow_run_id.clone());
                    ledger.remove(&r.run.id);
                } else {
                    out.decided
                        .push((r.run.id.clone(), left(&r.run.id, &p.mlflow_run_id)));
                }
                continue;
            }
            linked.insert(p.mlflow_run_id.clone(), r.run.id.clone());
            experiments.insert(p.experiment_id.clone());
        }
        if linked.is_empty() {
            return Ok(out);
        }
        let client = Client::new(&req.settings)?;
        let mut gone: Vec<(String, String)> = Vec::new();
        for exp in &experiments {
            let mut token: Option<String> = None;
            loop {
                let (runs, next) =
                    client.search_deleted_repro_runs(exp, token.as_deref(), SEARCH_PAGE)?;
                out.requests += 1;
                for (_, mlflow_id) in runs {
                    if let Some(id) = linked.get(&mlflow_id) {
                        gone.push((id.clone(), mlflow_id));
                    }
                }
                match next {
                    Some(t) => token = Some(t),
                    None => break,
                }
            }
        }
        for (id, mlflow_id) in gone {
            match req.deleted {
                DeletedRuns::Report => out.decided.push((
                    id.clone(),
                    RunOutcome {
                        run_id: id,
                        mlflow_run_id: Some(mlflow_id.clone()),
                        action: Action::Deleted {
                            mlflow_run_id: mlflow_id.clone(),
                        },
                        conflicts: Vec::new(),
                        requests: 0,
                        error: Some(MlflowError::RunDeleted { run_id: mlflow_id }),
                        outputs: OutputsSent::default(),
                        skipped: Vec::new(),
                    },
                )),
                DeletedRuns::Recreate => {
                    ledger.remove(&id);
                    out.recreated.insert(id, mlflow_id);
                }
                DeletedRuns::Forget => {
                    if let Some(p) = ledger.get(&id) {
                        store.record_mlflow_push(&MlflowPush {
                            pushed_hash: LEFT_DELETED.into(),
                            fingerprint: None,
                            pushed_at: rfc3339(now()),
                            ..p.clone()
                        })?;
                    }
                    out.decided.push((id.clone(), left(&id, &mlflow_id)));
                }
            }
        }
        Ok(out)
    }
}

/// The lock that serialises pushes to one server and experiment: an `flock` on a file in
/// `<database>.mlflow-locks/`, named by a hash of the two. The kernel drops it when its
/// holder exits, however it exits, so a crashed push never holds it.
struct PushLock {
    _file: std::fs::File,
}

impl PushLock {
    /// Takes the lock, waiting for another push that holds it (`Event::Waiting` says so) until
    /// `deadline`, if any. `None` for an in-memory store (nothing to share it with).
    fn take(
        store: &Store,
        uri: &str,
        experiment: &str,
        deadline: Option<Instant>,
        events: &mut dyn FnMut(Event),
    ) -> Result<Option<PushLock>, PushError> {
        use std::io::Write as _;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        use std::os::unix::io::AsRawFd;
        let db = store.path();
        if db == Path::new(":memory:") {
            return Ok(None);
        }
        let name = db
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "repro.db".into());
        let dir: PathBuf = db.with_file_name(format!("{name}.mlflow-locks"));
        let key = plan::sha256_hex(format!("{uri}\n{experiment}").as_bytes());
        let path = dir.join(format!("{}.lock", &key[..16]));
        let fail = |detail: String| PushError::Lock {
            path: path.display().to_string(),
            detail,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| fail(e.to_string()))?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| fail(e.to_string()))?;
        let fd = file.as_raw_fd();
        // SAFETY: flock(2) on a descriptor this function owns.
        let try_lock = || unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } == 0;
        let busy = || {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EWOULDBLOCK) | Some(libc::EINTR) => Ok(()),
                _ => Err(e),
            }
        };
        if !try_lock() {
            busy().map_err(|e| fail(e.to_string()))?;
            events(Event::Waiting { lock: &path });
            let started = Instant::now();
            loop {
                if try_lock() {
                    break;
                }
                busy().map_err(|e| fail(e.to_string()))?;
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(fail(format!(
                        "another push to {uri}, experiment '{experiment}', still held it after {} s",
                        started.elapsed().as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // Who holds it, for whoever looks at the file.
        let _ = file
            .set_len(0)
            .and_then(|_| writeln!(file, "pid {}\n{uri}\n{experiment}", std::process::id()));
        Ok(Some(PushLock { _file: file }))
    }
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
        let wanted: HashSet<&str> = ids.iter().copied().collect();
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

#[cfg(test)]
mod tests {
    use super::super::RunToPush;
    use super::*;
    use crate::mlflow::Settings;
    use crate::record::Run;

    /// The cheap path decides alone: a ledger row whose fingerprint matches is unchanged even
    /// when its full hash is stale (so the run was not loaded and the full hash not computed);
    /// a row without fingerprint goes through the full comparison, which fills it in. Every kind
    /// of change made through the store (run columns, tags, notes, params, outputs, env,
    /// datasets, attestations, metric points) moves the change stamp, so a run read as its
    /// `runs` row only is never found unchanged by mistake. The server only answers the one
    /// listing of deleted runs a push makes (with none): any other request would fail the run.
    /// An HTTP server on 127.0.0.1 that answers `runs/search` over deleted runs with none, and
    /// any other request with HTTP 500.
    fn trash_only_server() -> String {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let mut r = BufReader::new(conn);
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                let _ = r.read_exact(&mut body);
                let (status, text) = if String::from_utf8_lossy(&body).contains("DELETED_ONLY") {
                    ("200 OK", "{}")
                } else {
                    (
                        "500 Internal Server Error",
                        "{\"message\":\"not expected\"}",
                    )
                };
                let _ = write!(
                    r.get_mut(),
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        uri
    }

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
        let settings = Settings::from_env(Some(&trash_only_server()), &|_| None).unwrap();
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
                deleted: super::super::DeletedRuns::Report,
                outputs: super::super::OutputsPolicy::default(),
                dataset_context: String::new(),
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
            let sent = plan::desired(
                &full,
                &m,
                None,
                att.as_ref().map(|(n, b)| (n.as_str(), b.as_slice())),
            )
            .with_metric_summary(&full, &store.metric_summaries(&id).unwrap());
            let (files, skipped) = outputs::plan(
                &Objects::beside(store.path()),
                &full,
                &super::super::OutputsPolicy::default(),
            );
            let sent = sent.with_outputs(files, skipped);
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
            .finish(
                &run,
                &Finish {
                    status: Status::Failed,
                    exit_code: Some(1),
                    signal: None,
                    ended_at: run.started_at.clone(),
                    duration_ms: 0,
                    outputs: vec![Output::hashed("model.bin".into(), None, None)],
                    output_files: vec![],
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
                sha256: plan::sha256_hex(b"{}"),
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
}
