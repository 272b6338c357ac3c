//! `repro promote`, `repro channels`, `repro notes`, `ls --promoted`: channel tags moved to a
//! run's exact digest through the real registry API on loopback, checked with skopeo.

use std::process::Command;

use serde_json::Value;

use crate::support::registry::{host_platform, sha256_digest, Registry};
use crate::support::{require_tool, TestEnv};

/// Records a host run that resolved `image` against the registry.
fn record(env: &TestEnv, image: &str, extra: &[&str]) -> String {
    let mut args = vec!["run", "--host", "--image", image];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "true"]);
    let (code, _, err) = env.run_in(env.root(), &args);
    assert_eq!(code, 0, "run: {err}");
    env.last_id()
}

/// The digest of what `REF` points at, as skopeo reads it (sha256 of the raw manifest or index).
fn skopeo_digest(reference: &str, auth: Option<&std::path::Path>) -> String {
    require_tool("skopeo");
    let mut cmd = Command::new("skopeo");
    cmd.args([
        "--insecure-policy",
        "inspect",
        "--raw",
        "--tls-verify=false",
    ]);
    if let Some(a) = auth {
        cmd.arg(format!("--authfile={}", a.display()));
    }
    let out = cmd
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    sha256_digest(&out.stdout)
}

fn repro(env: &TestEnv, args: &[&str]) -> (i32, String, String) {
    env.run_in(env.root(), args)
}

