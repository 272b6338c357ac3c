//! `repro rerun`: same pins now, recorded as a new run linked to the original, outputs compared.

use crate::support::engine::Podman;
use crate::support::registry::Registry;
use crate::support::{git, TestEnv};

#[test]
fn deterministic_job_reruns_from_commit_and_patch_with_matching_outputs() {
    let env = TestEnv::new();
    let repo = env.git_repo("det");
    std::fs::write(
        repo.join("train.sh"),
        "cat README data/in.txt > model.txt\n",
    )
    .unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "train"]);
    std::fs::write(repo.join("README"), "uncommitted change\n").unwrap();
    let data = repo.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("in.txt"), "data v1\n").unwrap();
    std::fs::write(repo.join(".gitignore"), "data/\nmodel.txt\n").unwrap();
    let (code, _, err) = env.run_in(
        &repo,
        &[
            "run",
            "--dataset",
            "data",
            "--output",
            "model.txt",
            "--",
            "sh",
            "train.sh",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let orig_id = env.last_id();
    let orig = env.show_json(&orig_id);
    assert!(orig["outputs"][0]["sha256"].is_string());

    let checkout = env.root().join("co");
    let (code, _, err) = env.run_in(
        env.root(),
        &[
            "rerun",
            &orig_id[..10],
            "--check",
            "--checkout",
            checkout.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("output model.txt: match"), "{err}");
    let new = env.show_json(&env.last_id());
    assert_eq!(new["rerun_of"], orig_id.as_str());
    assert_ne!(new["id"], orig["id"]);
    assert_eq!(new["code"]["commit"], orig["code"]["commit"]);
    assert_eq!(new["code"]["patch_sha256"], orig["code"]["patch_sha256"]);
    assert_eq!(new["outputs"][0]["sha256"], orig["outputs"][0]["sha256"]);
    assert_eq!(new["datasets"], orig["datasets"]);
    assert_eq!(
        std::fs::read_to_string(checkout.join("model.txt")).unwrap(),
        "uncommitted change\ndata v1\n"
    );

    // Changed data is refused before anything runs.
    std::fs::write(data.join("in.txt"), "data v2\n").unwrap();
    let (code, _, err) = env.run_in(env.root(), &["rerun", &orig_id, "--check"]);
    assert_eq!(code, 1);
    assert!(err.contains("has changed"), "{err}");
    assert_eq!(env.runs().len(), 2);
}

#[test]
fn a_job_writing_random_bytes_is_reported_as_a_mismatch() {
    let env = TestEnv::new();
    let dir = env.root().join("plain");
    std::fs::create_dir_all(&dir).unwrap();
    let (code, _, _) = env.run_in(
        &dir,
        &[
            "run",
            "--output",
            "rand.bin",
            "--",
            "sh",
            "-c",
            "head -c 32 /dev/urandom > rand.bin",
        ],
    );
    assert_eq!(code, 0);
    let id = env.last_id();
    let (code, _, err) = env.run_in(env.root(), &["rerun", &id, "--check"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("output rand.bin: MISMATCH"), "{err}");
    // Without --check the mismatch is reported but the exit code is the command's.
    let (code, _, err) = env.run_in(env.root(), &["rerun", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("MISMATCH"), "{err}");
    let (_, listed, _) = env.run_in(env.root(), &["ls", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let reruns = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["rerun_of"] == id.as_str())
        .count();
    assert_eq!(reruns, 2);
}

#[test]
fn container_run_reruns_in_exactly_the_recorded_digest() {
    let registry = Registry::start();
    let digest = registry.push_busybox("team/trainer", "5.0");
    let podman = Podman::new(&[&registry.addr()]);
    let env = TestEnv::new();
    let repo = env.git_repo("ctr");
    let image = format!("{}/team/trainer:5.0", registry.addr());
    let out = env
        .repro()
        .current_dir(&repo)
        .envs(podman.env().iter().map(|(k, v)| (k, v)))
        .args([
            "run", "-q", "--engine", "podman", "--image", &image, "--output", "out.txt",
        ])
        .args([
            "--engine-arg=--network=none",
            "--",
            "/bin/busybox",
            "sh",
            "-c",
            "cat README > out.txt; echo done",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = env.last_id();
    // The tag moves; the re-run must not follow it.
    registry.push_busybox("team/trainer", "5.0");
    let out = env
        .repro()
        .current_dir(env.root())
        .envs(podman.env().iter().map(|(k, v)| (k, v)))
        .args(["rerun", &id, "--check"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n");
    assert!(err.contains("output out.txt: match"), "{err}");
    let new = env.show_json(&env.last_id());
    assert_eq!(new["rerun_of"], id.as_str());
    assert_eq!(new["image"]["digest"], digest.as_str());
    assert_eq!(new["exec"]["mode"], "container");
}
