//! Talking HTTP(S) to a registry: TLS roots per host (system roots via `rustls-native-certs`,
//! `--ca-cert`, `certs.d`), HTTPS-then-HTTP for loopback and insecure hosts, per-request
//! timeouts bounded by the resolution's deadline, retries that honour `Retry-After`, and
//! transport errors described once.

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use serde::Deserialize;

use super::error::{Ctx, RegistryError};
use super::manifest::{MANIFEST_ACCEPT, MAX_MANIFEST_BYTES};
use super::options::{HostSettings, RegistryOptions};

/// The platform's CA roots (`SSL_CERT_FILE`/`SSL_CERT_DIR` when set), loaded once per process.
fn system_roots() -> &'static Result<Vec<CertificateDer<'static>>, String> {
    static ROOTS: OnceLock<Result<Vec<CertificateDer<'static>>, String>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        let explicit = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
            .iter()
            .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()));
        if found.certs.is_empty() && explicit && !found.errors.is_empty() {
            let problems: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
            return Err(problems.join("; "));
        }
        Ok(found.certs)
    })
}

/// Reads every PEM certificate of a CA file; an unreadable or empty file is an error.
fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, RegistryError> {
    use rustls_pki_types::pem::PemObject;
    let err = |problem: String| RegistryError::CaCert {
        path: path.display().to_string(),
        problem,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificates in the file".into()));
    }
    Ok(certs)
}

/// System roots plus the host's CA files (`--ca-cert`, `certs.d/HOST/*.crt`).
pub(crate) fn tls_config(host: &HostSettings) -> Result<rustls::ClientConfig, RegistryError> {
    let mut roots = rustls::RootCertStore::empty();
    match system_roots() {
        Ok(certs) => {
            roots.add_parsable_certificates(certs.iter().cloned());
        }
        Err(problem) => {
            return Err(RegistryError::CaCert {
                path: "SSL_CERT_FILE / SSL_CERT_DIR".into(),
                problem: problem.clone(),
            })
        }
    }
    for f in &host.ca_files {
        roots.add_parsable_certificates(read_ca_file(f)?);
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

/// An HTTP agent for one host's TLS settings.
pub(crate) fn agent(
    host: &HostSettings,
    opts: &RegistryOptions,
) -> Result<ureq::Agent, RegistryError> {
    let tls = tls_config(host)?;
    Ok(ureq::AgentBuilder::new()
        .timeout_connect(opts.connect_timeout.min(opts.timeout))
        .timeout(opts.timeout)
        .redirects(5)
        // Requests run in parallel (audit, archive): keep one connection per worker alive
        // instead of ureq's default of one per host (the others were closed and reopened).
        .max_idle_connections_per_host(64)
        .user_agent(concat!("repro/", env!("CARGO_PKG_VERSION")))
        .tls_config(Arc::new(tls))
        .build())
}

/// What a failed transport was, for the decisions that depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The server's certificate was not trusted (it does speak TLS).
    Certificate,
    /// Nothing answered in time.
    Timeout,
    /// Anything else (refused, reset, not TLS, DNS).
    Other,
}

pub(crate) fn classify(t: &ureq::Transport) -> Failure {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(t);
    while let Some(e) = src {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) {
                return Failure::Timeout;
            }
        }
        src = e.source();
    }
    let text = describe_transport(t).to_lowercase();
    if text.contains("certificate") {
        Failure::Certificate
    } else if text.contains("timed out") || text.contains("timeout") {
        Failure::Timeout
    } else {
        Failure::Other
    }
}

/// One line for a transport error: what happened, then each cause once (ureq's own text and
/// its sources repeat each other: "Network Error: Network Error: …").
pub(crate) fn describe_transport(t: &ureq::Transport) -> String {
    let mut pieces: Vec<String> = vec![match t.kind() {
        ureq::ErrorKind::Dns => "DNS lookup failed".to_string(),
        ureq::ErrorKind::ConnectionFailed => "connection failed".to_string(),
        ureq::ErrorKind::TooManyRedirects => "too many redirects".to_string(),
        ureq::ErrorKind::InsecureRequestHttpsOnly => "plain HTTP refused".to_string(),
        ureq::ErrorKind::Io => "network error".to_string(),
        k => k.to_string(),
    }];
    if let Some(m) = t.message() {
        pieces.push(m.to_string());
    }
    let mut src = std::error::Error::source(t);
    while let Some(e) = src {
        pieces.push(e.to_string());
        src = e.source();
    }
    join_causes(&pieces)
}

/// Joins cause texts with ": ", dropping ureq's kind prefixes and any piece already said.
pub(crate) fn join_causes(pieces: &[String]) -> String {
    const PREFIXES: [&str; 4] = [
        "Network Error: ",
        "Connection Failed: ",
        "Dns Failed: ",
        "Network Error",
    ];
    let mut out: Vec<String> = Vec::new();
    for p in pieces {
        let mut p = p.trim();
        loop {
            let before = p;
            for pre in PREFIXES {
                if let Some(rest) = p.strip_prefix(pre) {
                    p = rest.trim_start_matches(':').trim();
                }
            }
            if p == before {
                break;
            }
        }
        if p.is_empty() || out.iter().any(|o| o.contains(p)) {
            continue;
        }
        out.push(p.to_string());
    }
    out.join(": ")
}

