//! End to end on real components: `repro run` in a container from the loopback registry →
//! `repro script` → bash executes it with the real engine → the same output, argv byte for byte.
use crate::support::assert_ok_for;

use std::process::Command as StdCommand;

use crate::support::engine::Podman;
use crate::support::registry::Registry;
use crate::support::{git, TestEnv};

/// Arguments that break naive quoting.
fn hard_args() -> Vec<String> {
    vec![
        "plain".into(),
        "with space".into(),
        "it's".into(),
        "\"double\"".into(),
        "$HOME".into(),
        "`echo pwned`".into(),
        "$(touch /tmp/repro-pwned)".into(),
        "line1\nline2".into(),
        "*".into(),
        "?[a]{b,c}".into(),
        "~user".into(),
        "#hash".into(),
        "-n".into(),
        "ünïcödé ✓".into(),
        String::new(),
        "\\back\\slash\\".into(),
        "tab\there".into(),
    ]
}

const PRINT_ARGS: &str = "for a in \"$@\"; do printf '[%s]' \"$a\"; done; echo; echo cwd=$(pwd); cat data/input.txt; exit 4";

#[test]
fn container_run_script_reproduces_output_and_argv_and_passes_shellcheck() {
    let registry = Registry::start();
    let digest = registry.push_busybox("team/trainer", "3.0");
    let podman = Podman::new(&[&registry.addr()]);
    let env = TestEnv::new();
    let repo = env.git_repo("proj");
    std::fs::create_dir_all(repo.join("data")).unwrap();
    std::fs::write(repo.join("data/input.txt"), "committed\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "data"]);
    // An uncommitted change the re-run must restore from the recorded patch.
    std::fs::write(repo.join("data/input.txt"), "uncommitted edit\n").unwrap();

    let image = format!("{}/team/trainer:3.0", registry.addr());
    let mut cmd = env.repro();
    cmd.current_dir(&repo)
        .envs(podman.env().iter().map(|(k, v)| (k, v)))
        .args(["run", "-q", "--engine", "podman", "--image", &image])
        .args([
            "--engine-arg=--network=none",
            "--",
            "/bin/busybox",
            "sh",
            "-c",
            PRINT_ARGS,
            "argv0",
        ])
        .args(hard_args());
    let first = cmd.output().unwrap();
    let first_out = String::from_utf8_lossy(&first.stdout).into_owned();
    assert_eq!(
        first.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(first_out.contains("[with space][it's]"), "{first_out}");
    assert!(first_out.contains("uncommitted edit"), "{first_out}");
    let id = env.last_id();
    assert_eq!(env.show_json(&id)["image"]["digest"], digest.as_str());

    let script = env.root().join("rerun.sh");
    env.repro()
        .args(["script", &id, "-o", script.to_str().unwrap()])
        .assert()
        .success();
    let sc = StdCommand::new("shellcheck").arg(&script).output().unwrap();
    assert_ok_for(&sc, "shellcheck");
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains(&digest), "the script does not pin the digest");

    // Move the tag: the script must still run exactly the recorded digest.
    registry.push_busybox("team/trainer", "3.0");
    let _ = std::fs::remove_file("/tmp/repro-pwned");
    let work = env.root().join("rerun-work");
    let second = StdCommand::new("bash")
        .arg(&script)
        .arg(&work)
        .envs(podman.env().iter().map(|(k, v)| (k, v)))
        .env("HOME", env.home())
        .output()
        .unwrap();
    let second_out = String::from_utf8_lossy(&second.stdout).into_owned();
    let second_err = String::from_utf8_lossy(&second.stderr).into_owned();
    assert_eq!(second.status.code(), Some(4), "{second_err}");
    assert_eq!(second_out, first_out, "{second_err}");
    assert!(!std::path::Path::new("/tmp/repro-pwned").exists());
    // The checkout is the recorded commit plus the recorded patch.
    assert_eq!(
        std::fs::read_to_string(work.join("data/input.txt")).unwrap(),
        "uncommitted edit\n"
    );
    let inspect = podman
        .command()
        .args(["image", "inspect", "--format", "{{.Digest}}"])
        .arg(format!("{}/team/trainer@{digest}", registry.addr()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&inspect.stdout).trim(), digest);
}

#[test]
fn host_run_script_reproduces_output_and_stops_on_a_changed_dataset() {
    let env = TestEnv::new();
    let repo = env.git_repo("hostproj");
    let data = env.root().join("external-data");
    std::fs::create_dir_all(data.join("nested")).unwrap();
    std::fs::write(data.join("a.csv"), "x,y\n1,2\n").unwrap();
    std::fs::write(data.join("nested/b.csv"), "x,y\n3,4\n").unwrap();
    std::fs::create_dir_all(repo.join("data")).unwrap();
    std::fs::write(repo.join("data/input.txt"), "in repo\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "data"]);
    let mut cmd = env.repro();
    cmd.current_dir(&repo)
        .args([
            "run",
            "-q",
            "--dataset",
            data.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            PRINT_ARGS,
            "argv0",
        ])
        .args(hard_args());
    let first = cmd.output().unwrap();
    assert_eq!(first.status.code(), Some(4));
    let id = env.last_id();
    let script = env.root().join("rerun.sh");
    env.repro()
        .args(["script", &id, "-o", script.to_str().unwrap()])
        .assert()
        .success();
    let second = StdCommand::new("bash")
        .arg(&script)
        .arg(env.root().join("w1"))
        .output()
        .unwrap();
    assert_eq!(
        second.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let strip_cwd = |s: &[u8]| {
        String::from_utf8_lossy(s)
            .lines()
            .filter(|l| !l.starts_with("cwd="))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip_cwd(&second.stdout), strip_cwd(&first.stdout));

    // Change one byte of the dataset: the script refuses to run the command.
    std::fs::write(data.join("nested/b.csv"), "x,y\n3,5\n").unwrap();
    let third = StdCommand::new("bash")
        .arg(&script)
        .arg(env.root().join("w2"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&third.stderr);
    assert_eq!(third.status.code(), Some(1), "{err}");
    assert!(err.contains("external-data"), "{err}");
    assert!(!String::from_utf8_lossy(&third.stdout).contains("[plain]"));
}

/// Issue 21: a run made with `--insecure-registry` only (the engine's own configuration does not
/// trust the loopback registry over HTTP) re-runs from `repro script ID` without the flag given
/// again: the run recorded it, the script pulls with `--tls-verify=false`.
#[test]
fn a_run_with_an_insecure_registry_flag_reruns_from_its_script_without_the_flag() {
    let registry = Registry::start();
    let digest = registry.push_busybox("team/plainhttp", "1.0");
    // No insecure registry in podman's registries.conf: only the flag makes the pull work.
    let podman = Podman::new(&[]);
    let env = TestEnv::new();
    let repo = env.git_repo("insecure");
    let image = format!("{}/team/plainhttp:1.0", registry.addr());
    let out = crate::support::engine::run_with_insecure_flag(
        &env,
        &repo,
        &podman,
        &registry.addr(),
        &image,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    let id = env.last_id();
    assert_eq!(env.show_json(&id)["exec"]["registry"]["insecure"], true);

    let script = env.root().join("rerun.sh");
    env.repro()
        .args(["script", &id, "-o", script.to_str().unwrap()])
        .assert()
        .success();
    let sc = StdCommand::new("shellcheck").arg(&script).output().unwrap();
    assert_ok_for(&sc, "shellcheck");
    let rerun = StdCommand::new("bash")
        .arg(&script)
        .arg(env.root().join("work"))
        .envs(podman.env().iter().map(|(k, v)| (k, v)))
        .env("HOME", env.home())
        .output()
        .unwrap();
    assert_ok_for(&rerun, "bash rerun.sh");
    assert_eq!(String::from_utf8_lossy(&rerun.stdout), "hello\n");
    assert!(
        String::from_utf8_lossy(&rerun.stderr).contains(&format!("reports digest {digest}")),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
}
