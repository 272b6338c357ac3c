//! A small client for MLflow's REST API 2.0 (experiments, runs, log-batch, log-inputs, search,
//! proxied artifacts), configured the way MLflow users already configure their own client:
//! `MLFLOW_TRACKING_URI`, `MLFLOW_TRACKING_USERNAME`/`PASSWORD`, `MLFLOW_TRACKING_TOKEN`,
//! `MLFLOW_TRACKING_INSECURE_TLS`, `MLFLOW_TRACKING_SERVER_CERT_PATH`.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::Hinted;

/// MLflow's per-request limits for `runs/log-batch`.
pub const MAX_PARAMS_PER_BATCH: usize = 100;
/// Tags per `runs/log-batch` request.
pub const MAX_TAGS_PER_BATCH: usize = 100;
/// Params, tags and metrics together per `runs/log-batch` request.
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;
/// Longest param value the server accepts (characters).
pub const MAX_PARAM_VALUE: usize = 6000;
/// Longest tag value the server accepts (characters).
pub const MAX_TAG_VALUE: usize = 8000;
/// Longest param or tag key.
pub const MAX_KEY: usize = 250;
/// Longest dataset digest `runs/log-inputs` accepts.
pub const MAX_DATASET_DIGEST: usize = 36;

/// Failures talking to a tracking server; each names the server and what to do.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    #[error("no MLflow tracking server is set")]
    NoUri,
    #[error("'{uri}' is not an http(s) MLflow tracking server: repro pushes over MLflow's REST API only")]
    UnsupportedUri { uri: String },
    #[error("cannot reach the MLflow tracking server at {uri}: {detail}")]
    Unreachable { uri: String, detail: String },
    #[error("TLS failed talking to the MLflow tracking server at {uri}: {detail}")]
    Tls { uri: String, detail: String },
    #[error("cannot read the CA certificate {path}: {problem}")]
    CertFile { path: String, problem: String },
    #[error(
        "the MLflow tracking server at {uri} refused the credentials (HTTP {status}) on {endpoint}"
    )]
    Unauthorized {
        uri: String,
        endpoint: String,
        status: u16,
        had_credentials: bool,
    },
    #[error("the MLflow tracking server rejected {endpoint} (HTTP {status} {code}): {message}")]
    Rejected {
        endpoint: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("the MLflow tracking server failed on {endpoint} (HTTP {status}): {message}")]
    Server {
        endpoint: String,
        status: u16,
        message: String,
    },
    #[error("unexpected answer from the MLflow tracking server on {endpoint}: {problem}")]
    BadAnswer { endpoint: String, problem: String },
    #[error("refusing to send MLflow credentials ({what}) over plain HTTP to {uri}, which is not a loopback address")]
    InsecureCredentials { uri: String, what: &'static str },
    #[error("the MLflow run {run_id} was deleted on the server (it is in the experiment's trash)")]
    RunDeleted { run_id: String },
    #[error("gave up on the MLflow tracking server at {uri} after {seconds} s ({what})")]
    Deadline {
        uri: String,
        seconds: u64,
        what: String,
    },
}

impl Hinted for MlflowError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            MlflowError::NoUri => "set MLFLOW_TRACKING_URI=http://HOST:5000 or pass --tracking-uri".into(),
            MlflowError::UnsupportedUri { .. } => "start `mlflow server` over that store and point MLFLOW_TRACKING_URI (or --tracking-uri) at its http(s):// address".into(),
            MlflowError::Unreachable { .. } | MlflowError::Server { .. } => "nothing was changed locally; start or fix the server and run `repro mlflow push` again".into(),
            MlflowError::Tls { .. } => "set MLFLOW_TRACKING_SERVER_CERT_PATH to the server's CA bundle, or MLFLOW_TRACKING_INSECURE_TLS=true to skip verification".into(),
            MlflowError::CertFile { .. } => "point MLFLOW_TRACKING_SERVER_CERT_PATH at a readable PEM file".into(),
            MlflowError::Unauthorized { had_credentials, .. } => if *had_credentials {
                "check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (basic auth) or MLFLOW_TRACKING_TOKEN (bearer token), and the user's permission on the experiment".into()
            } else {
                "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (basic auth) or MLFLOW_TRACKING_TOKEN (bearer token)".into()
            },
            MlflowError::Rejected { .. } => "nothing was changed locally; fix what the server names and push again".into(),
            MlflowError::BadAnswer { .. } => "check that the URI points at an MLflow tracking server (`mlflow server`)".into(),
            MlflowError::InsecureCredentials { .. } => "use the server's https:// address, or set MLFLOW_TRACKING_INSECURE_HTTP=true to send them in clear text anyway".into(),
            MlflowError::RunDeleted { .. } => "push with --recreate-deleted to push the run again as a new MLflow run, or with --forget-deleted to leave it out of MLflow (or restore the run in MLflow's UI)".into(),
            MlflowError::Deadline { .. } => "the server did not answer in time; check it and run `repro mlflow push` again".into(),
        })
    }
}

type Result<T> = std::result::Result<T, MlflowError>;

/// How requests authenticate.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Basic { user: String, password: String },
    Token(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Basic { user, .. } => write!(f, "Basic({user}, ***)"),
            Auth::Token(_) => f.write_str("Token(***)"),
        }
    }
}

