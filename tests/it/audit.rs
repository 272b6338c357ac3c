//! `repro audit` and `repro image archive` against a real registry with deletion enabled
//! (docker-registry, `storage.delete.enabled: true`), checked with skopeo.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::engine::{Podman, PushedBusybox};
use crate::support::registry::{host_platform, sha256_digest, Registry};
use crate::support::{require_tool, TestEnv};

/// Records a `--host` run of `image` and returns its id.
fn record(env: &TestEnv, image: &str) -> String {
    let (code, _, err) = env.run_in(
        env.root(),
        &["run", "--host", "--image", image, "--", "true"],
    );
    assert_eq!(code, 0, "run: {err}");
    env.last_id()
}

fn json_of(env: &TestEnv, args: &[&str]) -> (i32, Value, String) {
    let (code, out, err) = env.run_in(env.root(), args);
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}\nstderr: {err}"));
    (code, v, err)
}

fn archive(env: &TestEnv, ids: &[&str], dir: &Path, extra: &[&str]) -> Value {
    let d = dir.display().to_string();
    let mut args = vec!["image", "archive", "--json", "--to", d.as_str()];
    args.extend_from_slice(extra);
    args.extend_from_slice(ids);
    let (code, v, err) = json_of(env, &args);
    assert_eq!(code, 0, "archive: {err}\n{v}");
    v
}

fn row<'a>(audit: &'a Value, digest: &str) -> &'a Value {
    audit["images"]
        .as_array()
        .expect("images")
        .iter()
        .find(|r| r["digest"] == digest)
        .unwrap_or_else(|| panic!("no row for {digest}: {audit}"))
}

fn blob(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").expect("sha256"))
}

fn blob_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir.join("blobs/sha256"))
        .expect("blobs dir")
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .expect("json")
}

