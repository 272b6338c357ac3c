//! The JSON API (`/api/…`): `ls`'s flags as query parameters read into the one `ls` query
//! ([`crate::ops::query`]), answered in `ls --json`'s shape plus the paging facts; a run as
//! `show --json`; the re-run script as `repro script` renders it; metric charts as SVG.

use serde_json::{json, Value};

use crate::error::Hinted;
use crate::ops::ls;
use crate::ops::metric_keys::MetricKeyError;
use crate::ops::plot::{PlotRequest, XAxis};
use crate::ops::query::{Filters, LsRequest};
use crate::output::formats::LsColumn;
use crate::record::json::run_json_with_metrics;
use crate::record::SCHEMA_VERSION;
use crate::script::ScriptOptions;
use crate::store::metrics::MetricSort;
use crate::store::{Store, StoreError};

/// The page size when `limit` is not given.
pub const DEFAULT_LIMIT: u64 = 50;
/// The largest page.
pub const MAX_LIMIT: u64 = 10_000;
/// The size of a chart panel.
const CHART_SIZE: (u32, u32) = (720, 360);

/// A request the API cannot answer: the HTTP status, what is wrong, and the fix.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub hint: Option<String>,
}

impl ApiError {
    /// A malformed request (400).
    pub fn bad(message: impl Into<String>, hint: Option<String>) -> ApiError {
        ApiError {
            status: 400,
            message: message.into(),
            hint,
        }
    }

    /// From a library error: a usage error is the request's fault (400), an unknown run 404.
    pub fn from_hinted(e: impl Hinted) -> ApiError {
        let status = if e.is_usage() { 400 } else { 500 };
        ApiError {
            status,
            message: e.to_string(),
            hint: e.hint(),
        }
    }

    /// `{"error": …, "hint": …}`.
    pub fn to_json(&self) -> Value {
        json!({"schema_version": SCHEMA_VERSION, "error": self.message, "hint": self.hint})
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let status = match e {
            StoreError::UnknownRun(_) | StoreError::AmbiguousRun { .. } => 404,
            StoreError::BadId(_) => 400,
            _ => 500,
        };
        ApiError {
            status,
            ..ApiError::from_hinted(e)
        }
    }
}

/// A query string's pairs, decoded.
pub type Params = Vec<(String, String)>;

/// The query string after `?` decoded into pairs (`+` is a space, `%XX` a byte).
pub fn parse_params(query: &str) -> Params {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn flag(v: &str, name: &str) -> Result<bool, ApiError> {
    match v {
        "" | "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => Err(ApiError::bad(
            format!("{name}={v} is not a boolean"),
            Some(format!("write {name}=1 or {name}=0")),
        )),
    }
}

fn number(v: &str, name: &str) -> Result<u64, ApiError> {
    v.trim().parse().map_err(|_| {
        ApiError::bad(
            format!("{name}={v} is not a whole number"),
            Some(format!("e.g. {name}=50")),
        )
    })
}

/// The parameters of `/api/runs`: `ls`'s flags (`-` or `_` between words), then the page.
#[derive(Debug, Clone, Default)]
pub struct RunsRequest {
    pub ls: LsRequest,
    pub offset: u64,
    pub columns: Option<String>,
}

/// The parameter names `/api/runs` takes, for the hint of an unknown one.
const RUNS_PARAMS: &str = "status, name, image, digest, code, branch, dataset, host, tag, param, since, until, where, job, rerun-of, no-reruns, sweep, promoted, sort, reverse, columns, limit, offset";

