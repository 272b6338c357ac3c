//! Provenance next to the image in a real registry (Debian's `docker-registry`, distribution
//! 2.8, which has no referrers API): `repro attest --push` and `attest verify --from-registry`,
//! checked with PyPI `oras` (pull by tag, files named by title) and in-toto/securesystemslib.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::attest::{openssl_key, py_check, stdout_of, training_repo};
use crate::support::engine::PushedBusybox;
use crate::support::python::Venv;
use crate::support::registry::{Registry, OCI_MANIFEST};
use crate::support::TestEnv;

/// PyPI `oras` 0.2.43 (scripts/install-deps.sh makes the venv; created here when missing).
fn oras() -> Venv {
    Venv::ensure("py-oras", &["oras==0.2.43"], &["oras.client"])
}

/// Pulls argv[2] from the plain-HTTP registry argv[1] into argv[3] with oras' own client;
/// prints {"files": [...], "manifest": {...}}.
const ORAS_PULL_PY: &str = r#"
import json, sys, oras.client
host, target, outdir = sys.argv[1:4]
c = oras.client.OrasClient(hostname=host, insecure=True)
files = c.pull(target=target, outdir=outdir)
print(json.dumps({"files": files, "manifest": c.get_manifest(target)}))
"#;

/// `oras pull` of `target` into `outdir`; returns what ORAS_PULL_PY printed.
pub(crate) fn oras_pull(registry: &Registry, target: &str, outdir: &Path) -> Value {
    let out = oras().run(
        outdir.parent().unwrap_or(outdir),
        ORAS_PULL_PY,
        &[&registry.addr(), target, outdir.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "oras pull {target}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The manifest under `tag` of `repo`, as the registry serves it.
fn manifest(registry: &Registry, repo: &str, tag: &str) -> Value {
    let resp = registry
        .request("GET", &format!("/v2/{repo}/manifests/{tag}"))
        .set("Accept", OCI_MANIFEST)
        .call()
        .unwrap_or_else(|e| panic!("GET manifest {repo}:{tag}: {e}"));
    serde_json::from_reader(resp.into_reader()).unwrap()
}

/// A finished host run of `train.sh` whose image `image` was resolved through the registry.
fn run_with_image(env: &TestEnv, repo: &Path, image: &str) -> String {
    stdout_of(
        env,
        repo,
        &[
            "run",
            "-q",
            "--host",
            "--resolve",
            "registry",
            "--image",
            image,
            "--output",
            "out/model.bin",
            "--",
            "sh",
            "train.sh",
        ],
    );
    env.last_id()
}

/// `repro attest ID --sign KEY --push -o FILE`; returns (stdout, stderr).
fn push(env: &TestEnv, repo: &Path, id: &str, key: &Path, file: &Path) -> (String, String) {
    let (code, out, err) = env.run_in(
        repo,
        &[
            "attest",
            id,
            "--sign",
            key.to_str().unwrap(),
            "--push",
            "-o",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "attest --push: {err}");
    (out, err)
}

/// The pushes recorded for a run: (kind, reference, digest).
fn recorded(env: &TestEnv, id: &str) -> Vec<(String, String, String)> {
    let c = rusqlite::Connection::open(env.db()).unwrap();
    let mut st = c
        .prepare("SELECT kind, reference, digest FROM run_artifacts WHERE run_id = ?1 ORDER BY pushed_at, reference")
        .unwrap();
    st.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn att_tag(digest: &str) -> String {
    format!("{}.att", digest.replacen(':', "-", 1))
}

#[test]
fn attestation_pushed_under_the_att_tag_verifies_with_repro_oras_and_securesystemslib() {
    let b = PushedBusybox::in_registry("team/train", "v1");
    let env = TestEnv::new();
    let repo = training_repo(&env);
    let id = run_with_image(&env, &repo, &b.tag_ref);
    let (key, public) = openssl_key(env.root(), "signing");
    let envelope = env.root().join("model.intoto.json");
    let (out, err) = push(&env, &repo, &id, &key, &envelope);
    let tag = att_tag(&b.digest);
    assert!(err.contains(&tag), "{err}");
    assert!(err.contains("serves no referrers API"), "{err}");
    let pushed = out.trim();
    assert!(
        pushed.starts_with(&format!("{}/team/train@sha256:", b.registry.addr())),
        "{out}"
    );
    assert_eq!(
        recorded(&env, &id),
        vec![(
            "attestation".to_string(),
            format!("{}/team/train:{tag}", b.registry.addr()),
            pushed.rsplit('@').next().unwrap().to_string()
        )]
    );

    // What the registry holds under the tag: an OCI 1.1 artifact whose one layer is the
    // envelope, its subject the image that ran.
    let m = manifest(&b.registry, "team/train", &tag);
    assert_eq!(m["mediaType"], OCI_MANIFEST);
    assert_eq!(
        m["artifactType"],
        "application/vnd.dev.repro.attestation.v1+json"
    );
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(m["config"]["size"], 2);
    assert_eq!(m["subject"]["digest"], b.digest.as_str());
    assert_eq!(m["subject"]["mediaType"], OCI_MANIFEST);
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.dsse.envelope.v1+json"
    );
    assert_eq!(layers[0]["annotations"]["dev.repro.run.id"], id.as_str());
    let written = std::fs::read(&envelope).unwrap();
    assert_eq!(
        layers[0]["size"].as_u64(),
        Some(written.len() as u64),
        "{m:#}"
    );

    // oras pulls the tag and writes the envelope at its title, byte for byte.
    let pulled = env.root().join("oras");
    let o = oras_pull(
        &b.registry,
        &format!("{}/team/train:{tag}", b.registry.addr()),
        &pulled,
    );
    let title = layers[0]["annotations"]["org.opencontainers.image.title"]
        .as_str()
        .unwrap();
    assert!(
        title.starts_with(&id) && title.ends_with(".intoto.json"),
        "{title}"
    );
    assert_eq!(o["files"].as_array().unwrap().len(), 1, "{o}");
    let got = std::fs::read(pulled.join(title)).unwrap();
    assert_eq!(got, written, "oras pulled other bytes than repro wrote");
    assert_eq!(o["manifest"]["subject"]["digest"], b.digest.as_str());
    // securesystemslib verifies the envelope oras pulled; in-toto validates its statement.
    let st = py_check(env.root(), &pulled.join(title), Some(&public));
    assert_eq!(
        st["predicate"]["runDetails"]["metadata"]["invocationId"],
        id.as_str()
    );

    // repro finds it through the tag scheme and checks it.
    let (code, out, err) = env.run_in(
        &repo,
        &[
            "attest",
            "verify",
            "--from-registry",
            &b.image,
            "--key",
            public.to_str().unwrap(),
            "--run",
            &id,
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "attestation 1 of 1: {}/team/train:{tag}",
            b.registry.addr()
        )),
        "{out}"
    );
    assert!(out.contains("valid Ed25519 signature"), "{out}");
    assert!(
        out.contains(&format!("matches the record of run {id}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("the statement's image is {}", b.digest)),
        "{out}"
    );
    assert!(out.contains("1 of 1 attestation(s)"), "{out}");
    assert!(out.contains("tag scheme"), "{out}");
    let (code, out, _) = env.run_in(
        &repo,
        &[
            "attest",
            "verify",
            "--from-registry",
            &b.image,
            "--key",
            public.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["via"], "tags");
    assert_eq!(v["image"], b.image.as_str());
    assert_eq!(v["attestations"][0]["title"], title);
    assert_eq!(v["attestations"][0]["ok"], true);
}

#[test]
fn further_attestations_are_appended_once_and_each_is_checked() {
    let b = PushedBusybox::in_registry("team/train", "v1");
    let env = TestEnv::new();
    let repo = training_repo(&env);
    let first = run_with_image(&env, &repo, &b.tag_ref);
    let second = run_with_image(&env, &repo, &b.tag_ref);
    let (key1, pub1) = openssl_key(env.root(), "one");
    let (key2, pub2) = openssl_key(env.root(), "two");
    let (_, stranger) = openssl_key(env.root(), "stranger");
    let tag = att_tag(&b.digest);
    push(&env, &repo, &first, &key1, &env.root().join("a.json"));
    let (_, err) = push(&env, &repo, &second, &key2, &env.root().join("b.json"));
    assert!(
        err.contains("beside 1 attestation(s) already there"),
        "{err}"
    );
    let m = manifest(&b.registry, "team/train", &tag);
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{m:#}");
    assert_eq!(layers[0]["annotations"]["dev.repro.run.id"], first.as_str());
    assert_eq!(
        layers[1]["annotations"]["dev.repro.run.id"],
        second.as_str()
    );
    // The same envelope again: nothing new (a signature over the same statement by the same
    // key is the same bytes, Ed25519 being deterministic).
    let (_, err) = push(&env, &repo, &second, &key2, &env.root().join("c.json"));
    assert!(err.contains("already under the tag"), "{err}");
    assert_eq!(
        manifest(&b.registry, "team/train", &tag)["layers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Each envelope is checked; one passing every check passes the image.
    let verify = |key: &Path, extra: &[&str]| {
        let mut args = vec![
            "attest",
            "verify",
            "--from-registry",
            &b.image,
            "--key",
            key.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        env.run_in(&repo, &args)
    };
    let (code, out, _) = verify(&pub1, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("attestation 2 of 2"), "{out}");
    assert!(out.contains("1 of 2 attestation(s)"), "{out}");
    assert!(out.contains("FAIL     signature"), "{out}");
    let (code, out, _) = verify(&pub2, &["--run", &second]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = verify(&stranger, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("0 of 2 attestation(s)"), "{out}");
    // The first run's envelope checked against the second run's record fails.
    let (code, out, _) = verify(&pub1, &["--run", &second]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("differs from the record"), "{out}");
}

#[test]
fn an_envelope_moved_next_to_another_image_or_corrupted_in_storage_fails() {
    let b = PushedBusybox::in_registry("team/train", "v1");
    let env = TestEnv::new();
    let repo = training_repo(&env);
    let id = run_with_image(&env, &repo, &b.tag_ref);
    let (key, public) = openssl_key(env.root(), "signing");
    push(&env, &repo, &id, &key, &env.root().join("a.json"));
    let tag = att_tag(&b.digest);

    // Someone copies the attestation under the .att tag of another image of the repository.
    let other = b.registry.push_busybox("team/train", "v2");
    let m = manifest(&b.registry, "team/train", &tag);
    let body = serde_json::to_vec(&m).unwrap();
    b.registry
        .request(
            "PUT",
            &format!("/v2/team/train/manifests/{}", att_tag(&other)),
        )
        .set("Content-Type", OCI_MANIFEST)
        .send_bytes(&body)
        .unwrap();
    let other_image = b.registry.reference("team/train", &other);
    let (code, out, _) = env.run_in(
        &repo,
        &[
            "attest",
            "verify",
            "--from-registry",
            &other_image,
            "--key",
            public.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("ok       signature"), "{out}");
    assert!(out.contains("FAIL     image"), "{out}");
    assert!(out.contains("attached to another image"), "{out}");

    // The envelope's bytes changed in the registry's storage: the layer fails, named.
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    let hex = layer.trim_start_matches("sha256:");
    let data: PathBuf = b.registry.storage().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let mut bytes = std::fs::read(&data).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x01;
    std::fs::write(&data, &bytes).unwrap();
    let (code, out, err) = env.run_in(
        &repo,
        &[
            "attest",
            "verify",
            "--from-registry",
            &b.image,
            "--key",
            public.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("FAIL     layer"), "{out}");
    assert!(out.contains("does not match its descriptor"), "{out}");
    assert!(
        out.contains(&format!("{id}-")),
        "the layer is named by its title: {out}"
    );
}

#[test]
fn runs_without_a_registry_digest_are_refused_and_nothing_found_is_an_error() {
    let registry = Registry::start();
    let env = TestEnv::new();
    let repo = training_repo(&env);
    let (key, public) = openssl_key(env.root(), "signing");

    // No image: refused before the document is written.
    stdout_of(
        &env,
        &repo,
        &[
            "run",
            "-q",
            "--output",
            "out/model.bin",
            "--",
            "sh",
            "train.sh",
        ],
    );
    let id = env.last_id();
    let file = env.root().join("none.json");
    let args = |id: &str| {
        vec![
            "attest".to_string(),
            id.to_string(),
            "--sign".into(),
            key.to_str().unwrap().into(),
            "--push".into(),
            "-o".into(),
            file.to_str().unwrap().into(),
        ]
    };
    let a: Vec<String> = args(&id);
    let (code, _, err) = env.run_in(&repo, &a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("has no image"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert!(!file.exists(), "nothing is written for a refused push");

    // An image that could not be pinned (recorded as unpinned).
    let nowhere = format!("{}/team/none:v1", registry.addr());
    stdout_of(
        &env,
        &repo,
        &[
            "run",
            "-q",
            "--host",
            "--resolve",
            "registry",
            "--allow-unpinned",
            "--image",
            &nowhere,
            "--output",
            "out/model.bin",
            "--",
            "sh",
            "train.sh",
        ],
    );
    let unpinned = env.last_id();
    let a = args(&unpinned);
    let (code, _, err) = env.run_in(&repo, &a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("was never resolved to a digest"), "{err}");
    assert!(!file.exists());

    // A pinned digest the registry never had.
    let ghost = format!("{}/team/none@sha256:{}", registry.addr(), "0".repeat(64));
    stdout_of(
        &env,
        &repo,
        &[
            "run",
            "-q",
            "--host",
            "--image",
            &ghost,
            "--output",
            "out/model.bin",
            "--",
            "sh",
            "train.sh",
        ],
    );
    let pinned = env.last_id();
    let a = args(&pinned);
    let (code, _, err) = env.run_in(&repo, &a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not in its registry"), "{err}");

    // --push without --sign is a usage error.
    let (code, _, err) = env.run_in(&repo, &["attest", &pinned, "--push"]);
    assert_eq!(code, 2, "{err}");

    // Nothing attached: exit 1 naming where repro looked.
    let b = registry.push_busybox("team/bare", "v1");
    let image = registry.reference("team/bare", &b);
    let (code, out, err) = env.run_in(
        &repo,
        &[
            "attest",
            "verify",
            "--from-registry",
            &image,
            "--key",
            public.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("no attestation of"), "{err}");
    assert!(err.contains(&att_tag(&b)), "{err}");
    // A reference without a digest says how to write one.
    let (code, _, err) = env.run_in(
        &repo,
        &[
            "attest",
            "verify",
            "--from-registry",
            &registry.reference("team/bare", "v1"),
            "--allow-unsigned",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("names no digest"), "{err}");
    assert!(err.contains("REPOSITORY@sha256:"), "{err}");
}

/// A repository whose `make.sh` writes `out/model.bin` and a directory `out/ckpt` (nested,
/// binary, a symbolic link); returns it.
fn outputs_repo(env: &TestEnv) -> PathBuf {
    let repo = env.git_repo("outs");
    std::fs::write(
        repo.join("make.sh"),
        "mkdir -p out/ckpt/sub\n\
         printf 'weights %s\\n' \"$1\" > out/model.bin\n\
         printf 'step 3\\n' > out/ckpt/a.txt\n\
         printf '\\000\\001\\377 binary' > out/ckpt/sub/b.bin\n\
         ln -sf sub/b.bin out/ckpt/latest\n",
    )
    .unwrap();
    std::fs::write(repo.join(".gitignore"), "out/\n").unwrap();
    crate::support::git(&repo, &["add", "."]);
    crate::support::git(&repo, &["commit", "-qm", "make"]);
    repo
}

/// `repro run` of make.sh keeping `out/model.bin` and `out/ckpt`; returns the run id.
fn outputs_run(env: &TestEnv, repo: &Path, image: Option<&str>, extra: &[&str]) -> String {
    let mut args = vec!["run", "-q"];
    if let Some(i) = image {
        args.extend(["--host", "--resolve", "registry", "--image", i]);
    }
    args.extend(extra);
    args.extend([
        "--output",
        "out/model.bin",
        "--output",
        "out/ckpt",
        "--",
        "sh",
        "make.sh",
        "v1",
    ]);
    stdout_of(env, repo, &args);
    env.last_id()
}

/// Regular files (relative path, bytes) and symlinks (relative path, target) under a directory.
type Tree = (Vec<(String, Vec<u8>)>, Vec<(String, PathBuf)>);

/// The regular files under `dir` and its symlinks.
fn files_under(dir: &Path) -> Tree {
    fn walk(base: &Path, d: &Path, f: &mut Vec<(String, Vec<u8>)>, l: &mut Vec<(String, PathBuf)>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let ty = e.file_type().unwrap();
            if ty.is_symlink() {
                l.push((rel, std::fs::read_link(&p).unwrap()));
            } else if ty.is_dir() {
                walk(base, &p, f, l);
            } else {
                f.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    let (mut f, mut l) = (Vec::new(), Vec::new());
    walk(dir, dir, &mut f, &mut l);
    f.sort();
    l.sort();
    (f, l)
}

fn objects_dir(env: &TestEnv) -> PathBuf {
    env.db().parent().unwrap().join("objects")
}

#[test]
fn outputs_pushed_come_back_identical_through_oras_and_repro_get() {
    let b = PushedBusybox::in_registry("team/train", "v1");
    let env = TestEnv::new();
    let repo = outputs_repo(&env);
    let id = outputs_run(&env, &repo, Some(&b.tag_ref), &[]);
    let commit = env.show_json(&id)["code"]["commit"].clone();
    let to = b.registry.reference("team/train", "outputs-1");
    let (code, out, err) = env.run_in(&repo, &["outputs", "push", &id, "--to", &to]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.trim()
            .starts_with(&format!("{}/team/train@sha256:", b.registry.addr())),
        "{out}"
    );
    assert!(err.contains("pushed 4 file(s)"), "{err}");
    assert!(err.contains("4 uploaded, 0 already there"), "{err}");
    assert!(
        err.contains(&format!("subject: the run's image {}", b.digest)),
        "{err}"
    );
    assert_eq!(
        recorded(&env, &id),
        vec![(
            "outputs".to_string(),
            to.clone(),
            out.trim().rsplit('@').next().unwrap().to_string()
        )]
    );

    let m = manifest(&b.registry, "team/train", "outputs-1");
    assert_eq!(m["artifactType"], "application/vnd.dev.repro.outputs.v1");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(m["annotations"]["dev.repro.run.id"], id.as_str());
    assert_eq!(
        m["annotations"]["org.opencontainers.image.revision"],
        commit
    );
    assert!(m["annotations"]["org.opencontainers.image.created"].is_string());
    assert_eq!(m["subject"]["digest"], b.digest.as_str());
    let mut titles: Vec<(String, String)> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["annotations"]["org.opencontainers.image.title"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                l["mediaType"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    titles.sort();
    let octet = "application/octet-stream".to_string();
    assert_eq!(
        titles,
        vec![
            ("out/ckpt/a.txt".to_string(), octet.clone()),
            (
                "out/ckpt/latest".to_string(),
                "application/vnd.dev.repro.symlink.v1".to_string()
            ),
            ("out/ckpt/sub/b.bin".to_string(), octet.clone()),
            ("out/model.bin".to_string(), octet),
        ]
    );

    // oras pulls the tag: every file at its title, byte for byte (a link as its target text).
    let (want_files, want_links) = files_under(&repo.join("out"));
    let pulled = env.root().join("oras-out");
    oras_pull(&b.registry, &to, &pulled);
    let (files, links) = files_under(&pulled.join("out"));
    let regular: Vec<_> = files
        .iter()
        .filter(|(p, _)| p != "ckpt/latest")
        .cloned()
        .collect();
    assert_eq!(
        regular, want_files,
        "oras pulled other files than the run wrote"
    );
    assert!(links.is_empty());
    assert_eq!(
        want_links,
        vec![("ckpt/latest".into(), PathBuf::from("sub/b.bin"))]
    );
    assert!(
        files.contains(&("ckpt/latest".to_string(), b"sub/b.bin".to_vec())),
        "{files:?}"
    );

    // Elsewhere (the image is not in that repository): no subject, said why; tag = run id.
    let elsewhere = format!("{}/team/models", b.registry.addr());
    let (code, out, err) = env.run_in(
        &repo,
        &["outputs", "push", &id[..10], "--to", &elsewhere, "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["reference"], format!("{elsewhere}:{id}").as_str());
    assert_eq!(v["subject"], Value::Null);
    assert!(
        v["no_subject"].as_str().unwrap().contains("is not in"),
        "{v}"
    );
    // The same again: nothing is uploaded twice.
    let (code, _, err) = env.run_in(&repo, &["outputs", "push", &id, "--to", &to]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("0 uploaded, 4 already there"), "{err}");

    // The local copy is gone: `repro get` pulls the newest recorded artifact back.
    std::fs::remove_dir_all(objects_dir(&env)).unwrap();
    let back = env.root().join("back");
    let (code, out, err) = env.run_in(&repo, &["get", &id, "--to", back.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("fetched 4 object(s)"), "{err}");
    let (files, links) = files_under(&back.join("out"));
    assert_eq!(files, want_files);
    assert_eq!(links, want_links);
    // And now it is kept again: no registry needed.
    let again = env.root().join("again");
    let (code, _, err) = env.run_in(&repo, &["get", &id, "--to", again.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("fetched"), "{err}");
}

#[test]
fn nothing_kept_is_refused_and_a_corrupt_registry_writes_nothing() {
    let registry = Registry::start();
    let env = TestEnv::new();
    let repo = outputs_repo(&env);
    let to = registry.reference("team/out", "v1");

    let hashed_only = outputs_run(&env, &repo, None, &["--no-keep-outputs"]);
    let (code, _, err) = env.run_in(&repo, &["outputs", "push", &hashed_only, "--to", &to]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no output of run"), "{err}");
    assert!(
        err.contains("out/model.bin: "),
        "names each output and why: {err}"
    );
    assert!(err.contains("hint:"), "{err}");

    let id = outputs_run(&env, &repo, None, &[]);
    let (code, _, err) = env.run_in(&repo, &["outputs", "push", &id, "--to", &to]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("no subject: the run has no image"), "{err}");
    // The model's bytes change in the registry's storage; the local copy is gone.
    let m = manifest(&registry, "team/out", "v1");
    let layer = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["annotations"]["org.opencontainers.image.title"] == "out/model.bin")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let hex = layer.trim_start_matches("sha256:");
    let data = registry.storage().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(&data, &bytes).unwrap();
    std::fs::remove_dir_all(objects_dir(&env)).unwrap();
    let back = env.root().join("back");
    let (code, _, err) = env.run_in(&repo, &["get", &id, "--to", back.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("\"out/model.bin\""),
        "the layer is named: {err}"
    );
    assert!(err.contains("does not match its descriptor"), "{err}");
    assert!(!back.join("out/model.bin").exists());
    let objects = objects_dir(&env);
    assert!(
        !objects
            .join(format!("sha256/{}/{}", &hex[..2], &hex[2..]))
            .exists(),
        "no object from corrupt bytes"
    );
    let leftovers: Vec<_> = std::fs::read_dir(objects.join("tmp"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The directory output's objects did come back: it can be got on its own.
    let ckpt = env.root().join("ckpt");
    let (code, _, err) = env.run_in(
        &repo,
        &["get", &id, "out/ckpt", "--to", ckpt.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read(ckpt.join("out/ckpt/a.txt")).unwrap(),
        b"step 3\n"
    );
}

/// An artifact manifest by hand: the empty config and one layer per (title, bytes), each blob
/// uploaded; put under `tag` of `repo`.
fn hand_made_artifact(registry: &Registry, repo: &str, tag: &str, layers: &[(&str, &[u8])]) {
    let config = registry.upload_blob_if_missing(repo, b"{}");
    let layers: Vec<Value> = layers
        .iter()
        .map(|(title, bytes)| {
            let digest = registry.upload_blob_if_missing(repo, bytes);
            serde_json::json!({
                "mediaType": "application/octet-stream", "digest": digest, "size": bytes.len(),
                "annotations": {"org.opencontainers.image.title": title}
            })
        })
        .collect();
    let m = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/x-test",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
        "layers": layers,
    });
    registry.put_manifest(repo, tag, OCI_MANIFEST, &serde_json::to_vec(&m).unwrap());
}

/// Every entry under `dir` (relative paths), sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in walkdir(dir) {
        out.push(e.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
    }
    out.sort();
    out
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            out.push(e.path());
            if e.file_type().unwrap().is_dir() {
                out.extend(walkdir(&e.path()));
            }
        }
    }
    out
}

#[test]
fn the_artifact_client_pulls_all_or_nothing_and_keeps_titles_inside() {
    use repro::capture::image::auth::AuthConfig;
    use repro::capture::image::reference::parse_normalized;
    use repro::capture::image::registry::{RegistryClient, RegistryOptions};
    use repro::oci_artifact::{pull, ArtifactError, PullSpec};

    let registry = Registry::start();
    let client = RegistryClient::new(RegistryOptions {
        auth: AuthConfig::anonymous(),
        certs_d: Vec::new(),
        ..RegistryOptions::default()
    })
    .unwrap();
    let repo = parse_normalized(&format!("{}/team/art", registry.addr())).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let spec = |tag: &str, dir: &str| PullSpec {
        repository: repo.clone(),
        reference: tag.to_string(),
        dir: tmp.path().join(dir),
        max_layer_bytes: 1 << 20,
        overwrite: false,
    };

    hand_made_artifact(
        &registry,
        "team/art",
        "good",
        &[("a.txt", b"alpha\n"), ("d/b.bin", b"\x00beta")],
    );
    let pulled = pull(&client, &spec("good", "good")).unwrap();
    assert_eq!(pulled.files.len(), 2);
    assert_eq!(
        std::fs::read(tmp.path().join("good/a.txt")).unwrap(),
        b"alpha\n"
    );
    assert_eq!(
        std::fs::read(tmp.path().join("good/d/b.bin")).unwrap(),
        b"\x00beta"
    );
    // Pulled again without overwrite: refused before anything is fetched.
    let e = pull(&client, &spec("good", "good")).unwrap_err();
    assert!(matches!(e, ArtifactError::Exists { .. }), "{e}");
    // By digest too.
    let by_digest = pull(&client, &spec(&pulled.digest.to_string(), "by-digest")).unwrap();
    assert_eq!(by_digest.digest, pulled.digest);

    // Titles that would write outside the directory, or clash: nothing is written.
    for (tag, titles, want) in [
        ("up", vec!["ok.txt", "../evil"], "`..`"),
        ("abs", vec!["ok.txt", "/tmp/evil"], "absolute"),
        ("clash", vec!["d", "d/b"], "cannot both be written"),
    ] {
        let layers: Vec<(&str, &[u8])> = titles.iter().map(|t| (*t, &b"x"[..])).collect();
        hand_made_artifact(&registry, "team/art", tag, &layers);
        let e = pull(&client, &spec(tag, tag)).unwrap_err();
        assert!(e.to_string().contains(want), "{tag}: {e}");
        assert!(entries(&tmp.path().join(tag)).is_empty(), "{tag}");
        assert!(!tmp.path().join("evil").exists());
    }

    // A layer over the size limit is refused from its descriptor, before it is fetched.
    hand_made_artifact(
        &registry,
        "team/art",
        "big",
        &[("big.bin", &[7u8; 4096][..])],
    );
    let e = pull(
        &client,
        &PullSpec {
            max_layer_bytes: 1024,
            ..spec("big", "big")
        },
    )
    .unwrap_err();
    assert!(matches!(e, ArtifactError::LayerTooLarge { .. }), "{e}");

    // The second layer's bytes changed in storage: an error naming it; the first, already
    // fetched and verified, is not left behind either; nor are temporary files or directories.
    let second = b"second layer, to be damaged".to_vec();
    hand_made_artifact(
        &registry,
        "team/art",
        "bad",
        &[("first.txt", b"fine\n"), ("sub/second.bin", &second)],
    );
    let hex = crate::support::registry::sha256_digest(&second);
    let hex = hex.trim_start_matches("sha256:");
    let data = registry.storage().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[0] ^= 0x01;
    std::fs::write(&data, &bytes).unwrap();
    let e = pull(&client, &spec("bad", "bad")).unwrap_err();
    assert!(matches!(e, ArtifactError::Layer { .. }), "{e}");
    assert!(e.to_string().contains("\"sub/second.bin\""), "{e}");
    assert_eq!(entries(&tmp.path().join("bad")), Vec::<String>::new());
}
