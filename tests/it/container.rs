//! `repro run --image` really runs the pinned digest in a container (podman, and docker when
//! dockerd is available), against a real registry on 127.0.0.1.

use std::ffi::OsString;

use crate::support::engine::{Dockerd, Podman};
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
    let registry = Registry::start();
    let digest = registry.push_busybox("team/trainer", "1.0");
    let image = format!("{}/team/trainer@{digest}", registry.addr());
    let podman = Podman::new(&[&registry.addr()]);
    let env = TestEnv::new();
    run_in_container(&env, "podman", &podman.env(), &image);
}

#[test]
fn pinned_image_runs_in_docker_when_dockerd_is_available() {
    let Some(dockerd) = Dockerd::start() else {
        eprintln!("SKIPPED: dockerd is not available; docker path not checked");
        return;
    };
    let registry = Registry::start();
    let digest = registry.push_busybox("team/trainer", "1.0");
    let image = format!("{}/team/trainer@{digest}", registry.addr());
    let env = TestEnv::new();
    run_in_container(&env, "docker", &dockerd.env(), &image);
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
    let registry = Registry::start();
    let digest = registry.push_busybox("team/trainer", "2.3.1");
    let podman = Podman::new(&[&registry.addr()]);
    let env = TestEnv::new();
    let tag_ref = format!("{}/team/trainer:2.3.1", registry.addr());
    let out = env
        .repro()
        .current_dir(env.root())
        .envs(podman.env().iter().map(|(k, v)| (k, v)))
        .args(["run", "--engine", "podman", "--image", &tag_ref])
        .args(["--engine-arg=--network=none", "--", "/bin/busybox", "echo", "ok"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
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
    assert_ne!(moved, digest);
    assert_eq!(env.show_json(&env.last_id())["image"]["digest"], digest.as_str());
}

#[test]
fn latest_and_unresolvable_references_are_refused_unless_allowed() {
    let registry = Registry::start();
    registry.push_busybox("team/app", "latest");
    let env = TestEnv::new();
    let latest = format!("{}/team/app", registry.addr());
    let (code, _, err) = env.run_in(env.root(), &["run", "--host", "--image", &latest, "--", "true"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("latest") && err.contains("--allow-latest"), "{err}");
    let (code, _, err) = env.run_in(
        env.root(),
        &["run", "--host", "--allow-latest", "--image", &latest, "--", "true"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(env.show_json(&env.last_id())["image"]["resolved_by"], "registry");

    let missing = format!("{}/team/nothing:1.0", registry.addr());
    let (code, _, err) = env.run_in(
        env.root(),
        &["run", "--host", "--resolve", "registry", "--image", &missing, "--", "true"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--allow-unpinned"), "{err}");
    assert_eq!(env.runs().len(), 1, "a refused run must not be recorded");
    let (code, _, err) = env.run_in(
        env.root(),
        &["run", "--host", "--resolve", "registry", "--allow-unpinned", "--image", &missing, "--", "true"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("UNPINNED"), "{err}");
    let run = env.show_json(&env.last_id());
    assert_eq!(run["image"]["resolved_by"], "unpinned");
    assert_eq!(run["image"]["digest"], serde_json::Value::Null);
    let (_, text, _) = env.run_in(env.root(), &["show", &env.last_id()]);
    assert!(text.contains("UNPINNED"), "{text}");

    let (code, _, err) = env.run_in(env.root(), &["run", "--host", "--image", "Bad//Ref", "--", "true"]);
    assert_eq!(code, 1);
    assert!(err.contains("error:") && err.contains("hint:"), "{err}");
}
