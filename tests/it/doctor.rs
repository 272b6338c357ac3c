//! `repro doctor` on a healthy setup and on broken ones: the engine check proves itself by
//! starting a container (real podman, a busybox image from a loopback registry).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::engine::{Podman, PushedBusybox};
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

/// `repro doctor` with a private, empty podman store (the machine's images never decide the
/// outcome) unless `vars` brings its own.
fn doctor(env: &TestEnv, path: Option<&Path>, extra: &[&str]) -> (i32, String, String) {
    let empty = Podman::new(&[]);
    doctor_with(env, path, &empty.env(), extra)
}

fn doctor_with(
    env: &TestEnv,
    path: Option<&Path>,
    vars: &[(String, OsString)],
    extra: &[&str],
) -> (i32, String, String) {
    let mut c = env.repro();
    if let Some(p) = path {
        c.env("PATH", p);
    }
    let out = c
        .current_dir(env.root())
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .args(["doctor", "--engine-timeout", "60"])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `--json` check named `name`.
fn json_check(out: &str, name: &str) -> Value {
    let v: Value = serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {out}"))
        .clone()
}

/// Writes the user configuration file.
fn config(env: &TestEnv, toml: &str) {
    let f = env.home().join(".config/repro/config.toml");
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    std::fs::write(&f, toml).unwrap();
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
        .envs(Podman::new(&[]).env().iter().map(|(k, v)| (k, v)))
        .args(["doctor", "--engine-timeout", "60"])
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

#[test]
fn the_engine_check_starts_a_container_from_a_local_busybox() {
    let bb = PushedBusybox::new("library/busybox", "1.36");
    bb.pull();
    let env = TestEnv::new();
    let (code, out, err) = doctor_with(&env, None, &bb.podman_env(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    let probe = out
        .lines()
        .find(|l| l.contains("container podman"))
        .unwrap_or_else(|| panic!("no probe line: {out}"));
    assert!(probe.starts_with("ok "), "{out}");
    assert!(
        probe.contains(&bb.digest),
        "the local busybox by digest: {out}"
    );
    // The engine's own event log shows that a repro-doctor container started.
    let events = std::fs::read_to_string(bb.podman().dir().join("events.log")).unwrap();
    assert!(
        events
            .lines()
            .any(|l| l.contains("repro-doctor-") && l.contains("\"Status\":\"start\"")),
        "no probe container start in the events: {events}"
    );

    let (_, out, _) = doctor_with(&env, None, &bb.podman_env(), &["--json"]);
    let c = json_check(&out, "container podman");
    assert_eq!(c["status"], "ok", "{c}");
    assert!(c["hint"].is_null());
}

#[test]
fn engine_flags_the_runtime_refuses_fail_the_probe_with_the_rlimit_hint() {
    let bb = PushedBusybox::new("library/busybox", "1.36");
    bb.pull();
    let env = TestEnv::new();
    // More open files than the kernel allows (fs.nr_open): setrlimit fails for root too.
    config(
        &env,
        "engine_args = [\"--ulimit=nofile=99999999:99999999\"]\n",
    );
    let (code, out, err) = doctor_with(&env, None, &bb.podman_env(), &[]);
    assert_eq!(code, 1, "a failed probe fails doctor: {out}{err}");
    let probe = line_with(&out, "container podman");
    assert!(probe.starts_with("FAIL"), "{out}");
    assert!(probe.contains("rlimit"), "the engine's own message: {out}");
    assert!(
        out.contains("hint: the container runtime may not set the default resource limits")
            && out.contains("engine_args = [\"--ulimit=nofile=1024:1024\""),
        "{out}"
    );
    assert!(!out.contains("could not be executed in the image"), "{out}");
    let (_, out, _) = doctor_with(&env, None, &bb.podman_env(), &["--json"]);
    let c = json_check(&out, "container podman");
    assert_eq!(c["status"], "fail");
    assert!(c["hint"].as_str().unwrap().contains("--ulimit"), "{c}");
}

#[test]
fn without_an_image_the_container_check_is_skipped_with_a_way_out() {
    let env = TestEnv::new();
    let (code, out, err) = doctor(&env, None, &[]);
    assert_eq!(code, 0, "{out}{err}");
    let probe = line_with(&out, "container podman");
    assert!(probe.starts_with("skipped"), "{out}");
    assert!(probe.contains("no small image available locally"), "{out}");
    assert!(out.contains("give --probe-image NAME@sha256:…"), "{out}");
    let (_, out, _) = doctor(&env, None, &["--json"]);
    assert_eq!(json_check(&out, "container podman")["status"], "skipped");
}

#[test]
fn a_probe_image_on_a_plain_http_registry_is_pulled_with_the_flags_repro_run_uses() {
    let bb = PushedBusybox::in_registry("tools/busybox", "1");
    let untrusting = Podman::new(&[]);
    let env = TestEnv::new();
    let probe = ["--probe-image", bb.image.as_str()];
    let (code, out, _) = doctor_with(&env, None, &untrusting.env(), &probe);
    assert_eq!(code, 1, "{out}");
    let line = line_with(&out, "container podman");
    assert!(
        line.starts_with("FAIL") && line.contains("pulling"),
        "{out}"
    );
    assert!(
        line.contains("server gave HTTP response to HTTPS client"),
        "{out}"
    );
    assert!(
        out.contains("--insecure-registry HOST:PORT or list it in insecure_registries"),
        "{out}"
    );
    // Declared insecure in repro's configuration, the probe pulls as `repro run` would.
    config(
        &env,
        &format!("insecure_registries = [\"{}\"]\n", bb.registry.addr()),
    );
    let (code, out, err) = doctor_with(&env, None, &untrusting.env(), &probe);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        line_with(&out, "container podman").starts_with("ok"),
        "{out}"
    );
}

#[test]
fn an_unpinned_probe_image_is_a_usage_error() {
    let env = TestEnv::new();
    let (code, out, err) = doctor(&env, None, &["--probe-image", "busybox:latest"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("not a pinned reference"), "{err}");
    assert!(out.is_empty());
}

#[test]
fn a_configured_mlflow_server_that_does_not_answer_fails() {
    let env = TestEnv::new();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    config(
        &env,
        &format!("mlflow_tracking_uri = \"http://127.0.0.1:{port}\"\n"),
    );
    let (code, out, _) = doctor(&env, None, &[]);
    assert_eq!(code, 1, "{out}");
    let l = line_with(&out, "mlflow");
    assert!(l.starts_with("FAIL") && l.contains("cannot reach"), "{out}");

    let (code, out, _) = doctor(&TestEnv::new(), None, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains("mlflow"),
        "no server configured, no line: {out}"
    );
}

#[test]
fn a_real_mlflow_server_answers() {
    let server = crate::support::mlflow::server();
    let env = TestEnv::new();
    config(&env, &format!("mlflow_tracking_uri = \"{}\"\n", server.uri));
    let (code, out, err) = doctor(&env, None, &["--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let c = json_check(&out, "mlflow");
    assert_eq!(c["status"], "ok", "{c}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("RESOURCE_DOES_NOT_EXIST"),
        "{c}"
    );
}

#[test]
fn slurm_is_checked_against_the_configured_cluster() {
    let cluster = crate::support::slurm::shared();
    let env = TestEnv::new();
    let vars = [("SLURM_CONF".to_string(), cluster.conf().into_os_string())];
    let mut all = Podman::new(&[]).env();
    all.extend(vars.iter().cloned());
    let (code, out, err) = doctor_with(&env, None, &all, &[]);
    assert_eq!(code, 0, "{out}{err}");
    let l = line_with(&out, "slurm");
    assert!(
        l.starts_with("ok") && l.contains("`squeue` answers"),
        "{out}"
    );

    // A configured cluster that does not answer is a failure.
    let bogus = env.root().join("slurm.conf");
    std::fs::write(
        &bogus,
        "ClusterName=none\nSlurmctldHost=nohost(127.0.0.1)\nSlurmctldPort=1\n",
    )
    .unwrap();
    let mut all = Podman::new(&[]).env();
    all.push(("SLURM_CONF".to_string(), bogus.into_os_string()));
    let (code, out, _) = doctor_with(&env, None, &all, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(line_with(&out, "slurm").starts_with("FAIL"), "{out}");
    assert!(out.contains("scontrol ping"), "{out}");
}

/// The line whose check is `name` (names with spaces, such as `container podman`).
fn line_with<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| {
            let rest = l.split_once(' ').map(|(_, r)| r.trim_start()).unwrap_or("");
            rest.starts_with(name) && !l.trim_start().starts_with("hint:")
        })
        .unwrap_or_else(|| panic!("no `{name}` line in:\n{text}"))
}
