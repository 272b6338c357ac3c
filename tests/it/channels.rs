//! The job's channels besides metrics: `REPRO_PARAMS` (params it logs) and `REPRO_OUTPUTS`
//! (outputs it declares), with `REPRO_WORKDIR` — on the host and inside a podman container
//! (the channel directory mounted at the same path). The Python helper that writes them is
//! tested by tests/python (scripts/wheel.sh --check).

use crate::support::engine::PushedBusybox;
use crate::support::TestEnv;

/// Writes two params lines, declares one output inside and three that must be refused, and a
/// malformed line on each channel; exits 5.
const JOB: &str = r#"
printf '{"lr": 0.1, "opt": "adam"}\n{"lr": 0.2}\nnot json\n' >> "$REPRO_PARAMS"
printf '{"batch": "64"}\n' >> "$REPRO_PARAMS"
mkdir -p out && echo weights > out/model.bin
printf '{"path": "./out/model.bin"}\n{"path": "/etc/passwd"}\n{"path": "../x"}\n[1]\n' >> "$REPRO_OUTPUTS"
echo "workdir=$REPRO_WORKDIR"
exit 5
"#;

fn check(env: &TestEnv, stdout: &str, stderr: &str, code: Option<i32>, workdir: &str) {
    assert_eq!(
        code,
        Some(5),
        "the job's exit code passes through: {stderr}"
    );
    assert!(stdout.contains(&format!("workdir={workdir}")), "{stdout}");
    let run = env.show_json(&env.last_id());
    assert_eq!(run["status"], "failed");
    // --param batch=32 wins over the job's 64 (and says so); the last lr logged wins.
    assert_eq!(run["params"]["batch"], "32", "{run}");
    assert_eq!(run["params"]["lr"], "0.2", "{run}");
    assert_eq!(run["params"]["opt"], "adam", "{run}");
    assert_eq!(run["params_from_job"], serde_json::json!(["lr", "opt"]));
    assert!(
        stderr.contains("param batch: --param 32 wins over the 64 the job logged"),
        "{stderr}"
    );
    assert!(stderr.contains("REPRO_PARAMS line 3: not JSON"), "{stderr}");
    for bad in [
        "/etc/passwd is outside",
        "../x leaves the working directory",
        "line 4: not an object",
    ] {
        assert!(stderr.contains(bad), "{bad}: {stderr}");
    }
    let outputs = run["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 1, "{run}");
    assert_eq!(outputs[0]["path"], "out/model.bin");
    assert_eq!(outputs[0]["kept"], true);
    // The channel directory is gone once read.
    let channels = env.db().parent().unwrap().join("channels");
    let left: Vec<_> = std::fs::read_dir(&channels)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_host_job_logs_params_and_declares_outputs_through_its_channels() {
    let env = TestEnv::new();
    let repo = env.git_repo("proj");
    let out = env
        .repro()
        .current_dir(&repo)
        .args([
            "run", "--host", "--param", "batch=32", "--", "sh", "-c", JOB,
        ])
        .output()
        .unwrap();
    let canonical = repo.canonicalize().unwrap();
    check(
        &env,
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
        out.status.code(),
        canonical.to_str().unwrap(),
    );
    // `repro get` gives the declared output back.
    let (code, _, err) = env.run_in(
        &repo,
        &["get", &env.last_id(), "out/model.bin", "--to", "back"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(repo.join("back/out/model.bin")).unwrap(),
        "weights\n"
    );
}

#[test]
fn a_container_job_reaches_its_channels_at_the_same_path() {
    let bb = PushedBusybox::new("team/channels", "1.0");
    let env = TestEnv::new();
    let repo = env.git_repo("proj");
    let out = env
        .repro()
        .current_dir(&repo)
        .envs(bb.podman().env().iter().map(|(k, v)| (k, v)))
        .args([
            "run", "--engine", "podman", "--image", &bb.image, "--param", "batch=32",
        ])
        .args(["--engine-arg=--network=none"])
        .args(["--", "/bin/busybox", "sh", "-c", JOB])
        .output()
        .unwrap();
    check(
        &env,
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
        out.status.code(),
        "/workspace",
    );
}

/// A local re-run's job logs its own values: a param the original's job logged (copied into
/// the re-run) is replaced, not taken for a `--param`; a `--param` of the original still wins.
#[test]
fn a_rerun_records_what_its_own_job_logs() {
    let env = TestEnv::new();
    let job = r#"printf '{"token": "%s", "batch": "64"}\n' "$(cat /proc/sys/kernel/random/uuid)" >> "$REPRO_PARAMS""#;
    let (code, _, err) = env.run_in(
        env.root(),
        &[
            "run", "--host", "--param", "batch=32", "--", "sh", "-c", job,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let orig = env.last_id();
    let first = env.show_json(&orig)["params"]["token"].clone();
    assert!(first.is_string(), "{}", env.show_json(&orig));
    let (code, _, err) = env.run_in(env.root(), &["rerun", &orig]);
    assert_eq!(code, 0, "{err}");
    let new = env.show_json(&env.last_id());
    assert_eq!(new["rerun_of"], orig.as_str());
    assert!(new["params"]["token"].is_string(), "{new}");
    assert_ne!(new["params"]["token"], first, "{new}");
    assert!(!err.contains("param token"), "{err}");
    assert_eq!(new["params"]["batch"], "32", "{new}");
    assert!(err.contains("param batch: --param 32 wins"), "{err}");
}
