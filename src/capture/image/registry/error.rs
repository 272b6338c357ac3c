//! What can go wrong talking to a registry; every message names the registry and the reference.

use std::time::{Duration, Instant};

use super::super::auth::AuthError;
use crate::error::Hinted;

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
    /// The whole resolution took longer than its deadline.
    #[error("registry {registry} did not finish answering for {reference} within {}s", .limit.as_secs())]
    Deadline {
        registry: String,
        reference: String,
        limit: Duration,
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
    /// The bearer-token exchange (challenge or token endpoint answer) is unusable.
    #[error("registry {registry}: token endpoint {realm} for {reference}: {problem}")]
    Token {
        registry: String,
        reference: String,
        realm: String,
        problem: String,
    },
    /// Credentials would go to a token realm over plain HTTP on another host.
    #[error("registry {registry} sends credentials for {reference} to the token realm {realm} over plain HTTP; refused ({why})")]
    InsecureRealm {
        registry: String,
        reference: String,
        realm: String,
        why: String,
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
                "pass the registry's CA with --ca-cert PATH, or put it in /etc/containers/certs.d/{registry}/ca.crt (also read: ~/.config/containers/certs.d, /etc/docker/certs.d, SSL_CERT_FILE); the certificate must name the host as written in the reference"
            )),
            RegistryError::Transport { registry, problem, .. } if problem.contains("InvalidContentType") || problem.contains("HTTP response to HTTPS") => Some(format!(
                "the registry does not speak HTTPS (plain HTTP?); declare it with --insecure-registry {registry} (or `insecure_registries` in the config), or give it a TLS certificate"
            )),
            RegistryError::Transport { .. } | RegistryError::Deadline { .. } => Some(
                "check the registry is up, or use --offline, --resolve engine, or pin the image by digest (NAME@sha256:…); REPRO_REGISTRY_TIMEOUT=SECONDS (or registry_timeout in the configuration) sets the deadline".to_string(),
            ),
            RegistryError::InsecureRealm { .. } => Some(
                "serve the token endpoint over HTTPS, or on the registry's own host with the registry declared --insecure-registry; repro will not send a password over plain HTTP to another host".to_string(),
            ),
            RegistryError::NoPlatform { .. } => Some("choose one with --platform OS/ARCH[/VARIANT]".to_string()),
            _ => None,
        }
    }
}

/// Which registry and reference a request is for (for messages), and until when it may run.
pub(crate) struct Ctx<'a> {
    pub(crate) registry: &'a str,
    pub(crate) reference: &'a str,
    pub(crate) deadline: Instant,
    pub(crate) limit: Duration,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(registry: &'a str, reference: &'a str, limit: Duration) -> Ctx<'a> {
        Ctx {
            registry,
            reference,
            deadline: Instant::now() + limit,
            limit,
        }
    }
    pub(crate) fn transport(&self, problem: impl Into<String>) -> RegistryError {
        RegistryError::Transport {
            registry: self.registry.to_string(),
            reference: self.reference.to_string(),
            problem: problem.into(),
        }
    }
    pub(crate) fn bad(&self, problem: impl Into<String>) -> RegistryError {
        RegistryError::BadManifest {
            registry: self.registry.to_string(),
            reference: self.reference.to_string(),
            problem: problem.into(),
        }
    }
    pub(crate) fn token(&self, realm: &str, problem: impl Into<String>) -> RegistryError {
        RegistryError::Token {
            registry: self.registry.to_string(),
            reference: self.reference.to_string(),
            realm: realm.to_string(),
            problem: problem.into(),
        }
    }
    pub(crate) fn deadline_passed(&self) -> RegistryError {
        RegistryError::Deadline {
            registry: self.registry.to_string(),
            reference: self.reference.to_string(),
            limit: self.limit,
        }
    }
    /// Time left before the deadline (zero when passed).
    pub(crate) fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}