/// Reads `/api/runs`'s parameters (repeatable ones: tag, param, where, sort).
pub fn runs_request(params: &Params) -> Result<RunsRequest, ApiError> {
    let mut f = Filters::default();
    let mut r = RunsRequest::default();
    let mut limit = DEFAULT_LIMIT;
    let mut sort = Vec::new();
    for (k, v) in params {
        let some = || Some(v.clone());
        match k.replace('_', "-").as_str() {
            "image" => f.image = some(),
            "digest" => f.digest = some(),
            "code" => f.code = some(),
            "branch" => f.branch = some(),
            "dataset" => f.dataset = some(),
            "status" => f.status = some(),
            "since" => f.since = some(),
            "until" => f.until = some(),
            "param" => f.params.push(v.clone()),
            "tag" => f.tags.push(v.clone()),
            "name" => f.name = some(),
            "host" => f.host = some(),
            "rerun-of" => f.rerun_of = some(),
            "no-reruns" => f.no_reruns = flag(v, k)?,
            "job" => f.job = some(),
            "where" => f.wheres.push(v.clone()),
            "sweep" => r.ls.sweep = some(),
            "promoted" => r.ls.promoted = some(),
            "sort" => sort.push(v.clone()),
            "reverse" => r.ls.reverse = flag(v, k)?,
            "columns" => r.columns = some(),
            "limit" => limit = number(v, k)?,
            "offset" => r.offset = number(v, k)?,
            // The access token, checked before routing.
            "token" => {}
            _ => {
                return Err(ApiError::bad(
                    format!("unknown parameter '{k}'"),
                    Some(format!("/api/runs takes {RUNS_PARAMS}")),
                ))
            }
        }
    }
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad(
            format!("limit={limit} is out of range"),
            Some(format!("give 1 to {MAX_LIMIT}, and page with offset")),
        ));
    }
    // Empty filter values from a form are not filters.
    for o in [
        &mut f.image,
        &mut f.digest,
        &mut f.code,
        &mut f.branch,
        &mut f.dataset,
        &mut f.status,
        &mut f.since,
        &mut f.until,
        &mut f.name,
        &mut f.host,
        &mut f.rerun_of,
        &mut f.job,
        &mut r.ls.sweep,
        &mut r.ls.promoted,
        &mut r.columns,
    ] {
        if o.as_deref().is_some_and(|s| s.trim().is_empty()) {
            *o = None;
        }
    }
    f.params.retain(|s| !s.trim().is_empty());
    f.tags.retain(|s| !s.trim().is_empty());
    f.wheres.retain(|s| !s.trim().is_empty());
    sort.retain(|s| !s.trim().is_empty());
    if sort.is_empty() {
        sort.push("started".into());
    }
    r.ls.filters = f;
    r.ls.sort = sort;
    r.ls.limit = Some(limit);
    Ok(r)
}

/// `/api/runs`: `{"schema_version", "runs": [the objects of ls --json], "total", "total_over",
/// "more", "offset", "limit"}`.
pub fn runs(store: &Store, req: &RunsRequest) -> Result<Value, ApiError> {
    let q = req.ls.to_query(store).map_err(ApiError::from_hinted)?;
    let columns = match &req.columns {
        None => Vec::new(),
        Some(list) => LsColumn::parse_list(list).map_err(|m| {
            ApiError::bad(
                m,
                Some("columns: ls's names, sweep, metric:KEY[:STAT] or param:KEY".into()),
            )
        })?,
    };
    let metric_columns: Vec<&MetricSort> = columns
        .iter()
        .filter_map(|c| match c {
            LsColumn::Metric(m) => Some(m),
            _ => None,
        })
        .collect();
    match ls::check_keys(store, &q, &metric_columns) {
        Ok(()) => {}
        Err(MetricKeyError::Store(e)) => return Err(e.into()),
        Err(e) => return Err(ApiError::bad(e.to_string(), e.hint())),
    }
    let page = ls::page(store, &q, req.offset)?;
    let mut list = Vec::with_capacity(page.runs.len());
    for r in &page.runs {
        let summaries = ls::summaries(store, r)?;
        let mut o = run_json_with_metrics(r, &summaries);
        // As `ls --json` and `show --json` have it (docs/environment.md).
        if let Some(e) = store.environment_of(&r.id)? {
            o["environment"] = serde_json::to_value(&e).expect("environment serialises");
        }
        list.push(o);
    }
    if columns.contains(&LsColumn::Sweep) {
        let sweeps = ls::sweeps(store, &page.runs)?;
        for (r, j) in page.runs.iter().zip(list.iter_mut()) {
            if let Some(s) = sweeps.get(&r.id) {
                j["sweep"] = Value::from(s.clone());
            }
        }
    }
    Ok(json!({
        "schema_version": SCHEMA_VERSION,
        "runs": list,
        "total": page.total,
        "total_over": page.total_over,
        "more": page.more,
        "offset": req.offset,
        "limit": q.filter.limit,
    }))
}

/// `/api/runs/ID`: `show --json` (`?history=1`: `show --json --history`).
pub fn run(store: &Store, prefix: &str, params: &Params) -> Result<Value, ApiError> {
    let mut history = false;
    for (k, v) in params {
        match k.as_str() {
            "history" => history = flag(v, k)?,
            "token" => {}
            _ => {
                return Err(ApiError::bad(
                    format!("unknown parameter '{k}'"),
                    Some("/api/runs/ID takes history".into()),
                ))
            }
        }
    }
    let id = store.resolve_id(prefix)?;
    Ok(crate::ops::show::run_document(store, &id, history)?)
}

