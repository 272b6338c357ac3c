//! The environment snapshot (docs/environment.md): real venvs made here with `python3 -m venv`,
//! a distribution installed from a wheel this test writes (offline), lock-file digests, no GPU
//! on this machine; `diff` shows the drift, `rerun` warns on it and `--strict-env` refuses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};

use crate::support::{self, TestEnv};

/// Makes a venv at `dir` (`--without-pip` when `pip` is false); `None` (after skip_or_fail)
/// when this machine cannot.
fn venv(dir: &Path, pip: bool) -> Option<PathBuf> {
    let mut c = Command::new("python3");
    c.args(["-m", "venv"]);
    if !pip {
        c.arg("--without-pip");
    }
    let ok = c.arg(dir).output().is_ok_and(|o| o.status.success());
    if !ok {
        support::skip_or_fail("python3 -m venv is not available (apt install python3-venv)");
        return None;
    }
    Some(dir.to_path_buf())
}

/// Writes the wheel `Tiny_Pkg-VERSION-py3-none-any.whl` into `dir` with Python's zipfile (no
/// network, no build backend).
fn write_wheel(dir: &Path, version: &str) {
    write_named_wheel(dir, "Tiny_Pkg", version)
}

/// Writes the wheel of distribution `name` (its module the lowercase name) into `dir`.
fn write_named_wheel(dir: &Path, name: &str, version: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let script = r#"
import base64, hashlib, sys, zipfile
d, v, name = sys.argv[1], sys.argv[2], sys.argv[3]
mod = name.lower()
info = f"{mod}-{v}.dist-info"
files = {
    f"{mod}/__init__.py": f"VERSION = {v!r}\n",
    f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {v}\n",
    f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
rec = []
for n, t in files.items():
    h = base64.urlsafe_b64encode(hashlib.sha256(t.encode()).digest()).rstrip(b"=").decode()
    rec.append(f"{n},sha256={h},{len(t.encode())}")
rec.append(f"{info}/RECORD,,")
files[f"{info}/RECORD"] = "\n".join(rec) + "\n"
with zipfile.ZipFile(f"{d}/{mod}-{v}-py3-none-any.whl", "w") as z:
    for n, t in files.items():
        z.writestr(n, t)
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(dir)
        .arg(version)
        .arg(name)
        .output()
        .unwrap();
    support::assert_ok_for(&out, "writing the wheel");
}

/// `pip install --no-index --find-links WHEELS SPEC` in the venv.
fn pip_install(venv: &Path, wheels: &Path, spec: &str) {
    let out = Command::new(venv.join("bin/python"))
        .args(["-m", "pip", "install", "-q", "--no-index", "--find-links"])
        .arg(wheels)
        .arg(spec)
        .output()
        .unwrap();
    support::assert_ok_for(&out, "pip install from the local wheel");
}

/// What `pip list` lists, names normalised.
fn pip_list(venv: &Path) -> BTreeMap<String, String> {
    let out = Command::new(venv.join("bin/python"))
        .args([
            "-m",
            "pip",
            "list",
            "--format=json",
            "--disable-pip-version-check",
        ])
        .output()
        .unwrap();
    support::assert_ok_for(&out, "pip list");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                norm(p["name"].as_str().unwrap()),
                p["version"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn norm(n: &str) -> String {
    n.to_ascii_lowercase().replace(['_', '.'], "-")
}

fn packages(env: &serde_json::Value) -> BTreeMap<String, String> {
    env["python"]["packages"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (norm(k), v.as_str().unwrap().to_string()))
        .collect()
}

/// `repro ARGS` in `cwd` with the venv active.
fn in_venv(env: &TestEnv, venv: &Path, cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let path = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = env
        .repro()
        .current_dir(cwd)
        .env("VIRTUAL_ENV", venv)
        .env("PATH", path)
        .env("OMP_NUM_THREADS", "3")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn snapshot_lists_what_pip_list_lists_and_the_lock_files() {
    let env = TestEnv::new();
    let Some(v) = venv(&env.root().join("venv"), true) else {
        return;
    };
    let wheels = env.root().join("wheels");
    write_wheel(&wheels, "0.3.1");
    pip_install(&v, &wheels, "tiny-pkg==0.3.1");
    let repo = env.git_repo("proj");
    std::fs::write(repo.join("uv.lock"), "version = 1\n").unwrap();
    std::fs::write(repo.join("requirements-dev.txt"), "pytest==8\n").unwrap();
    support::git(&repo, &["add", "."]);
    support::git(&repo, &["commit", "-q", "-m", "locks"]);

    let (code, _, err) = in_venv(&env, &v, &repo, &["run", "--host", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    // NVML is absent here: no GPU, and not a word about it.
    assert!(!err.to_lowercase().contains("nvml"), "{err}");
    let j = env.show_json(&env.last_id());
    let e = &j["environment"];
    assert_eq!(e["python"]["kind"], "venv");
    assert_eq!(
        e["python"]["executable"],
        v.join("bin/python").display().to_string()
    );
    let want = pip_list(&v);
    assert!(want.contains_key("tiny-pkg"), "{want:?}");
    assert_eq!(packages(e), want);
    let version = Command::new(v.join("bin/python"))
        .args(["-c", "import platform; print(platform.python_version())"])
        .output()
        .unwrap();
    assert_eq!(
        e["python"]["version"],
        String::from_utf8_lossy(&version.stdout).trim()
    );
    let sha = |p: &str| hex::encode(Sha256::digest(std::fs::read(repo.join(p)).unwrap()));
    assert_eq!(
        e["lockfiles"],
        serde_json::json!([
            {"path": "requirements-dev.txt", "sha256": sha("requirements-dev.txt")},
            {"path": "uv.lock", "sha256": sha("uv.lock")},
        ])
    );
    assert_eq!(e["gpus"], serde_json::json!([]));
    assert_eq!(e["vars"]["OMP_NUM_THREADS"], "3");
    assert!(e["os"]["kernel"].is_string() && e["cpu"]["cores"].as_u64().unwrap() >= 1);
    assert!(e["memory_bytes"].as_u64().unwrap() > 0);

    let (_, text, _) = env.run_in(&repo, &["show", &env.last_id()]);
    let line = text
        .lines()
        .find(|l| l.starts_with("environment"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(&format!("(venv, {} packages)", want.len()))
            && line.contains("2 lock files")
            && line.ends_with("no GPU"),
        "{line}"
    );

    // Identical snapshots are stored once.
    let (code, _, err) = in_venv(&env, &v, &repo, &["run", "--host", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    let db = rusqlite::Connection::open(env.db()).unwrap();
    let (runs, snapshots): (i64, i64) = db
        .query_row(
            "SELECT (SELECT COUNT(*) FROM run_environments), (SELECT COUNT(*) FROM environments)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((runs, snapshots), (2, 1));
}

#[test]
fn a_venv_without_pip_has_no_packages_and_record_env_empty_records_no_variables() {
    let env = TestEnv::new();
    let Some(v) = venv(&env.root().join("bare"), false) else {
        return;
    };
    let repo = env.git_repo("proj");
    std::fs::write(repo.join(".repro.toml"), "record_env = []\n").unwrap();
    let (code, _, err) = in_venv(&env, &v, &repo, &["run", "--host", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    let e = env.show_json(&env.last_id())["environment"].clone();
    assert_eq!(e["python"]["kind"], "venv");
    assert_eq!(e["python"]["packages"], serde_json::json!({}));
    assert_eq!(e["vars"], serde_json::json!({}));
}

#[test]
fn diff_shows_drift_rerun_warns_and_strict_env_refuses() {
    let env = TestEnv::new();
    let Some(v) = venv(&env.root().join("venv"), true) else {
        return;
    };
    let wheels = env.root().join("wheels");
    write_wheel(&wheels, "0.3.1");
    write_wheel(&wheels, "0.4.0");
    pip_install(&v, &wheels, "tiny-pkg==0.3.1");
    let repo = env.git_repo("proj");
    let (code, _, err) = in_venv(&env, &v, &repo, &["run", "--host", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    let a = env.last_id();
    pip_install(&v, &wheels, "tiny-pkg==0.4.0");

    // Re-run in the upgraded venv: a warning naming the change; the re-run is recorded.
    let (code, _, err) = in_venv(&env, &v, &repo, &["rerun", &a]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("the environment differs") && err.contains("Tiny_Pkg 0.3.1 → 0.4.0"),
        "{err}"
    );
    let b = env.last_id();
    assert_ne!(a, b);

    let (code, out, err) = env.run_in(&repo, &["diff", &a, &b]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("environment  0 added, 0 removed, 1 changed")
            && out.contains("~ package  Tiny_Pkg 0.3.1 → 0.4.0"),
        "{out}"
    );
    let (_, out, _) = env.run_in(&repo, &["diff", &a, &b, "--json"]);
    let d: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(d["environment"]["changed"], 1);
    assert_eq!(d["environment"]["changes"][0]["old"], "0.3.1");

    // --strict-env: refused before anything is recorded.
    let before = env.runs().len();
    let (code, _, err) = in_venv(&env, &v, &repo, &["rerun", &a, "--strict-env"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("differs from the one run") && err.contains("Tiny_Pkg 0.3.1 → 0.4.0"),
        "{err}"
    );
    assert_eq!(env.runs().len(), before);
    // The same environment passes --strict-env.
    let (code, _, err) = in_venv(&env, &v, &repo, &["rerun", &b, "--strict-env"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("differs"), "{err}");
}

#[test]
fn export_and_import_carry_the_environment_and_a_bad_one_is_refused() {
    let env = TestEnv::new();
    let Some(v) = venv(&env.root().join("bare"), false) else {
        return;
    };
    let repo = env.git_repo("proj");
    std::fs::write(repo.join("poetry.lock"), "x\n").unwrap();
    let (code, _, err) = in_venv(&env, &v, &repo, &["run", "--host", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    let id = env.last_id();
    let (code, exported, err) = env.run_in(&repo, &["export"]);
    assert_eq!(code, 0, "{err}");

    let other = TestEnv::new();
    let file = other.root().join("runs.jsonl");
    std::fs::write(&file, &exported).unwrap();
    let (code, _, err) = other.run_in(other.root(), &["import", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        other.show_json(&id)["environment"],
        env.show_json(&id)["environment"]
    );

    let third = TestEnv::new();
    let mut line: serde_json::Value = serde_json::from_str(exported.trim()).unwrap();
    line["environment"]["lockfiles"][0]["sha256"] = "not-a-digest".into();
    std::fs::write(&file, line.to_string()).unwrap();
    let (code, _, err) = third.run_in(third.root(), &["import", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("line 1: environment: lockfiles"), "{err}");
    let (_, out, _) = third.run_in(third.root(), &["ls", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    assert!(
        listed["runs"].as_array().is_none_or(|r| r.is_empty()),
        "{out}"
    );
}

#[test]
fn recreate_env_rebuilds_the_recorded_packages_offline_and_names_the_unpinnable() {
    let env = TestEnv::new();
    let Some(v) = venv(&env.root().join("venv"), true) else {
        return;
    };
    let wheels = env.root().join("wheels");
    write_wheel(&wheels, "0.3.1");
    write_wheel(&wheels, "0.4.0");
    pip_install(&v, &wheels, "tiny-pkg==0.3.1");
    // Installed from the wheel's path: a local file, which a pin cannot reinstall.
    let local = env.root().join("local");
    write_named_wheel(&local, "Other_Pkg", "1.0");
    pip_install(
        &v,
        &wheels,
        local
            .join("other_pkg-1.0-py3-none-any.whl")
            .to_str()
            .unwrap(),
    );
    let repo = env.git_repo("proj");
    let (code, _, err) = in_venv(&env, &v, &repo, &["run", "--host", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    let a = env.last_id();
    let recorded = env.show_json(&a)["environment"].clone();
    assert_eq!(recorded["python"]["local"]["Other_Pkg"], "local file");
    // The original venv moves on; the recreated one must not.
    pip_install(&v, &wheels, "tiny-pkg==0.4.0");

    let fresh = env.root().join("fresh");
    let out = env
        .repro()
        .current_dir(&repo)
        .env("PIP_FIND_LINKS", &wheels)
        .env("PIP_NO_INDEX", "1")
        .env("OMP_NUM_THREADS", "3")
        .args(["rerun", &a, "--recreate-env"])
        .arg(&fresh)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("cannot pin Other_Pkg (local file)"), "{err}");
    let mut want = packages(&recorded);
    want.remove("other-pkg");
    assert_eq!(pip_list(&fresh), want);
    // The re-run ran in it.
    let b = env.show_json(&env.last_id())["environment"].clone();
    assert_eq!(
        b["python"]["executable"],
        fresh
            .canonicalize()
            .unwrap()
            .join("bin/python")
            .display()
            .to_string()
    );
    assert_eq!(packages(&b), want);

    // A directory in use is refused, nothing recorded.
    let before = env.runs().len();
    let (code, _, err) = env.run_in(
        &repo,
        &["rerun", &a, "--recreate-env", fresh.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not empty"), "{err}");
    assert_eq!(env.runs().len(), before);
}

#[test]
fn the_host_script_recreates_the_environment_and_passes_shellcheck() {
    let env = TestEnv::new();
    let Some(v) = venv(&env.root().join("venv"), true) else {
        return;
    };
    let wheels = env.root().join("wheels");
    write_wheel(&wheels, "0.3.1");
    write_wheel(&wheels, "0.4.0");
    pip_install(&v, &wheels, "tiny-pkg==0.3.1");
    let local = env.root().join("local");
    write_named_wheel(&local, "Other_Pkg", "1.0");
    pip_install(
        &v,
        &wheels,
        local
            .join("other_pkg-1.0-py3-none-any.whl")
            .to_str()
            .unwrap(),
    );
    let repo = env.git_repo("proj");
    let job = [
        "python3",
        "-c",
        "import tiny_pkg; print('tiny', tiny_pkg.VERSION)",
    ];
    let mut args = vec!["run", "--host", "--"];
    args.extend(job);
    let (code, _, err) = in_venv(&env, &v, &repo, &args);
    assert_eq!(code, 0, "{err}");
    let id = env.last_id();
    pip_install(&v, &wheels, "tiny-pkg==0.4.0");

    let script = env.root().join("rerun.sh");
    let (code, _, err) = env.run_in(
        &repo,
        &[
            "script",
            &id,
            "--recreate-env",
            "-o",
            script.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    if support::tool_or_skip("shellcheck", "checking the generated script") {
        let out = Command::new("shellcheck").arg(&script).output().unwrap();
        support::assert_ok_for(&out, "shellcheck of the re-run script");
    }
    let work = env.root().join("work");
    let out = Command::new("bash")
        .arg(&script)
        .arg(&work)
        .env("PIP_FIND_LINKS", &wheels)
        .env("PIP_NO_INDEX", "1")
        .env_remove("VIRTUAL_ENV")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // The command ran in the recreated venv: the recorded version, not the upgraded one.
    assert!(stdout.contains("tiny 0.3.1"), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("cannot pin Other_Pkg 1.0 (local file)"),
        "{stderr}"
    );
    let mut want = packages(&env.show_json(&id)["environment"]);
    want.remove("other-pkg");
    assert_eq!(pip_list(&work.join(".venv")), want);

    // A run without a recorded Python: a clear error.
    let other = TestEnv::new();
    let repo2 = other.git_repo("p");
    let (code, _, _) = other.run_in(&repo2, &["run", "--host", "--", "true"]);
    assert_eq!(code, 0);
    let db = rusqlite::Connection::open(other.db()).unwrap();
    db.execute("DELETE FROM run_environments", []).unwrap();
    let (code, _, err) = other.run_in(&repo2, &["script", &other.last_id(), "--recreate-env"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("recorded no Python environment"), "{err}");
}
