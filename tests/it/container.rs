//! `repro run --image` really runs the pinned digest in a container (podman, and docker when
//! dockerd is available), against a real registry on 127.0.0.1.

use crate::support::assert_ok;
use std::ffi::OsString;
use std::path::Path;

use crate::support::engine::{Dockerd, Podman, PushedBusybox};
use crate::support::registry::Registry;
use crate::support::TestEnv;

fn run_in_container(env: &TestEnv, engine: &str, engine_env: &[(String, OsString)], image: &str) {
    let repo = env.git_repo(&format!("proj-{engine}"));
    std::fs::create_dir_all(repo.join("sub")).unwrap();
    std::fs::write(repo.join("sub/input.txt"), "from the repo\n").unwrap();
    let out = env
        .repro()
        .current_dir(repo.join("sub"))
        .envs(engine_env.iter().map(|(k, v)| (k, v)))
        .env("SEED", "17")
        .args(["run", "--engine", engine, "--image", image, "--env", "SEED"])
        .args(["--engine-arg=--network=none"])
        .args(["--", "/bin/busybox", "sh", "-c"])
        .arg("echo hi; cat input.txt; echo seed=$SEED; pwd; exit 3")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{engine}: {stdout}\n{stderr}");
    assert_eq!(
        stdout, "hi\nfrom the repo\nseed=17\n/workspace/sub\n",
        "{engine}: {stderr}"
    );
    let run = env.show_json(&env.last_id());
    assert_eq!(run["status"], "failed");
    assert_eq!(run["exit_code"], 3);
    assert_eq!(run["exec"]["mode"], "container");
    assert_eq!(run["exec"]["engine"], engine);
    assert_eq!(run["image"]["reference"], image);
    assert_eq!(run["image"]["digest"], image.split('@').nth(1).unwrap());
    assert_eq!(run["image"]["resolved_by"], "pinned");
    assert_eq!(run["cwd"], "sub");
}

#[test]
fn pinned_image_runs_in_podman_with_output_and_exit_code_passed_through() {
    let bb = PushedBusybox::new("team/trainer", "1.0");
    let (image, podman) = (&bb.image, bb.podman());
    let env = TestEnv::new();
    run_in_container(&env, "podman", &podman.env(), image);
}

#[test]
fn pinned_image_runs_in_docker_when_dockerd_is_available() {
    let Some(dockerd) = Dockerd::start() else {
        return;
    };
    let bb = PushedBusybox::in_registry("team/trainer", "1.0");
    let image = &bb.image;
    let env = TestEnv::new();
    run_in_container(&env, "docker", &dockerd.env(), image);
}

#[test]
fn a_missing_engine_is_refused_before_anything_is_recorded() {
    let env = TestEnv::new();
    let image = format!("127.0.0.1:1/team/app@sha256:{}", "a".repeat(64));
    let out = env
        .repro()
        .current_dir(env.root())
        .env("PATH", "/nonexistent")
        .args(["run", "--image", &image, "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no container engine found"), "{err}");
    assert!(err.contains("--host"), "{err}");
    assert!(env.runs().is_empty());
}

#[test]
fn a_tag_is_resolved_against_the_registry_and_exactly_that_digest_runs() {
    let bb = PushedBusybox::new("team/trainer", "2.3.1");
    let (registry, digest, podman) = (&bb.registry, &bb.digest, bb.podman());
    let env = TestEnv::new();
    let tag_ref = format!("{}/team/trainer:2.3.1", registry.addr());
    let out = env
        .repro()
        .current_dir(env.root())
        .envs(podman.env().iter().map(|(k, v)| (k, v)))
        .args(["run", "--engine", "podman", "--image", &tag_ref])
        .args([
            "--engine-arg=--network=none",
            "--",
            "/bin/busybox",
            "echo",
            "ok",
        ])
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    let run = env.show_json(&env.last_id());
    assert_eq!(run["image"]["reference"], tag_ref.as_str());
    assert_eq!(run["image"]["digest"], digest.as_str());
    assert_eq!(run["image"]["resolved_by"], "registry");
    // The container that ran has exactly that digest.
    let inspect = podman
        .command()
        .args(["image", "inspect", "--format", "{{.Digest}}"])
        .arg(format!("{}/team/trainer@{digest}", registry.addr()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&inspect.stdout).trim(), digest);

    // Moving the tag does not change what the recorded run pins.
    let moved = registry.push_busybox_with_labels(
        "team/trainer",
        "2.3.1",
        &[("org.opencontainers.image.revision", "moved")],
    );
    assert_ne!(&moved, digest);
    assert_eq!(
        env.show_json(&env.last_id())["image"]["digest"],
        digest.as_str()
    );
}