/// Where and how to reach the tracking server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `http(s)://host[:port][/prefix]`, without a trailing slash.
    pub uri: String,
    pub auth: Auth,
    /// `MLFLOW_TRACKING_INSECURE_TLS=true`: no certificate verification.
    pub insecure_tls: bool,
    /// `MLFLOW_TRACKING_SERVER_CERT_PATH`: an extra CA bundle.
    pub cert_path: Option<PathBuf>,
    /// Longest wait for one request (`MLFLOW_HTTP_REQUEST_TIMEOUT`, seconds; default 120).
    pub request_timeout: Duration,
    /// When set, no request starts or goes on past it: it bounds a whole push.
    pub deadline: Option<Instant>,
    /// Files of at least this many bytes go up in parts when the server offers multipart uploads
    /// (`MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE`, as MLflow's client; default 500 MiB).
    pub multipart_min_size: u64,
    /// Bytes per part (`MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE`; default 10 MiB).
    pub multipart_chunk_size: u64,
}

/// Default of `MLFLOW_HTTP_REQUEST_TIMEOUT`, as MLflow's own client.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Default of `MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE`, as MLflow's own client.
pub const DEFAULT_MULTIPART_MIN_SIZE: u64 = 500 << 20;

/// Default of `MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE`, as MLflow's own client.
pub const DEFAULT_MULTIPART_CHUNK_SIZE: u64 = 10 << 20;

/// Most parts of one multipart upload (S3's limit): a larger file gets larger parts.
pub const MAX_PARTS: u64 = 10_000;

/// A tracking URI split into the address repro shows and stores (no userinfo) and the
/// credentials written in it (`http://user:pass@host`), percent-decoded.
fn split_userinfo(uri: &str) -> (String, Option<(String, String)>) {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return (uri.to_string(), None);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    match authority.rsplit_once('@') {
        None => (uri.to_string(), None),
        Some((userinfo, host)) => {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            (
                format!("{scheme}://{host}{path}"),
                Some((percent_decode(user), percent_decode(password))),
            )
        }
    }
}

/// `uri` without any `user:password@` part: what may be printed or stored.
pub fn redact_uri(uri: &str) -> String {
    split_userinfo(uri).0
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the host of an http(s) URI is a loopback address (`localhost`, 127.0.0.0/8, `[::1]`).
fn is_loopback_uri(uri: &str) -> bool {
    let rest = uri.split_once("://").map(|(_, r)| r).unwrap_or(uri);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(authority),
    };
    let host = host.to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Normalises a tracking URI (no trailing slash) and refuses anything but http(s).
pub fn normalize_uri(uri: &str) -> Result<String> {
    let u = uri.trim();
    if u.is_empty() {
        return Err(MlflowError::NoUri);
    }
    let lower = u.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(MlflowError::UnsupportedUri { uri: redact_uri(u) });
    }
    Ok(u.trim_end_matches('/').to_string())
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

impl Settings {
    /// Reads the settings from `env` (`std::env::var` in the CLI); `uri` overrides `MLFLOW_TRACKING_URI`.
    ///
    /// Credentials written in the URI (`http://user:pass@host`) are taken out of it: `uri` is
    /// what may be printed and stored, the credentials only go into the `Authorization` header
    /// (the `MLFLOW_TRACKING_*` variables win over them). Credentials over plain HTTP to a host
    /// that is not loopback are refused here, before any connection, unless
    /// `MLFLOW_TRACKING_INSECURE_HTTP=true`.
    pub fn from_env(uri: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings> {
        let get = |k: &str| env(k).filter(|v| !v.is_empty());
        let uri = match uri {
            Some(u) => u.to_string(),
            None => get("MLFLOW_TRACKING_URI").ok_or(MlflowError::NoUri)?,
        };
        let (uri, from_url) = split_userinfo(uri.trim());
        let auth = match (
            get("MLFLOW_TRACKING_TOKEN"),
            get("MLFLOW_TRACKING_USERNAME"),
            get("MLFLOW_TRACKING_PASSWORD"),
        ) {
            (Some(t), _, _) => Auth::Token(t),
            (None, Some(user), password) => Auth::Basic {
                user,
                password: password.unwrap_or_default(),
            },
            _ => match from_url {
                Some((user, password)) => Auth::Basic { user, password },
                None => Auth::None,
            },
        };
        let uri = normalize_uri(&uri)?;
        let plain_http = uri.to_ascii_lowercase().starts_with("http://");
        let insecure_http = get("MLFLOW_TRACKING_INSECURE_HTTP").is_some_and(|v| truthy(&v));
        if plain_http && !insecure_http && !is_loopback_uri(&uri) {
            let what = match &auth {
                Auth::None => None,
                Auth::Basic { .. } => Some("basic auth"),
                Auth::Token(_) => Some("MLFLOW_TRACKING_TOKEN"),
            };
            if let Some(what) = what {
                return Err(MlflowError::InsecureCredentials { uri, what });
            }
        }
        let request_timeout = get("MLFLOW_HTTP_REQUEST_TIMEOUT")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        let bytes = |k: &str| {
            get(k)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|n| *n > 0)
        };
        Ok(Settings {
            uri,
            auth,
            insecure_tls: get("MLFLOW_TRACKING_INSECURE_TLS").is_some_and(|v| truthy(&v)),
            cert_path: get("MLFLOW_TRACKING_SERVER_CERT_PATH").map(PathBuf::from),
            request_timeout,
            deadline: None,
            multipart_min_size: bytes("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE")
                .unwrap_or(DEFAULT_MULTIPART_MIN_SIZE),
            multipart_chunk_size: bytes("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE")
                .unwrap_or(DEFAULT_MULTIPART_CHUNK_SIZE),
        })
    }
}

/// One key/value (params and tags).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// One metric point as MLflow stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    pub key: String,
    /// NaN and ±inf go as the strings protobuf JSON uses ("NaN", "Infinity", "-Infinity").
    #[serde(serialize_with = "proto_double")]
    pub value: f64,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    pub step: i64,
}

