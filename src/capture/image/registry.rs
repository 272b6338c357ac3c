//! A small OCI distribution API client: manifests by tag or digest (body hash checked against
//! `Docker-Content-Digest`), index → platform manifest, config labels, and anonymous / basic /
//! bearer-token auth. Plain HTTP only for loopback or explicitly insecure registries.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::auth::{self, AuthConfig, AuthError, Credential};
use super::digest::{Algorithm, Digest};
use super::reference::{self, Reference};
use crate::error::Hinted;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Sent with every manifest request: without it registries answer 404 or convert manifests.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Manifests and configs larger than this are refused.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// `linux`, `windows`, …
    pub os: String,
    /// `amd64`, `arm64`, …
    pub architecture: String,
    /// `v7`, `v8`, … when given.
    pub variant: Option<String>,
}

/// A platform string that is not `os/arch[/variant]`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid platform {0:?}: expected OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm64/v8")]
pub struct PlatformError(pub String);

impl Hinted for PlatformError {}

impl Platform {
    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| ok(p)) {
            return Err(PlatformError(s.to_string()));
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture: parts[1].to_ascii_lowercase(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }

    /// The platform of this machine, in Go's naming (`linux/amd64`).
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: arch.to_string(),
            variant: None,
        }
    }

    fn matches(&self, other: &Platform) -> bool {
        if self.os != other.os || self.architecture != other.architecture {
            return false;
        }
        match &self.variant {
            None => true,
            Some(v) => {
                other.variant.as_deref() == Some(v.as_str())
                    // arm64 images often omit the (only) variant v8
                    || (self.architecture == "arm64" && v == "v8" && other.variant.is_none())
            }
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Registries (`host[:port]` or `host`) allowed over plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// Extra PEM CA bundle (`--ca-cert`); `SSL_CERT_FILE` is honoured too.
    pub ca_cert: Option<PathBuf>,
    /// Where credentials come from.
    pub auth: AuthConfig,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retries after a 5xx answer or a failed connection.
    pub retries: u32,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure_registries: Vec::new(),
            ca_cert: None,
            auth: AuthConfig::from_env(),
            timeout: Duration::from_secs(30),
            retries: 2,
        }
    }
}

/// One entry of an image index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlatformManifest {
    /// `os/arch[/variant]`, or `unknown/unknown` for attestation entries.
    pub platform: String,
    /// Digest of that platform's manifest.
    pub digest: String,
}

/// What the registry says about a reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteImage {
    /// Digest of the manifest (or index) the reference points at, checked against the body.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Whether it is an index / manifest list.
    pub is_index: bool,
    /// For an index: every platform manifest.
    pub platforms: Vec<PlatformManifest>,
    /// The digest of the manifest that runs on the chosen platform (`digest` for a plain manifest).
    pub platform_digest: String,
    /// The chosen platform when known (`os/arch[/variant]`).
    pub platform: Option<String>,
    /// Labels of the image config.
    pub labels: BTreeMap<String, String>,
}

