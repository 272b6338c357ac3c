//! How to reach registries: which hosts may use plain HTTP, which CA files and `certs.d`
//! directories apply to a host, and the time limits. [`RegistryOptions::host_settings`] is the
//! typed per-host view the engine plan maps to `--tls-verify=false` / `--cert-dir`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::super::auth::AuthConfig;
use super::super::reference::{is_loopback_host, split_host_port};
use crate::record::{CaCert, RegistryAccess};

/// Environment variable: `certs.d` roots to read instead of the engines' defaults
/// (`:`-separated), e.g. for tests or a site-wide directory.
pub const CERTS_D_ENV: &str = "REPRO_CERTS_D";

/// Environment variable: deadline in seconds for one resolution (all its requests together).
pub const DEADLINE_ENV: &str = "REPRO_REGISTRY_TIMEOUT";

/// Default deadline for one resolution.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Registries (`host[:port]` or `host`) allowed over plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// Extra PEM CA bundle (`--ca-cert`); `SSL_CERT_FILE`/`SSL_CERT_DIR` are honoured too.
    pub ca_cert: Option<PathBuf>,
    /// `certs.d` roots: `ROOT/HOST[:PORT]/*.crt` are CAs for that registry, as for podman and
    /// docker. Default: `~/.config/containers/certs.d`, `/etc/containers/certs.d`,
    /// `/etc/docker/certs.d`, or the `:`-separated list in `REPRO_CERTS_D`.
    pub certs_d: Vec<PathBuf>,
    /// Where credentials come from.
    pub auth: AuthConfig,
    /// Time to establish a TCP connection.
    pub connect_timeout: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Deadline for one whole resolution (every request, retry and back-off together);
    /// `REPRO_REGISTRY_TIMEOUT` seconds, else 60 s.
    pub deadline: Duration,
    /// Retries after a 429/5xx answer or a failed connection.
    pub retries: u32,
    /// Longest `Retry-After` honoured; a longer one gives up instead of waiting.
    pub max_retry_after: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure_registries: Vec::new(),
            ca_cert: None,
            certs_d: default_certs_d(&|k| std::env::var_os(k)),
            auth: AuthConfig::from_env(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            deadline: deadline_from_env()
                .ok()
                .flatten()
                .unwrap_or(DEFAULT_DEADLINE),
            retries: 2,
            max_retry_after: Duration::from_secs(10),
        }
    }
}

/// `REPRO_REGISTRY_TIMEOUT` as a duration (`None` when unset), or why it is invalid.
pub fn deadline_from_env() -> Result<Option<Duration>, String> {
    let Some(v) = std::env::var_os(DEADLINE_ENV).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let s = v.to_string_lossy();
    match s.trim().parse::<u64>() {
        Ok(n) if n > 0 && n <= 3600 => Ok(Some(Duration::from_secs(n))),
        _ => Err(format!(
            "{DEADLINE_ENV}={s:?} is not a number of seconds between 1 and 3600"
        )),
    }
}

/// The engines' `certs.d` roots (or `REPRO_CERTS_D`), most specific first.
pub fn default_certs_d(env: &dyn Fn(&str) -> Option<std::ffi::OsString>) -> Vec<PathBuf> {
    if let Some(list) = env(CERTS_D_ENV) {
        return std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
    }
    let mut roots = Vec::new();
    let config_home = env("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            env("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        });
    if let Some(c) = config_home {
        roots.push(c.join("containers/certs.d"));
    }
    roots.push(PathBuf::from("/etc/containers/certs.d"));
    roots.push(PathBuf::from("/etc/docker/certs.d"));
    roots
}

/// What applies to one registry host: the typed view behind repro's own client and the
/// engine flags (`podman --tls-verify=false`, `--cert-dir DIR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSettings {
    /// `host[:port]` as written in the reference.
    pub registry: String,
    /// `localhost`, 127.0.0.0/8 or `[::1]`: HTTPS is tried first, then plain HTTP.
    pub loopback: bool,
    /// Declared with `--insecure-registry` / `insecure_registries`: HTTPS first, then plain HTTP.
    pub insecure: bool,
    /// CA files trusted for this host besides the system roots: `--ca-cert`, then every
    /// `*.crt` of the `certs.d` directories below, in that order.
    pub ca_files: Vec<PathBuf>,
    /// Existing `ROOT/HOST[:PORT]` directories of the `certs.d` roots (what `--cert-dir` takes).
    pub cert_dirs: Vec<PathBuf>,
}