fn proto_double<S: serde::Serializer>(v: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(*v)
    } else if v.is_nan() {
        s.serialize_str("NaN")
    } else if *v > 0.0 {
        s.serialize_str("Infinity")
    } else {
        s.serialize_str("-Infinity")
    }
}

/// A dataset logged with `runs/log-inputs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetInput {
    pub name: String,
    /// At most 36 characters.
    pub digest: String,
    pub source_type: String,
    /// JSON text.
    pub source: String,
    /// MLflow's dataset schema (JSON text), shown in the UI's dataset drawer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// MLflow's dataset profile (JSON text), shown in the UI's dataset drawer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The `mlflow.data.context` tag of the input (`training`, `evaluation`…); not a dataset field.
    #[serde(skip)]
    pub context: String,
}

/// (repro run id, MLflow run id) of a run found by its `repro.run_id` tag.
pub type TaggedRun = (String, String);

/// What `runs/get` and `runs/search` return about a run (the parts repro reads).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RemoteRun {
    pub run_id: String,
    pub experiment_id: String,
    pub status: String,
    pub end_time: Option<i64>,
    pub run_name: String,
    pub artifact_uri: String,
    pub params: Vec<KeyValue>,
    pub tags: Vec<KeyValue>,
}

fn remote_run(v: &Value) -> Option<RemoteRun> {
    let info = v.get("info")?;
    let s = |o: &Value, k: &str| o.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let kvs = |k: &str| -> Vec<KeyValue> {
        v.get("data")
            .and_then(|d| d.get(k))
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .unwrap_or_default()
    };
    Some(RemoteRun {
        run_id: s(info, "run_id"),
        experiment_id: s(info, "experiment_id"),
        status: s(info, "status"),
        end_time: info.get("end_time").and_then(Value::as_i64),
        run_name: s(info, "run_name"),
        artifact_uri: s(info, "artifact_uri"),
        params: kvs("params"),
        tags: kvs("tags"),
    })
}

/// A connection to one tracking server; cheap to share between threads.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    /// For request bodies of any size: the request timeout bounds each read and write, not the
    /// whole request (as MLflow's client does), so a large file is not cut off at 120 s.
    upload_agent: ureq::Agent,
    base: String,
    authorization: Option<String>,
    had_credentials: bool,
    request_timeout: Duration,
    deadline: Option<Instant>,
    /// When the client was made (for the deadline's message).
    since: Instant,
    multipart_min_size: u64,
    multipart_chunk_size: u64,
    /// The server answered that it offers no multipart upload: every file goes in one request.
    no_multipart: Arc<AtomicBool>,
}

