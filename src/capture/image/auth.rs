//! Registry credentials from the usual places (never recorded): `REGISTRY_AUTH_FILE`, podman's
//! `${XDG_RUNTIME_DIR}/containers/auth.json`, and Docker's `config.json` (`credHelpers`, `auths`,
//! `credsStore` via `docker-credential-<name> get`).

use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

/// A username and secret for one registry. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// Login name (`<token>` for an identity token).
    pub username: String,
    /// Password or token.
    pub secret: String,
    /// Where it came from (a file path or `docker-credential-NAME`), for messages.
    pub source: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .field("source", &self.source)
            .finish()
    }
}

impl Credential {
    /// The value of an `Authorization: Basic …` header.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.secret);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// Reading credentials failed in a way the user should hear about.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A credential file could not be parsed.
    #[error("cannot read registry credentials from {path}: {problem}")]
    File { path: String, problem: String },
    /// A credential helper failed.
    #[error("credential helper docker-credential-{helper} failed for {registry}: {problem}")]
    Helper {
        helper: String,
        registry: String,
        problem: String,
    },
}

/// Where to look for credentials. `from_env` gives the standard places.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// containers-auth.json files, first match wins (`REGISTRY_AUTH_FILE`, podman's auth.json).
    pub auth_files: Vec<PathBuf>,
    /// Docker's `config.json`.
    pub docker_config: Option<PathBuf>,
    /// `PATH` used to find `docker-credential-*` helpers (the process's `PATH` when `None`).
    pub helper_path: Option<OsString>,
}

impl AuthConfig {
    /// The standard places, from the environment.
    pub fn from_env() -> AuthConfig {
        let mut auth_files = Vec::new();
        if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|v| !v.is_empty()) {
            auth_files.push(PathBuf::from(f));
        }
        if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
            auth_files.push(PathBuf::from(d).join("containers/auth.json"));
        }
        let docker_config = match std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
            Some(d) => Some(PathBuf::from(d).join("config.json")),
            None => std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".docker/config.json")),
        };
        AuthConfig {
            auth_files,
            docker_config,
            helper_path: None,
        }
    }

    /// No credentials at all (anonymous access only).
    pub fn anonymous() -> AuthConfig {
        AuthConfig::default()
    }

    /// Finds the credential for `domain` (as in a reference: `host[:port]`, `docker.io`).
    pub fn lookup(&self, domain: &str) -> Result<Option<Credential>, AuthError> {
        let keys = registry_keys(domain);
        for file in &self.auth_files {
            if let Some(cfg) = read_config(file)? {
                if let Some(c) = from_auths(&cfg, &keys, file)? {
                    return Ok(Some(c));
                }
            }
        }
        let Some(file) = &self.docker_config else {
            return Ok(None);
        };
        let Some(cfg) = read_config(file)? else {
            return Ok(None);
        };
        for k in &keys {
            if let Some(helper) = cfg.cred_helpers.get(*k) {
                return self.run_helper(helper, k);
            }
        }
        if let Some(c) = from_auths(&cfg, &keys, file)? {
            return Ok(Some(c));
        }
        if let Some(store) = cfg.creds_store.as_deref().filter(|s| !s.is_empty()) {
            for k in &keys {
                if let Some(c) = self.run_helper(store, k)? {
                    return Ok(Some(c));
                }
            }
        }
        Ok(None)
    }

    fn run_helper(&self, helper: &str, server: &str) -> Result<Option<Credential>, AuthError> {
        let err = |problem: String| AuthError::Helper {
            helper: helper.to_string(),
            registry: server.to_string(),
            problem,
        };
        if helper.contains('/') || helper.is_empty() {
            return Err(err("helper names may not contain '/'".into()));
        }
        let program = format!("docker-credential-{helper}");
        let mut cmd = Command::new(find_in_path(&program, self.helper_path.as_deref()));
        cmd.arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = &self.helper_path {
            cmd.env("PATH", p);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| err(format!("cannot run {program}: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(server.as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|e| err(format!("{program}: {e}")))?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            // The helper protocol says "credentials not found in native keychain" on a miss.
            if text.to_lowercase().contains("not found") {
                return Ok(None);
            }
            return Err(err(format!("exited with {}: {}", out.status, text.trim())));
        }
        #[derive(Deserialize)]
        struct HelperOut {
            #[serde(rename = "Username", default)]
            username: String,
            #[serde(rename = "Secret", default)]
            secret: String,
        }
        let parsed: HelperOut = serde_json::from_slice(&out.stdout)
            .map_err(|e| err(format!("output is not the helper JSON: {e}")))?;
        if parsed.secret.is_empty() {
            return Ok(None);
        }
        Ok(Some(Credential {
            username: parsed.username,
            secret: parsed.secret,
            source: program,
        }))
    }
}

fn find_in_path(program: &str, path: Option<&std::ffi::OsStr>) -> PathBuf {
    if let Some(p) = path {
        for dir in std::env::split_paths(p) {
            let candidate = dir.join(program);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from(program)
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: std::collections::BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

fn read_config(path: &Path) -> Result<Option<ConfigFile>, AuthError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(AuthError::File {
                path: path.display().to_string(),
                problem: e.to_string(),
            })
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| AuthError::File {
            path: path.display().to_string(),
            problem: format!("not valid JSON: {e}"),
        })
}

fn from_auths(
    cfg: &ConfigFile,
    keys: &[&str],
    file: &Path,
) -> Result<Option<Credential>, AuthError> {
    // Keys may be written as URLs (`https://host/v1/`), so compare by host.
    for (key, entry) in &cfg.auths {
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("");
        if !keys.contains(&host) {
            continue;
        }
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| AuthError::File {
                    path: file.display().to_string(),
                    problem: format!("the \"auth\" entry for {key} is not base64 of USER:PASSWORD"),
                })?;
            let (user, secret) = decoded.split_once(':').ok_or_else(|| AuthError::File {
                path: file.display().to_string(),
                problem: format!(
                    "the \"auth\" entry for {key} has no ':' between user and password"
                ),
            })?;
            return Ok(Some(Credential {
                username: user.to_string(),
                secret: secret.to_string(),
                source: file.display().to_string(),
            }));
        }
        if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
            return Ok(Some(Credential {
                username: u.clone(),
                secret: p.clone(),
                source: file.display().to_string(),
            }));
        }
    }
    Ok(None)
}

