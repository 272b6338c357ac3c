//! Python virtual environments under `target/` holding real PyPI tools the tests check repro's
//! output with (e.g. in-toto-attestation, securesystemslib). Created on first use, reused after;
//! `scripts/install-deps.sh` creates them ahead of time in CI.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

use super::require_tool;

/// A venv with a set of packages installed.
#[derive(Debug, Clone)]
pub struct Venv {
    pub dir: PathBuf,
}

/// The cargo target directory (`CARGO_TARGET_DIR`, else `<crate>/target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

impl Venv {
    /// The venv `target/<name>` with `packages` (pip requirement strings) installed, proven by
    /// importing every module of `imports`. Tests in parallel threads share one creation.
    pub fn ensure(name: &str, packages: &[&str], imports: &[&str]) -> Venv {
        static LOCKS: OnceLock<Mutex<HashMap<String, Venv>>> = OnceLock::new();
        let mut done = LOCKS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(v) = done.get(name) {
            return v.clone();
        }
        let venv = Venv {
            dir: target_dir().join(name),
        };
        if !venv.imports_ok(imports) {
            require_tool("python3");
            let status = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv.dir)
                .status()
                .expect("python3 -m venv");
            assert!(
                status.success(),
                "python3 -m venv {} failed",
                venv.dir.display()
            );
            let out = Command::new(venv.python())
                .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
                .args(packages)
                .stdin(Stdio::null())
                .output()
                .expect("pip install");
            assert!(
                out.status.success(),
                "pip install {packages:?} into {} failed (run scripts/install-deps.sh): {}",
                venv.dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                venv.imports_ok(imports),
                "{} still cannot import {imports:?}",
                venv.dir.display()
            );
        }
        done.insert(name.to_string(), venv.clone());
        venv
    }

    /// The venv's interpreter.
    pub fn python(&self) -> PathBuf {
        self.dir.join("bin/python")
    }

    fn imports_ok(&self, imports: &[&str]) -> bool {
        if !self.python().exists() {
            return false;
        }
        let code = imports
            .iter()
            .map(|m| format!("import {m}"))
            .collect::<Vec<_>>()
            .join("; ");
        Command::new(self.python())
            .args(["-c", &code])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Runs `python -c SCRIPT ARGS…` in `cwd`.
    pub fn run(&self, cwd: &Path, script: &str, args: &[&str]) -> Output {
        Command::new(self.python())
            .current_dir(cwd)
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run python")
    }
}
