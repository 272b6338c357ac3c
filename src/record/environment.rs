//! The environment a run ran in (docs/environment.md): the Python that the command used and its
//! installed distributions, the lock files at the repository root, the OS, CPU, memory and GPUs,
//! and an allow-list of variables that change results. `show --json` prints it under
//! `"environment"`; the store keeps each distinct snapshot once, addressed by its SHA-256.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// One run's environment snapshot. Facts that could not be read are `null` (or empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    /// The Python the command used (`null` in container mode and when none was found).
    pub python: Option<PythonEnv>,
    /// Lock files at the repository root, sorted by path.
    #[serde(default)]
    pub lockfiles: Vec<LockFile>,
    /// The host's operating system and kernel.
    pub os: Option<Os>,
    /// The host's CPU.
    pub cpu: Option<Cpu>,
    /// The host's memory (`MemTotal`).
    pub memory_bytes: Option<u64>,
    /// GPUs seen through NVML; empty without NVML.
    #[serde(default)]
    pub gpus: Vec<Gpu>,
    /// The allow-listed variables (`record_env`) that were set.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
}

/// Where a Python interpreter comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PythonKind {
    /// A virtual environment (`pyvenv.cfg`).
    Venv,
    /// A conda environment (`conda-meta/`).
    Conda,
    /// The system's (or any other non-environment) interpreter.
    System,
}

impl PythonKind {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            PythonKind::Venv => "venv",
            PythonKind::Conda => "conda",
            PythonKind::System => "system",
        }
    }
}

/// The Python a run used and what `pip list` would list in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PythonEnv {
    /// The interpreter's path as found (`$VIRTUAL_ENV/bin/python`, the `PATH` entry, …).
    pub executable: String,
    /// `3.11.2`, or `3.11` when only the layout tells.
    pub version: Option<String>,
    /// venv, conda or system.
    pub kind: PythonKind,
    /// The installed distributions, name as their metadata spells it → version.
    pub packages: BTreeMap<String, String>,
    /// Distributions installed from a local path or editable (name → `editable`,
    /// `local directory` or `local file`): a recreated environment cannot pin them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub local: BTreeMap<String, String>,
}

/// A lock file at the repository root and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockFile {
    /// Relative to the repository root.
    pub path: String,
    /// 64 lowercase hex digits.
    pub sha256: String,
}

/// The operating system (`/etc/os-release`) and kernel (`uname`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Os {
    /// `NAME` of os-release (`Debian GNU/Linux`).
    pub name: Option<String>,
    /// `VERSION_ID` of os-release (`12`).
    pub version: Option<String>,
    /// The kernel release (`6.1.0-18-amd64`).
    pub kernel: Option<String>,
}

/// The CPU (`/proc/cpuinfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cpu {
    /// `model name` (`Intel(R) Xeon(R) …`).
    pub model: Option<String>,
    /// Logical processors.
    pub cores: u32,
}

/// One GPU as NVML reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpu {
    /// NVML index.
    pub index: u32,
    /// `NVIDIA A100-SXM4-40GB`.
    pub model: String,
    /// The driver version (`535.104.05`).
    pub driver: Option<String>,
    /// The highest CUDA version the driver supports (`12.2`).
    pub cuda: Option<String>,
    /// Total memory.
    pub memory_bytes: Option<u64>,
}

/// A PyPI name normalised as pip compares them (PEP 503: lowercase, runs of `-_.` become `-`).
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

impl Environment {
    /// The canonical text stored and hashed (serde's field order, sorted maps).
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).expect("environment serialises")
    }

    /// `sha256:` + the hex digest of [`Environment::canonical`]: identical snapshots share it.
    pub fn digest(&self) -> String {
        format!(
            "sha256:{}",
            hex::encode(Sha256::digest(self.canonical().as_bytes()))
        )
    }

    /// Checks an environment read from outside (an import); the message names the bad field.
    pub fn check(&self) -> Result<(), String> {
        let text = |what: &str, s: &str| -> Result<(), String> {
            if s.chars().any(char::is_control) {
                return Err(format!("{what} contains a control character"));
            }
            Ok(())
        };
        if let Some(p) = &self.python {
            text("python.executable", &p.executable)?;
            if let Some(v) = &p.version {
                text("python.version", v)?;
            }
            for (name, version) in p.packages.iter().chain(p.local.iter()) {
                if name.is_empty() || normalize_name(name).is_empty() {
                    return Err("python.packages has an empty name".into());
                }
                if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(format!(
                        "python.packages: '{name}' is not a distribution name"
                    ));
                }
                text(&format!("python.packages[{name}]"), version)?;
            }
        }
        for l in &self.lockfiles {
            if l.path.is_empty()
                || l.path.starts_with('/')
                || l.path.split('/').any(|c| c == "..")
                || l.path.chars().any(char::is_control)
            {
                return Err(format!(
                    "lockfiles: '{}' is not a path relative to the repository",
                    l.path.escape_debug()
                ));
            }
            if l.sha256.len() != 64
                || !l
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(format!(
                    "lockfiles: '{}' has sha256 '{}', not 64 lowercase hex digits",
                    l.path,
                    l.sha256.escape_debug()
                ));
            }
        }
        for (k, v) in &self.vars {
            if k.is_empty()
                || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                || k.as_bytes()[0].is_ascii_digit()
            {
                return Err(format!(
                    "vars: '{}' is not a variable name",
                    k.escape_debug()
                ));
            }
            text(&format!("vars.{k}"), v)?;
        }
        for g in &self.gpus {
            text("gpus.model", &g.model)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalise_like_pip() {
        assert_eq!(normalize_name("Foo_Bar.baz"), "foo-bar-baz");
        assert_eq!(normalize_name("zope.interface"), "zope-interface");
        assert_eq!(normalize_name("typing__extensions"), "typing-extensions");
        assert_eq!(normalize_name("NumPy"), "numpy");
    }

    #[test]
    fn digest_is_stable_and_content_addressed() {
        let mut a = Environment::default();
        a.vars.insert("OMP_NUM_THREADS".into(), "4".into());
        let b = a.clone();
        assert_eq!(a.digest(), b.digest());
        a.vars.insert("PYTHONHASHSEED".into(), "0".into());
        assert_ne!(a.digest(), b.digest());
        assert!(a.digest().starts_with("sha256:"));
    }

    #[test]
    fn check_rejects_bad_fields() {
        let mut e = Environment::default();
        assert!(e.check().is_ok());
        e.lockfiles.push(LockFile {
            path: "../uv.lock".into(),
            sha256: "0".repeat(64),
        });
        assert!(e.check().unwrap_err().contains("lockfiles"));
        e.lockfiles[0].path = "uv.lock".into();
        e.lockfiles[0].sha256 = "xyz".into();
        assert!(e.check().unwrap_err().contains("sha256"));
        e.lockfiles.clear();
        e.vars.insert("1BAD".into(), "x".into());
        assert!(e.check().unwrap_err().contains("vars"));
    }
}