#[test]
fn latest_and_unresolvable_references_are_refused_unless_allowed() {
    let registry = Registry::start();
    registry.push_busybox("team/app", "latest");
    let env = TestEnv::new();
    let latest = format!("{}/team/app", registry.addr());
    let (code, _, err) = env.run_in(
        env.root(),
        &["run", "--host", "--image", &latest, "--", "true"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("latest") && err.contains("--allow-latest"),
        "{err}"
    );
    let (code, _, err) = env.run_in(
        env.root(),
        &[
            "run",
            "--host",
            "--allow-latest",
            "--image",
            &latest,
            "--",
            "true",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        env.show_json(&env.last_id())["image"]["resolved_by"],
        "registry"
    );

    let missing = format!("{}/team/nothing:1.0", registry.addr());
    let (code, _, err) = env.run_in(
        env.root(),
        &[
            "run",
            "--host",
            "--resolve",
            "registry",
            "--image",
            &missing,
            "--",
            "true",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--allow-unpinned"), "{err}");
    assert_eq!(env.runs().len(), 1, "a refused run must not be recorded");
    let (code, _, err) = env.run_in(
        env.root(),
        &[
            "run",
            "--host",
            "--resolve",
            "registry",
            "--allow-unpinned",
            "--image",
            &missing,
            "--",
            "true",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("UNPINNED"), "{err}");
    let run = env.show_json(&env.last_id());
    assert_eq!(run["image"]["resolved_by"], "unpinned");
    assert_eq!(run["image"]["digest"], serde_json::Value::Null);
    let (_, text, _) = env.run_in(env.root(), &["show", &env.last_id()]);
    assert!(text.contains("UNPINNED"), "{text}");

    let (code, _, err) = env.run_in(
        env.root(),
        &["run", "--host", "--image", "Bad//Ref", "--", "true"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("error:") && err.contains("hint:"), "{err}");
}

#[test]
fn sigterm_to_the_wrapper_stops_the_container() {
    use std::process::{Command as StdCommand, Stdio};
    let bb = PushedBusybox::new("team/trainer", "sig");
    let (image, podman) = (&bb.image, bb.podman());
    let env = TestEnv::new();
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("repro"))
        .current_dir(env.root())
        .envs(podman.env().iter().map(|(k, v)| (k, v)))
        .env("REPRO_DB", env.db())
        .env("HOME", env.home())
        .env("REPRO_STOP_TIMEOUT", "2")
        .args([
            "run",
            "-q",
            "--engine",
            "podman",
            "--image",
            image,
            "--engine-arg=--network=none",
        ])
        .args([
            "--",
            "/bin/busybox",
            "sh",
            "-c",
            "echo started; exec /bin/busybox sleep 60",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the container's first line, then signal the wrapper.
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 8];
    std::io::Read::read_exact(&mut stdout, &mut buf).unwrap();
    assert_eq!(&buf, b"started\n");
    let t0 = std::time::Instant::now();
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    // `sleep` as PID 1 ignores SIGTERM, so repro kills the container after the grace period.
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(20),
        "the container did not stop"
    );
    assert_eq!(status.code(), Some(137));
    let run = env.show_json(&env.last_id());
    assert_eq!(run["status"], "killed");
    assert_eq!(run["signal"], 9);
    // No container is left behind.
    let ps = podman.command().args(["ps", "-aq"]).output().unwrap();
    assert!(String::from_utf8_lossy(&ps.stdout).trim().is_empty());
}

#[test]
fn show_points_out_an_image_built_from_another_commit() {
    let registry = Registry::start();
    registry.push_busybox("team/trainer", "rev");
    let env = TestEnv::new();
    let repo = env.git_repo("revproj");
    let image = format!("{}/team/trainer:rev", registry.addr());
    let (code, _, err) = env.run_in(&repo, &["run", "--host", "--image", &image, "--", "true"]);
    assert_eq!(code, 0, "{err}");
    let id = env.last_id();
    let run = env.show_json(&id);
    let label = run["image"]["labels"]["org.opencontainers.image.revision"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(run["code"]["commit"].as_str().unwrap(), label);
    let (_, text, _) = env.run_in(&repo, &["show", &id]);
    assert!(
        text.contains(&format!(
            "the image was built from revision {label}, not this commit"
        )),
        "{text}"
    );
    let (_, pin, _) = env.run_in(&repo, &["show", &id]);
    assert!(
        pin.contains("pin grade    image: resolved (registry), code: clean"),
        "{pin}"
    );
}

#[test]
fn sigterm_reaches_a_container_process_that_handles_it() {
    use std::process::{Command as StdCommand, Stdio};
    let bb = PushedBusybox::new("team/trainer", "trap");
    let (image, podman) = (&bb.image, bb.podman());
    let env = TestEnv::new();
    let script =
        "trap 'echo got-term; exit 7' TERM; echo started; while :; do /bin/busybox sleep 0.1; done";
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("repro"))
        .current_dir(env.root())
        .envs(podman.env().iter().map(|(k, v)| (k, v)))
        .env("REPRO_DB", env.db())
        .env("HOME", env.home())
        .env("REPRO_STOP_TIMEOUT", "30")
        .args([
            "run",
            "-q",
            "--engine",
            "podman",
            "--image",
            image,
            "--engine-arg=--network=none",
        ])
        .args(["--", "/bin/busybox", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 8];
    std::io::Read::read_exact(&mut stdout, &mut buf).unwrap();
    assert_eq!(&buf, b"started\n");
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(status.code(), Some(7));
    assert_eq!(env.show_json(&env.last_id())["exit_code"], 7);
}

/// A plain-HTTP loopback registry with busybox, and podman with no registries.conf entry for it:
/// only `--insecure-registry` can make podman speak HTTP to it.
fn untrusted_registry() -> (Registry, Podman, TestEnv, String) {
    let registry = Registry::start();
    let digest = registry.push_busybox("team/trainer", "1.0");
    let image = format!("{}/team/trainer@{digest}", registry.addr());
    (registry, Podman::new(&[]), TestEnv::new(), image)
}

/// `repro run` against a plain-HTTP loopback registry that podman is NOT configured to trust.
fn run_untrusted(env: &TestEnv, podman: &Podman, image: &str, extra: &[&str]) -> (i32, String) {
    let marker = env.root().join("ran");
    let out = env
        .repro()
        .current_dir(env.root())
        .envs(podman.env().iter().map(|(k, v)| (k, v)))
        .args(["run", "--engine", "podman", "--offline", "--image", image])
        .args(extra)
        .args(["--engine-arg=--network=none", "--"])
        .args(["/bin/busybox", "touch", "/workspace/ran"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(marker.exists(), out.status.success(), "{err}");
    (out.status.code().unwrap_or(-1), err)
}

#[test]
fn a_pull_failure_is_the_engines_not_the_commands_and_insecure_registry_reaches_podman() {
    let (registry, podman, env, image) = untrusted_registry();
    let (code, err) = run_untrusted(&env, &podman, &image, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("failed before the command started"), "{err}");
    assert!(
        err.contains("hint:") && err.contains("--insecure-registry"),
        "{err}"
    );
    let (code, err) = run_untrusted(
        &env,
        &podman,
        &image,
        &["--insecure-registry", &registry.addr()],
    );
    assert_eq!(code, 0, "{err}");
    // The bash script carries the option and says so in its header.
    let id = env.last_id();
    let (code, script, err) = env.run_in(
        env.root(),
        &["script", &id, "--insecure-registry", &registry.addr()],
    );
    assert_eq!(code, 0, "{err}");
    assert!(script.contains("--tls-verify=false"), "{script}");
    assert!(script.contains("# Registry:"), "{script}");
    let path = env.root().join("rerun.sh");
    std::fs::write(&path, &script).unwrap();
    std::fs::remove_file(env.root().join("ran")).unwrap();
    let out = std::process::Command::new("bash")
        .arg(&path)
        .envs(podman.env().iter().map(|(k, v)| (k, v)))
        .env("REPRO_ENGINE", "podman")
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(
        env.root().join("ran").exists(),
        "the script did not run the command"
    );
}

#[test]
fn a_pull_failure_is_recorded_as_error() {
    let (_registry, podman, env, image) = untrusted_registry();
    let (code, err) = run_untrusted(&env, &podman, &image, &[]);
    assert_eq!(code, 1, "{err}");
    let run = env.show_json(&env.last_id());
    assert_eq!(run["status"], "error", "{err}");
    assert_eq!(run["exit_code"], serde_json::Value::Null);
}

#[test]
fn a_tty_is_allocated_only_when_stdin_stdout_and_stderr_are_terminals() {
    crate::support::require_tool("script");
    let bb = PushedBusybox::new("team/trainer", "1.0");
    let (image, podman) = (&bb.image, bb.podman());
    let env = TestEnv::new();
    let repro = assert_cmd::cargo::cargo_bin("repro");
    let err_file = env.root().join("err.txt");
    let cmd = format!(
        "'{}' -v run --engine podman --image '{image}' --engine-arg=--network=none -- /bin/busybox true",
        repro.display()
    );
    // `script` gives the command a terminal for stdin, stdout and stderr.
    let in_pty = |shell_cmd: &str| {
        let out = std::process::Command::new("script")
            .args(["-qec", shell_cmd, "/dev/null"])
            .current_dir(env.root())
            .envs(podman.env().iter().map(|(k, v)| (k, v)))
            .env("REPRO_DB", env.db())
            .env("HOME", env.home())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let all_tty = in_pty(&cmd);
    let exec_line = |text: &str| {
        text.lines()
            .find(|l| l.contains("exec: podman run"))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no exec line in {text}"))
    };
    assert!(exec_line(&all_tty).contains(" -t "), "{all_tty}");
    // stderr redirected: no TTY, or the container's stderr would be merged into stdout.
    in_pty(&format!("{cmd} 2>'{}'", err_file.display()));
    let err = std::fs::read_to_string(&err_file).unwrap();
    assert!(!exec_line(&err).contains(" -t "), "{err}");
}

/// A TLS registry on 127.0.0.1 with a private CA: podman trusts it only through what repro
/// passes (`--cert-dir`), given by `--ca-cert` alone or by a certs.d directory alone
/// (`REPRO_CERTS_D`); the bash script (run by bash) pulls the same way. Without either, the
/// pull fails as `error` — the test can fail.
#[test]
fn a_private_ca_by_ca_cert_or_certs_d_reaches_podman_and_the_script() {
    let registry = Registry::start_tls();
    let digest = registry.push_busybox("team/trainer", "1.0");
    let image = format!("{}/team/trainer@{digest}", registry.addr());
    let ca = registry.ca_cert().unwrap();
    let env = TestEnv::new();
    let empty = env.root().join("no-certs.d");
    let certs_d = env.root().join("certs.d");
    std::fs::create_dir_all(certs_d.join(registry.addr())).unwrap();
    std::fs::copy(&ca, certs_d.join(registry.addr()).join("ca.crt")).unwrap();
    let marker = env.root().join("ran");
    // Each case gets a fresh podman store, so every run really pulls.
    let run = |roots: &Path, extra: &[&str]| {
        let podman = Podman::new(&[]);
        let out = env
            .repro()
            .current_dir(env.root())
            .envs(podman.env().iter().map(|(k, v)| (k, v)))
            .env("REPRO_CERTS_D", roots)
            .args(["run", "--engine", "podman", "--offline", "--image", &image])
            .args(extra)
            .args(["--engine-arg=--network=none", "--"])
            .args(["/bin/busybox", "touch", "/workspace/ran"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code().unwrap_or(-1), err)
    };
    let script = |roots: &Path, extra: &[&str]| {
        let id = env.last_id();
        let out = env
            .repro()
            .env("REPRO_CERTS_D", roots)
            .args(["script", &id])
            .args(extra)
            .output()
            .unwrap();
        assert_ok(&out);
        let path = env.root().join("rerun.sh");
        std::fs::write(&path, &out.stdout).unwrap();
        let podman = Podman::new(&[]);
        let out = std::process::Command::new("bash")
            .arg(&path)
            .envs(podman.env().iter().map(|(k, v)| (k, v)))
            .env("REPRO_ENGINE", "podman")
            .output()
            .unwrap();
        assert_ok(&out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    let (code, err) = run(&empty, &[]);
    assert_eq!(code, 1, "without the CA podman must fail: {err}");
    assert_eq!(env.show_json(&env.last_id())["status"], "error");
    assert!(err.contains("certificate"), "{err}");

    let ca_arg = ca.to_str().unwrap();
    let (code, err) = run(&empty, &["--ca-cert", ca_arg]);
    assert_eq!(code, 0, "--ca-cert: {err}");
    assert!(marker.exists());
    std::fs::remove_file(&marker).unwrap();
    script(&empty, &["--ca-cert", ca_arg]);
    assert!(
        marker.exists(),
        "the script (--ca-cert) did not run the command"
    );
    std::fs::remove_file(&marker).unwrap();

    let (code, err) = run(&certs_d, &[]);
    assert_eq!(code, 0, "certs.d: {err}");
    assert!(marker.exists());
    std::fs::remove_file(&marker).unwrap();
    script(&certs_d, &[]);
    assert!(
        marker.exists(),
        "the script (certs.d) did not run the command"
    );
}

/// Ctrl-C on a terminal (the line discipline sends SIGINT to the foreground process group:
/// repro and the podman client) reaches the container exactly once: the client proxies it and
/// repro does not deliver it again with `podman kill`. stderr goes to a file, so no `-t` is
/// allocated and the terminal stays in cooked mode, where Ctrl-C is a signal.
#[test]
fn ctrl_c_on_a_terminal_reaches_a_podman_container_exactly_once() {
    crate::support::require_tool("script");
    let bb = PushedBusybox::new("team/trainer", "1.0");
    let (image, podman) = (&bb.image, bb.podman());
    let env = TestEnv::new();
    let repro = assert_cmd::cargo::cargo_bin("repro");
    let ready = env.root().join("ready");
    let ints = env.root().join("ints");
    let waited = env.root().join("waited");
    // PID 1 counts INTs; after the first it keeps counting for 5 s (a duplicate sent by repro
    // through `podman kill` lands well inside that), then exits 0. The script is a file in the
    // mounted workspace, not `sh -c "..."` on the outer shell's line: there the outer shell
    // expanded `$i` to nothing, the wait loop ended at once and the container was gone before
    // a duplicate could arrive, so the test passed with the terminal check disabled.
    std::fs::write(
        env.root().join("count-ints.sh"),
        "trap 'echo INT >> /workspace/ints' INT\n\
         touch /workspace/ready\n\
         while [ ! -s /workspace/ints ]; do sleep 0.01; done\n\
         i=0\n\
         while [ \"$i\" -lt 500 ]; do sleep 0.01; i=$((i+1)); done\n\
         touch /workspace/waited\n\
         exit 0\n",
    )
    .unwrap();
    let cmd = format!(
        "'{}' run --engine podman --image '{image}' --engine-arg=--network=none -- /bin/busybox sh /workspace/count-ints.sh 2>'{}'",
        repro.display(),
        env.root().join("err.txt").display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(env.root())
        .envs(podman.env().iter().map(|(k, v)| (k, v)))
        .env("REPRO_DB", env.db())
        .env("HOME", env.home())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !ready.exists() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "the container did not start: {}",
            std::fs::read_to_string(env.root().join("err.txt")).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    {
        use std::io::Write;
        let stdin = child.stdin.as_mut().unwrap();
        stdin.write_all(b"\x03").unwrap();
        stdin.flush().unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let err = std::fs::read_to_string(env.root().join("err.txt")).unwrap_or_default();
    let count = std::fs::read_to_string(&ints)
        .unwrap_or_default()
        .lines()
        .count();
    assert!(
        waited.exists(),
        "the container did not wait out its window for a duplicate INT\nstderr: {err}"
    );
    assert_eq!(
        count,
        1,
        "INT reached the container {count} time(s)\nstderr: {err}\nstdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Runs `repro run` in a container with `engine` and extra flags; returns (exit, stderr).
fn run_engine_case(
    env: &TestEnv,
    engine: &str,
    engine_env: &[(String, OsString)],
    image: &str,
    flags: &[&str],
    cmd: &[&str],
) -> (i32, String) {
    let out = env
        .repro()
        .current_dir(env.root())
        .envs(engine_env.iter().map(|(k, v)| (k, v)))
        .args(["run", "--engine", engine, "--offline", "--image", image])
        .arg("--engine-arg=--network=none")
        .args(flags)
        .arg("--")
        .args(cmd)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// 125/126/127 from `<engine> run` is the engine's failure (`error`) only when the container
/// never started (no `start` event); the exit code stays the engine's. A command that exits
/// 125 or 127 itself is `failed`.
fn engine_start_failures_are_errors(engine: &str, engine_env: &[(String, OsString)], image: &str) {
    let env = TestEnv::new();
    let case = |flags: &[&str], cmd: &[&str]| {
        let (code, err) = run_engine_case(&env, engine, engine_env, image, flags, cmd);
        (code, err, env.show_json(&env.last_id()))
    };
    let (code, err, rec) = case(&["--engine-arg=--no-such-flag"], &["/bin/busybox", "true"]);
    assert_eq!(code, 125, "the engine's exit code, never masked: {err}");
    assert_eq!(rec["status"], "error", "{err}");
    assert_eq!(rec["exit_code"], 125);
    assert!(err.contains("before the container started"), "{err}");
    assert!(
        err.contains("hint:") && err.contains("--engine-arg"),
        "{err}"
    );

    let (code, err, rec) = case(&[], &["/no/such/program"]);
    assert_eq!(code, 127, "{err}");
    assert_eq!(rec["status"], "error", "{err}");
    assert_eq!(rec["exit_code"], 127);
    assert!(err.contains("could not be executed in the image"), "{err}");

    for c in ["125", "126", "127"] {
        let (code, err, rec) = case(&[], &["/bin/busybox", "sh", "-c", &format!("exit {c}")]);
        assert_eq!(code.to_string(), c, "{err}");
        assert_eq!(rec["status"], "failed", "the job's own exit {c}: {err}");
        assert_eq!(rec["exit_code"].to_string(), c);
        assert!(!err.contains("before the container started"), "{err}");
    }
}

#[test]
fn an_engine_start_failure_is_an_error_and_a_job_exiting_125_is_failed_podman() {
    let bb = PushedBusybox::new("team/trainer", "1.0");
    let (image, podman) = (&bb.image, bb.podman());
    engine_start_failures_are_errors("podman", &podman.env(), image);
}

#[test]
fn an_engine_start_failure_is_an_error_and_a_job_exiting_125_is_failed_docker() {
    let Some(dockerd) = Dockerd::start() else {
        return;
    };
    let bb = PushedBusybox::in_registry("team/trainer", "1.0");
    let image = &bb.image;
    engine_start_failures_are_errors("docker", &dockerd.env(), image);
}

/// An engine that fails on rlimits before the container starts (podman exits 126, as for a
/// command that is not executable): the run is `error` with the rlimit hint — the same hint
/// `repro doctor` gives for the same configuration — not "could not be executed".
#[test]
fn an_rlimit_failure_is_an_error_with_the_same_hint_as_doctor() {
    let bb = PushedBusybox::new("team/trainer", "1.0");
    let env = TestEnv::new();
    // More open files than the kernel allows (fs.nr_open): setrlimit fails for root too.
    let cfg = env.home().join(".config/repro/config.toml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(
        &cfg,
        "engine_args = [\"--ulimit=nofile=99999999:99999999\"]\n",
    )
    .unwrap();
    let (code, err) = run_engine_case(
        &env,
        "podman",
        &bb.podman_env(),
        &bb.image,
        &[],
        &["/bin/busybox", "true"],
    );
    assert_eq!(code, 126, "the engine's exit code: {err}");
    assert!(
        err.contains("rlimit"),
        "the engine's message passes through: {err}"
    );
    let rec = env.show_json(&env.last_id());
    assert_eq!(rec["status"], "error", "{err}");
    assert!(!err.contains("could not be executed in the image"), "{err}");

    let out = env
        .repro()
        .current_dir(env.root())
        .envs(bb.podman_env().iter().map(|(k, v)| (k, v)))
        .args(["doctor", "--json", "--probe-image", &bb.image])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let probe = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "container podman")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(probe["status"], "fail", "{probe}");
    let hint = probe["hint"].as_str().unwrap();
    assert!(hint.contains("--ulimit=nofile="), "{hint}");
    assert!(
        err.contains(&format!("hint: {hint}")),
        "run and doctor give one hint:\n{err}\n{hint}"
    );
}