#[test]
fn promote_rollback_drift_and_notes_against_the_registry() {
    let registry = Registry::start();
    let env = TestEnv::new();
    let repo = registry.reference("team/app", "v1");
    let repo = repo.rsplit_once(':').unwrap().0.to_string();
    let d1 = registry.push_busybox("team/app", "v1");
    let run1 = record(
        &env,
        &format!("{repo}:v1"),
        &["--name", "first", "--param", "lr=0.1"],
    );
    let d2 = registry.push_busybox("team/app", "v1");
    assert_ne!(d1, d2);
    let run2 = record(&env, &format!("{repo}:v1"), &["--name", "second"]);

    // promote run1 to staging and prod: both tags hold d1 (a new tag each).
    let (code, out, err) = repro(
        &env,
        &[
            "promote",
            &run1,
            "--tag",
            "staging",
            "--tag",
            "prod",
            "--note",
            "passed eval",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(skopeo_digest(&format!("{repo}:staging"), None), d1);
    assert_eq!(skopeo_digest(&format!("{repo}:prod"), None), d1);
    assert!(err.contains("a new tag"), "{err}");
    let moves: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(moves["promotions"][0]["digest"], d1.as_str());
    assert_eq!(moves["promotions"][0]["previous"], Value::Null);
    assert_eq!(moves["promotions"][1]["channel"], "prod");

    // promote run2 to staging: the trail keeps what staging held before.
    let (code, _, err) = repro(&env, &["promote", &run2, "--tag", "staging"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(skopeo_digest(&format!("{repo}:staging"), None), d2);
    assert!(err.contains(&format!("was {d1}")), "{err}");
    let (_, out, _) = repro(&env, &["ls", "--promoted", "staging", "--json"]);
    let ls: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(ls["runs"].as_array().unwrap().len(), 1);
    assert_eq!(ls["runs"][0]["id"], run2.as_str());

    // rollback: staging back at d1, recorded; ls --promoted follows.
    let (code, _, err) = repro(&env, &["promote", "--rollback", "staging", "--repo", &repo]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(skopeo_digest(&format!("{repo}:staging"), None), d1);
    let (_, out, _) = repro(&env, &["ls", "--promoted", "staging", "--json"]);
    let ls: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(ls["runs"][0]["id"], run1.as_str());
    // --to names the run explicitly.
    let (code, _, err) = repro(
        &env,
        &[
            "promote",
            "--rollback",
            "staging",
            "--repo",
            &repo,
            "--to",
            &run2,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(skopeo_digest(&format!("{repo}:staging"), None), d2);

    // channels: as recorded, exit 0.
    let (code, out, err) = repro(&env, &["channels", "--json"]);
    assert_eq!(code, 0, "{err}");
    let ch: Value = serde_json::from_str(&out).unwrap();
    assert!(
        ch["channels"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["drift"] == false),
        "{ch}"
    );

    // A foreign copy over prod (v1 = d2 now) is drift: channels exits 1, audit warns.
    let copy = Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .arg(format!("docker://{repo}:v1"))
        .arg(format!("docker://{repo}:prod"))
        .output()
        .expect("skopeo copy");
    assert!(
        copy.status.success(),
        "{}",
        String::from_utf8_lossy(&copy.stderr)
    );
    let (code, out, err) = repro(&env, &["channels"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("DRIFT"), "{out}");
    assert!(err.contains("1 channel(s) moved outside repro"), "{err}");
    let (_, _, err) = repro(&env, &["audit", &run1]);
    assert!(
        err.contains("channel") && err.contains(":prod was moved outside repro"),
        "{err}"
    );

    // Release notes: newest first, with the run, commit-less host runs, params' metrics none.
    let (code, out, err) = repro(&env, &["notes", "--channel", "staging"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("# Release notes — `staging`"), "{out}");
    assert_eq!(out.matches("## ").count(), 4, "{out}");
    assert!(
        out.contains("rolled back") && out.contains("promoted"),
        "{out}"
    );
    assert!(out.contains(&format!("- digest: `{d1}`")), "{out}");
    assert!(out.contains("(first)") && out.contains("(second)"), "{out}");
    let (code, out, _) = repro(&env, &["notes", "--format", "json", "--since", "1d"]);
    assert_eq!(code, 0);
    let notes: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(notes["promotions"].as_array().unwrap().len(), 5);
    assert_eq!(notes["promotions"][4]["note"], "passed eval");
}

#[test]
fn a_multi_platform_index_moves_as_one() {
    let registry = Registry::start();
    let env = TestEnv::new();
    let host_arch = host_platform();
    let host_arch = host_arch.rsplit('/').next().unwrap().to_string();
    let other = if host_arch == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let info = registry.push_index(
        "team/multi",
        "v1",
        &[("linux", host_arch.as_str()), ("linux", other)],
    );
    let image = registry.reference("team/multi", "v1");
    let run = record(&env, &image, &[]);
    assert_eq!(
        env.show_json(&run)["image"]["index_digest"],
        info.index_digest
    );
    let (code, _, err) = repro(&env, &["promote", &run, "--tag", "prod"]);
    assert_eq!(code, 0, "{err}");
    let repo = image.rsplit_once(':').unwrap().0;
    assert_eq!(
        skopeo_digest(&format!("{repo}:prod"), None),
        info.index_digest
    );
}

#[test]
fn promotions_that_cannot_be_made_are_refused_and_record_nothing() {
    let registry = Registry::start();
    let env = TestEnv::new();
    let image = registry.reference("team/app", "v1");
    let d1 = registry.push_busybox("team/app", "v1");
    let run = record(&env, &image, &[]);
    let refused = |args: &[&str], words: &[&str], code_want: i32| {
        let (code, _, err) = repro(&env, args);
        assert_eq!(code, code_want, "{args:?}: {err}");
        for w in words {
            assert!(err.contains(w), "{args:?}: {w}: {err}");
        }
        assert!(err.contains("hint:"), "{args:?}: {err}");
        let (_, out, _) = repro(&env, &["notes", "--format", "json"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["promotions"].as_array().unwrap().len(),
            0,
            "{args:?} recorded"
        );
    };
    refused(
        &["promote", &run, "--tag", "latest"],
        &["latest", "--allow-latest"],
        2,
    );
    refused(&["promote", &run, "--tag", "bad/tag"], &["is not a tag"], 2);
    refused(&["promote", &run], &["name the channel"], 2);
    // A run without an image, and one whose pinned digest was only declared on the host.
    let (code, _, _) = repro(&env, &["run", "--host", "--", "true"]);
    assert_eq!(code, 0);
    refused(
        &["promote", &env.last_id(), "--tag", "staging"],
        &["recorded no image"],
        1,
    );
    let pinned = format!("{}@{d1}", image.rsplit_once(':').unwrap().0);
    let declared = record(&env, &pinned, &["--offline"]);
    refused(
        &["promote", &declared, "--tag", "staging"],
        &["only declared"],
        1,
    );
    // The digest is gone from the registry.
    registry.delete_manifest("team/app", &d1);
    refused(
        &["promote", &run, "--tag", "staging"],
        &["no longer has", "repro image archive"],
        1,
    );
    // Nothing to roll back to.
    let repo = image.rsplit_once(':').unwrap().0;
    refused(
        &["promote", "--rollback", "staging", "--repo", repo],
        &["no recorded promotion", "--to"],
        1,
    );
}

#[test]
fn promote_uses_the_usual_credentials_for_the_put() {
    let registry = Registry::start_with_basic_auth("ml-user", "s3cret");
    let env = TestEnv::new();
    let auth = env.root().join("auth.json");
    std::fs::write(&auth, registry.auth_json()).unwrap();
    let d = registry.push_busybox("team/private", "v1");
    let image = registry.reference("team/private", "v1");
    let with_auth = |args: &[&str]| {
        let out = env
            .repro()
            .current_dir(env.root())
            .env("REGISTRY_AUTH_FILE", &auth)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = with_auth(&["run", "--host", "--image", &image, "--", "true"]);
    assert_eq!(code, Some(0), "{err}");
    let run = env.last_id();
    // Without the credentials the registry refuses.
    let (code, _, err) = repro(&env, &["promote", &run, "--tag", "staging"]);
    assert_ne!(code, 0, "{err}");
    let (code, err) = with_auth(&["promote", &run, "--tag", "staging"]);
    assert_eq!(code, Some(0), "{err}");
    let repo = image.rsplit_once(':').unwrap().0;
    assert_eq!(skopeo_digest(&format!("{repo}:staging"), Some(&auth)), d);
}

/// The trail travels with the runs: `repro export` carries each run's channel moves, `repro
/// import` adds them to the other database once (again: nothing new), and `repro notes` there
/// says the same; a move that is not well formed refuses the whole file, nothing stored.
#[test]
fn the_trail_travels_with_export_and_import() {
    let registry = Registry::start();
    let env = TestEnv::new();
    let repo = registry.reference("team/app", "v1");
    let repo = repo.rsplit_once(':').unwrap().0.to_string();
    registry.push_busybox("team/app", "v1");
    let run1 = record(&env, &format!("{repo}:v1"), &["--name", "first"]);
    registry.push_busybox("team/app", "v1");
    let run2 = record(&env, &format!("{repo}:v1"), &["--name", "second"]);
    for (id, note) in [(&run1, "first cut"), (&run2, "better eval")] {
        let (code, _, err) = repro(&env, &["promote", id, "--tag", "prod", "--note", note]);
        assert_eq!(code, 0, "{err}");
    }
    let (code, _, err) = repro(&env, &["promote", "--rollback", "prod", "--repo", &repo]);
    assert_eq!(code, 0, "{err}");
    let notes = |e: &TestEnv| -> Value {
        let (code, out, err) = repro(e, &["notes", "--format", "json"]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let here = notes(&env);
    let file = env.root().join("runs.jsonl");
    let (code, out, err) = repro(&env, &["export"]);
    assert_eq!(code, 0, "{err}");
    std::fs::write(&file, &out).unwrap();
    assert!(out.contains("\"promotions\""), "{out}");

    let other = TestEnv::new();
    let f = file.display().to_string();
    let (code, _, err) = repro(&other, &["import", &f]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("3 channel move(s) added to the trail"),
        "{err}"
    );
    let there = notes(&other);
    // The same moves, in the same order (ids are each database's own).
    // The trail's sequence numbers are each database's own.
    let strip = |v: &Value| -> Vec<Value> {
        v["promotions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let mut p = p.clone();
                p.as_object_mut().unwrap().remove("id");
                p
            })
            .collect()
    };
    assert_eq!(strip(&here).len(), 3);
    assert_eq!(strip(&here), strip(&there));
    // The rollback is there too, and `channels` in the other database knows prod.
    let (code, _, err) = repro(&other, &["import", &f]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("channel move"), "{err}");
    assert_eq!(strip(&notes(&other)), strip(&here));

    // A move that is not well formed: the file is refused, nothing stored.
    let third = TestEnv::new();
    let bad = out.replacen(
        "\"channel\":\"prod\"",
        "\"channel\":\"-prod\\u001b[31m\"",
        1,
    );
    assert_ne!(bad, out);
    let bad_file = third.root().join("bad.jsonl");
    std::fs::write(&bad_file, &bad).unwrap();
    let (code, _, err) = repro(&third, &["import", &bad_file.display().to_string()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("promotions[0]") && err.contains("not a tag"),
        "{err}"
    );
    assert!(!err.contains('\u{1b}'), "{err}");
    assert!(third.runs().is_empty());
}
