//! `repro attest`: statements checked with PyPI in-toto-attestation (Statement.validate and a strict
//! protobuf parse into slsa.v1.Provenance), envelopes checked with PyPI securesystemslib in both
//! directions, tampering, a dirty tree, a multi-arch image, keys from openssl and `attest keygen`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::support::python::Venv;
use crate::support::registry::{host_platform, Registry};
use crate::support::{git, require_tool, TestEnv};

pub(crate) fn venv() -> Venv {
    Venv::ensure(
        "py-attest",
        &[
            "in-toto-attestation",
            "securesystemslib[crypto]",
            "jsonschema",
        ],
        &[
            "jsonschema",
            "in_toto_attestation.v1.statement",
            "in_toto_attestation.predicates.provenance.v1.provenance_pb2",
            "securesystemslib.dsse",
            "cryptography",
        ],
    )
}

/// Checks a statement (argv[1]; an envelope when argv[2], the public key PEM, is given): the
/// envelope with securesystemslib's Ed25519 verification (keyid = SHA-256 of the SPKI DER), the
/// statement with Statement.validate() after a strict parse, the predicate strictly into
/// slsa.v1.Provenance. Prints the statement.
const CHECK_PY: &str = r#"
import json, sys, hashlib
from google.protobuf import json_format
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
doc = json.load(open(sys.argv[1]))
if len(sys.argv) > 2:
    from cryptography.hazmat.primitives import serialization
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey
    pub = serialization.load_pem_public_key(open(sys.argv[2], "rb").read())
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    key = SSlibKey.from_crypto(pub, keyid=hashlib.sha256(der).hexdigest())
    env = Envelope.from_dict(doc)
    assert env.payload_type == "application/vnd.in-toto+json", env.payload_type
    env.verify([key], 1)  # raises VerificationError
    doc = json.loads(env.payload)
pb = json_format.Parse(json.dumps(doc), statement_pb2.Statement(), ignore_unknown_fields=False)
Statement.copy_from_pb(pb).validate()
assert doc["predicateType"] == "https://slsa.dev/provenance/v1"
json_format.Parse(json.dumps(doc["predicate"]), provenance_pb2.Provenance(), ignore_unknown_fields=False)
print(json.dumps(doc))
"#;

/// Validates the buildDefinition of the statement in argv[1] against the JSON schema of the
/// parameters published in docs/attest.md (argv[2]).
const SCHEMA_PY: &str = r#"
import json, sys, jsonschema
doc = open(sys.argv[2]).read()
block = doc.split('### JSON schema of the parameters', 1)[1].split('```json', 1)[1].split('```', 1)[0]
schema = json.loads(block)
jsonschema.Draft202012Validator.check_schema(schema)
jsonschema.validate(json.load(open(sys.argv[1]))["predicate"]["buildDefinition"], schema,
                    cls=jsonschema.Draft202012Validator)
"#;

/// Checks the statement in `file` against the parameter schema of docs/attest.md.
fn py_schema(dir: &Path, file: &Path) -> std::process::Output {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/attest.md");
    venv().run(
        dir,
        SCHEMA_PY,
        &[file.to_str().unwrap(), docs.to_str().unwrap()],
    )
}