impl Client {
    /// Builds a client for `settings` (no request is made).
    pub fn new(settings: &Settings) -> Result<Client> {
        let builder = || {
            ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(10))
                .user_agent(concat!("repro/", env!("CARGO_PKG_VERSION")))
        };
        let mut b = builder().timeout(settings.request_timeout);
        let mut u = builder()
            .timeout_read(settings.request_timeout)
            .timeout_write(settings.request_timeout);
        // Multipart parts go to the URLs the server hands out (often another host, over
        // https): the same trust settings apply to them. A CA file that cannot be read only
        // fails a client of an https server.
        let tls = if settings.uri.to_ascii_lowercase().starts_with("https://") {
            let tls = Arc::new(tls_config(settings)?);
            b = b.tls_config(tls.clone());
            Some(tls)
        } else {
            tls_config(settings).ok().map(Arc::new)
        };
        if let Some(tls) = tls {
            u = u.tls_config(tls);
        }
        let authorization = match &settings.auth {
            Auth::None => None,
            Auth::Basic { user, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )),
            Auth::Token(t) => Some(format!("Bearer {t}")),
        };
        Ok(Client {
            agent: b.build(),
            upload_agent: u.build(),
            base: settings.uri.clone(),
            had_credentials: authorization.is_some(),
            authorization,
            request_timeout: settings.request_timeout,
            deadline: settings.deadline,
            since: Instant::now(),
            multipart_min_size: settings.multipart_min_size,
            multipart_chunk_size: settings.multipart_chunk_size.max(1),
            no_multipart: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The server's URI.
    pub fn uri(&self) -> &str {
        &self.base
    }

    /// A request, its timeout cut to what is left before the deadline; past the deadline, the
    /// error that says so (no request is started).
    fn request(&self, method: &str, path: &str, endpoint: &str) -> Result<ureq::Request> {
        let r = self.agent.request(method, &format!("{}{path}", self.base));
        self.authorized(self.bounded(r, endpoint)?)
    }

    fn authorized(&self, r: ureq::Request) -> Result<ureq::Request> {
        Ok(match &self.authorization {
            Some(a) => r.set("Authorization", a),
            None => r,
        })
    }

    /// `r` with its timeout cut to what is left before the deadline; past it, the error.
    fn bounded(&self, mut r: ureq::Request, endpoint: &str) -> Result<ureq::Request> {
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.deadline_passed(endpoint));
            }
            r = r.timeout(left.min(self.request_timeout));
        }
        Ok(r)
    }

    fn deadline_passed(&self, endpoint: &str) -> MlflowError {
        let total = self
            .deadline
            .map(|d| d.saturating_duration_since(self.since))
            .unwrap_or_default();
        MlflowError::Deadline {
            uri: self.base.clone(),
            seconds: total.as_secs_f64().round() as u64,
            what: format!("no answer to {endpoint} in time"),
        }
    }

    fn answer(
        &self,
        endpoint: &str,
        res: std::result::Result<ureq::Response, ureq::Error>,
    ) -> Result<Value> {
        match res {
            Ok(resp) => {
                let text = resp.into_string().map_err(|e| MlflowError::Unreachable {
                    uri: self.base.clone(),
                    detail: format!("reading the answer to {endpoint}: {e}"),
                })?;
                if text.trim().is_empty() {
                    return Ok(json!({}));
                }
                serde_json::from_str(&text).map_err(|e| MlflowError::BadAnswer {
                    endpoint: endpoint.into(),
                    problem: format!("not JSON ({e}): {}", snippet(&text)),
                })
            }
            Err(ureq::Error::Status(status, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let code = body
                    .get("error_code")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                // The server's words reach a terminal: its control characters are shown, not obeyed.
                let message = body
                    .get("message")
                    .and_then(Value::as_str)
                    .map(|m| crate::sanitize::escape(m).into_owned())
                    .unwrap_or_else(|| snippet(&text));
                let code = crate::sanitize::escape(&code).into_owned();
                Err(match status {
                    401 | 403 => MlflowError::Unauthorized {
                        uri: self.base.clone(),
                        endpoint: endpoint.into(),
                        status,
                        had_credentials: self.had_credentials,
                    },
                    400..=499 => MlflowError::Rejected {
                        endpoint: endpoint.into(),
                        status,
                        code,
                        message,
                    },
                    _ => MlflowError::Server {
                        endpoint: endpoint.into(),
                        status,
                        message,
                    },
                })
            }
            Err(ureq::Error::Transport(t)) => {
                if self.deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(self.deadline_passed(endpoint));
                }
                let mut detail = t.to_string();
                let mut src = std::error::Error::source(&t);
                while let Some(s) = src {
                    let more = s.to_string();
                    if !detail.contains(&more) {
                        detail.push_str(": ");
                        detail.push_str(&more);
                    }
                    src = s.source();
                }
                let detail = crate::sanitize::escape(&detail).into_owned();
                let lower = detail.to_ascii_lowercase();
                if lower.contains("certificate")
                    || lower.contains("tls")
                    || lower.contains("handshake")
                {
                    Err(MlflowError::Tls {
                        uri: self.base.clone(),
                        detail,
                    })
                } else {
                    Err(MlflowError::Unreachable {
                        uri: self.base.clone(),
                        detail,
                    })
                }
            }
        }
    }

    fn post(&self, endpoint: &str, body: &Value) -> Result<Value> {
        let path = format!("/api/2.0/mlflow/{endpoint}");
        self.answer(
            endpoint,
            self.request("POST", &path, endpoint)?.send_json(body),
        )
    }

    fn get(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<Value> {
        let mut r = self.request("GET", &format!("/api/2.0/mlflow/{endpoint}"), endpoint)?;
        for (k, v) in query {
            r = r.query(k, v);
        }
        self.answer(endpoint, r.call())
    }

    /// The id of experiment `name`, creating it when missing.
    pub fn experiment_id(&self, name: &str) -> Result<String> {
        let id = |v: &Value, endpoint: &str, ptr: &str| {
            v.pointer(ptr)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| MlflowError::BadAnswer {
                    endpoint: endpoint.into(),
                    problem: format!("no {ptr} in {}", snippet(&v.to_string())),
                })
        };
        let lookup = || self.get("experiments/get-by-name", &[("experiment_name", name)]);
        match lookup() {
            Ok(v) => return id(&v, "experiments/get-by-name", "/experiment/experiment_id"),
            Err(MlflowError::Rejected { code, .. }) if code == "RESOURCE_DOES_NOT_EXIST" => {}
            Err(e) => return Err(e),
        }
        match self.post("experiments/create", &json!({ "name": name })) {
            Ok(v) => id(&v, "experiments/create", "/experiment_id"),
            // Another pusher created it in between.
            Err(MlflowError::Rejected { code, .. }) if code == "RESOURCE_ALREADY_EXISTS" => id(
                &lookup()?,
                "experiments/get-by-name",
                "/experiment/experiment_id",
            ),
            Err(e) => Err(e),
        }
    }

    /// `runs/create`; returns the new run.
    pub fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        user_id: &str,
        start_time: i64,
        tags: &[KeyValue],
    ) -> Result<RemoteRun> {
        let v = self.post(
            "runs/create",
            &json!({
                "experiment_id": experiment_id,
                "run_name": run_name,
                "user_id": user_id,
                "start_time": start_time,
                "tags": tags,
            }),
        )?;
        v.get("run")
            .and_then(remote_run)
            .ok_or_else(|| MlflowError::BadAnswer {
                endpoint: "runs/create".into(),
                problem: format!("no run in {}", snippet(&v.to_string())),
            })
    }

    /// `runs/log-batch`, split to respect the server's per-request limits.
    pub fn log_batch(
        &self,
        run_id: &str,
        params: &[KeyValue],
        tags: &[KeyValue],
        metrics: &[MetricPoint],
    ) -> Result<usize> {
        let mut requests = 0;
        for (p, t, m) in batches(params, tags, metrics) {
            self.post(
                "runs/log-batch",
                &json!({ "run_id": run_id, "params": p, "tags": t, "metrics": m }),
            )?;
            requests += 1;
        }
        Ok(requests)
    }

    /// `runs/delete-tag`.
    pub fn delete_tag(&self, run_id: &str, key: &str) -> Result<()> {
        self.post("runs/delete-tag", &json!({ "run_id": run_id, "key": key }))?;
        Ok(())
    }

    /// `runs/log-inputs` with each dataset's `mlflow.data.context` tag (`input` when unset).
    pub fn log_inputs(&self, run_id: &str, datasets: &[DatasetInput]) -> Result<()> {
        let list: Vec<Value> = datasets
            .iter()
            .map(|d| {
                json!({
                    "tags": [{"key": "mlflow.data.context", "value": if d.context.is_empty() { "input" } else { d.context.as_str() }}],
                    "dataset": d,
                })
            })
            .collect();
        self.post(
            "runs/log-inputs",
            &json!({ "run_id": run_id, "datasets": list }),
        )?;
        Ok(())
    }

    /// `runs/update`: status, end time, name.
    pub fn update_run(
        &self,
        run_id: &str,
        status: &str,
        end_time: Option<i64>,
        run_name: &str,
    ) -> Result<()> {
        let mut body = json!({ "run_id": run_id, "status": status, "run_name": run_name });
        if let Some(t) = end_time {
            body["end_time"] = json!(t);
        }
        self.post("runs/update", &body)?;
        Ok(())
    }

    /// `runs/get`.
    pub fn get_run(&self, run_id: &str) -> Result<RemoteRun> {
        let v = self.get("runs/get", &[("run_id", run_id)])?;
        v.get("run")
            .and_then(remote_run)
            .ok_or_else(|| MlflowError::BadAnswer {
                endpoint: "runs/get".into(),
                problem: format!("no run in {}", snippet(&v.to_string())),
            })
    }

    /// `runs/search` in one experiment for the active run tagged `repro.run_id = ID`.
    pub fn find_by_repro_id(
        &self,
        experiment_id: &str,
        repro_id: &str,
    ) -> Result<Option<RemoteRun>> {
        // Run ids are ULIDs (no quotes to escape), checked anyway.
        if !repro_id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Ok(None);
        }
        let v = self.post(
            "runs/search",
            &json!({
                "experiment_ids": [experiment_id],
                "filter": format!("tags.`repro.run_id` = '{repro_id}'"),
                "run_view_type": "ACTIVE_ONLY",
                "max_results": 2,
            }),
        )?;
        // No match is `{}`.
        Ok(v.get("runs")
            .and_then(Value::as_array)
            .and_then(|l| l.first())
            .and_then(remote_run))
    }

    /// One page of `runs/search` in one experiment over the active runs that carry a
    /// `repro.run_id` tag (`LIKE '%'`: tag presence, understood by MLflow 1.x to 3.x): (repro run
    /// id, MLflow run id) per run, and the token of the next page (`None`: the last one).
    pub fn search_repro_runs(
        &self,
        experiment_id: &str,
        page_token: Option<&str>,
        max_results: usize,
    ) -> Result<(Vec<TaggedRun>, Option<String>)> {
        self.search_tagged(experiment_id, "ACTIVE_ONLY", page_token, max_results)
    }

    /// One page of the experiment's *deleted* runs that carry a `repro.run_id` tag (MLflow's
    /// trash: `run_view_type = DELETED_ONLY`), as [`Client::search_repro_runs`].
    pub fn search_deleted_repro_runs(
        &self,
        experiment_id: &str,
        page_token: Option<&str>,
        max_results: usize,
    ) -> Result<(Vec<TaggedRun>, Option<String>)> {
        self.search_tagged(experiment_id, "DELETED_ONLY", page_token, max_results)
    }

    fn search_tagged(
        &self,
        experiment_id: &str,
        view: &str,
        page_token: Option<&str>,
        max_results: usize,
    ) -> Result<(Vec<TaggedRun>, Option<String>)> {
        let mut body = json!({
            "experiment_ids": [experiment_id],
            "filter": "tags.`repro.run_id` LIKE '%'",
            "run_view_type": view,
            "max_results": max_results,
        });
        if let Some(t) = page_token {
            body["page_token"] = Value::String(t.to_string());
        }
        let v = self.post("runs/search", &body)?;
        // No match is `{}`.
        let runs = v
            .get("runs")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(remote_run)
                    .filter_map(|r| {
                        let id = r.tags.iter().find(|kv| kv.key == "repro.run_id")?;
                        Some((id.value.clone(), r.run_id.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let next = v
            .get("next_page_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        Ok((runs, next))
    }

    /// Uploads one artifact through the server's artifact proxy (`mlflow-artifacts:/` runs only).
    pub fn upload_artifact(&self, artifact_uri: &str, path: &str, bytes: &[u8]) -> Result<()> {
        let url = format!(
            "/api/2.0/mlflow-artifacts/artifacts/{}",
            artifact_url_path(artifact_uri, path)?
        );
        let res = self
            .request("PUT", &url, "mlflow-artifacts upload")?
            .set("Content-Type", "application/octet-stream")
            .send_bytes(bytes);
        self.answer("mlflow-artifacts upload", res).map(|_| ())
    }

    /// Uploads `len` bytes read from `body` as the artifact `path`, streamed: in parts when the
    /// file has at least `MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE` bytes and the server offers
    /// multipart uploads (`mlflow-artifacts/mpu/…`, e.g. over S3), else in one PUT. `requests`
    /// counts every request made, failed ones included. A read error of `body` fails the
    /// upload before its last bytes are sent, and a multipart upload is aborted.
    pub fn upload_artifact_from(
        &self,
        artifact_uri: &str,
        path: &str,
        len: u64,
        body: &mut dyn Read,
        requests: &mut usize,
    ) -> Result<Upload> {
        if len >= self.multipart_min_size && !self.no_multipart.load(Ordering::Relaxed) {
            let chunk = self.multipart_chunk_size.max(len.div_ceil(MAX_PARTS));
            let num_parts = len.div_ceil(chunk).max(1);
            *requests += 1;
            match self.create_multipart_upload(artifact_uri, path, num_parts)? {
                None => self.no_multipart.store(true, Ordering::Relaxed),
                Some(mpu) => {
                    let parts = mpu.targets.len();
                    self.multipart(artifact_uri, path, len, chunk, mpu, body, requests)?;
                    return Ok(Upload::Multipart { parts });
                }
            }
        }
        let url = format!(
            "/api/2.0/mlflow-artifacts/artifacts/{}",
            artifact_url_path(artifact_uri, path)?
        );
        let endpoint = "mlflow-artifacts upload";
        let r = self
            .upload_agent
            .request("PUT", &format!("{}{url}", self.base));
        let r = self.authorized(self.bounded(r, endpoint)?)?;
        *requests += 1;
        let res = r
            .set("Content-Type", "application/octet-stream")
            .set("Content-Length", &len.to_string())
            .send(body);
        self.answer(endpoint, res)?;
        Ok(Upload::Single)
    }

    /// `mlflow-artifacts/mpu/create`: `None` when the server's artifact store offers no
    /// multipart upload (MLflow answers 501 NOT_IMPLEMENTED, e.g. for a local directory; a
    /// server older than the endpoint answers 404).
    fn create_multipart_upload(
        &self,
        artifact_uri: &str,
        path: &str,
        num_parts: u64,
    ) -> Result<Option<Multipart>> {
        let endpoint = "mlflow-artifacts/mpu/create";
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let url = format!(
            "/api/2.0/mlflow-artifacts/mpu/create/{}",
            artifact_url_path(artifact_uri, dir)?
        );
        let res = self
            .request("POST", url.trim_end_matches('/'), endpoint)?
            .send_json(json!({ "path": name, "num_parts": num_parts }));
        let v = match self.answer(endpoint, res) {
            Ok(v) => v,
            Err(MlflowError::Rejected { status, code, .. })
                if status == 404 || code == "NOT_IMPLEMENTED" || code == "ENDPOINT_NOT_FOUND" =>
            {
                return Ok(None)
            }
            Err(MlflowError::Server { status: 501, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let bad = |problem: String| MlflowError::BadAnswer {
            endpoint: endpoint.into(),
            problem,
        };
        let creds = v
            .get("credentials")
            .and_then(Value::as_array)
            .ok_or_else(|| bad(format!("no credentials in {}", snippet(&v.to_string()))))?;
        let mut targets = Vec::with_capacity(creds.len());
        for c in creds {
            let url = c.get("url").and_then(Value::as_str).unwrap_or("");
            let lower = url.to_ascii_lowercase();
            if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                return Err(bad(format!(
                    "a part URL that is not http(s): {}",
                    snippet(url)
                )));
            }
            let part_number = c
                .get("part_number")
                .and_then(|n| {
                    n.as_i64()
                        .or_else(|| n.as_str().and_then(|s| s.parse().ok()))
                })
                .ok_or_else(|| bad("a part without part_number".into()))?;
            let headers = c
                .get("headers")
                .and_then(Value::as_object)
                .map(|h| {
                    h.iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            targets.push(PartTarget {
                url: url.to_string(),
                part_number,
                headers,
            });
        }
        targets.sort_by_key(|t| t.part_number);
        if targets.len() as u64 != num_parts {
            return Err(bad(format!(
                "{} part URLs for {num_parts} parts",
                targets.len()
            )));
        }
        Ok(Some(Multipart {
            upload_id: v
                .get("upload_id")
                .and_then(Value::as_str)
                .map(str::to_string),
            targets,
        }))
    }

    /// Sends the parts of `body` (each `chunk` bytes, the last the rest) to their URLs, then
    /// completes the upload; aborts it when a part or the completion fails.
    #[allow(clippy::too_many_arguments)]
    fn multipart(
        &self,
        artifact_uri: &str,
        path: &str,
        len: u64,
        chunk: u64,
        mpu: Multipart,
        body: &mut dyn Read,
        requests: &mut usize,
    ) -> Result<()> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let url = |op: &str| -> Result<String> {
            Ok(format!(
                "/api/2.0/mlflow-artifacts/mpu/{op}/{}",
                artifact_url_path(artifact_uri, dir)?
            )
            .trim_end_matches('/')
            .to_string())
        };
        let upload_id = mpu.upload_id.clone().unwrap_or_default();
        let sent = (|| -> Result<()> {
            let mut parts = Vec::with_capacity(mpu.targets.len());
            let mut offset = 0u64;
            for t in &mpu.targets {
                let n = chunk.min(len - offset);
                *requests += 1;
                let etag = self.put_part(t, n, &mut body.take(n))?;
                offset += n;
                parts.push(json!({ "part_number": t.part_number, "etag": etag, "url": t.url }));
            }
            let endpoint = "mlflow-artifacts/mpu/complete";
            *requests += 1;
            let res = self
                .request("POST", &url("complete")?, endpoint)?
                .send_json(json!({ "path": name, "upload_id": upload_id, "parts": parts }));
            self.answer(endpoint, res).map(|_| ())
        })();
        if let Err(e) = sent {
            // Best effort: the parts sent stay invisible until completed, and the store drops them.
            let endpoint = "mlflow-artifacts/mpu/abort";
            *requests += 1;
            if let Ok(r) = url("abort").and_then(|u| self.request("POST", &u, endpoint)) {
                let _ = r.send_json(json!({ "path": name, "upload_id": upload_id }));
            }
            return Err(e);
        }
        Ok(())
    }

    /// PUTs one part to the URL the server handed out (with its headers, never the tracking
    /// server's credentials); returns the part's ETag.
    fn put_part(&self, t: &PartTarget, len: u64, body: &mut dyn Read) -> Result<String> {
        let endpoint = "multipart part upload";
        let mut r = self.bounded(self.upload_agent.request("PUT", &t.url), endpoint)?;
        for (k, v) in &t.headers {
            r = r.set(k, v);
        }
        let res = r.set("Content-Length", &len.to_string()).send(body);
        match res {
            Ok(resp) => {
                let etag = resp.header("ETag").unwrap_or("").to_string();
                let _ = resp.into_string();
                Ok(etag)
            }
            Err(e) => self.answer(endpoint, Err(e)).map(|_| String::new()),
        }
    }
}

/// How a file went up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// One PUT through the artifact proxy.
    Single,
    /// A multipart upload in this many parts.
    Multipart { parts: usize },
}

/// A multipart upload the server created: one URL per part.
struct Multipart {
    upload_id: Option<String>,
    targets: Vec<PartTarget>,
}

/// Where one part goes.
struct PartTarget {
    url: String,
    part_number: i64,
    headers: Vec<(String, String)>,
}

/// The part of the artifact proxy's URL after `mlflow-artifacts/artifacts/` for `path` of a run
/// whose artifact location is `artifact_uri` (`mlflow-artifacts:/1/abc/artifacts` or
/// `mlflow-artifacts://host/1/abc/artifacts`), each segment percent-encoded.
fn artifact_url_path(artifact_uri: &str, path: &str) -> Result<String> {
    let root = artifact_uri
        .strip_prefix("mlflow-artifacts:")
        .ok_or_else(|| MlflowError::BadAnswer {
            endpoint: "mlflow-artifacts".into(),
            problem: format!(
                "the run's artifact location {} is not served by the tracking server (start it with --serve-artifacts)",
                snippet(artifact_uri)
            ),
        })?;
    let root = match root.strip_prefix("//") {
        Some(rest) => rest.split_once('/').map(|(_, p)| p).unwrap_or(""),
        None => root.trim_start_matches('/'),
    };
    Ok(root
        .split('/')
        .chain(path.split('/'))
        .filter(|s| !s.is_empty())
        .map(percent_encode)
        .collect::<Vec<_>>()
        .join("/"))
}

/// One URL path segment: unreserved characters as they are, every other byte as `%XX`.
fn percent_encode(seg: &str) -> String {
    let mut out = String::with_capacity(seg.len());
    for b in seg.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Splits params, tags and metrics into `runs/log-batch` bodies within the server's limits.
pub fn batches<'a>(
    params: &'a [KeyValue],
    tags: &'a [KeyValue],
    metrics: &'a [MetricPoint],
) -> Vec<(&'a [KeyValue], &'a [KeyValue], &'a [MetricPoint])> {
    let mut out = Vec::new();
    let (mut p, mut t, mut m) = (params, tags, metrics);
    while !(p.is_empty() && t.is_empty() && m.is_empty()) {
        let np = p.len().min(MAX_PARAMS_PER_BATCH);
        let nt = t.len().min(MAX_TAGS_PER_BATCH);
        let nm = m.len().min(MAX_ENTITIES_PER_BATCH - np - nt);
        out.push((&p[..np], &t[..nt], &m[..nm]));
        p = &p[np..];
        t = &t[nt..];
        m = &m[nm..];
    }
    out
}

fn snippet(text: &str) -> String {
    let t = text.trim();
    let cut = match t.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_string(),
    };
    crate::sanitize::escape(&cut).into_owned()
}

fn tls_config(settings: &Settings) -> Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| MlflowError::Tls {
            uri: settings.uri.clone(),
            detail: e.to_string(),
        })?;
    if settings.insecure_tls {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    let mut files: Vec<(PathBuf, bool)> = Vec::new();
    if let Some(f) = std::env::var_os("SSL_CERT_FILE").filter(|v| !v.is_empty()) {
        files.push((PathBuf::from(f), false));
    }
    for f in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ] {
        files.push((PathBuf::from(f), false));
    }
    if let Some(p) = &settings.cert_path {
        files.push((p.clone(), true));
    }
    for (path, required) in files {
        let err = |problem: String| MlflowError::CertFile {
            path: path.display().to_string(),
            problem,
        };
        match CertificateDer::pem_file_iter(&path) {
            Ok(it) => {
                let certs = it
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| err(e.to_string()));
                match certs {
                    Ok(c) if c.is_empty() && required => {
                        return Err(err("no PEM certificates in the file".into()))
                    }
                    Ok(c) => {
                        roots.add_parsable_certificates(c);
                    }
                    Err(e) if required => return Err(e),
                    Err(_) => {}
                }
            }
            Err(e) if required => return Err(err(e.to_string())),
            Err(_) => {}
        }
    }
    if roots.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// `MLFLOW_TRACKING_INSECURE_TLS=true`: accept any certificate (signatures still checked).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_uris_are_accepted_and_trailing_slashes_go() {
        assert_eq!(
            normalize_uri("http://127.0.0.1:5000/").unwrap(),
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            normalize_uri("HTTPS://mlflow.example/prefix").unwrap(),
            "HTTPS://mlflow.example/prefix"
        );
        for bad in [
            "file:///tmp/mlruns",
            "sqlite:///mlflow.db",
            "databricks",
            "./mlruns",
        ] {
            assert!(
                matches!(normalize_uri(bad), Err(MlflowError::UnsupportedUri { .. })),
                "{bad}"
            );
        }
        assert!(matches!(normalize_uri(" "), Err(MlflowError::NoUri)));
    }

    #[test]
    fn settings_follow_mlflow_environment_variables() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let s = Settings::from_env(
            None,
            &env(&[
                ("MLFLOW_TRACKING_URI", "https://h:5000/"),
                ("MLFLOW_TRACKING_USERNAME", "alice"),
                ("MLFLOW_TRACKING_PASSWORD", "pw"),
                ("MLFLOW_TRACKING_INSECURE_TLS", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(s.uri, "https://h:5000");
        assert_eq!(
            s.auth,
            Auth::Basic {
                user: "alice".into(),
                password: "pw".into()
            }
        );
        assert!(s.insecure_tls);
        let s =
            Settings::from_env(Some("https://x"), &env(&[("MLFLOW_TRACKING_TOKEN", "t")])).unwrap();
        assert_eq!(
            (s.uri.as_str(), s.auth),
            ("https://x", Auth::Token("t".into()))
        );
        assert!(matches!(
            Settings::from_env(None, &env(&[])),
            Err(MlflowError::NoUri)
        ));
    }

    #[test]
    fn batches_respect_the_per_request_limits() {
        let kv = |n: usize| {
            (0..n)
                .map(|i| KeyValue {
                    key: format!("k{i}"),
                    value: String::new(),
                })
                .collect::<Vec<_>>()
        };
        let m: Vec<MetricPoint> = (0..2500)
            .map(|i| MetricPoint {
                key: "loss".into(),
                value: i as f64,
                timestamp: i,
                step: i,
            })
            .collect();
        let (p, t) = (kv(250), kv(120));
        let b = batches(&p, &t, &m);
        for (bp, bt, bm) in &b {
            assert!(bp.len() <= 100 && bt.len() <= 100);
            assert!(bp.len() + bt.len() + bm.len() <= 1000);
        }
        assert_eq!(b.iter().map(|x| x.0.len()).sum::<usize>(), 250);
        assert_eq!(b.iter().map(|x| x.1.len()).sum::<usize>(), 120);
        assert_eq!(b.iter().map(|x| x.2.len()).sum::<usize>(), 2500);
        assert_eq!(b.len(), 3);
        assert!(batches(&[], &[], &[]).is_empty());
    }

    #[test]
    fn credentials_in_the_uri_go_to_the_request_only_and_never_in_clear_to_a_remote_host() {
        let none = |_: &str| None;
        let s = Settings::from_env(Some("http://alice:p%40ss@127.0.0.1:5000/ml/"), &none).unwrap();
        assert_eq!(s.uri, "http://127.0.0.1:5000/ml");
        assert_eq!(
            s.auth,
            Auth::Basic {
                user: "alice".into(),
                password: "p@ss".into()
            }
        );
        assert_eq!(redact_uri("https://u:secret@h/x@y"), "https://h/x@y");
        let err = normalize_uri("ftp://u:secret@h").unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
        // Plain HTTP to a remote host: refused with credentials, fine without.
        let remote = "http://u:secret@mlflow.invalid:5000";
        let e = Settings::from_env(Some(remote), &none).unwrap_err();
        assert!(matches!(e, MlflowError::InsecureCredentials { .. }), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
        let token = |k: &str| (k == "MLFLOW_TRACKING_TOKEN").then(|| "t".to_string());
        assert!(matches!(
            Settings::from_env(Some("http://mlflow.invalid"), &token),
            Err(MlflowError::InsecureCredentials { .. })
        ));
        assert!(Settings::from_env(Some("http://mlflow.invalid"), &none).is_ok());
        assert!(Settings::from_env(Some("https://mlflow.invalid"), &token).is_ok());
        for local in [
            "http://localhost:1",
            "http://127.0.0.2",
            "http://[::1]:5000",
        ] {
            assert!(Settings::from_env(Some(local), &token).is_ok(), "{local}");
        }
        let allowed = |k: &str| match k {
            "MLFLOW_TRACKING_TOKEN" => Some("t".to_string()),
            "MLFLOW_TRACKING_INSECURE_HTTP" => Some("true".to_string()),
            _ => None,
        };
        assert!(Settings::from_env(Some("http://mlflow.invalid"), &allowed).is_ok());
    }
}