/// `/api/runs/ID/script`: the bash re-run script, as `repro script ID` renders it.
pub fn script(store: &Store, prefix: &str, opts: &ScriptOptions) -> Result<String, ApiError> {
    let id = store.resolve_id(prefix)?;
    let run = store.get_run(&id)?;
    let mut opts = opts.clone();
    opts.fallback = match &run.image {
        Some(img) => crate::ops::archive::recorded_fallback(store, img)?,
        None => None,
    };
    crate::script::render(&run, &opts).map_err(ApiError::from_hinted)
}

/// `/api/chart.svg?run=ID&run=ID&metric=KEY[&x=time]`: the metric histories of the runs, one
/// panel per metric, drawn by `repro plot`'s code.
pub fn chart(store: &Store, params: &Params) -> Result<String, ApiError> {
    let mut req = PlotRequest {
        runs: Vec::new(),
        metrics: Vec::new(),
        x: XAxis::Step,
        smooth: None,
    };
    for (k, v) in params {
        match k.as_str() {
            "run" => req.runs.push(v.clone()),
            "metric" => req.metrics.push(v.clone()),
            "x" if v == "time" => req.x = XAxis::Time,
            "x" if v == "step" => req.x = XAxis::Step,
            "token" => {}
            _ => {
                return Err(ApiError::bad(
                    format!("unknown parameter '{k}={v}'"),
                    Some("/api/chart.svg takes run, metric and x (step or time)".into()),
                ))
            }
        }
    }
    if req.runs.is_empty() || req.metrics.is_empty() || req.runs.len() > 50 {
        return Err(ApiError::bad(
            "a chart needs 1 to 50 runs and a metric",
            Some("/api/chart.svg?run=ID&metric=KEY".into()),
        ));
    }
    let charts = crate::ops::plot::charts(store, &req).map_err(|e| match e {
        crate::ops::plot::PlotError::Store(s) => ApiError::from(s),
        e => ApiError {
            status: 404,
            ..ApiError::from_hinted(e)
        },
    })?;
    crate::ops::plot::render_svg(&charts, CHART_SIZE).map_err(ApiError::from_hinted)
}

/// `/api/metric-keys`: the metric keys recorded (up to 200, sorted), for sorting and columns.
pub fn metric_keys(path: &std::path::Path) -> Result<Value, ApiError> {
    let keys = Store::complete_metric_keys(path).map_err(|e| ApiError {
        status: 500,
        message: format!("cannot read the metric keys: {e}"),
        hint: None,
    })?;
    Ok(json!({"schema_version": SCHEMA_VERSION, "keys": keys}))
}

/// `/api/images`: per repository, the tags the runs named, the digests each resolved to (first
/// used first; `moved` when more than one), the runs of each and how many are archived.
pub fn images(store: &Store) -> Result<Value, ApiError> {
    let repos = crate::ops::images::lineage(store)?;
    let list: Vec<Value> = repos
        .iter()
        .map(|r| {
            let tags: Vec<Value> = r
                .tags
                .iter()
                .map(|(tag, uses)| {
                    let digests: Vec<Value> = uses
                        .iter()
                        .map(|u| {
                            json!({
                                "reference": u.reference,
                                "digest": u.digest,
                                "first": u.first,
                                "last": u.last,
                                "runs": u.runs,
                                "archived": u.archived,
                            })
                        })
                        .collect();
                    json!({
                        "tag": tag,
                        "moved": crate::ops::images::Repository::moved(uses),
                        "digests": digests,
                    })
                })
                .collect();
            json!({"name": r.name, "tags": tags})
        })
        .collect();
    Ok(json!({"schema_version": SCHEMA_VERSION, "repositories": list}))
}