/// `skopeo inspect --raw oci:DIR:NAME` → the manifest bytes skopeo reads from the layout.
fn skopeo_raw(dir: &Path, name: &str) -> Vec<u8> {
    require_tool("skopeo");
    let out = Command::new("skopeo")
        .args(["--insecure-policy", "inspect", "--raw"])
        .arg(format!("oci:{}:{name}", dir.display()))
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "skopeo inspect oci:{}:{name}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The layer and config blobs of a manifest stored in the layout.
fn manifest_children(dir: &Path, digest: &str) -> Vec<(String, u64)> {
    let m = read_json(&blob(dir, digest));
    let mut out = vec![(
        m["config"]["digest"].as_str().unwrap().to_string(),
        m["config"]["size"].as_u64().unwrap(),
    )];
    for l in m["layers"].as_array().unwrap() {
        out.push((
            l["digest"].as_str().unwrap().to_string(),
            l["size"].as_u64().unwrap(),
        ));
    }
    out
}

#[test]
fn a_vanished_digest_is_reported_as_archived_and_a_moved_tag_is_named() {
    let registry = Registry::start();
    let env = TestEnv::new();
    let image = registry.reference("team/app", "v1");
    let d1 = registry.push_busybox("team/app", "v1");
    let run1 = record(&env, &image);
    assert_eq!(env.show_json(&run1)["image"]["digest"], d1);

    // While the registry has it: present, the tag unchanged and pointing at it now.
    let (code, a, err) = json_of(&env, &["audit", "--json"]);
    assert_eq!(code, 0, "{err}");
    let r = row(&a, &d1);
    assert_eq!(r["status"], "present");
    assert_eq!(r["tag"]["moved"], false);
    assert_eq!(r["tags_now"], serde_json::json!(["v1"]));

    let dir = env.root().join("archive");
    let rep = archive(&env, &[&run1], &dir, &[]);
    assert_eq!(rep["archive"]["images"][0]["error"], Value::Null, "{rep}");
    assert!(
        rep["archive"]["blobs_fetched"].as_u64().unwrap() >= 2,
        "{rep}"
    );
    // An OCI layout: oci-layout, index.json naming the digest, every blob under its digest.
    assert_eq!(
        read_json(&dir.join("oci-layout"))["imageLayoutVersion"],
        "1.0.0"
    );
    let index = read_json(&dir.join("index.json"));
    assert!(
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["digest"] == d1),
        "{index}"
    );
    let body = std::fs::read(blob(&dir, &d1)).unwrap();
    assert_eq!(sha256_digest(&body), d1);
    for (d, size) in manifest_children(&dir, &d1) {
        let bytes = std::fs::read(blob(&dir, &d)).unwrap();
        assert_eq!(bytes.len() as u64, size);
        assert_eq!(sha256_digest(&bytes), d);
    }
    // skopeo reads the same manifest from the layout.
    assert_eq!(sha256_digest(&skopeo_raw(&dir, &d1)), d1);
    let (_, show, _) = env.run_in(env.root(), &["show", &run1]);
    assert!(
        show.contains("archived")
            && show.contains(&dir.canonicalize().unwrap().display().to_string()),
        "{show}"
    );

    // Move the tag, delete the old manifest through the API, garbage-collect the registry.
    let d2 = registry.push_busybox("team/app", "v1");
    assert_ne!(d1, d2);
    registry.delete_manifest("team/app", &d1);
    registry.garbage_collect();

    let (code, a, err) = json_of(&env, &["audit", "--json"]);
    assert_eq!(code, 0, "archived runs are not at risk: {err}\n{a}");
    let r = row(&a, &d1);
    assert_eq!(r["status"], "archived", "{r}");
    assert_eq!(r["manifest_present"], false);
    assert_eq!(r["tag"]["moved"], true);
    assert_eq!(r["tag"]["digest"], d2);
    assert_eq!(r["tag"]["used_by"], Value::Null, "no run here used {d2}");
    assert_eq!(r["tags_now"], serde_json::json!([]));
    assert_eq!(r["archives"][0]["intact"], true);

    // A run of the new digest: the moved tag now names it.
    let run2 = record(&env, &image);
    let (_, a, _) = json_of(&env, &["audit", "--json", &run1]);
    assert_eq!(row(&a, &d1)["tag"]["used_by"], run2);
    let (code, table, _) = env.run_in(env.root(), &["audit", &run1]);
    assert_eq!(code, 0);
    assert!(
        table.contains("archived") && table.contains("moved") && table.contains(&run2[..12]),
        "{table}"
    );

    // A digest gone without an archive: MISSING, exit 1.
    registry.push_busybox("team/app", "v2");
    let run3 = record(&env, &registry.reference("team/app", "v2"));
    let d3 = env.show_json(&run3)["image"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    registry.delete_manifest("team/app", &d3);
    let (code, table, _) = env.run_in(env.root(), &["audit"]);
    assert_eq!(code, 1, "{table}");
    assert!(table.contains("MISSING"), "{table}");
    let (code, a, _) = json_of(&env, &["audit", "--json"]);
    assert_eq!(code, 1);
    assert_eq!(a["at_risk"], true);
    assert_eq!(row(&a, &d3)["status"], "missing");
    assert_eq!(row(&a, &d3)["tag"]["digest"], Value::Null, "v2 is gone");
    // Archiving it now is refused and records nothing.
    let d = dir.display().to_string();
    let (code, _, err) = env.run_in(env.root(), &["image", "archive", "--to", &d, &run3]);
    assert_eq!(code, 1);
    assert!(err.contains("could not be archived"), "{err}");
    let (_, shown, _) = env.run_in(env.root(), &["show", &run3]);
    assert!(!shown.contains("archived"), "{shown}");
}

#[test]
fn tags_now_are_bounded_and_say_when_cut_short() {
    // distribution 2.8 (Debian's docker-registry) ignores `n` on tags/list and sends no `Link`
    // header, so pagination itself is covered by the `next_link` unit test; the bound is here.
    let registry = Registry::start();
    let env = TestEnv::new();
    let d = registry.push_busybox("team/app", "v1");
    for t in ["a", "b", "prod"] {
        registry.tag("team/app", "v1", t);
    }
    registry.push_busybox("team/app", "other");
    record(&env, &registry.reference("team/app", "v1"));
    let (code, a, err) = json_of(&env, &["audit", "--json", "--tag-page-size", "2"]);
    assert_eq!(code, 0, "{err}");
    let r = row(&a, &d);
    assert_eq!(r["tags_now"], serde_json::json!(["a", "b", "prod", "v1"]));
    assert_eq!(r["tags_truncated"], false);
    // At most two tags looked up: the rest is reported as cut short.
    let (code, a, _) = json_of(&env, &["audit", "--json", "--max-tags", "2"]);
    assert_eq!(code, 0);
    let r = row(&a, &d);
    assert_eq!(r["tags_truncated"], true);
    let now: Vec<&str> = r["tags_now"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    // Listing order is the registry's; any two of the tags pointing at d.
    assert!(
        now.len() <= 2 && now.iter().all(|t| ["a", "b", "prod", "v1"].contains(t)),
        "{now:?}"
    );
    assert_eq!(
        r["tag"]["moved"], false,
        "the recorded tag is still asked for"
    );
    assert_eq!(r["tag"]["digest"], d);
    let (_, table, _) = env.run_in(env.root(), &["audit", "--max-tags", "2"]);
    assert!(table.contains("cut short"), "{table}");
}

#[test]
fn a_corrupted_or_truncated_blob_is_detected() {
    let registry = Registry::start();
    let env = TestEnv::new();
    let d1 = registry.push_busybox("team/app", "v1");
    let run = record(&env, &registry.reference("team/app", "v1"));
    let dir = env.root().join("archive");
    archive(&env, &[&run], &dir, &[]);
    registry.delete_manifest("team/app", &d1);

    let layers = manifest_children(&dir, &d1);
    let (layer, _) = layers.last().unwrap().clone();
    let p = blob(&dir, &layer);
    let mut bytes = std::fs::read(&p).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0xff; // same size, different content
    std::fs::write(&p, &bytes).unwrap();

    // Sizes still match, but the file changed since it was found intact: even without --deep
    // it is hashed again (see the test of item 7 of issue 22 below), and --deep always hashes.
    let (code, a, _) = json_of(&env, &["audit", "--json"]);
    assert_eq!(code, 1, "{a}");
    assert_eq!(row(&a, &d1)["status"], "missing");
    let (code, a, _) = json_of(&env, &["audit", "--json", "--deep"]);
    assert_eq!(code, 1, "{a}");
    let r = row(&a, &d1);
    assert_eq!(r["status"], "missing");
    assert_eq!(r["archives"][0]["intact"], false);
    assert!(
        r["archives"][0]["problems"][0]
            .as_str()
            .unwrap()
            .contains("corrupted"),
        "{r}"
    );
    let (code, _, err) = env.run_in(env.root(), &["audit", "--deep"]);
    assert_eq!(code, 1);
    assert!(err.contains(&layer) && err.contains("corrupted"), "{err}");

    // A truncated blob is caught without --deep.
    std::fs::write(&p, &bytes[..i]).unwrap();
    let (code, a, _) = json_of(&env, &["audit", "--json"]);
    assert_eq!(code, 1);
    assert!(
        row(&a, &d1)["archives"][0]["problems"][0]
            .as_str()
            .unwrap()
            .contains("bytes, expected"),
        "{a}"
    );
}

#[test]
fn a_multi_arch_index_keeps_the_index_and_the_platform_that_ran() {
    let registry = Registry::start();
    let env = TestEnv::new();
    let host = host_platform();
    let host_arch = host.strip_prefix("linux/").unwrap().to_string();
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
    let run = record(&env, &registry.reference("team/multi", "v1"));
    let rec = env.show_json(&run);
    assert_eq!(rec["image"]["index_digest"], info.index_digest);
    let ran = rec["image"]["digest"].as_str().unwrap().to_string();
    let other_digest = info
        .per_platform
        .iter()
        .find(|(p, _)| p.ends_with(other))
        .map(|(_, d)| d.clone())
        .unwrap();

    let dir = env.root().join("archive");
    let rep = archive(&env, &[&run], &dir, &[]);
    assert_eq!(
        rep["archive"]["images"][0]["platform_digests"],
        serde_json::json!([ran])
    );
    assert!(blob(&dir, &info.index_digest).exists());
    assert!(blob(&dir, &ran).exists());
    assert!(
        !blob(&dir, &other_digest).exists(),
        "only the platform that ran"
    );
    // Both the index and the platform manifest are named in index.json; skopeo reads them.
    assert_eq!(
        sha256_digest(&skopeo_raw(&dir, &info.index_digest)),
        info.index_digest
    );
    assert_eq!(sha256_digest(&skopeo_raw(&dir, &ran)), ran);

    let all = env.root().join("all");
    archive(&env, &[&run], &all, &["--all-platforms"]);
    assert!(blob(&all, &other_digest).exists());
    for (d, _) in manifest_children(&all, &other_digest) {
        assert!(blob(&all, &d).exists(), "{d}");
    }

    // Delete the platform manifest: the index alone is not enough; the archive is.
    registry.delete_manifest("team/multi", &ran);
    let (code, a, err) = json_of(&env, &["audit", "--json"]);
    assert_eq!(code, 0, "{err}");
    let r = row(&a, &ran);
    assert_eq!(r["index_present"], true);
    assert_eq!(r["manifest_present"], false);
    assert_eq!(r["status"], "archived");
}

#[test]
fn an_archive_shared_by_two_runs_stores_each_blob_once_and_gc_keeps_what_runs_need() {
    let registry = Registry::start();
    let env = TestEnv::new();
    let da = registry.push_busybox("team/a", "v1");
    let db = registry.push_busybox("team/b", "v1");
    let run_a = record(&env, &registry.reference("team/a", "v1"));
    let run_b = record(&env, &registry.reference("team/b", "v1"));
    let dir = env.root().join("archive");

    let first = archive(&env, &[&run_a], &dir, &[]);
    assert_eq!(first["archive"]["blobs_present"], 0);
    let a_children = manifest_children(&dir, &da);
    let shared_layer = a_children.last().unwrap().0.clone();
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(blob(&dir, &shared_layer)).unwrap().ino();

    // The second image shares the busybox layer: it is not fetched again.
    let second = archive(&env, &[&run_b], &dir, &[]);
    assert_eq!(second["archive"]["blobs_present"], 1, "{second}");
    assert_eq!(second["archive"]["blobs_fetched"], 1, "only b's config");
    assert_eq!(
        std::fs::metadata(blob(&dir, &shared_layer)).unwrap().ino(),
        inode,
        "the shared layer was not rewritten"
    );
    let b_children = manifest_children(&dir, &db);
    let mut want: BTreeSet<String> = BTreeSet::new();
    for d in [&da, &db] {
        want.insert(d.strip_prefix("sha256:").unwrap().to_string());
    }
    for (d, _) in a_children.iter().chain(&b_children) {
        want.insert(d.strip_prefix("sha256:").unwrap().to_string());
    }
    assert_eq!(blob_names(&dir), want, "each blob once");
    // Archiving both again fetches nothing.
    let again = archive(&env, &[&run_a, &run_b], &dir, &[]);
    assert_eq!(again["archive"]["blobs_fetched"], 0, "{again}");

    // Forget run a: gc drops its manifest and config, keeps the layer b needs.
    let (code, _, err) = env.run_in(env.root(), &["gc", "--yes", "--image", "team/a"]);
    assert_eq!(code, 0, "{err}");
    let d = dir.display().to_string();
    let (code, g, err) = json_of(&env, &["image", "archive", "--json", "--gc", &d]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(g["gc"]["blobs_removed"], 2, "{g}");
    assert!(!blob(&dir, &da).exists());
    assert!(blob(&dir, &shared_layer).exists());
    let (code, a, _) = json_of(&env, &["audit", "--json", "--deep"]);
    assert_eq!(code, 0);
    assert_eq!(row(&a, &db)["archives"][0]["intact"], true);
}

#[test]
fn archive_to_a_registry_mounts_blobs_and_audit_checks_it() {
    let registry = Registry::start();
    let env = TestEnv::new();
    let d1 = registry.push_busybox("team/app", "v1");
    let run = record(&env, &registry.reference("team/app", "v1"));
    let dest = format!("{}/archive/app", registry.addr());
    let (code, v, err) = json_of(
        &env,
        &["image", "archive", "--json", "--to-registry", &dest, &run],
    );
    assert_eq!(code, 0, "{err}\n{v}");
    assert_eq!(v["archive"]["kind"], "registry");
    assert_eq!(
        v["archive"]["bytes_fetched"], 0,
        "same registry: blobs are mounted, not copied through repro: {v}"
    );
    // The archive repository serves the manifest by digest.
    let m = registry.get_manifest("archive/app", &d1);
    assert_eq!(m.digest, d1);
    registry.delete_manifest("team/app", &d1);
    let (code, a, err) = json_of(&env, &["audit", "--json"]);
    assert_eq!(code, 0, "{err}\n{a}");
    assert_eq!(row(&a, &d1)["status"], "archived");
    assert_eq!(row(&a, &d1)["archives"][0]["location"], dest);
}

#[test]
fn bad_destinations_are_refused_without_recording() {
    let registry = Registry::start();
    let env = TestEnv::new();
    registry.push_busybox("team/app", "v1");
    let run = record(&env, &registry.reference("team/app", "v1"));
    let dir = env.root().join("not-a-layout");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let d = dir.display().to_string();
    let (code, _, err) = env.run_in(env.root(), &["image", "archive", "--to", &d, &run]);
    assert_eq!(code, 1);
    assert!(err.contains("not an OCI image layout"), "{err}");
    let (code, _, err) = env.run_in(env.root(), &["image", "archive", &run]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = env.run_in(
        env.root(),
        &["image", "archive", "--to-registry", "Bad/Repo:tag", &run],
    );
    assert_eq!(code, 1, "{err}");
    // A run without an image has nothing to archive.
    let (code, _, _) = env.run_in(env.root(), &["run", "--", "true"]);
    assert_eq!(code, 0);
    let host_run = env.last_id();
    let d = env.root().join("empty").display().to_string();
    let (code, _, err) = env.run_in(env.root(), &["image", "archive", "--to", &d, &host_run]);
    assert_eq!(code, 1);
    assert!(err.contains("ran in an image"), "{err}");
    let (_, shown, _) = env.run_in(env.root(), &["show", &run]);
    assert!(!shown.contains("archived"), "nothing recorded: {shown}");
}

/// Runs `bash SCRIPT WORKDIR` with `podman`'s setup; returns (code, stdout, stderr).
fn bash_script(
    env: &TestEnv,
    script: &Path,
    podman: &crate::support::engine::Podman,
    work: &str,
) -> (i32, String, String) {
    let out = Command::new("bash")
        .arg(script)
        .arg(env.root().join(work))
        .envs(podman.env().iter().map(|(k, v)| (k, v)))
        .env("HOME", env.home())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The digests of the images a podman store holds.
fn podman_digests(podman: &crate::support::engine::Podman) -> BTreeSet<String> {
    let listed = podman
        .command()
        .args(["images", "--format", "{{.Digest}}"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// `repro script` of `id` into `name`, checked by shellcheck with no exclusion.
fn script_of(env: &TestEnv, id: &str, name: &str) -> (PathBuf, String) {
    require_tool("shellcheck");
    let script = env.root().join(name);
    env.repro()
        .args(["script", id, "-o", script.to_str().unwrap()])
        .assert()
        .success();
    let sc = Command::new("shellcheck").arg(&script).output().unwrap();
    assert!(
        sc.status.success(),
        "shellcheck: {}",
        String::from_utf8_lossy(&sc.stdout)
    );
    let text = std::fs::read_to_string(&script).unwrap();
    (script, text)
}

/// `repro rerun ID` in `cwd` with `podman`'s setup; returns (code, stdout, stderr).
fn rerun_with(
    env: &TestEnv,
    cwd: &Path,
    podman: &crate::support::engine::Podman,
    id: &str,
) -> (i32, String, String) {
    let out = env
        .repro()
        .current_dir(cwd)
        .envs(podman.env().iter().map(|(k, v)| (k, v)))
        .args(["rerun", id])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Records a podman run of `image` in a fresh git repository; returns its id.
fn record_podman_run(
    env: &TestEnv,
    podman: &crate::support::engine::Podman,
    image: &str,
) -> (String, PathBuf) {
    let repo = env.git_repo("proj");
    let first = env
        .repro()
        .current_dir(&repo)
        .envs(podman.env().iter().map(|(k, v)| (k, v)))
        .args(["run", "-q", "--engine", "podman", "--image", image])
        .args(["--engine-arg=--network=none", "--"])
        .args(["/bin/busybox", "sh", "-c", "echo ran-from-image"])
        .output()
        .unwrap();
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    (env.last_id(), repo)
}

#[test]
fn a_rerun_falls_back_to_the_archive_and_podman_runs_exactly_the_recorded_digest() {
    let bb = PushedBusybox::new("team/trainer", "1.0");
    let (registry, digest, podman) = (&bb.registry, &bb.digest, bb.podman());
    let env = TestEnv::new();
    let (id, repo) = record_podman_run(&env, podman, &registry.reference("team/trainer", "1.0"));
    let dir = env.root().join("archive");
    archive(&env, &[&id], &dir, &[]);

    // The registry loses the digest.
    registry.push_busybox_with_labels("team/trainer", "1.0", &[("moved", "yes")]);
    registry.delete_manifest("team/trainer", digest);
    registry.garbage_collect();
    let gone = registry
        .request("HEAD", &format!("/v2/team/trainer/manifests/{digest}"))
        .call();
    assert!(gone.is_err(), "the registry still serves {digest}");

    // The script `repro script` writes carries the fallback itself: shellcheck-clean as is.
    let (script, text) = script_of(&env, &id, "rerun.sh");
    assert!(text.contains("archive_layouts=("), "{text}");
    assert!(text.contains(&dir.display().to_string()), "{text}");

    // A fresh podman (nothing cached) re-runs it from the archive.
    let fresh = Podman::new(&[&registry.addr()]);
    let (code, stdout, stderr) = bash_script(&env, &script, &fresh, "work");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "ran-from-image\n", "{stderr}");
    assert!(stderr.contains("from the archive"), "{stderr}");
    assert!(
        stderr.contains(&format!("reports digest {digest}")),
        "{stderr}"
    );
    assert_eq!(
        podman_digests(&fresh),
        BTreeSet::from([digest.clone()]),
        "only the recorded digest"
    );

    // `repro rerun` falls back the same way through the engine plan, and records the re-run.
    let other = Podman::new(&[&registry.addr()]);
    let (code, stdout, stderr) = rerun_with(&env, &repo, &other, &id);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "ran-from-image\n", "{stderr}");
    assert!(stderr.contains("trying the recorded archives"), "{stderr}");
    assert!(
        stderr.contains(&format!("pulled {digest} from the archive")),
        "{stderr}"
    );
    assert_eq!(podman_digests(&other), BTreeSet::from([digest.clone()]));
    let rerun = env.show_json(&env.last_id());
    assert_eq!(rerun["status"], "succeeded", "{rerun}");
    assert_eq!(rerun["image"]["digest"], digest.as_str(), "{rerun}");

    // The Slurm script (podman runtime) renders the same pull.
    let slurm = env
        .repro()
        .args(["script", &id, "--target", "slurm", "--runtime", "podman"])
        .output()
        .unwrap();
    let slurm = String::from_utf8_lossy(&slurm.stdout).into_owned();
    assert!(slurm.contains("archive_layouts=("), "{slurm}");
    let sbatch = env.root().join("rerun.sbatch");
    std::fs::write(&sbatch, &slurm).unwrap();
    let sc = Command::new("shellcheck").arg(&sbatch).output().unwrap();
    assert!(
        sc.status.success(),
        "shellcheck rerun.sbatch: {}",
        String::from_utf8_lossy(&sc.stdout)
    );

    // Docker cannot take a layout by digest: the error says so.
    let fb = repro::ops::archive::pull_fallback(
        &repro::record::Image {
            digest: Some(digest.clone()),
            ..env_image(&env, &id)
        },
        &repro::store::Store::open(&env.db())
            .unwrap()
            .archives(&id)
            .unwrap(),
    )
    .expect("a fallback");
    let e = repro::ops::archive::pull_from_archives(false, &fb, &[], &mut |_| Err("unused".into()))
        .unwrap_err();
    assert!(e.contains("docker cannot load"), "{e}");
}

fn env_image(env: &TestEnv, id: &str) -> repro::record::Image {
    let store = repro::store::Store::open(&env.db()).unwrap();
    store.get_run(id).unwrap().image.expect("an image")
}

#[test]
fn a_rerun_falls_back_to_an_archive_registry() {
    let bb = PushedBusybox::new("team/app", "v1");
    let (registry, digest, podman) = (&bb.registry, &bb.digest, bb.podman());
    let env = TestEnv::new();
    let (id, repo) = record_podman_run(&env, podman, &registry.reference("team/app", "v1"));
    let dest = format!("{}/archive/app", registry.addr());
    let (code, v, err) = json_of(
        &env,
        &["image", "archive", "--json", "--to-registry", &dest, &id],
    );
    assert_eq!(code, 0, "{err}\n{v}");
    registry.delete_manifest("team/app", digest);
    registry.garbage_collect();

    let (script, text) = script_of(&env, &id, "rerun.sh");
    assert!(text.contains(&format!("{dest}@{digest}")), "{text}");
    let fresh = Podman::new(&[&registry.addr()]);
    let (code, stdout, stderr) = bash_script(&env, &script, &fresh, "work");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "ran-from-image\n", "{stderr}");
    assert!(stderr.contains("from the archive registry"), "{stderr}");

    let other = Podman::new(&[&registry.addr()]);
    let (code, stdout, stderr) = rerun_with(&env, &repo, &other, &id);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "ran-from-image\n", "{stderr}");
    assert!(stderr.contains(&format!("({dest}@{digest})")), "{stderr}");
}

#[test]
fn a_vanished_digest_without_an_archive_is_a_clear_error() {
    use crate::support::engine::Podman;

    let registry = Registry::start();
    let digest = registry.push_busybox_with_labels("team/lost", "1.0", &[("only", "here")]);
    let podman = Podman::new(&[&registry.addr()]);
    let env = TestEnv::new();
    let (id, repo) = record_podman_run(&env, &podman, &registry.reference("team/lost", "1.0"));
    registry.delete_manifest("team/lost", &digest);
    registry.garbage_collect();

    let before = env.runs().len();
    let fresh = Podman::new(&[&registry.addr()]);
    let (code, stdout, stderr) = rerun_with(&env, &repo, &fresh, &id);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stdout, "", "no child ran");
    assert!(
        stderr.contains(&format!("the registry no longer has {digest}")),
        "{stderr}"
    );
    assert!(stderr.contains("repro image archive"), "{stderr}");
    assert!(stderr.contains("repro audit"), "{stderr}");
    let runs = env.runs();
    assert_eq!(runs.len(), before + 1);
    let last = env.show_json(&env.last_id());
    assert_eq!(
        last["status"], "error",
        "an engine error, not the job's: {last}"
    );

    let (script, text) = script_of(&env, &id, "rerun.sh");
    assert!(
        !text.contains("archive_layouts"),
        "no archive recorded: {text}"
    );
    let (code, stdout, stderr) = bash_script(&env, &script, &fresh, "work");
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stdout, "");
    assert!(stderr.contains("repro image archive keeps one"), "{stderr}");
    assert!(stderr.contains("repro audit"), "{stderr}");
}

/// Issue 21: `registry_timeout` from a configuration file bounds `repro audit` and
/// `repro image archive` as it bounds `repro run` (they built their own registry options and
/// dropped it, waiting the default 60 s on a registry that never answers).
#[test]
fn registry_timeout_in_the_configuration_reaches_audit_and_archive() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let env = TestEnv::new();
    let cfg = env.home().join(".config/repro/config.toml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(&cfg, "registry_timeout = 2\n").unwrap();
    let image = format!("{addr}/team/app:1@sha256:{}", "ab".repeat(32));
    let (code, _, err) = env.run_in(
        env.root(),
        &[
            "run",
            "--host",
            "--offline",
            "--image",
            &image,
            "--",
            "true",
        ],
    );
    assert_eq!(code, 0, "run: {err}");
    let id = env.last_id();

    let (_, out, err) = env.run_in(env.root(), &["audit", &id, "--json"]);
    let both = format!("{out}{err}");
    // The audit's deadline per registry is the configured timeout.
    assert!(both.contains("did not answer within 2 s"), "{both}");

    let dir = env.root().join("layout");
    let (code, out, err) = env.run_in(
        env.root(),
        &["image", "archive", &id, "--to", dir.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{out}{err}");
    let both = format!("{out}{err}");
    assert!(both.contains("within 2s"), "{both}");
}

/// `audit` against a registry that accepts connections and never answers: one deadline per
/// registry bounds the whole audit (REPRO_REGISTRY_TIMEOUT, here 4 s), for one image as for ten;
/// every row is UNKNOWN with an error saying which registry gave no answer in time.
#[test]
fn audit_against_a_hanging_registry_is_bounded_by_one_deadline_per_registry() {
    let env = TestEnv::new();
    let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let registry = hang.local_addr().unwrap().to_string();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let held = held.clone();
        std::thread::spawn(move || {
            for c in hang.incoming().flatten() {
                held.lock().unwrap().push(c);
            }
        });
    }
    // Pinned by digest and recorded offline: nothing asks the registry before the audit.
    let ids: Vec<String> = (0..10)
        .map(|i| {
            let image = format!(
                "{registry}/team/app{i}:1.0@sha256:{}",
                format!("{i:x}").repeat(64)
            );
            let (code, _, err) = env.run_in(
                env.root(),
                &[
                    "run",
                    "--host",
                    "--offline",
                    "--image",
                    &image,
                    "--",
                    "true",
                ],
            );
            assert_eq!(code, 0, "run: {err}");
            env.last_id()
        })
        .collect();
    for n in [1, 10] {
        let mut c = env.repro();
        c.env("REPRO_REGISTRY_TIMEOUT", "4")
            .current_dir(env.root())
            .args(["audit", "--json"])
            .args(&ids[..n]);
        let started = std::time::Instant::now();
        let out = c.output().unwrap();
        let took = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let v: Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
        assert_eq!(out.status.code(), Some(1), "{v}");
        let rows = v["images"].as_array().unwrap();
        assert_eq!(rows.len(), n);
        for r in rows {
            assert_eq!(r["status"], "unknown", "{r}");
            let e = r["error"].as_str().unwrap_or("");
            assert!(
                e.contains(&format!("registry {registry} did not answer within 4 s")),
                "{r}"
            );
        }
        // The deadline plus the process's own start, far below what a deadline per request
        // (a listing, then the manifest, then the tag, each waiting in turn) would take.
        assert!(
            took < std::time::Duration::from_millis(6500),
            "{n} images took {took:?}"
        );
    }
}

/// A blob already in the layout with the right size but one byte flipped is never trusted:
/// `audit` (without `--deep`) reports the archive damaged, and `image archive` fetches the blob
/// again from the registry and replaces it. Blobs unchanged since they were found intact are not
/// hashed again (a record of inode, size, mtime and ctime per blob).
#[test]
fn a_corrupted_blob_already_in_the_layout_is_detected_and_repaired_from_the_registry() {
    let registry = Registry::start();
    let env = TestEnv::new();
    let d1 = registry.push_busybox("team/app", "v1");
    let run = record(&env, &registry.reference("team/app", "v1"));
    let dir = env.root().join("archive");
    archive(&env, &[&run], &dir, &[]);
    let (layer, _) = manifest_children(&dir, &d1).last().unwrap().clone();
    let p = blob(&dir, &layer);
    let good = std::fs::read(&p).unwrap();
    let (code, a, _) = json_of(&env, &["audit", "--json"]);
    assert_eq!(code, 0, "{a}");
    assert_eq!(row(&a, &d1)["archives"][0]["intact"], true, "{a}");

    let mut bad = good.clone();
    let i = bad.len() / 2;
    bad[i] ^= 0xff;
    std::fs::write(&p, &bad).unwrap();
    let (_, a, _) = json_of(&env, &["audit", "--json"]);
    let r = row(&a, &d1);
    assert_eq!(r["status"], "present", "{r}");
    assert_eq!(r["archives"][0]["intact"], false, "{r}");
    assert!(
        r["archives"][0]["problems"][0]
            .as_str()
            .unwrap()
            .contains(&format!("blob {layer} hashes to")),
        "{r}"
    );
    let (_, out, _) = env.run_in(env.root(), &["audit"]);
    assert!(!out.contains("+archived"), "{out}");

    // Archived again: the damaged blob is fetched again and replaced, not counted as present.
    let rep = archive(&env, &[&run], &dir, &[]);
    assert_eq!(rep["archive"]["images"][0]["error"], Value::Null, "{rep}");
    assert_eq!(rep["archive"]["blobs_fetched"], 1, "{rep}");
    assert_eq!(std::fs::read(&p).unwrap(), good);
    let (code, a, _) = json_of(&env, &["audit", "--json", "--deep"]);
    assert_eq!(code, 0, "{a}");
    assert_eq!(row(&a, &d1)["archives"][0]["intact"], true, "{a}");
    assert!(
        dir.join(".repro-verified").join(&layer[7..]).is_file(),
        "written blobs are recorded as intact"
    );
}

/// `image archive` against a registry that cannot be reached: the error's hints are about
/// reaching the registry, not `repro run`'s flags (`--offline`, `--resolve engine`) nor an image
/// gone from the registry.
#[test]
fn image_archive_errors_carry_hints_about_what_failed() {
    let env = TestEnv::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let image = format!("127.0.0.1:{port}/team/app:1.0@sha256:{}", "a".repeat(64));
    let (code, _, err) = env.run_in(
        env.root(),
        &[
            "run",
            "--host",
            "--offline",
            "--image",
            &image,
            "--",
            "true",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let id = env.last_id();
    let dir = env.root().join("archive").display().to_string();
    let (code, out, err) = env.run_in(env.root(), &["image", "archive", "--to", &dir, &id]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("1 image(s) could not be archived"), "{err}");
    assert!(err.contains("check that the registry is up"), "{err}");
    for unrelated in ["--offline", "--resolve engine", "gone from the registry"] {
        assert!(!err.contains(unrelated), "{unrelated}: {err}");
    }
}