impl HostSettings {
    /// Whether plain HTTP may be used after HTTPS failed (loopback or declared insecure).
    pub fn plain_http_allowed(&self) -> bool {
        self.loopback || self.insecure
    }

    /// What a run records of these settings: the insecure declaration and each readable CA
    /// file's path and SHA-256 (never a client key, never credentials); `None` when nothing
    /// beyond the defaults applied.
    pub fn access(&self) -> Option<RegistryAccess> {
        use sha2::Digest as _;
        let ca_certs = self
            .ca_files
            .iter()
            .filter_map(|f| {
                let bytes = std::fs::read(f).ok()?;
                let path = std::path::absolute(f).unwrap_or_else(|_| f.clone());
                Some(CaCert {
                    path: path.to_string_lossy().into_owned(),
                    sha256: format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes))),
                })
            })
            .collect();
        let a = RegistryAccess {
            registry: self.registry.clone(),
            insecure: self.insecure,
            ca_certs,
        };
        (a.insecure || !a.ca_certs.is_empty()).then_some(a)
    }
}

/// What a re-run records it needed: the original's access plus what applies now to the same
/// registry (an insecure declaration, further CA files; repeats dropped).
pub fn add_access(
    recorded: Option<&RegistryAccess>,
    now: Option<RegistryAccess>,
) -> Option<RegistryAccess> {
    match (recorded, now) {
        (None, now) => now,
        (Some(r), None) => Some(r.clone()),
        (Some(r), Some(n)) => {
            let mut a = r.clone();
            a.insecure |= n.insecure;
            for c in n.ca_certs {
                if !a.ca_certs.contains(&c) {
                    a.ca_certs.push(c);
                }
            }
            Some(a)
        }
    }
}

/// The one merge of registry settings for every command that talks to a registry (run,
/// rerun, script, image, audit): the configured insecure registries, then the flags' (repeats
/// dropped); the flag's CA certificate; the configured `registry_timeout` as the deadline
/// (else `REPRO_REGISTRY_TIMEOUT`, else 60 s). The CLI's `RegistryArgs` calls it.
pub fn registry_options(
    configured_insecure: Vec<String>,
    configured_timeout: Option<u64>,
    insecure_flags: &[String],
    ca_cert: Option<PathBuf>,
) -> RegistryOptions {
    let mut insecure_registries = configured_insecure;
    for f in insecure_flags {
        if !insecure_registries.contains(f) {
            insecure_registries.push(f.clone());
        }
    }
    let mut o = RegistryOptions {
        insecure_registries,
        ca_cert,
        ..RegistryOptions::default()
    };
    if let Some(t) = configured_timeout {
        o.deadline = Duration::from_secs(t);
    }
    o
}

impl RegistryOptions {
    /// Whether `registry` (`host[:port]`) was declared insecure, by `host:port` or by `host`.
    pub fn is_insecure(&self, registry: &str) -> bool {
        let host = split_host_port(registry).0;
        self.insecure_registries
            .iter()
            .any(|i| i == registry || i == host)
    }

    /// These options with a shorter deadline, connect timeout and retry budget, for checks
    /// whose failure is only a warning (a pinned digest) so the child is not held up.
    pub fn with_budget(&self, budget: Duration) -> RegistryOptions {
        let mut o = self.clone();
        o.deadline = o.deadline.min(budget);
        o.timeout = o.timeout.min(budget);
        o.connect_timeout = o
            .connect_timeout
            .min(budget / 2)
            .max(Duration::from_millis(500));
        o.retries = o.retries.min(1);
        o.max_retry_after = o.max_retry_after.min(budget / 2);
        o
    }

    /// The settings for one registry (`host[:port]` as in a reference's domain).
    pub fn host_settings(&self, registry: &str) -> HostSettings {
        let host = split_host_port(registry).0;
        let mut cert_dirs = Vec::new();
        let mut ca_files: Vec<PathBuf> = self.ca_cert.iter().cloned().collect();
        for root in &self.certs_d {
            let dir = root.join(registry);
            if dir.is_dir() {
                ca_files.extend(crt_files(&dir));
                cert_dirs.push(dir);
            }
        }
        HostSettings {
            registry: registry.to_string(),
            loopback: is_loopback_host(host),
            insecure: self.is_insecure(registry),
            ca_files,
            cert_dirs,
        }
    }
}