/// The names a registry may be stored under (Docker Hub has several).
fn registry_keys(domain: &str) -> Vec<&str> {
    if domain == "docker.io" || domain == "index.docker.io" || domain == "registry-1.docker.io" {
        vec!["index.docker.io", "docker.io", "registry-1.docker.io"]
    } else {
        vec![domain]
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `basic` or `bearer` (lowercased).
    pub scheme: String,
    /// Parameters such as `realm`, `service`, `scope`.
    pub params: std::collections::BTreeMap<String, String>,
}

/// Parses `Bearer realm="…",service="…",scope="…"` (quoted values may contain commas).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = match header.find(' ') {
        Some(i) => (&header[..i], &header[i + 1..]),
        None => (header, ""),
    };
    if scheme.is_empty() {
        return None;
    }
    let mut params = std::collections::BTreeMap::new();
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b' ' || b[i] == b',') {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        let key = rest[ks..i].trim().to_ascii_lowercase();
        if i >= b.len() || b[i] != b'=' {
            continue;
        }
        i += 1;
        let mut value = String::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                let ch_len = rest[i..].chars().next().map_or(1, char::len_utf8);
                value.push_str(&rest[i..i + ch_len]);
                i += ch_len;
            }
            i += 1;
        } else {
            let vs = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            value = rest[vs..i].trim().to_string();
        }
        if !key.is_empty() {
            params.insert(key, value);
        }
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_with_commas_in_quotes() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example.com/token");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        let b = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(b.scheme, "basic");
    }

    #[test]
    fn docker_config_auths_and_podman_auth_file() {
        let dir = tempfile::tempdir().unwrap();
        let docker = dir.path().join("config.json");
        std::fs::write(
            &docker,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"},"reg.example.com:5000":{"auth":"YTpiOmM="}}}"#,
        )
        .unwrap();
        let podman = dir.path().join("auth.json");
        std::fs::write(
            &podman,
            r#"{"auths":{"reg.example.com:5000":{"auth":"cG9kOm1hbg=="}}}"#,
        )
        .unwrap();
        let mut cfg = AuthConfig {
            auth_files: vec![],
            docker_config: Some(docker),
            helper_path: Some(OsString::from("/nonexistent")),
        };
        let hub = cfg.lookup("docker.io").unwrap().unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.secret.as_str()),
            ("user", "pass")
        );
        let r = cfg.lookup("reg.example.com:5000").unwrap().unwrap();
        assert_eq!((r.username.as_str(), r.secret.as_str()), ("a", "b:c"));
        assert!(cfg.lookup("other.example.com").unwrap().is_none());
        cfg.auth_files.push(podman);
        assert_eq!(
            cfg.lookup("reg.example.com:5000")
                .unwrap()
                .unwrap()
                .username,
            "pod"
        );
        assert!(
            !format!("{r:?}").contains("b:c"),
            "Debug must redact the secret"
        );
    }

    #[test]
    fn broken_auth_entry_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let docker = dir.path().join("config.json");
        std::fs::write(&docker, r#"{"auths":{"r.io":{"auth":"!!!"}}}"#).unwrap();
        let cfg = AuthConfig {
            docker_config: Some(docker.clone()),
            ..AuthConfig::default()
        };
        let e = cfg.lookup("r.io").unwrap_err();
        assert!(e.to_string().contains(&docker.display().to_string()), "{e}");
    }
}