/// `/api/audit?repository=NAME`: `repro audit --json` over the runs that used that repository
/// (as the Images page names it): the registry is asked, now, whether each digest is still there,
/// where the tag points and which tags hold the digest; archived copies are checked by size.
/// Nothing is stored. Asked only when the page's button is pressed.
pub fn audit(store: &Store, params: &Params, cfg: &crate::ui::UiConfig) -> Result<Value, ApiError> {
    let mut repository = None;
    for (k, v) in params {
        match k.as_str() {
            "repository" => repository = Some(v.clone()),
            "token" => {}
            _ => {
                return Err(ApiError::bad(
                    format!("unknown parameter '{k}'"),
                    Some("/api/audit takes repository (a name from /api/images)".into()),
                ))
            }
        }
    }
    let Some(repository) = repository.filter(|r| !r.trim().is_empty()) else {
        return Err(ApiError::bad(
            "which repository? /api/audit needs repository=NAME",
            Some("the names are those of /api/images".into()),
        ));
    };
    let mut req = LsRequest::default();
    req.filters.image = Some(repository.clone());
    req.sort = vec!["started".into()];
    let mut q = req.to_query(store).map_err(ApiError::from_hinted)?;
    q.filter.limit = None;
    // `image` matches a substring; keep the runs of exactly this repository.
    let runs: Vec<_> = store
        .query(&q)?
        .into_iter()
        .filter(|r| {
            r.image
                .as_ref()
                .is_some_and(|i| crate::ops::images::repository_name(&i.reference) == repository)
        })
        .collect();
    if runs.is_empty() {
        return Err(ApiError {
            status: 404,
            message: format!("no run used the repository {repository}"),
            hint: Some("the names are those of /api/images".into()),
        });
    }
    let client = crate::capture::image::registry::RegistryClient::new(cfg.script.registry.clone())
        .map_err(ApiError::from_hinted)?;
    let req = crate::ops::audit::AuditRequest::of(store, runs)?;
    let report = crate::ops::audit::audit_in(&std::sync::Arc::new(client), store, &req);
    serde_json::from_str(&crate::output::audit::json(&report)).map_err(|e| ApiError {
        status: 500,
        message: format!("audit JSON: {e}"),
        hint: None,
    })
}

/// `/api/datasets`: per dataset name, the versions the runs read (first read first), each with
/// its digest, size, first and last use and how many runs read it.
pub fn datasets(store: &Store) -> Result<Value, ApiError> {
    let mut names: Vec<(String, Vec<Value>)> = Vec::new();
    for u in store.dataset_uses()? {
        // The `ls --dataset NAME@V` filter that lists these runs: the digest when hashed (it
        // matches the version or the digest), else the version, else the name alone.
        let filter = match (&u.digest, &u.version) {
            (Some(d), _) => format!("{}@{d}", u.name),
            (None, Some(v)) => format!("{}@{v}", u.name),
            (None, None) => u.name.clone(),
        };
        let v = json!({
            "kind": u.kind,
            "uri": u.uri,
            "version": u.version,
            "digest": u.digest,
            "files": u.files,
            "bytes": u.bytes,
            "first": u.first,
            "last": u.last,
            "runs": u.runs,
            "filter": filter,
        });
        match names.last_mut() {
            Some((n, list)) if *n == u.name => list.push(v),
            _ => names.push((u.name, vec![v])),
        }
    }
    let list: Vec<Value> = names
        .into_iter()
        .map(|(name, versions)| json!({"name": name, "versions": versions}))
        .collect();
    Ok(json!({"schema_version": SCHEMA_VERSION, "datasets": list}))
}

/// `/api/runs/ID/patch`: the uncommitted change the run was recorded with (`git diff` of the
/// working tree against its commit), as bytes; 404 when the tree was clean.
pub fn patch(store: &Store, prefix: &str) -> Result<Vec<u8>, ApiError> {
    let id = store.resolve_id(prefix)?;
    let run = store.get_run(&id)?;
    match run.code.and_then(|c| c.patch) {
        Some(p) => Ok(p.0),
        None => Err(ApiError {
            status: 404,
            message: format!(
                "run {id} has no patch: its working tree was clean (or not a git repository)"
            ),
            hint: Some("show --json's code.dirty says whether it was".into()),
        }),
    }
}

/// `/api/runs/ID/provenance`: what was produced about the run after it ran — the attestation
/// documents `repro attest` wrote and the archived copies of its image.
pub fn provenance(store: &Store, prefix: &str) -> Result<Value, ApiError> {
    let id = store.resolve_id(prefix)?;
    let attestations: Vec<Value> = store
        .attestations(&id)?
        .into_iter()
        .map(|a| {
            json!({"sha256": a.sha256, "keyid": a.keyid, "path": a.path, "created_at": a.created_at})
        })
        .collect();
    let archives: Vec<Value> = store
        .archives(&id)?
        .into_iter()
        .map(|a| {
            json!({"kind": a.kind.as_str(), "location": a.location, "digest": a.digest, "archived_at": a.archived_at})
        })
        .collect();
    Ok(
        json!({"schema_version": SCHEMA_VERSION, "attestations": attestations, "archives": archives}),
    )
}

