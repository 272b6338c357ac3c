//! Test environment: a private HOME and database, real git repositories in temp dirs.
#![allow(dead_code)]

pub mod engine;
pub mod mlflow;
pub mod python;
pub mod registry;
pub mod slurm;

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use assert_cmd::Command;
use tempfile::TempDir;

/// A sandbox with its own HOME, XDG dirs and database.
pub struct TestEnv {
    pub dir: TempDir,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let dir = tempfile::Builder::new()
            .prefix("repro-test")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        TestEnv { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn home(&self) -> PathBuf {
        self.root().join("home")
    }

    pub fn db(&self) -> PathBuf {
        self.root().join("db/repro.db")
    }

    /// `repro` with this environment: HOME, REPRO_DB, no inherited repro settings.
    pub fn repro(&self) -> Command {
        let mut c = Command::cargo_bin("repro").unwrap();
        for (k, _) in std::env::vars() {
            if k.starts_with("REPRO_") || k.starts_with("XDG_") || k == "NO_COLOR" {
                c.env_remove(&k);
            }
        }
        c.env("HOME", self.home())
            .env("REPRO_DB", self.db())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com");
        c
    }

    /// Runs `repro ARGS` in `cwd` and returns (exit code, stdout, stderr).
    pub fn run_in(&self, cwd: &Path, args: &[&str]) -> (i32, String, String) {
        let out = self.repro().current_dir(cwd).args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `repro show ID --json` parsed.
    pub fn show_json(&self, id: &str) -> serde_json::Value {
        let out = self.repro().args(["show", id, "--json"]).output().unwrap();
        assert!(
            out.status.success(),
            "show failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `repro ls --json` runs, newest first.
    pub fn runs(&self) -> Vec<serde_json::Value> {
        let out = self
            .repro()
            .args(["ls", "--json", "--limit", "1000"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ls failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["runs"].as_array().unwrap().clone()
    }

    /// The newest run's id.
    pub fn last_id(&self) -> String {
        self.runs()[0]["id"].as_str().unwrap().to_string()
    }

    /// A fresh git repository with one commit (README), in ROOT/NAME.
    pub fn git_repo(&self, name: &str) -> PathBuf {
        let repo = self.root().join(name);
        std::fs::create_dir_all(&repo).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("README"), "hello\n").unwrap();
        git(&repo, &["add", "README"]);
        git(&repo, &["commit", "-q", "-m", "init"]);
        repo
    }
}

/// Runs git in `dir`, panicking on failure; returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = StdCommand::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file under `dir` (except .git) with its bytes, sorted, for tree comparisons.
pub fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if p.file_name().unwrap() == ".git" {
                continue;
            }
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Full path of executable `name` found on `PATH`, if any.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Whether executable `name` is on `PATH` (tests skip or fail loudly on missing tools).
pub fn tool_available(name: &str) -> bool {
    which(name).is_some()
}

/// Whether the tests run under CI (`CI` set to anything but empty, `0` or `false`): there a
/// check that cannot run is a failure, never a silent pass.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false" | "FALSE"))
}

/// A test that cannot check what it is for: locally it is skipped with a `SKIPPED:` line on
/// stderr (the caller returns); under `CI=true` it fails, so a green CI run checked everything.
#[track_caller]
pub fn skip_or_fail(reason: &str) {
    assert!(
        !in_ci(),
        "{reason}, and CI is set: CI must run this check (install what it needs: scripts/install-deps.sh)"
    );
    eprintln!("SKIPPED: {reason}; nothing was checked");
}

/// Whether `name` is on PATH; when not, [`skip_or_fail`] (the caller returns on `false`).
#[track_caller]
pub fn tool_or_skip(name: &str, needed_for: &str) -> bool {
    if tool_available(name) {
        return true;
    }
    skip_or_fail(&format!("`{name}` is not installed ({needed_for})"));
    false
}

/// Panics with a hint when a tool the harness cannot do without is missing.
pub fn require_tool(name: &str) {
    assert!(
        tool_available(name),
        "required test tool `{name}` is not on PATH; run .ci/install.sh"
    );
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Asserts that a command succeeded, showing its exit status, stderr and stdout when it did not.
#[track_caller]
pub fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "command failed ({}):\nstderr: {}\nstdout: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// [`assert_ok`] naming what ran (a tool, a loop's case).
#[track_caller]
pub fn assert_ok_for(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: command failed ({}):\nstderr: {}\nstdout: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}
