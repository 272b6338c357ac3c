//! A small OCI distribution API client: manifests by tag or digest (body hash checked against
//! `Docker-Content-Digest`), index → platform manifest, config labels, and anonymous / basic /
//! bearer-token auth.
//!
//! - [`options`]: what applies to a host (plain HTTP allowed? CA files? `certs.d`?), time limits.
//! - [`transport`]: TLS roots, retries, `Retry-After`, timeouts, error text.
//! - [`token`]: bearer tokens and where credentials may go.
//! - [`manifest`]: parsing and checking bodies; [`platform`]: `os/arch[/variant]`.
//! - [`content`]: manifests and blobs by digest, tags, blob streaming and pushes (audit, archive).
//!
//! HTTPS always; loopback and `--insecure-registry` hosts are tried over HTTPS first and fall
//! back to plain HTTP when the server does not speak TLS (as Docker does).

pub mod content;
mod error;
pub mod manifest;
pub mod options;
pub mod platform;
pub mod token;
mod transport;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Mutex;

use super::auth::{self, Credential};
use super::digest::Digest;
use super::reference::{self, Reference};
use error::Ctx;
pub use error::RegistryError;
use manifest::{choose_platform, config_labels, verified_digest, Fetched, ManifestDoc};
pub use manifest::{
    fuzz_manifest, PlatformManifest, RemoteImage, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST,
    MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, OCI_INDEX, OCI_MANIFEST,
};
pub use options::{HostSettings, RegistryOptions};
pub use platform::{Platform, PlatformError};
use transport::{classify, describe_transport, read_limited, status_error, Failure};

/// A registry client; reuses connections, the scheme a host answered on, and bearer tokens.
pub struct RegistryClient {
    opts: RegistryOptions,
    /// registry `host[:port]` → agent with that host's TLS roots.
    agents: Mutex<HashMap<String, ureq::Agent>>,
    /// registry `host[:port]` → `https` or `http`, once known.
    schemes: Mutex<HashMap<String, &'static str>>,
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

/// Whether a host is tried over HTTPS only, or HTTPS then plain HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemePolicy {
    /// Public registries: HTTPS only.
    HttpsOnly,
    /// Loopback or declared insecure: HTTPS first, plain HTTP when the server does not speak TLS.
    HttpsThenHttp,
}