/// The `Retry-After` of a 429/503 answer in seconds (the HTTP-date form is not honoured).
pub(crate) fn retry_after(resp: &ureq::Response) -> Option<Duration> {
    resp.header("Retry-After")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// A request body: bytes, or a file read again for every attempt (blob uploads).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Body<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

/// What a request needs beyond method and URL: a body, and a whole-request time limit other
/// than the per-request timeout (a layer takes longer to stream than a manifest).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Extra<'a> {
    pub(crate) body: Option<(&'a str, Body<'a>)>,
    pub(crate) timeout: Option<Duration>,
}

/// Sends one request, retrying 429/5xx answers and failed connections within the deadline.
/// `Ok(Err((status, resp)))` is an error status for the caller to interpret.
#[allow(clippy::type_complexity)]
pub(crate) fn send_retrying_with(
    agent: &ureq::Agent,
    opts: &RegistryOptions,
    method: &str,
    url: &str,
    authorization: Option<&str>,
    ctx: &Ctx<'_>,
    extra: &Extra<'_>,
) -> Result<Result<ureq::Response, (u16, ureq::Response)>, RegistryError> {
    let mut attempt = 0;
    loop {
        let remaining = ctx.remaining();
        if remaining.is_zero() {
            return Err(ctx.deadline_passed());
        }
        let mut req = agent
            .request(method, url)
            .timeout(extra.timeout.unwrap_or(opts.timeout).min(remaining))
            .set("Accept", MANIFEST_ACCEPT);
        if let Some(a) = authorization {
            req = req.set("Authorization", a);
        }
        let retry = attempt < opts.retries;
        let backoff = Duration::from_millis(200 << (attempt + 1).min(4));
        let sent = match extra.body {
            None => req.call(),
            Some((content_type, Body::Bytes(b))) => {
                req.set("Content-Type", content_type).send_bytes(b)
            }
            Some((content_type, Body::File(p))) => {
                let f = std::fs::File::open(p)
                    .map_err(|e| ctx.transport(format!("cannot read {}: {e}", p.display())))?;
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                req.set("Content-Type", content_type)
                    .set("Content-Length", &len.to_string())
                    .send(f)
            }
        };
        let wait = match sent {
            Ok(resp) => return Ok(Ok(resp)),
            Err(ureq::Error::Status(status, resp)) if retry && (status == 429 || status >= 500) => {
                match retry_after(&resp) {
                    Some(asked) if asked > opts.max_retry_after || asked >= ctx.remaining() => {
                        return Err(RegistryError::Status {
                            registry: ctx.registry.to_string(),
                            reference: ctx.reference.to_string(),
                            status,
                            detail: format!(
                                "asked to retry after {}s, longer than repro waits ({}s, {}s left of the deadline)",
                                asked.as_secs(),
                                opts.max_retry_after.as_secs(),
                                ctx.remaining().as_secs()
                            ),
                        });
                    }
                    Some(asked) => asked,
                    None => backoff,
                }
            }
            Err(ureq::Error::Status(status, resp)) => return Ok(Err((status, resp))),
            Err(ureq::Error::Transport(t)) => {
                if ctx.remaining().is_zero() {
                    return Err(ctx.deadline_passed());
                }
                let failure = classify(&t);
                let transient = failure == Failure::Other
                    && matches!(
                        t.kind(),
                        ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Io
                    );
                if !(transient && retry) {
                    let mut problem = describe_transport(&t);
                    if failure == Failure::Timeout {
                        problem = format!(
                            "no answer within {}s ({problem})",
                            opts.timeout.min(remaining).as_secs().max(1)
                        );
                    }
                    return Err(ctx.transport(problem));
                }
                backoff
            }
        };
        if wait >= ctx.remaining() {
            return Err(ctx.deadline_passed());
        }
        attempt += 1;
        std::thread::sleep(wait);
    }
}

/// The error for an error status: 401/403, 404, or any other.
pub(crate) fn status_error(
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
pub(crate) fn error_detail(resp: ureq::Response) -> String {
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
        // The registry's words reach a terminal in error messages: shown, never obeyed.
        Ok(e) => e
            .errors
            .iter()
            .map(|e| {
                crate::sanitize::escape(format!("{} {}", e.code, e.message).trim()).into_owned()
            })
            .collect::<Vec<_>>()
            .join("; "),
        Err(_) => String::new(),
    }
}

/// Reads a body up to [`MAX_MANIFEST_BYTES`].
pub(crate) fn read_limited(
    resp: ureq::Response,
    ctx: &Ctx<'_>,
    what: &str,
) -> Result<Vec<u8>, RegistryError> {
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
        .map_err(|e| {
            let mut pieces = vec![format!("reading the {what}"), e.to_string()];
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                pieces.push(s.to_string());
                src = s.source();
            }
            ctx.transport(join_causes(&pieces))
        })?;
    if body.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(too_large());
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_said_once() {
        let s = join_causes(&[
            "network error".into(),
            "Network Error: Network Error: timed out reading response".into(),
            "timed out reading response".into(),
        ]);
        assert_eq!(s, "network error: timed out reading response");
        let s = join_causes(&[
            "connection failed".into(),
            "Connection Failed: Connect error: Connection refused (os error 111)".into(),
        ]);
        assert_eq!(
            s,
            "connection failed: Connect error: Connection refused (os error 111)"
        );
    }
}