/// A kept output to send: a reader of its bytes (the object file, or a tar stream of a
/// directory's files), its exact size and the name to save it under.
pub struct Download {
    pub reader: Box<dyn std::io::Read + Send>,
    pub bytes: u64,
    pub name: String,
    /// A directory packed as a tar (else the file itself).
    pub reader_is_tar: bool,
}

/// `/api/runs/ID/outputs/N`: the kept copy of the run's N-th output (0-based): a file as it
/// is, a directory as a tar of its files (`NAME.tar`, unpacking into `NAME/`). Every file is
/// rehashed first: a damaged or missing copy is refused (409), as `repro get` refuses it.
pub fn output(store: &Store, prefix: &str, pos: &str) -> Result<Download, ApiError> {
    let id = store.resolve_id(prefix)?;
    let run = store.get_run(&id)?;
    let not_found = |m: String, hint: &str| ApiError {
        status: 404,
        message: m,
        hint: Some(hint.into()),
    };
    let n: usize = pos
        .parse()
        .map_err(|_| ApiError::bad(format!("'{pos}' is not an output number"), None))?;
    let Some(out) = run.outputs.get(n) else {
        return Err(not_found(
            format!("run {id} has no output {n}"),
            "outputs are numbered from 0 in show --json's order",
        ));
    };
    let files: Vec<_> = store
        .output_files(&id)?
        .into_iter()
        .filter(|f| f.pos as usize == n)
        .collect();
    if out.kept != Some(true) || files.is_empty() {
        return Err(not_found(
            format!(
                "no kept copy of output {n} ({}): {}",
                out.path,
                out.not_kept.as_deref().unwrap_or("it was not kept")
            ),
            "keep_outputs (docs/outputs.md) keeps the outputs of the next runs",
        ));
    }
    let objects = crate::store::objects::Objects::beside(store.path());
    let damaged = |m: String| ApiError {
        status: 409,
        message: m,
        hint: Some("`repro verify --store` lists damaged and missing copies".into()),
    };
    let shown = |f: &crate::record::OutputFile| {
        if f.rel.is_empty() {
            out.path.clone()
        } else {
            format!("{}/{}", out.path, String::from_utf8_lossy(&f.rel))
        }
    };
    let mut sources = Vec::with_capacity(files.len());
    for f in &files {
        match objects.verify(&f.sha256) {
            Ok(Some(true)) => {}
            Ok(Some(false)) => {
                return Err(damaged(format!("the kept copy of {} is damaged", shown(f))))
            }
            Ok(None) => return Err(damaged(format!("the kept copy of {} is missing", shown(f)))),
            Err(e) => return Err(damaged(e.to_string())),
        }
        sources.push(
            objects
                .path_of(&f.sha256)
                .map_err(|e| damaged(e.to_string()))?,
        );
    }
    let name = std::path::Path::new(&out.path)
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    if files.len() == 1 && files[0].rel.is_empty() {
        let path = &sources[0];
        let f = std::fs::File::open(path)
            .map_err(|e| damaged(format!("cannot read {}: {e}", path.display())))?;
        return Ok(Download {
            reader: Box::new(f),
            bytes: files[0].bytes,
            name,
            reader_is_tar: false,
        });
    }
    // A directory: `NAME/REL` for each file, dated when the run ended.
    let entries = files
        .iter()
        .zip(sources)
        .map(|(f, source)| {
            let mut entry = name.as_bytes().to_vec();
            entry.push(b'/');
            entry.extend_from_slice(&f.rel);
            crate::ui::tarball::Entry {
                name: entry,
                source,
                bytes: f.bytes,
            }
        })
        .collect();
    let mtime = run
        .ended_at
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp().max(0) as u64)
        .unwrap_or(0);
    let tar = crate::ui::tarball::TarStream::new(entries, mtime)
        .map_err(|e| damaged(format!("output {n} of run {id}: {e}")))?;
    Ok(Download {
        bytes: tar.size(),
        reader: Box::new(tar),
        name: format!("{name}.tar"),
        reader_is_tar: true,
    })
}