/// A registry request that failed. Messages name the registry, the reference and the status.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry could not be reached (DNS, refused connection, TLS, timeout).
    #[error("cannot reach registry {registry} for {reference}: {problem}")]
    Transport {
        registry: String,
        reference: String,
        problem: String,
    },
    /// 401/403.
    #[error("registry {registry} refused access to {reference} ({status}{}){}", if *.had_credentials { ", credentials were sent" } else { ", no credentials found" }, detail_suffix(.detail))]
    Unauthorized {
        registry: String,
        reference: String,
        status: u16,
        had_credentials: bool,
        detail: String,
    },
    /// 404 / MANIFEST_UNKNOWN / NAME_UNKNOWN.
    #[error("registry {registry} does not know {reference} (404{})", detail_suffix(.detail))]
    NotFound {
        registry: String,
        reference: String,
        detail: String,
    },
    /// Any other error status.
    #[error("registry {registry} answered {status} for {reference}{}", detail_suffix(.detail))]
    Status {
        registry: String,
        reference: String,
        status: u16,
        detail: String,
    },
    /// The body does not hash to the digest the registry (or the reference) claims.
    #[error("registry {registry} sent a body for {reference} whose digest {computed} differs from the claimed {claimed}")]
    DigestMismatch {
        registry: String,
        reference: String,
        claimed: String,
        computed: String,
    },
    /// A manifest or config over the size limit.
    #[error("registry {registry}: {what} of {reference} is larger than {limit} bytes; refused")]
    TooLarge {
        registry: String,
        reference: String,
        what: String,
        limit: u64,
    },
    /// A body that is not a manifest we understand.
    #[error("registry {registry}: invalid manifest for {reference}: {problem}")]
    BadManifest {
        registry: String,
        reference: String,
        problem: String,
    },
    /// No entry of the index matches the platform.
    #[error("{reference} on {registry} has no manifest for platform {platform} (available: {})", .available.join(", "))]
    NoPlatform {
        registry: String,
        reference: String,
        platform: String,
        available: Vec<String>,
    },
    /// Credentials could not be read.
    #[error("reading credentials for {registry}")]
    Auth {
        registry: String,
        #[source]
        source: AuthError,
    },
    /// A CA bundle could not be read.
    #[error("cannot use CA certificates from {path}: {problem}")]
    CaCert { path: String, problem: String },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl Hinted for RegistryError {
    fn hint(&self) -> Option<String> {
        match self {
            RegistryError::Unauthorized { registry, had_credentials: false, .. } => Some(format!(
                "log in with `docker login {registry}` or `podman login {registry}` (credentials are read from ~/.docker/config.json, credential helpers, REGISTRY_AUTH_FILE or ${{XDG_RUNTIME_DIR}}/containers/auth.json)"
            )),
            RegistryError::Unauthorized { registry, .. } => Some(format!(
                "the stored credentials for {registry} were rejected or lack pull access; log in again"
            )),
            RegistryError::NotFound { .. } => Some(
                "check the repository and tag (`skopeo list-tags docker://NAME`), or pin a digest with NAME@sha256:…".to_string(),
            ),
            RegistryError::Transport { registry, problem, .. } if problem.to_lowercase().contains("certificate") => Some(format!(
                "pass the registry's CA with --ca-cert PATH (or SSL_CERT_FILE); plain HTTP only with --insecure-registry {registry}"
            )),
            RegistryError::Transport { .. } => Some(
                "use --offline, --resolve engine, or pin the image by digest (NAME@sha256:…)".to_string(),
            ),
            RegistryError::NoPlatform { .. } => Some("choose one with --platform OS/ARCH[/VARIANT]".to_string()),
            _ => None,
        }
    }
}

struct Ctx<'a> {
    registry: &'a str,
    reference: &'a str,
}

impl Ctx<'_> {
    fn transport(&self, problem: impl Into<String>) -> RegistryError {
        RegistryError::Transport {
            registry: self.registry.to_string(),
            reference: self.reference.to_string(),
            problem: problem.into(),
        }
    }
    fn bad(&self, problem: impl Into<String>) -> RegistryError {
        RegistryError::BadManifest {
            registry: self.registry.to_string(),
            reference: self.reference.to_string(),
            problem: problem.into(),
        }
    }
}

/// A registry client; reuses connections and bearer tokens across requests.
pub struct RegistryClient {
    agent: ureq::Agent,
    opts: RegistryOptions,
    /// (registry, scope) → `Authorization` header value. Never leaves this struct.
    tokens: Mutex<HashMap<(String, String), String>>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("insecure_registries", &self.opts.insecure_registries)
            .finish_non_exhaustive()
    }
}

struct Fetched {
    body: Vec<u8>,
    content_type: Option<String>,
    header_digest: Option<String>,
}