impl RegistryClient {
    /// Builds a client; an unreadable `--ca-cert` (or `SSL_CERT_FILE`) is refused here.
    pub fn new(opts: RegistryOptions) -> Result<RegistryClient, RegistryError> {
        transport::tls_config(&HostSettings {
            registry: String::new(),
            loopback: false,
            insecure: false,
            ca_files: opts.ca_cert.iter().cloned().collect(),
            cert_dirs: Vec::new(),
        })?;
        Ok(RegistryClient {
            opts,
            agents: Mutex::new(HashMap::new()),
            schemes: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// The options this client was built with.
    pub fn options(&self) -> &RegistryOptions {
        &self.opts
    }

    /// How `registry` (`host[:port]`) is reached.
    pub fn scheme_policy(&self, registry: &str) -> SchemePolicy {
        if self.opts.host_settings(registry).plain_http_allowed() {
            SchemePolicy::HttpsThenHttp
        } else {
            SchemePolicy::HttpsOnly
        }
    }

    fn agent_for(&self, host: &HostSettings) -> Result<ureq::Agent, RegistryError> {
        if let Some(a) = self
            .agents
            .lock()
            .ok()
            .and_then(|m| m.get(&host.registry).cloned())
        {
            return Ok(a);
        }
        let a = transport::agent(host, &self.opts)?;
        if let Ok(mut m) = self.agents.lock() {
            m.insert(host.registry.clone(), a.clone());
        }
        Ok(a)
    }

    /// `scheme://host[:port]` of the registry API, probing HTTPS first for hosts that may
    /// also speak plain HTTP.
    fn base_url(
        &self,
        r: &Reference,
        host: &HostSettings,
        ctx: &Ctx<'_>,
    ) -> Result<String, RegistryError> {
        let api_host = if r.domain == reference::DEFAULT_DOMAIN {
            "registry-1.docker.io"
        } else {
            r.domain.as_str()
        };
        if !host.plain_http_allowed() {
            return Ok(format!("https://{api_host}"));
        }
        if let Some(s) = self
            .schemes
            .lock()
            .ok()
            .and_then(|m| m.get(&r.domain).copied())
        {
            return Ok(format!("{s}://{api_host}"));
        }
        let remaining = ctx.remaining();
        if remaining.is_zero() {
            return Err(ctx.deadline_passed());
        }
        let agent = self.agent_for(host)?;
        let probe = agent
            .get(&format!("https://{api_host}/v2/"))
            .timeout(self.opts.timeout.min(remaining))
            .call();
        let scheme = match probe {
            Ok(_) | Err(ureq::Error::Status(..)) => "https",
            Err(ureq::Error::Transport(t)) => match classify(&t) {
                Failure::Other => "http",
                Failure::Certificate => {
                    return Err(ctx.transport(format!(
                        "HTTPS: certificate not trusted ({})",
                        describe_transport(&t)
                    )))
                }
                Failure::Timeout => {
                    if ctx.remaining().is_zero() {
                        return Err(ctx.deadline_passed());
                    }
                    return Err(ctx.transport(format!(
                        "no answer over HTTPS within {}s ({})",
                        self.opts.timeout.min(remaining).as_secs().max(1),
                        describe_transport(&t)
                    )));
                }
            },
        };
        if let Ok(mut m) = self.schemes.lock() {
            m.insert(r.domain.clone(), scheme);
        }
        Ok(format!("{scheme}://{api_host}"))
    }

    /// Resolves a reference (its tag, `latest` implied, or its digest) to the manifest that runs
    /// on `platform`, reading the config labels; bounded by the options' deadline.
    pub fn resolve(
        &self,
        r: &Reference,
        platform: &Platform,
    ) -> Result<RemoteImage, RegistryError> {
        let written = r.to_string();
        let ctx = Ctx::new(&r.domain, &written, self.opts.deadline);
        let host = self.opts.host_settings(&r.domain);
        let base = self.base_url(r, &host, &ctx)?;
        let manifest_ref = r.manifest_ref();
        let top = self.get_manifest(r, &host, &base, &manifest_ref, &ctx)?;
        let top_digest = verified_digest(&top, r.digest.as_ref(), &ctx)?;
        let doc: ManifestDoc =
            serde_json::from_slice(&top.body).map_err(|e| ctx.bad(format!("not JSON: {e}")))?;
        let media_type = doc.media_type(top.content_type.as_deref());
        if !doc.is_index(&media_type) {
            let labels = self.labels(r, &host, &base, &doc, &ctx)?;
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
        let (platforms, chosen) = choose_platform(&entries, platform, &ctx)?;
        let Some((pdigest, pplat)) = chosen else {
            return Err(RegistryError::NoPlatform {
                registry: r.domain.clone(),
                reference: written.clone(),
                platform: platform.to_string(),
                available: platforms.iter().map(|p| p.platform.clone()).collect(),
            });
        };
        let inner = self.get_manifest(r, &host, &base, &pdigest.to_string(), &ctx)?;
        verified_digest(&inner, Some(&pdigest), &ctx)?;
        let inner_doc: ManifestDoc = serde_json::from_slice(&inner.body)
            .map_err(|e| ctx.bad(format!("platform manifest is not JSON: {e}")))?;
        let labels = self.labels(r, &host, &base, &inner_doc, &ctx)?;
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
        let ctx = Ctx::new(&r.domain, &written, self.opts.deadline);
        let host = self.opts.host_settings(&r.domain);
        let base = self.base_url(r, &host, &ctx)?;
        let url = format!("{base}/v2/{}/manifests/{digest}", r.path);
        match self.send("HEAD", &url, r, &host, &ctx) {
            Ok(_) => Ok(true),
            Err(RegistryError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn labels(
        &self,
        r: &Reference,
        host: &HostSettings,
        base: &str,
        doc: &ManifestDoc,
        ctx: &Ctx<'_>,
    ) -> Result<BTreeMap<String, String>, RegistryError> {
        let Some(config) = &doc.config else {
            return Ok(BTreeMap::new());
        };
        let d =
            Digest::parse(&config.digest).map_err(|e| ctx.bad(format!("config digest: {e}")))?;
        let url = format!("{base}/v2/{}/blobs/{d}", r.path);
        let resp = self.send("GET", &url, r, host, ctx)?;
        let body = read_limited(resp, ctx, "image config")?;
        if !d.verify(&body) {
            return Err(RegistryError::DigestMismatch {
                registry: ctx.registry.to_string(),
                reference: ctx.reference.to_string(),
                claimed: d.to_string(),
                computed: d.algorithm().digest(&body).to_string(),
            });
        }
        config_labels(&body, ctx)
    }

    fn get_manifest(
        &self,
        r: &Reference,
        host: &HostSettings,
        base: &str,
        manifest_ref: &str,
        ctx: &Ctx<'_>,
    ) -> Result<Fetched, RegistryError> {
        let url = format!("{base}/v2/{}/manifests/{manifest_ref}", r.path);
        let resp = self.send("GET", &url, r, host, ctx)?;
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
        host: &HostSettings,
        ctx: &Ctx<'_>,
    ) -> Result<ureq::Response, RegistryError> {
        self.send_with(
            method,
            url,
            r,
            host,
            ctx,
            "pull",
            &transport::Extra::default(),
        )
    }

    /// [`Self::send`] for the access `action` (`pull` or `pull,push`) with a body or time limit.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_with(
        &self,
        method: &str,
        url: &str,
        r: &Reference,
        host: &HostSettings,
        ctx: &Ctx<'_>,
        action: &str,
        extra: &transport::Extra<'_>,
    ) -> Result<ureq::Response, RegistryError> {
        let agent = self.agent_for(host)?;
        let scope = format!("repository:{}:{action}", r.path);
        let key = (r.domain.clone(), scope.clone());
        let mut authorization = self.tokens.lock().ok().and_then(|t| t.get(&key).cloned());
        let mut challenged = false;
        let mut had_credentials = false;
        loop {
            let resp = transport::send_retrying_with(
                &agent,
                &self.opts,
                method,
                url,
                authorization.as_deref(),
                ctx,
                extra,
            )?;
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
                            Some(self.fetch_token(&c, &scope, creds.as_ref(), host, ctx)?)
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::image::auth::AuthConfig;

    #[test]
    fn plain_http_only_for_loopback_or_named_insecure() {
        let opts = RegistryOptions {
            insecure_registries: vec!["reg.lan:5000".into()],
            certs_d: vec![],
            auth: AuthConfig::anonymous(),
            ..RegistryOptions::default()
        };
        let c = RegistryClient::new(opts).unwrap();
        for (registry, want) in [
            ("localhost:5000", SchemePolicy::HttpsThenHttp),
            ("127.0.0.1:5000", SchemePolicy::HttpsThenHttp),
            ("[::1]:5000", SchemePolicy::HttpsThenHttp),
            ("reg.lan:5000", SchemePolicy::HttpsThenHttp),
            ("reg.lan:5001", SchemePolicy::HttpsOnly),
            ("docker.io", SchemePolicy::HttpsOnly),
        ] {
            assert_eq!(c.scheme_policy(registry), want, "{registry}");
        }
    }
}