/// The `*.crt` files of a `certs.d/HOST` directory, sorted (client `*.cert`/`*.key` pairs are
/// the engines' business, not a CA).
fn crt_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "crt") && p.is_file())
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_settings_read_certs_d_and_insecure_declarations() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir_all(a.join("reg.lan:5000")).unwrap();
        std::fs::create_dir_all(b.join("reg.lan:5000")).unwrap();
        std::fs::write(a.join("reg.lan:5000/ca.crt"), "x").unwrap();
        std::fs::write(a.join("reg.lan:5000/client.cert"), "x").unwrap();
        std::fs::write(b.join("reg.lan:5000/z.crt"), "x").unwrap();
        let opts = RegistryOptions {
            insecure_registries: vec!["other.lan".into()],
            ca_cert: Some("/given/ca.pem".into()),
            certs_d: vec![a.clone(), b.clone(), tmp.path().join("missing")],
            auth: AuthConfig::anonymous(),
            ..RegistryOptions::default()
        };
        let s = opts.host_settings("reg.lan:5000");
        assert!(!s.loopback && !s.insecure && !s.plain_http_allowed());
        assert_eq!(
            s.ca_files,
            vec![
                PathBuf::from("/given/ca.pem"),
                a.join("reg.lan:5000/ca.crt"),
                b.join("reg.lan:5000/z.crt")
            ]
        );
        assert_eq!(
            s.cert_dirs,
            vec![a.join("reg.lan:5000"), b.join("reg.lan:5000")]
        );
        assert!(opts.host_settings("other.lan:443").insecure);
        assert!(opts.host_settings("127.0.0.5:1").loopback);
        assert!(opts.host_settings("[::1]:5000").loopback);
        assert!(opts.host_settings("localhost").plain_http_allowed());
        assert!(!opts.host_settings("reg.lan:5001").plain_http_allowed());
        assert!(opts.host_settings("reg.lan:5001").cert_dirs.is_empty());
    }

    #[test]
    fn access_records_insecure_and_ca_fingerprints_only_when_needed() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = tmp.path().join("ca.pem");
        std::fs::write(&ca, "pem").unwrap();
        let none = RegistryOptions {
            certs_d: vec![],
            ..RegistryOptions::default()
        };
        assert_eq!(none.host_settings("127.0.0.1:5000").access(), None);
        let o = registry_options(
            vec!["a.lan".into()],
            Some(7),
            &["a.lan".into(), "127.0.0.1:5000".into()],
            Some(ca.clone()),
        );
        assert_eq!(o.insecure_registries, ["a.lan", "127.0.0.1:5000"]);
        assert_eq!(o.deadline, Duration::from_secs(7));
        let o = RegistryOptions {
            certs_d: vec![],
            ..o
        };
        let a = o.host_settings("127.0.0.1:5000").access().unwrap();
        assert!(a.insecure);
        assert_eq!(a.ca_certs.len(), 1);
        assert_eq!(a.ca_certs[0].path, ca.to_string_lossy());
        let want = {
            use sha2::Digest as _;
            format!("sha256:{}", hex::encode(sha2::Sha256::digest(b"pem")))
        };
        assert_eq!(a.ca_certs[0].sha256, want);
    }

    #[test]
    fn certs_d_roots_follow_the_engines_or_the_override() {
        let env = |k: &str| match k {
            "HOME" => Some("/home/u".into()),
            _ => None,
        };
        assert_eq!(
            default_certs_d(&env),
            vec![
                PathBuf::from("/home/u/.config/containers/certs.d"),
                PathBuf::from("/etc/containers/certs.d"),
                PathBuf::from("/etc/docker/certs.d"),
            ]
        );
        let env = |k: &str| match k {
            CERTS_D_ENV => Some("/x:/y".into()),
            _ => None,
        };
        assert_eq!(
            default_certs_d(&env),
            vec![PathBuf::from("/x"), PathBuf::from("/y")]
        );
    }
}
