//! `repro script --target k8s` on stored runs: the GPU request is validated, the checkout init
//! container's image must be pinned by digest, and the Job passes `kubernetes-validate --strict`.

use std::process::Command;

use repro::script::k8s;
use serde_json::Value;

use crate::support::{git, TestEnv};

/// A checkout image pinned by digest, as a user passes with `--git-image`.
pub fn pinned_image() -> String {
    format!("{}@sha256:{}", k8s::SUGGESTED_GIT_IMAGE, "5e".repeat(32))
}

/// Options with [`pinned_image`], for rendering tests of runs that have a commit.
pub fn pinned_options() -> k8s::K8sOptions {
    k8s::K8sOptions {
        git_image: Some(pinned_image()),
        ..k8s::K8sOptions::default()
    }
}

/// Records a host run in a repository with a remote, then re-imports it as a container run with
/// the given `--gpus` value (a run recorded elsewhere, as `import` accepts it) into a fresh
/// environment. Returns that environment and the run's id.
fn stored_run(gpus: &str) -> (TestEnv, String) {
    let env = &TestEnv::new();
    let repo = env.git_repo("proj");
    git(
        &repo,
        &["remote", "add", "origin", "https://git.example.com/p.git"],
    );
    let (code, _, err) = env.run_in(&repo, &["run", "--host", "--", "sh", "-c", "exit 0"]);
    assert_eq!(code, 0, "{err}");
    let out = env.repro().args(["export"]).output().unwrap();
    assert!(out.status.success());
    let mut v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    v["exec"]["mode"] = "container".into();
    v["exec"]["engine"] = "podman".into();
    v["exec"]["gpus"] = gpus.into();
    v["image"] = serde_json::json!({
        "reference": "registry.example.com/team/trainer:2.0",
        "digest": format!("sha256:{}", "ab".repeat(32)),
        "index_digest": null,
        "platform": "linux/amd64",
        "resolved_by": "registry",
        "labels": {}
    });
    let other = TestEnv::new();
    let file = other.root().join("runs.jsonl");
    std::fs::write(&file, format!("{v}\n")).unwrap();
    let (code, _, err) = other.run_in(other.root(), &["import", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    (other, id)
}

fn kubernetes_validate(yaml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("job.yaml");
    std::fs::write(&p, yaml).unwrap();
    match Command::new("kubernetes-validate").arg("--strict").arg(&p).output() {
        Ok(out) => assert!(
            out.status.success(),
            "kubernetes-validate rejected the Job:\n{}{}\n{yaml}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => crate::support::skip_or_fail(
            "kubernetes-validate is not installed (pip install kubernetes-validate); the Job's schema was not validated",
        ),
    }
}

#[test]
fn a_garbage_gpu_value_is_refused_not_rendered_as_one_gpu() {
    let (env, id) = stored_run("garbage");
    let image = pinned_image();
    for target in ["k8s", "slurm"] {
        let (code, out, err) = env.run_in(
            env.root(),
            &["script", &id, "--target", target, "--git-image", &image],
        );
        assert_eq!(code, 1, "{target}: {out}{err}");
        assert!(out.is_empty(), "{target}: nothing rendered: {out}");
        assert!(
            err.contains("\"garbage\"") && err.contains("not N, all, count=N or device=LIST"),
            "{target}: {err}"
        );
        assert!(err.contains("--target bash"), "{target}: a hint: {err}");
    }
}

#[test]
fn the_checkout_image_is_pinned_by_digest_never_latest() {
    let (env, id) = stored_run("device=0,1");
    for bad in [
        None,
        Some("docker.io/alpine/git:latest"),
        Some("docker.io/alpine/git:v2.47.2"),
    ] {
        let mut args = vec!["script", &id, "--target", "k8s"];
        if let Some(b) = bad {
            args.extend(["--git-image", b]);
        }
        let (code, out, err) = env.run_in(env.root(), &args);
        assert_eq!(code, 1, "{bad:?}: {out}{err}");
        assert!(err.contains("not pinned by digest"), "{bad:?}: {err}");
        assert!(err.contains("--git-image"), "{bad:?}: {err}");
        assert!(!out.contains("latest"), "{bad:?}: {out}");
    }
    let image = pinned_image();
    let (code, yaml, err) = env.run_in(
        env.root(),
        &["script", &id, "--target", "k8s", "--git-image", &image],
    );
    assert_eq!(code, 0, "{err}");
    assert!(!yaml.contains(":latest"), "{yaml}");
    assert!(yaml.contains(&format!("image: \"{image}\"")), "{yaml}");
    assert!(yaml.contains("nvidia.com/gpu: 2"), "{yaml}");
    kubernetes_validate(&yaml);
}