/// Signs the statement in argv[1] with a new Ed25519 key through securesystemslib; writes the
/// envelope to argv[2] and the public key PEM to argv[3].
const SIGN_PY: &str = r#"
import json, sys, hashlib
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, SSlibKey
priv = Ed25519PrivateKey.generate()
pub = priv.public_key()
der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
key = SSlibKey.from_crypto(pub, keyid=hashlib.sha256(der).hexdigest())
env = Envelope(open(sys.argv[1], "rb").read(), "application/vnd.in-toto+json", {})
env.sign(CryptoSigner(priv, key))
json.dump(env.to_dict(), open(sys.argv[2], "w"))
open(sys.argv[3], "wb").write(pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
"#;

/// Runs CHECK_PY; returns the statement it printed, or panics with Python's error.
pub(crate) fn py_check(dir: &Path, file: &Path, key: Option<&Path>) -> Value {
    let mut args = vec![file.to_str().unwrap()];
    if let Some(k) = key {
        args.push(k.to_str().unwrap());
    }
    let out = venv().run(dir, CHECK_PY, &args);
    assert!(
        out.status.success(),
        "in-toto/securesystemslib rejected {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs CHECK_PY expecting a rejection; returns Python's stderr.
fn py_reject(dir: &Path, file: &Path, key: Option<&Path>) -> String {
    let mut args = vec![file.to_str().unwrap()];
    if let Some(k) = key {
        args.push(k.to_str().unwrap());
    }
    let out = venv().run(dir, CHECK_PY, &args);
    assert!(
        !out.status.success(),
        "{} should have been rejected",
        file.display()
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `openssl genpkey -algorithm ed25519` and its public half; returns (private, public) paths.
pub(crate) fn openssl_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    require_tool("openssl");
    let key = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let ok = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key)
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl genpkey");
    let ok = Command::new("openssl")
        .arg("pkey")
        .arg("-in")
        .arg(&key)
        .args(["-pubout", "-out"])
        .arg(&public)
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl pkey -pubout");
    (key, public)
}

/// SHA-256 (hex) of a public key's SPKI DER, computed by openssl.
fn openssl_keyid(public: &Path) -> String {
    let der = Command::new("openssl")
        .arg("pkey")
        .arg("-pubin")
        .arg("-in")
        .arg(public)
        .args(["-outform", "DER"])
        .output()
        .unwrap();
    assert!(der.status.success());
    sha256_hex(&der.stdout)
}

/// A repository with a committed train script writing `model.bin`, a `data/` dataset directory.
pub(crate) fn training_repo(env: &TestEnv) -> PathBuf {
    let repo = env.git_repo("proj");
    std::fs::write(
        repo.join("train.sh"),
        "mkdir -p out\ncat README data/a.txt > out/model.bin\necho \"$@\" > out/args.txt\n",
    )
    .unwrap();
    std::fs::write(repo.join(".gitignore"), "out/\ndata/\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "train"]);
    std::fs::create_dir_all(repo.join("data")).unwrap();
    std::fs::write(repo.join("data/a.txt"), "data v1\n").unwrap();
    repo
}

pub(crate) fn stdout_of(env: &TestEnv, cwd: &Path, args: &[&str]) -> String {
    let (code, out, err) = env.run_in(cwd, args);
    assert_eq!(code, 0, "repro {args:?}: {err}");
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn dep<'a>(statement: &'a Value, name: &str) -> &'a Value {
    statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no resolved dependency {name}: {statement:#}"))
}

#[test]
fn signed_dirty_run_validates_with_in_toto_and_securesystemslib() {
    let env = TestEnv::new();
    let repo = training_repo(&env);
    // A dirty tree: the recorded patch must appear as a resolved dependency.
    std::fs::write(repo.join("README"), "uncommitted change\n").unwrap();
    let out = env
        .repro()
        .current_dir(&repo)
        .args([
            "run",
            "-q",
            "--dataset",
            "data",
            "--param",
            "lr=0.1",
            "--output",
            "out/model.bin",
            "--output",
            "out/args.txt",
            "--",
            "sh",
            "train.sh",
            "--lr",
        ])
        .arg(OsStr::from_bytes(b"caf\xe9 latin-1"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = env.last_id();
    let run = env.show_json(&id);
    let (key, public) = openssl_key(env.root(), "signing");
    let envelope = env.root().join("model.intoto.jsonl");
    let (code, _, err) = env.run_in(
        &repo,
        &[
            "attest",
            &id[..8],
            "--sign",
            key.to_str().unwrap(),
            "-o",
            envelope.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let written = std::fs::read(&envelope).unwrap();
    assert!(
        err.contains(&sha256_hex(&written)),
        "the status line names the envelope digest: {err}"
    );

    let st = py_check(env.root(), &envelope, Some(&public));
    // Subjects: the outputs, named relative to the repository, with their recorded digests.
    let subjects = st["subject"].as_array().unwrap();
    assert_eq!(subjects.len(), 2);
    assert_eq!(subjects[0]["name"], "out/model.bin");
    assert_eq!(
        subjects[0]["digest"]["sha256"],
        sha256_hex(b"uncommitted change\ndata v1\n")
    );
    assert_eq!(subjects[0]["digest"]["sha256"], run["outputs"][0]["sha256"]);
    let bd = &st["predicate"]["buildDefinition"];
    assert_eq!(bd["buildType"], "https://repro.dev/attest/run/v1");
    // argv lossless: the non-UTF-8 argument exactly as the record keeps it.
    assert_eq!(bd["externalParameters"]["argv"], run["command"]);
    assert_eq!(
        bd["externalParameters"]["argv"][3]["base64"],
        base64::engine::general_purpose::STANDARD.encode(b"caf\xe9 latin-1")
    );
    assert_eq!(bd["externalParameters"]["params"]["lr"], "0.1");
    assert_eq!(bd["internalParameters"]["execMode"], "host");
    let code = dep(&st, "code");
    assert_eq!(code["digest"]["gitCommit"], run["code"]["commit"]);
    assert!(
        code["uri"].as_str().unwrap().ends_with("@refs/heads/main"),
        "{code}"
    );
    assert_eq!(code["annotations"]["dirty"], true);
    let patch = dep(&st, "patch");
    assert_eq!(patch["digest"]["sha256"], run["code"]["patch_sha256"]);
    assert_eq!(patch["annotations"]["appliesTo"], run["code"]["commit"]);
    let data = dep(&st, "dataset:data");
    assert_eq!(
        format!("sha256:{}", data["digest"]["sha256"].as_str().unwrap()),
        run["datasets"][0]["digest"].as_str().unwrap()
    );
    assert_eq!(data["uri"], "data");
    let rd = &st["predicate"]["runDetails"];
    assert_eq!(rd["metadata"]["invocationId"], id.as_str());
    assert_eq!(rd["metadata"]["startedOn"], run["started_at"]);
    assert_eq!(rd["metadata"]["finishedOn"], run["ended_at"]);
    assert!(rd["builder"]["id"]
        .as_str()
        .unwrap()
        .ends_with(&format!("@v{}", env!("CARGO_PKG_VERSION"))));
    // The byproduct is the digest of exactly the script `repro script ID` prints.
    let script = stdout_of(&env, &repo, &["script", &id]);
    let byproduct = &rd["byproducts"][0];
    assert_eq!(byproduct["name"], "rerun.sh");
    assert_eq!(byproduct["digest"]["sha256"], sha256_hex(script.as_bytes()));

    // The payload is the unsigned statement, byte for byte the same JSON value.
    let unsigned: Value = serde_json::from_str(&stdout_of(&env, &repo, &["attest", &id])).unwrap();
    assert_eq!(unsigned, st);
    // `show --format notes` cites the signed envelope (preferred over the unsigned statement).
    let notes = stdout_of(&env, &repo, &["show", &id, "--format", "notes"]);
    let report = stdout_of(
        &env,
        &repo,
        &[
            "attest",
            "verify",
            envelope.to_str().unwrap(),
            "--key",
            public.to_str().unwrap(),
            "--json",
        ],
    );
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert!(
        notes.trim_end().ends_with(&format!(
            "attestation sha256:{} (signed, keyid {})",
            sha256_hex(&written),
            &openssl_keyid(&public)[..16]
        )),
        "{notes}"
    );
    // The parameters follow the schema docs/attest.md publishes, and the schema is not vacuous.
    let st_file = env.root().join("statement.json");
    std::fs::write(&st_file, st.to_string()).unwrap();
    let out = py_schema(env.root(), &st_file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut off = st.clone();
    off["predicate"]["buildDefinition"]["externalParameters"]["argv"][0] = Value::from(7);
    std::fs::write(&st_file, off.to_string()).unwrap();
    assert!(!py_schema(env.root(), &st_file).status.success());

    // repro's own verification: every check passes, one line each.
    let (code, out, err) = env.run_in(
        &repo,
        &[
            "attest",
            "verify",
            envelope.to_str().unwrap(),
            "--key",
            public.to_str().unwrap(),
            "--run",
            &id,
            "--check-files",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    for check in [
        "payloadType",
        "signature",
        "statement",
        "run",
        "subject out/model.bin",
        "subject out/args.txt",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("ok ") && l.contains(check)),
            "{check}: {out}"
        );
    }

    // The strict parse is strict: a zone-less time and an unknown field are rejected.
    let mut bad = st.clone();
    bad["predicate"]["runDetails"]["metadata"]["startedOn"] =
        Value::from(run["started_at"].as_str().unwrap().trim_end_matches('Z'));
    let bad_file = env.root().join("zoneless.json");
    std::fs::write(&bad_file, bad.to_string()).unwrap();
    let e = py_reject(env.root(), &bad_file, None);
    assert!(e.contains("Timestamp") || e.contains("time"), "{e}");
    let (code, out, _) = env.run_in(&repo, &["attest", "verify", bad_file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("RFC 3339"), "{out}");
    let mut bad = st.clone();
    bad["predicate"]["runDetails"]["metadata"]["extra"] = Value::from(1);
    std::fs::write(&bad_file, bad.to_string()).unwrap();
    py_reject(env.root(), &bad_file, None);
    let (code, out, _) = env.run_in(&repo, &["attest", "verify", bad_file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL") && out.contains("extra"), "{out}");
}

#[test]
fn envelope_signed_by_securesystemslib_verifies_with_repro() {
    let env = TestEnv::new();
    let repo = training_repo(&env);
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
    let statement = env.root().join("statement.json");
    stdout_of(
        &env,
        &repo,
        &["attest", &id, "-o", statement.to_str().unwrap()],
    );
    py_check(env.root(), &statement, None);
    let envelope = env.root().join("py.intoto.json");
    let public = env.root().join("py.pub.pem");
    let out = venv().run(
        env.root(),
        SIGN_PY,
        &[
            statement.to_str().unwrap(),
            envelope.to_str().unwrap(),
            public.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, out, err) = env.run_in(
        &repo,
        &[
            "attest",
            "verify",
            envelope.to_str().unwrap(),
            "--key",
            public.to_str().unwrap(),
            "--run",
            &id,
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    // repro computes the same keyid securesystemslib was given (SHA-256 of the SPKI DER).
    let env_json: Value = serde_json::from_slice(&std::fs::read(&envelope).unwrap()).unwrap();
    let keyid = env_json["signatures"][0]["keyid"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(out.contains(&format!("by key {keyid}")), "{out}");
    // Another key does not verify it.
    let (_, other) = openssl_key(env.root(), "other");
    let (code, out, _) = env.run_in(
        &repo,
        &[
            "attest",
            "verify",
            envelope.to_str().unwrap(),
            "--key",
            other.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL") && l.contains("signature")),
        "{out}"
    );
}

#[test]
fn tampering_with_payload_signature_or_subject_is_caught() {
    let env = TestEnv::new();
    let repo = training_repo(&env);
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
    let (key, public) = openssl_key(env.root(), "k");
    let envelope = env.root().join("env.json");
    stdout_of(
        &env,
        &repo,
        &[
            "attest",
            &id,
            "--sign",
            key.to_str().unwrap(),
            "-o",
            envelope.to_str().unwrap(),
        ],
    );
    let original: Value = serde_json::from_slice(&std::fs::read(&envelope).unwrap()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let verify = |file: &Path, extra: &[&str]| -> (i32, String) {
        let mut args = vec![
            "attest",
            "verify",
            file.to_str().unwrap(),
            "--key",
            public.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = env.run_in(&repo, &args);
        (code, format!("{out}{err}"))
    };
    assert_eq!(verify(&envelope, &["--check-files"]).0, 0);

    // Payload: another subject digest, signature left as it was.
    let mut statement: Value =
        serde_json::from_slice(&b64.decode(original["payload"].as_str().unwrap()).unwrap())
            .unwrap();
    statement["subject"][0]["digest"]["sha256"] = Value::from("0".repeat(64));
    let mut forged = original.clone();
    forged["payload"] = Value::from(b64.encode(statement.to_string()));
    let forged_file = env.root().join("forged.json");
    std::fs::write(&forged_file, forged.to_string()).unwrap();
    let (code, out) = verify(&forged_file, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL") && out.contains("signature"), "{out}");
    py_reject(env.root(), &forged_file, Some(&public));

    // Signature: one bit flipped.
    let mut sig = b64
        .decode(original["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    sig[10] ^= 1;
    let mut flipped = original.clone();
    flipped["signatures"][0]["sig"] = Value::from(b64.encode(&sig));
    let flipped_file = env.root().join("flipped.json");
    std::fs::write(&flipped_file, flipped.to_string()).unwrap();
    let (code, out) = verify(&flipped_file, &[]);
    assert_eq!(code, 1, "{out}");
    py_reject(env.root(), &flipped_file, Some(&public));

    // Payload type changed: the PAE covers it.
    let mut retyped = original.clone();
    retyped["payloadType"] = Value::from("application/json");
    let retyped_file = env.root().join("retyped.json");
    std::fs::write(&retyped_file, retyped.to_string()).unwrap();
    let (code, out) = verify(&retyped_file, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL") && out.contains("payloadType"), "{out}");

    // Subject on disk: the model changed since it was attested, and no kept copy stands in
    // (check_files_falls_back_to_the_kept_copy_when_the_working_file_changed has one).
    std::fs::remove_dir_all(env.db().parent().unwrap().join("objects")).unwrap();
    std::fs::write(repo.join("out/model.bin"), "retrained\n").unwrap();
    let (code, out) = verify(&envelope, &["--check-files"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL") && l.contains("subject out/model.bin")),
        "{out}"
    );
    assert!(out.contains(&sha256_hex(b"retrained\n")), "{out}");
    // The signature itself is still fine: only the subject check fails.
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok ") && l.contains("signature")),
        "{out}"
    );

    // A statement for another run does not match this run's record.
    std::fs::write(repo.join("README"), "second\n").unwrap();
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
    let second = env.last_id();
    let (code, out) = verify(&envelope, &["--run", &second]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("differs from the record"), "{out}");
}

#[test]
fn multi_arch_image_records_platform_and_index_digests() {
    let registry = Registry::start();
    let host = host_platform();
    let host_arch = host.trim_start_matches("linux/").to_string();
    let other = if host_arch == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let info = registry.push_index(
        "team/multi",
        "v1",
        &[("linux", &host_arch), ("linux", other)],
    );
    let reference = registry.reference("team/multi", "v1");
    let env = TestEnv::new();
    let repo = training_repo(&env);
    stdout_of(
        &env,
        &repo,
        &[
            "run",
            "-q",
            "--host",
            "--resolve",
            "registry",
            "--image",
            &reference,
            "--output",
            "out/model.bin",
            "--",
            "sh",
            "train.sh",
        ],
    );
    let id = env.last_id();
    let statement = env.root().join("st.json");
    stdout_of(
        &env,
        &repo,
        &["attest", &id, "-o", statement.to_str().unwrap()],
    );
    let st = py_check(env.root(), &statement, None);
    let out = py_schema(env.root(), &statement);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let image = dep(&st, "image");
    let platform_digest = &info.per_platform[0].1;
    assert_eq!(
        image["digest"]["sha256"],
        platform_digest.trim_start_matches("sha256:")
    );
    assert_eq!(
        image["annotations"]["indexDigest"],
        info.index_digest.as_str()
    );
    assert_eq!(image["annotations"]["platform"], host.as_str());
    assert_eq!(image["annotations"]["resolvedBy"], "registry");
    assert_eq!(
        image["uri"],
        format!("oci://{}", reference.trim_end_matches(":v1")).as_str()
    );
    let bd = &st["predicate"]["buildDefinition"];
    assert_eq!(bd["externalParameters"]["image"], reference.as_str());
    assert_eq!(bd["internalParameters"]["resolvedBy"], "registry");
    assert_eq!(bd["internalParameters"]["imagePlatform"], host.as_str());
}

#[test]
fn runs_without_outputs_and_bad_keys_are_refused_clearly() {
    let env = TestEnv::new();
    let repo = training_repo(&env);
    stdout_of(&env, &repo, &["run", "-q", "--", "sh", "train.sh"]);
    let id = env.last_id();
    let target = env.root().join("none.json");
    let (code, out, err) = env.run_in(&repo, &["attest", &id, "-o", target.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("no outputs") && err.contains("--output"),
        "{err}"
    );
    assert!(!target.exists(), "nothing written for a refused run");

    // An output that was missing at the end is no subject; with nothing else, refused.
    stdout_of(
        &env,
        &repo,
        &["run", "-q", "--output", "never.bin", "--", "true"],
    );
    let (code, _, err) = env.run_in(&repo, &["attest", &env.last_id()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("never.bin"), "{err}");

    // A key that is not an Ed25519 PKCS#8 PEM: named, with the openssl command as the fix.
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
    let bad = env.root().join("bad.pem");
    std::fs::write(&bad, "not a key\n").unwrap();
    let (code, out, err) = env.run_in(
        &repo,
        &["attest", &env.last_id(), "--sign", bad.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("bad.pem") && err.contains("openssl genpkey -algorithm ed25519"),
        "{err}"
    );
    let (code, _, err) = env.run_in(&repo, &["attest", "verify", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("neither a DSSE envelope nor"), "{err}");
}

#[test]
fn keygen_keys_work_with_openssl_and_refuse_to_overwrite() {
    require_tool("openssl");
    let env = TestEnv::new();
    let repo = training_repo(&env);
    let key = env.root().join("repro-key.pem");
    let (code, keyid, err) = env.run_in(&repo, &["attest", "keygen", "-o", key.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // openssl reads the private key and derives the same public key repro wrote.
    let out = Command::new("openssl")
        .arg("pkey")
        .arg("-in")
        .arg(&key)
        .arg("-pubout")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = env.root().join("repro-key.pem.pub");
    assert_eq!(out.stdout, std::fs::read(&public).unwrap());
    // keyid = SHA-256 of the SPKI DER, as openssl encodes it.
    assert_eq!(keyid.trim(), openssl_keyid(&public));
    // It signs, and the signature verifies with securesystemslib. A directory output is a
    // subject too, with its manifest digest marked as such.
    stdout_of(
        &env,
        &repo,
        &[
            "run",
            "-q",
            "--output",
            "out/model.bin",
            "--output",
            "out",
            "--",
            "sh",
            "train.sh",
        ],
    );
    let run = env.show_json(&env.last_id());
    let envelope = env.root().join("e.json");
    stdout_of(
        &env,
        &repo,
        &[
            "attest",
            &env.last_id(),
            "--sign",
            key.to_str().unwrap(),
            "-o",
            envelope.to_str().unwrap(),
        ],
    );
    let st = py_check(env.root(), &envelope, Some(&public));
    let dir = &st["subject"][1];
    assert_eq!(dir["name"], "out");
    assert_eq!(
        format!("sha256:{}", dir["digest"]["sha256"].as_str().unwrap()),
        run["outputs"][1]["sha256"].as_str().unwrap()
    );
    assert_eq!(dir["annotations"]["digestOf"], "repro-dir-manifest-v1");
    let (code, out, err) = env.run_in(
        &repo,
        &[
            "attest",
            "verify",
            envelope.to_str().unwrap(),
            "--key",
            public.to_str().unwrap(),
            "--check-files",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok ") && l.contains("subject out ")),
        "{out}"
    );
    // A file added to the directory output, and no kept copy to stand in for it.
    std::fs::remove_dir_all(env.db().parent().unwrap().join("objects")).unwrap();
    std::fs::write(repo.join("out/extra.txt"), "new file\n").unwrap();
    let (code, out, _) = env.run_in(
        &repo,
        &[
            "attest",
            "verify",
            envelope.to_str().unwrap(),
            "--check-files",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL") && l.contains("subject out ")),
        "{out}"
    );
    // An existing key is never overwritten.
    let before = std::fs::read(&key).unwrap();
    let (code, _, err) = env.run_in(&repo, &["attest", "keygen", "-o", key.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&key).unwrap(), before);
}

#[test]
fn container_run_attests_engine_flags_and_the_digest_that_ran() {
    let bb = crate::support::engine::PushedBusybox::new("team/trainer", "5.0");
    let (registry, digest, podman) = (&bb.registry, &bb.digest, bb.podman());
    let env = TestEnv::new();
    let repo = env.git_repo("ctr");
    let image = format!("{}/team/trainer:5.0", registry.addr());
    let out = env
        .repro()
        .current_dir(&repo)
        .envs(podman.env().iter().map(|(k, v)| (k, v)))
        .args([
            "run",
            "-q",
            "--engine",
            "podman",
            "--image",
            &image,
            "--output",
            "out.txt",
            "--engine-arg=--network=none",
            "--",
            "/bin/busybox",
            "sh",
            "-c",
            "cat README > out.txt",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = env.last_id();
    let run = env.show_json(&id);
    let statement = env.root().join("st.json");
    stdout_of(
        &env,
        &repo,
        &["attest", &id, "-o", statement.to_str().unwrap()],
    );
    let st = py_check(env.root(), &statement, None);
    let out = py_schema(env.root(), &statement);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let internal = &st["predicate"]["buildDefinition"]["internalParameters"];
    assert_eq!(internal["execMode"], "container");
    assert_eq!(internal["engine"], "podman");
    assert_eq!(internal["engineArgs"], run["exec"]["engine_args"]);
    assert!(
        internal["engineArgs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--network=none"),
        "{internal}"
    );
    assert_eq!(internal["workdir"], run["exec"]["workdir"]);
    assert!(internal["workdir"].is_string(), "{internal}");
    let image_dep = dep(&st, "image");
    assert_eq!(
        image_dep["digest"]["sha256"],
        digest.trim_start_matches("sha256:")
    );
    assert_eq!(image_dep["annotations"]["ranInContainer"], true);
    assert_eq!(st["subject"][0]["digest"]["sha256"], sha256_hex(b"hello\n"));
}

#[test]
fn metric_summary_is_a_byproduct_with_content_and_digest() {
    let env = TestEnv::new();
    let repo = training_repo(&env);
    // Two steps of `acc` through REPRO_METRICS, and a NaN loss (kept, written as "NaN").
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
            "-c",
            "sh train.sh && echo '{\"step\": 1, \"acc\": 0.5, \"loss\": NaN}' >> \"$REPRO_METRICS\" \
             && echo '{\"step\": 2, \"acc\": 0.75}' >> \"$REPRO_METRICS\"",
        ],
    );
    let id = env.last_id();
    let file = env.root().join("metrics-statement.json");
    stdout_of(&env, &repo, &["attest", &id, "-o", file.to_str().unwrap()]);
    // in-toto validation and the strict protobuf parse still accept the statement.
    let st = py_check(env.root(), &file, None);
    let byproducts = st["predicate"]["runDetails"]["byproducts"]
        .as_array()
        .unwrap();
    assert_eq!(byproducts[0]["name"], "rerun.sh");
    let m = byproducts
        .iter()
        .find(|b| b["name"] == "metrics.json")
        .unwrap_or_else(|| panic!("no metrics byproduct: {st:#}"));
    assert_eq!(m["mediaType"], "application/json");
    let content = base64::engine::general_purpose::STANDARD
        .decode(m["content"].as_str().unwrap())
        .unwrap();
    assert_eq!(m["digest"]["sha256"], sha256_hex(&content));
    // The content is the summary `show --json` gives, in canonical (compact, sorted) form.
    let summary: Value = serde_json::from_slice(&content).unwrap();
    assert_eq!(summary, env.show_json(&id)["metrics"]);
    assert_eq!(
        summary["acc"],
        serde_json::json!({"last": 0.75, "min": 0.5, "max": 0.75, "count": 2, "step": 2})
    );
    assert_eq!(summary["loss"]["last"], "NaN");
    assert_eq!(
        String::from_utf8(content.clone()).unwrap(),
        serde_json::to_string(&summary).unwrap(),
        "compact JSON with keys sorted"
    );
    let verify = |path: &Path| {
        env.run_in(
            &repo,
            &[
                "attest",
                "verify",
                path.to_str().unwrap(),
                "--run",
                &id,
                "--allow-unsigned",
            ],
        )
    };
    let (code, out, err) = verify(&file);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("byproduct metrics.json"), "{out}");

    // Tampered content (the digest no longer matches) is caught by `attest verify`.
    let mut forged = st.clone();
    let fake = br#"{"acc":{"count":2,"last":0.99,"max":0.99,"min":0.5,"step":2}}"#;
    let bp = forged["predicate"]["runDetails"]["byproducts"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|b| b["name"] == "metrics.json")
        .unwrap();
    bp["content"] = base64::engine::general_purpose::STANDARD
        .encode(fake)
        .into();
    let forged_file = env.root().join("forged.json");
    std::fs::write(&forged_file, serde_json::to_vec(&forged).unwrap()).unwrap();
    let (code, out, _) = verify(&forged_file);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("byproduct metrics.json") && l.contains("the digest says")),
        "{out}"
    );

    // A run without metrics has no metrics byproduct.
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
    let plain: Value =
        serde_json::from_str(&stdout_of(&env, &repo, &["attest", &env.last_id()])).unwrap();
    assert!(plain["predicate"]["runDetails"]["byproducts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["name"] != "metrics.json"));
}

/// Issue 22 items 12 and 14: keys and attestation files are read as regular files only (a FIFO
/// or /dev/zero is refused by name, never read without end); a private key others can read is
/// used with a warning, as ssh warns; `attest verify` without `--key` fails unless
/// `--allow-unsigned` says an unchecked signature is acceptable.
#[test]
fn untrusted_key_files_unprotected_keys_and_unsigned_verify() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let repo = training_repo(&env);
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
    let bounded = |args: &[&str]| {
        let out = env
            .repro()
            .current_dir(&repo)
            .args(args)
            .timeout(std::time::Duration::from_secs(60))
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let fifo = env.root().join("key.fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for (path, kind) in [
        ("/dev/zero", "a character device"),
        (fifo.to_str().unwrap(), "a FIFO (named pipe)"),
    ] {
        let (code, out, err) = bounded(&["attest", &id, "--sign", path]);
        assert_eq!(code, 1, "{out}");
        assert!(
            err.contains(&format!("{path} is {kind}, not a regular file")),
            "{err}"
        );
        let (code, _, err) = bounded(&["attest", "verify", path]);
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains(&format!("{path} is {kind}, not a regular file")),
            "{err}"
        );
        let (code, _, err) = bounded(&["attest", "verify", "/dev/null", "--key", path]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(&format!("{path} is {kind}")), "{err}");
    }

    // A 0644 private key signs, with a warning naming the file and the fix; 0600 is quiet.
    let (key, public) = openssl_key(env.root(), "shared");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let envelope = env.root().join("run.intoto.json");
    let (code, _, err) = bounded(&[
        "attest",
        &id,
        "--sign",
        key.to_str().unwrap(),
        "-o",
        envelope.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!(
            "the private key {} has permissions 0644: others can read it",
            key.display()
        )) && err.contains(&format!("chmod 600 {}", key.display())),
        "{err}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _, err) = bounded(&["attest", &id, "--sign", key.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("permissions"), "{err}");

    // Without --key the signature is not checked: a failure unless explicitly allowed.
    let file = envelope.to_str().unwrap();
    let (code, out, _) = bounded(&["attest", "verify", file]);
    assert_eq!(code, 1, "a gate that forgot --key must not pass: {out}");
    assert!(
        out.lines().any(|l| l.contains("FAIL")
            && l.contains("signature")
            && l.contains("--allow-unsigned")),
        "{out}"
    );
    let (code, out, _) = bounded(&["attest", "verify", file, "--json"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["ok"], false);
    let (code, out, _) = bounded(&["attest", "verify", file, "--allow-unsigned"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("skipped") && l.contains("signature")),
        "{out}"
    );
    let (code, out, _) = bounded(&["attest", "verify", file, "--key", public.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    // An unsigned statement: the same rule.
    let statement = env.root().join("unsigned.json");
    let (code, _, err) = bounded(&["attest", &id, "-o", statement.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = bounded(&["attest", "verify", statement.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let (code, out, _) = bounded(&[
        "attest",
        "verify",
        statement.to_str().unwrap(),
        "--allow-unsigned",
    ]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn check_files_falls_back_to_the_kept_copy_when_the_working_file_changed() {
    let env = TestEnv::new();
    let repo = training_repo(&env);
    stdout_of(
        &env,
        &repo,
        &[
            "run",
            "-q",
            "--dataset",
            "data",
            "--output",
            "out/model.bin",
            "--output",
            "out",
            "--",
            "sh",
            "train.sh",
        ],
    );
    let id = env.last_id();
    let statement = env.root().join("st.json");
    stdout_of(
        &env,
        &repo,
        &["attest", &id, "-o", statement.to_str().unwrap()],
    );
    let verify = || {
        env.run_in(
            &repo,
            &[
                "attest",
                "verify",
                statement.to_str().unwrap(),
                "--allow-unsigned",
                "--check-files",
            ],
        )
    };
    let (code, out, _) = verify();
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("kept copy"), "{out}");
    // A later run overwrote the model (and so the directory holding it).
    std::fs::write(repo.join("out/model.bin"), "another model\n").unwrap();
    let (code, out, _) = verify();
    assert_eq!(code, 0, "{out}");
    for subject in ["subject out/model.bin", "subject out "] {
        let line = out
            .lines()
            .find(|l| l.contains(subject))
            .unwrap_or_else(|| panic!("no line for {subject}: {out}"));
        assert!(line.starts_with("ok "), "{line}");
        assert!(line.contains("the kept copy"), "{line}");
        assert!(line.contains("the working copy differs"), "{line}");
    }
    // A damaged kept copy does not stand in.
    let objects = env.db().parent().unwrap().join("objects");
    let sha = env.show_json(&id)["outputs"][0]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let object = objects.join(format!("sha256/{}/{}", &sha[..2], &sha[2..]));
    std::fs::write(&object, "bit rot\n").unwrap();
    let (code, out, _) = verify();
    assert_eq!(code, 1, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("subject out/model.bin"))
        .unwrap();
    assert!(line.starts_with("FAIL"), "{line}");
    assert!(line.contains("no intact kept copy either"), "{line}");
    // Without the kept copy the changed file fails, as before outputs were kept.
    std::fs::remove_dir_all(&objects).unwrap();
    let (code, out, _) = verify();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no intact kept copy either"), "{out}");
}