impl RegistryClient {
    /// Builds a client; TLS uses the system roots plus `ca_cert` and `SSL_CERT_FILE`.
    pub fn new(opts: RegistryOptions) -> Result<RegistryClient, RegistryError> {
        let tls = tls_config(opts.ca_cert.as_deref())?;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10).min(opts.timeout))
            .timeout(opts.timeout)
            .redirects(5)
            .user_agent(concat!("repro/", env!("CARGO_PKG_VERSION")))
            .tls_config(Arc::new(tls))
            .build();
        Ok(RegistryClient {
            agent,
            opts,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `domain` may be spoken to over plain HTTP.
    pub fn is_plain_http(&self, r: &Reference) -> bool {
        r.is_loopback()
            || self
                .opts
                .insecure_registries
                .iter()
                .any(|i| i == &r.domain || i == r.host())
    }

    /// `scheme://host[:port]` of the registry API for a reference.
    pub fn base_url(&self, r: &Reference) -> String {
        let host = if r.domain == reference::DEFAULT_DOMAIN {
            "registry-1.docker.io"
        } else {
            r.domain.as_str()
        };
        let scheme = if self.is_plain_http(r) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}")
    }

    /// Resolves a reference (its tag, `latest` implied, or its digest) to the manifest that runs
    /// on `platform`, reading the config labels.
    pub fn resolve(
        &self,
        r: &Reference,
        platform: &Platform,
    ) -> Result<RemoteImage, RegistryError> {
        let written = r.to_string();
        let ctx = Ctx {
            registry: &r.domain,
            reference: &written,
        };
        let manifest_ref = r.manifest_ref();
        let top = self.get_manifest(r, &manifest_ref, &ctx)?;
        let top_digest = verified_digest(&top, r.digest.as_ref(), &ctx)?;
        let doc: ManifestDoc =
            serde_json::from_slice(&top.body).map_err(|e| ctx.bad(format!("not JSON: {e}")))?;
        let media_type = doc
            .media_type
            .clone()
            .or_else(|| {
                top.content_type
                    .clone()
                    .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
            })
            .unwrap_or_default();
        let is_index = media_type == OCI_INDEX
            || media_type == DOCKER_MANIFEST_LIST
            || (doc.manifests.is_some() && doc.config.is_none());

        if !is_index {
            let labels = self.labels(r, &doc, &ctx)?;
            return Ok(RemoteImage {
                digest: top_digest.to_string(),
                media_type,
                is_index: false,
                platforms: Vec::new(),
                platform_digest: top_digest.to_string(),
                platform: None,
                labels,
            });
        }

        let entries = doc.manifests.unwrap_or_default();
        let mut platforms = Vec::new();
        let mut chosen: Option<(Digest, Platform)> = None;
        for e in &entries {
            let p = e.platform.as_ref().map(|p| Platform {
                os: p.os.clone(),
                architecture: p.architecture.clone(),
                variant: p.variant.clone().filter(|v| !v.is_empty()),
            });
            let d = Digest::parse(&e.digest)
                .map_err(|err| ctx.bad(format!("index entry digest: {err}")))?;
            platforms.push(PlatformManifest {
                platform: p
                    .as_ref()
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "unknown".into()),
                digest: d.to_string(),
            });
            if let Some(p) = p {
                let better = match &chosen {
                    None => true,
                    // prefer an exact variant match over "any variant"
                    Some((_, c)) => {
                        platform.variant.is_none() && c.variant.is_some() && p.variant.is_none()
                    }
                };
                if platform.matches(&p) && better {
                    chosen = Some((d, p));
                }
            }
        }
        let Some((pdigest, pplat)) = chosen else {
            return Err(RegistryError::NoPlatform {
                registry: r.domain.clone(),
                reference: written.clone(),
                platform: platform.to_string(),
                available: platforms.iter().map(|p| p.platform.clone()).collect(),
            });
        };
        let inner = self.get_manifest(r, &pdigest.to_string(), &ctx)?;
        verified_digest(&inner, Some(&pdigest), &ctx)?;
        let inner_doc: ManifestDoc = serde_json::from_slice(&inner.body)
            .map_err(|e| ctx.bad(format!("platform manifest is not JSON: {e}")))?;
        let labels = self.labels(r, &inner_doc, &ctx)?;
        Ok(RemoteImage {
            digest: top_digest.to_string(),
            media_type,
            is_index: true,
            platforms,
            platform_digest: pdigest.to_string(),
            platform: Some(pplat.to_string()),
            labels,
        })
    }

    /// Whether the registry has a manifest with this digest (HEAD, then the answer's status).
    pub fn has_manifest(&self, r: &Reference, digest: &Digest) -> Result<bool, RegistryError> {
        let written = r.to_string();
        let ctx = Ctx {
            registry: &r.domain,
            reference: &written,
        };
        let url = format!("{}/v2/{}/manifests/{}", self.base_url(r), r.path, digest);
        match self.send("HEAD", &url, r, &ctx) {
            Ok(_) => Ok(true),
            Err(RegistryError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn labels(
        &self,
        r: &Reference,
        doc: &ManifestDoc,
        ctx: &Ctx<'_>,
    ) -> Result<BTreeMap<String, String>, RegistryError> {
        let Some(config) = &doc.config else {
            return Ok(BTreeMap::new());
        };
        let d =
            Digest::parse(&config.digest).map_err(|e| ctx.bad(format!("config digest: {e}")))?;
        let url = format!("{}/v2/{}/blobs/{}", self.base_url(r), r.path, d);
        let resp = self.send("GET", &url, r, ctx)?;
        let body = read_limited(resp, ctx, "image config")?;
        if !d.verify(&body) {
            return Err(RegistryError::DigestMismatch {
                registry: ctx.registry.to_string(),
                reference: ctx.reference.to_string(),
                claimed: d.to_string(),
                computed: d.algorithm().digest(&body).to_string(),
            });
        }
        #[derive(Deserialize)]
        struct Cfg {
            #[serde(default)]
            config: Option<Inner>,
        }
        #[derive(Deserialize)]
        struct Inner {
            #[serde(default, rename = "Labels")]
            labels: Option<BTreeMap<String, String>>,
        }
        let cfg: Cfg = serde_json::from_slice(&body)
            .map_err(|e| ctx.bad(format!("config is not JSON: {e}")))?;
        Ok(cfg.config.and_then(|c| c.labels).unwrap_or_default())
    }

    fn get_manifest(
        &self,
        r: &Reference,
        manifest_ref: &str,
        ctx: &Ctx<'_>,
    ) -> Result<Fetched, RegistryError> {
        let url = format!(
            "{}/v2/{}/manifests/{}",
            self.base_url(r),
            r.path,
            manifest_ref
        );
        let resp = self.send("GET", &url, r, ctx)?;
        let content_type = resp.header("Content-Type").map(str::to_string);
        let header_digest = resp.header("Docker-Content-Digest").map(str::to_string);
        let body = read_limited(resp, ctx, "manifest")?;
        Ok(Fetched {
            body,
            content_type,
            header_digest,
        })
    }

    /// Sends a request with auth (challenge → basic or bearer) and retries.
    fn send(
        &self,
        method: &str,
        url: &str,
        r: &Reference,
        ctx: &Ctx<'_>,
    ) -> Result<ureq::Response, RegistryError> {
        let scope = format!("repository:{}:pull", r.path);
        let key = (r.domain.clone(), scope.clone());
        let mut authorization = self.tokens.lock().ok().and_then(|t| t.get(&key).cloned());
        let mut had_credentials = false;
        let mut challenged = false;
        loop {
            let resp = self.send_retrying(method, url, authorization.as_deref(), ctx)?;
            match resp {
                Ok(resp) => return Ok(resp),
                Err((401, resp)) if !challenged => {
                    challenged = true;
                    let challenge = resp
                        .header("WWW-Authenticate")
                        .and_then(auth::parse_challenge);
                    let creds = self.credentials(r)?;
                    had_credentials = creds.is_some();
                    let header = match challenge {
                        Some(c) if c.scheme == "bearer" => {
                            Some(self.fetch_token(&c, &scope, creds.as_ref(), r, ctx)?)
                        }
                        Some(c) if c.scheme == "basic" => {
                            creds.as_ref().map(Credential::basic_header)
                        }
                        _ => None,
                    };
                    match header {
                        Some(h) => {
                            if let Ok(mut t) = self.tokens.lock() {
                                t.insert(key.clone(), h.clone());
                            }
                            authorization = Some(h);
                        }
                        None => return Err(status_error(401, resp, false, ctx)),
                    }
                }
                Err((status, resp)) => {
                    return Err(status_error(status, resp, had_credentials, ctx))
                }
            }
        }
    }

    fn credentials(&self, r: &Reference) -> Result<Option<Credential>, RegistryError> {
        self.opts
            .auth
            .lookup(&r.domain)
            .map_err(|source| RegistryError::Auth {
                registry: r.domain.clone(),
                source,
            })
    }

    fn fetch_token(
        &self,
        c: &auth::Challenge,
        scope: &str,
        creds: Option<&Credential>,
        r: &Reference,
        ctx: &Ctx<'_>,
    ) -> Result<String, RegistryError> {
        let Some(realm) = c.params.get("realm") else {
            return Err(ctx.bad("bearer challenge without a realm"));
        };
        let mut req = self.agent.get(realm).query("scope", scope);
        if let Some(service) = c.params.get("service") {
            req = req.query("service", service);
        }
        if let Some(cr) = creds {
            req = req.set("Authorization", &cr.basic_header());
        }
        let realm_host = realm.split('/').nth(2).unwrap_or(realm).to_string();
        let resp = match req.call() {
            Ok(resp) => resp,
            Err(ureq::Error::Status(status, resp)) => {
                let detail = error_detail(resp);
                return Err(if status == 401 || status == 403 {
                    RegistryError::Unauthorized {
                        registry: r.domain.clone(),
                        reference: ctx.reference.to_string(),
                        status,
                        had_credentials: creds.is_some(),
                        detail: format!("token endpoint {realm_host}: {detail}"),
                    }
                } else {
                    RegistryError::Status {
                        registry: r.domain.clone(),
                        reference: ctx.reference.to_string(),
                        status,
                        detail: format!("token endpoint {realm_host}: {detail}"),
                    }
                });
            }
            Err(e) => return Err(ctx.transport(format!("token endpoint {realm_host}: {e}"))),
        };
        #[derive(Deserialize)]
        struct Tok {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let body = read_limited(resp, ctx, "token response")?;
        let tok: Tok = serde_json::from_slice(&body)
            .map_err(|e| ctx.bad(format!("token endpoint answer is not JSON: {e}")))?;
        match tok.token.or(tok.access_token).filter(|t| !t.is_empty()) {
            Some(t) => Ok(format!("Bearer {t}")),
            None => Err(ctx.bad("token endpoint answered without a token")),
        }
    }

    #[allow(clippy::type_complexity)]
    fn send_retrying(
        &self,
        method: &str,
        url: &str,
        authorization: Option<&str>,
        ctx: &Ctx<'_>,
    ) -> Result<Result<ureq::Response, (u16, ureq::Response)>, RegistryError> {
        let mut attempt = 0;
        loop {
            let mut req = self
                .agent
                .request(method, url)
                .set("Accept", MANIFEST_ACCEPT);
            if let Some(a) = authorization {
                req = req.set("Authorization", a);
            }
            let retry = attempt < self.opts.retries;
            match req.call() {
                Ok(resp) => return Ok(Ok(resp)),
                Err(ureq::Error::Status(status, _)) if status >= 500 && retry => {}
                Err(ureq::Error::Status(status, resp)) => return Ok(Err((status, resp))),
                Err(ureq::Error::Transport(t)) => {
                    let transient = matches!(
                        t.kind(),
                        ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Io
                    );
                    if !(transient && retry) {
                        return Err(ctx.transport(describe_transport(&t)));
                    }
                }
            }
            attempt += 1;
            std::thread::sleep(Duration::from_millis(200 << attempt.min(4)));
        }
    }
}

fn describe_transport(t: &ureq::Transport) -> String {
    let mut s = match t.kind() {
        ureq::ErrorKind::Dns => "DNS lookup failed".to_string(),
        ureq::ErrorKind::ConnectionFailed => "connection failed".to_string(),
        ureq::ErrorKind::TooManyRedirects => "too many redirects".to_string(),
        ureq::ErrorKind::InsecureRequestHttpsOnly => "plain HTTP refused".to_string(),
        k => k.to_string(),
    };
    if let Some(m) = t.message() {
        s.push_str(": ");
        s.push_str(m);
    }
    let mut src = std::error::Error::source(t);
    while let Some(e) = src {
        s.push_str(": ");
        s.push_str(&e.to_string());
        src = e.source();
    }
    s
}

fn status_error(
    status: u16,
    resp: ureq::Response,
    had_credentials: bool,
    ctx: &Ctx<'_>,
) -> RegistryError {
    let detail = error_detail(resp);
    let (registry, reference) = (ctx.registry.to_string(), ctx.reference.to_string());
    match status {
        401 | 403 => RegistryError::Unauthorized {
            registry,
            reference,
            status,
            had_credentials,
            detail,
        },
        404 => RegistryError::NotFound {
            registry,
            reference,
            detail,
        },
        _ => RegistryError::Status {
            registry,
            reference,
            status,
            detail,
        },
    }
}

/// The registry's error JSON (`{"errors":[{"code","message"}]}`) as one line.
fn error_detail(resp: ureq::Response) -> String {
    let mut buf = Vec::new();
    let _ = resp.into_reader().take(64 * 1024).read_to_end(&mut buf);
    #[derive(Deserialize)]
    struct Errs {
        errors: Vec<E>,
    }
    #[derive(Deserialize)]
    struct E {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Errs>(&buf) {
        Ok(e) => e
            .errors
            .iter()
            .map(|e| format!("{} {}", e.code, e.message).trim().to_string())
            .collect::<Vec<_>>()
            .join("; "),
        Err(_) => String::new(),
    }
}

fn read_limited(resp: ureq::Response, ctx: &Ctx<'_>, what: &str) -> Result<Vec<u8>, RegistryError> {
    let too_large = || RegistryError::TooLarge {
        registry: ctx.registry.to_string(),
        reference: ctx.reference.to_string(),
        what: what.to_string(),
        limit: MAX_MANIFEST_BYTES,
    };
    if let Some(len) = resp
        .header("Content-Length")
        .and_then(|l| l.parse::<u64>().ok())
    {
        if len > MAX_MANIFEST_BYTES {
            return Err(too_large());
        }
    }
    let mut body = Vec::new();
    resp.into_reader()
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|e| ctx.transport(format!("reading the {what}: {e}")))?;
    if body.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(too_large());
    }
    Ok(body)
}

/// The digest of a fetched manifest: the body's hash, which must equal the
/// `Docker-Content-Digest` header and the digest asked for, when there are ones.
fn verified_digest(
    f: &Fetched,
    asked: Option<&Digest>,
    ctx: &Ctx<'_>,
) -> Result<Digest, RegistryError> {
    let mismatch = |claimed: String, computed: String| RegistryError::DigestMismatch {
        registry: ctx.registry.to_string(),
        reference: ctx.reference.to_string(),
        claimed,
        computed,
    };
    let mut digest = Digest::sha256_of(&f.body);
    if let Some(h) = f
        .header_digest
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty())
    {
        let claimed =
            Digest::parse(h).map_err(|e| ctx.bad(format!("Docker-Content-Digest header: {e}")))?;
        if !claimed.verify(&f.body) {
            return Err(mismatch(
                claimed.to_string(),
                claimed.algorithm().digest(&f.body).to_string(),
            ));
        }
        if claimed.algorithm() != Algorithm::Sha256 {
            digest = claimed;
        }
    }
    if let Some(a) = asked {
        if !a.verify(&f.body) {
            return Err(mismatch(
                a.to_string(),
                a.algorithm().digest(&f.body).to_string(),
            ));
        }
        digest = a.clone();
    }
    Ok(digest)
}

#[derive(Debug, Deserialize)]
struct ManifestDoc {
    #[serde(default, rename = "mediaType")]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    manifests: Option<Vec<IndexEntry>>,
}

#[derive(Debug, Deserialize)]
struct Descriptor {
    digest: String,
}

#[derive(Debug, Deserialize)]
struct IndexEntry {
    digest: String,
    #[serde(default)]
    platform: Option<PlatformJson>,
}

#[derive(Debug, Deserialize)]
struct PlatformJson {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    variant: Option<String>,
}

/// System roots (the distribution bundle, or `SSL_CERT_FILE`) plus an extra CA file.
fn tls_config(extra: Option<&std::path::Path>) -> Result<rustls::ClientConfig, RegistryError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let mut add_file = |path: &std::path::Path, required: bool| -> Result<(), RegistryError> {
        let err = |problem: String| RegistryError::CaCert {
            path: path.display().to_string(),
            problem,
        };
        let certs = match CertificateDer::pem_file_iter(path) {
            Ok(it) => it
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| err(e.to_string()))?,
            Err(e) if required => return Err(err(e.to_string())),
            Err(_) => return Ok(()),
        };
        if certs.is_empty() && required {
            return Err(err("no PEM certificates in the file".into()));
        }
        roots.add_parsable_certificates(certs);
        Ok(())
    };
    let env_file = std::env::var_os("SSL_CERT_FILE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    match &env_file {
        Some(f) => add_file(f, true)?,
        None => {
            for f in [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/cert.pem",
                "/etc/ssl/ca-bundle.pem",
            ] {
                let p = std::path::Path::new(f);
                if p.is_file() {
                    add_file(p, false)?;
                    break;
                }
            }
        }
    }
    if let Some(f) = extra {
        add_file(f, true)?;
    }
    if roots.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| RegistryError::CaCert {
        path: "(TLS setup)".into(),
        problem: e.to_string(),
    })?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// Fuzzing entry point (`fuzz/fuzz_targets/manifest.rs`): parsing a manifest or index body from
