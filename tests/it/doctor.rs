//! `repro doctor` on a healthy setup and on broken ones.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{which, TestEnv};

/// A PATH holding only the named tools (symlinked), so a test controls what is "installed".
fn path_with(env: &TestEnv, tools: &[&str]) -> PathBuf {
    let bin = env.root().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for t in tools {
        let real = which(t).unwrap_or_else(|| panic!("test needs `{t}` on PATH"));
        std::os::unix::fs::symlink(real, bin.join(t)).unwrap();
    }
    bin
}

fn doctor(env: &TestEnv, path: Option<&Path>, extra: &[&str]) -> (i32, String, String) {
    let mut c = env.repro();
    if let Some(p) = path {
        c.env("PATH", p);
    }
    let out = c
        .current_dir(env.root())
        .args(["doctor", "--engine-timeout", "30"])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn line<'a>(text: &'a str, check: &str) -> &'a str {
    text.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(check))
        .unwrap_or_else(|| panic!("no `{check}` line in:\n{text}"))
}

#[test]
fn healthy_setup_passes_with_one_line_per_check() {
    let env = TestEnv::new();
    let (code, _, err) = env.run_in(env.root(), &["run", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = doctor(&env, None, &[]);
    assert_eq!(code, 0, "{out}{err}");
    let db = line(&out, "database");
    assert!(db.starts_with("ok "), "{db}");
    assert!(
        db.contains("integrity ok") && db.contains("(latest)"),
        "{db}"
    );
    assert!(db.contains("1 runs"), "{db}");
    assert!(line(&out, "git").starts_with("ok "), "{out}");
    assert!(line(&out, "config").contains("not found"), "{out}");
    assert!(out.lines().any(|l| l.contains("credentials")), "{out}");
    assert!(out.lines().any(|l| l.contains("shellcheck")), "{out}");
    // Engines, when installed, get a line each; none missing is ever a FAIL.
    assert!(!out.contains("FAIL"), "{out}");

    let (code, out, _) = doctor(&env, None, &["--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["ok"], true);
    let checks = v["checks"].as_array().unwrap();
    let db = checks.iter().find(|c| c["check"] == "database").unwrap();
    assert_eq!(db["status"], "ok");
    assert!(db["hint"].is_null());
}

#[test]
fn no_engine_on_path_is_a_warning_not_a_failure() {
    let env = TestEnv::new();
    let bin = path_with(&env, &["git"]);
    let (code, out, err) = doctor(&env, Some(&bin), &[]);
    assert_eq!(code, 0, "{out}{err}");
    let engine = line(&out, "engine");
    assert!(engine.starts_with("warn"), "{engine}");
    assert!(engine.contains("no container engine found"), "{out}");
    assert!(out.contains("hint: install podman or docker"), "{out}");
    assert!(line(&out, "shellcheck").starts_with("warn"), "{out}");
}

#[test]
fn configured_engine_missing_is_named() {
    let env = TestEnv::new();
    let bin = path_with(&env, &["git"]);
    let mut c = env.repro();
    let out = c
        .env("PATH", &bin)
        .env("REPRO_ENGINE", "docker")
        .args(["doctor"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("configured (env REPRO_ENGINE) but not found on PATH"),
        "{text}"
    );
}

#[test]
fn missing_git_fails() {
    let env = TestEnv::new();
    let bin = path_with(&env, &[]);
    let (code, out, _) = doctor(&env, Some(&bin), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(line(&out, "git").starts_with("FAIL"), "{out}");
    assert!(out.contains("hint: install git"), "{out}");
}

#[test]
fn corrupt_database_fails_with_a_hint_and_is_left_alone() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.db().parent().unwrap()).unwrap();
    let junk = b"this is not sqlite, just some bytes that happen to be here\n".repeat(100);
    std::fs::write(env.db(), &junk).unwrap();
    let (code, out, _) = doctor(&env, None, &[]);
    assert_eq!(code, 1, "{out}");
    let db = line(&out, "database");
    assert!(db.starts_with("FAIL"), "{db}");
    assert!(db.contains(&env.db().display().to_string()), "{db}");
    assert!(out.contains("hint: restore it from a backup"), "{out}");
    assert_eq!(
        std::fs::read(env.db()).unwrap(),
        junk,
        "doctor never writes"
    );

    let (_, out, _) = doctor(&env, None, &["--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
}

#[test]
fn database_path_that_is_a_directory_fails() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.db()).unwrap();
    let (code, out, _) = doctor(&env, None, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(line(&out, "database").contains("is a directory"), "{out}");
}

#[test]
fn unreadable_database_fails() {
    let env = TestEnv::new();
    env.run_in(env.root(), &["run", "-q", "--", "true"]);
    // root reads any file whatever its mode; the check cannot be exercised then.
    if unsafe { libc::geteuid() } == 0 {
        eprintln!(
            "SKIPPED unreadable_database_fails: running as root, mode 000 does not stop reads"
        );
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(env.db(), std::fs::Permissions::from_mode(0o000)).unwrap();
    let (code, out, _) = doctor(&env, None, &[]);
    std::fs::set_permissions(env.db(), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(line(&out, "database").contains("cannot read"), "{out}");
    assert!(out.contains("chmod 600"), "{out}");
}

#[test]
fn newer_schema_fails() {
    let env = TestEnv::new();
    env.run_in(env.root(), &["run", "-q", "--", "true"]);
    let c = rusqlite::Connection::open(env.db()).unwrap();
    c.execute_batch("PRAGMA user_version = 999").unwrap();
    drop(c);
    let (code, out, _) = doctor(&env, None, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        line(&out, "database").contains("newer than this repro"),
        "{out}"
    );
}

#[test]
fn broken_config_fails_but_the_other_checks_still_run() {
    let env = TestEnv::new();
    let f = env.home().join(".config/repro/config.toml");
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    std::fs::write(&f, "colour = \"always\"\n").unwrap();
    let (code, out, _) = doctor(&env, None, &[]);
    assert_eq!(code, 1, "{out}");
    let cfg = line(&out, "config");
    assert!(cfg.starts_with("FAIL"), "{cfg}");
    assert!(cfg.contains("colour") && cfg.contains("line 1"), "{cfg}");
    assert!(line(&out, "git").starts_with("ok"), "{out}");
    assert!(line(&out, "database").starts_with("ok"), "{out}");
}

#[test]
fn credential_sources_are_named_without_secrets() {
    let env = TestEnv::new();
    let docker = env.home().join(".docker");
    std::fs::create_dir_all(&docker).unwrap();
    // base64("user:hunter2-very-secret")
    std::fs::write(
        docker.join("config.json"),
        r#"{"auths":{"registry.example.com":{"auth":"dXNlcjpodW50ZXIyLXZlcnktc2VjcmV0"}},
            "credHelpers":{"gcr.io":"nosuchhelper"}}"#,
    )
    .unwrap();
    let auth_file = env.root().join("auth.json");
    std::fs::write(
        &auth_file,
        r#"{"auths":{"quay.io":{"auth":"dXNlcjpodW50ZXIyLXZlcnktc2VjcmV0"}}}"#,
    )
    .unwrap();
    let out = env
        .repro()
        .env("REGISTRY_AUTH_FILE", &auth_file)
        .args(["doctor", "--engine-timeout", "30"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("registry.example.com"), "{text}");
    assert!(text.contains("quay.io"), "{text}");
    assert!(text.contains("docker-credential-nosuchhelper"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("warn") && l.contains("credentials")),
        "{text}"
    );
    for secret in ["dXNlcjpodW50ZXIy", "hunter2"] {
        assert!(!text.contains(secret), "secret leaked: {text}");
    }
}