/// a hostile registry never panics; every accepted index entry's digest and platform are checked
/// exactly as `resolve` does.
#[doc(hidden)]
pub fn fuzz_manifest(body: &[u8]) {
    if body.len() as u64 > MAX_MANIFEST_BYTES {
        return;
    }
    let Ok(doc) = serde_json::from_slice::<ManifestDoc>(body) else {
        return;
    };
    let _ = doc.media_type.as_deref().map(|m| m == OCI_INDEX);
    if let Some(c) = &doc.config {
        let _ = Digest::parse(&c.digest);
    }
    for e in doc.manifests.unwrap_or_default() {
        let _ = Digest::parse(&e.digest);
        if let Some(p) = e.platform {
            let plat = Platform {
                os: p.os,
                architecture: p.architecture,
                variant: p.variant,
            };
            let _ = Platform::parse(&plat.to_string());
            let _ = Platform::host().matches(&plat);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_parse_and_match() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux/amd64/v1/x").is_err());
        assert!(Platform::parse("linux//v1").is_err());
        let any = Platform::parse("linux/arm").unwrap();
        let v7 = Platform::parse("linux/arm/v7").unwrap();
        assert!(any.matches(&v7));
        assert!(!v7.matches(&Platform::parse("linux/arm/v6").unwrap()));
        assert!(p.matches(&Platform::parse("linux/arm64").unwrap()));
        assert!(!Platform::parse("linux/amd64").unwrap().matches(&v7));
    }

    #[test]
    fn digest_header_must_match_body() {
        let ctx = Ctx {
            registry: "r",
            reference: "r/x:1",
        };
        let body = b"{}".to_vec();
        let good = Digest::sha256_of(&body).to_string();
        let f = Fetched {
            body: body.clone(),
            content_type: None,
            header_digest: Some(good.clone()),
        };
        assert_eq!(verified_digest(&f, None, &ctx).unwrap().to_string(), good);
        let bad = Fetched {
            body,
            content_type: None,
            header_digest: Some(format!("sha256:{}", "0".repeat(64))),
        };
        let e = verified_digest(&bad, None, &ctx).unwrap_err();
        assert!(matches!(e, RegistryError::DigestMismatch { .. }), "{e}");
        assert!(e.to_string().contains("r/x:1"));
    }

    #[test]
    fn plain_http_only_for_loopback_or_named_insecure() {
        let mut opts = RegistryOptions {
            auth: AuthConfig::anonymous(),
            ..RegistryOptions::default()
        };
        opts.insecure_registries.push("reg.lan:5000".into());
        let c = RegistryClient::new(opts).unwrap();
        let url = |s: &str| c.base_url(&reference::parse_normalized(s).unwrap());
        assert_eq!(url("localhost:5000/a"), "http://localhost:5000");
        assert_eq!(url("127.0.0.1:5000/a"), "http://127.0.0.1:5000");
        assert_eq!(url("[::1]:5000/a"), "http://[::1]:5000");
        assert_eq!(url("reg.lan:5000/a"), "http://reg.lan:5000");
        assert_eq!(url("reg.lan:5001/a"), "https://reg.lan:5001");
        assert_eq!(url("ubuntu"), "https://registry-1.docker.io");
    }
}
