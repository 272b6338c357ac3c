//! Kept outputs: the object store, `repro get`, and what a full disk or a busy writer does.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use sha2::{Digest, Sha256};

use crate::support::{skip_or_fail, TestEnv};

fn sha_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn objects(env: &TestEnv) -> PathBuf {
    env.db().parent().unwrap().join("objects")
}

/// Every object file in the store: (name, bytes).
fn stored(env: &TestEnv) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let base = objects(env).join("sha256");
    let Ok(rd) = std::fs::read_dir(&base) else {
        return out;
    };
    for d in rd.flatten() {
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            let name = format!(
                "{}{}",
                d.file_name().to_string_lossy(),
                f.file_name().to_string_lossy()
            );
            out.push((name, std::fs::read(f.path()).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn an_overwritten_output_comes_back_byte_identical() {
    let env = TestEnv::new();
    let repo = env.git_repo("keep");
    let (code, _, err) = env.run_in(
        &repo,
        &[
            "run",
            "--host",
            "--output",
            "model.json",
            "--",
            "sh",
            "-c",
            "printf '{\"w\": [1, 2, 3]}\\n' > model.json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let first = env.last_id();
    let original = std::fs::read(repo.join("model.json")).unwrap();
    let run = env.show_json(&first);
    assert_eq!(run["outputs"][0]["kept"], true, "{run}");
    assert_eq!(run["outputs"][0]["sha256"], sha_hex(&original).as_str());

    // A later run overwrites the working file.
    let (code, _, err) = env.run_in(
        &repo,
        &[
            "run",
            "--host",
            "--output",
            "model.json",
            "--",
            "sh",
            "-c",
            "echo '{\"w\": [9]}' > model.json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_ne!(std::fs::read(repo.join("model.json")).unwrap(), original);

    // The object is private, in a private tree.
    let obj = objects(&env)
        .join("sha256")
        .join(&sha_hex(&original)[..2])
        .join(&sha_hex(&original)[2..]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&obj), 0o600);
    assert_eq!(mode(obj.parent().unwrap()), 0o700);
    assert_eq!(mode(&objects(&env)), 0o700);

    // Without --force a different file is never overwritten, and nothing changes.
    let (code, _, err) = env.run_in(&repo, &["get", &first]);
    assert_eq!(code, 1);
    assert!(
        err.contains("exist with other contents") && err.contains("--force"),
        "{err}"
    );
    assert_ne!(std::fs::read(repo.join("model.json")).unwrap(), original);

    // --to writes it elsewhere; --force replaces it in place.
    let out = env.root().join("restored");
    let (code, stdout, err) = env.run_in(&repo, &["get", &first, "--to", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("written"), "{stdout}");
    assert_eq!(std::fs::read(out.join("model.json")).unwrap(), original);
    let (code, stdout, err) = env.run_in(&repo, &["get", &first, "--force"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.contains("replaced   model.json") || stdout.contains("replaced"),
        "{stdout}"
    );
    assert_eq!(std::fs::read(repo.join("model.json")).unwrap(), original);
    // Getting it again finds it in place.
    let (code, stdout, _) = env.run_in(&repo, &["get", &first]);
    assert_eq!(code, 0);
    assert!(stdout.contains("unchanged"), "{stdout}");
}

#[test]
fn directory_outputs_are_kept_file_by_file_with_their_links() {
    let env = TestEnv::new();
    let repo = env.git_repo("dir");
    let (code, _, err) = env.run_in(
        &repo,
        &[
            "run",
            "--host",
            "--output",
            "ckpt",
            "--",
            "sh",
            "-c",
            "mkdir -p ckpt/sub && echo a > ckpt/a.bin && printf 'b\\0b' > ckpt/sub/b.bin && ln -s a.bin ckpt/latest",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let id = env.last_id();
    let run = env.show_json(&id);
    // The output's digest is the dataset digest of the directory.
    let (code, hashed, err) = env.run_in(&repo, &["dataset", "hash", "ckpt", "--json"]);
    assert_eq!(code, 0, "{err}");
    let hashed: serde_json::Value = serde_json::from_str(&hashed).unwrap();
    assert_eq!(
        run["outputs"][0]["sha256"], hashed["digest"],
        "{run}\n{hashed}"
    );
    assert_eq!(run["outputs"][0]["kept"], true);

    std::fs::remove_dir_all(repo.join("ckpt")).unwrap();
    let (code, _, err) = env.run_in(&repo, &["get", &id]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(repo.join("ckpt/a.bin")).unwrap(), b"a\n");
    assert_eq!(std::fs::read(repo.join("ckpt/sub/b.bin")).unwrap(), b"b\0b");
    assert_eq!(
        std::fs::read_link(repo.join("ckpt/latest")).unwrap(),
        Path::new("a.bin")
    );
    // One file inside the directory output, by its path.
    let one = env.root().join("one");
    let (code, _, err) = env.run_in(
        &repo,
        &["get", &id, "ckpt/sub/b.bin", "--to", one.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    assert!(one.join("ckpt/sub/b.bin").is_file());
    assert!(!one.join("ckpt/a.bin").exists());
    // A name that is no output is refused with the outputs listed.
    let (code, _, err) = env.run_in(&repo, &["get", &id, "weights.pt"]);
    assert_eq!(code, 1);
    assert!(err.contains("no output") && err.contains("ckpt"), "{err}");
}

#[test]
fn identical_outputs_of_two_runs_are_one_object() {
    let env = TestEnv::new();
    let repo = env.git_repo("dedup");
    for _ in 0..2 {
        let (code, _, err) = env.run_in(
            &repo,
            &[
                "run",
                "--host",
                "--output",
                "m.bin",
                "--",
                "sh",
                "-c",
                "echo same > m.bin",
            ],
        );
        assert_eq!(code, 0, "{err}");
    }
    let objs = stored(&env);
    assert_eq!(
        objs.len(),
        1,
        "{:?}",
        objs.iter().map(|o| &o.0).collect::<Vec<_>>()
    );
    assert_eq!(objs[0].0, sha_hex(b"same\n"));
    let tmp: Vec<_> = std::fs::read_dir(objects(&env).join("tmp"))
        .unwrap()
        .collect();
    assert!(tmp.is_empty(), "no temporary file is left");
}

#[test]
fn switched_off_or_over_the_limit_outputs_say_why_they_are_not_kept() {
    let env = TestEnv::new();
    let repo = env.git_repo("off");
    let (code, _, err) = env.run_in(
        &repo,
        &[
            "run",
            "--host",
            "--no-keep-outputs",
            "--output",
            "m.bin",
            "--",
            "sh",
            "-c",
            "echo x > m.bin",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let run = env.show_json(&env.last_id());
    assert_eq!(run["outputs"][0]["kept"], false);
    assert_eq!(run["outputs"][0]["not_kept"], "--no-keep-outputs");
    assert_eq!(run["outputs"][0]["sha256"], sha_hex(b"x\n").as_str());
    assert!(stored(&env).is_empty());

    let (code, _, err) = env
        .repro()
        .current_dir(&repo)
        .env("REPRO_KEEP_OUTPUTS_MAX", "1KiB")
        .args([
            "run",
            "--host",
            "--output",
            "small",
            "--output",
            "big",
            "--",
            "sh",
            "-c",
            "echo s > small && head -c 4096 /dev/zero > big",
        ])
        .output()
        .map(|o| {
            (
                o.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .unwrap();
    assert_eq!(code, 0, "{err}");
    let id = env.last_id();
    let run = env.show_json(&id);
    assert_eq!(run["outputs"][0]["kept"], true);
    assert_eq!(run["outputs"][1]["kept"], false);
    let why = run["outputs"][1]["not_kept"].as_str().unwrap();
    assert!(
        why.contains("keep_outputs_max") && why.contains("1.0 KiB"),
        "{why}"
    );
    let (_, text, _) = env.run_in(&repo, &["show", &id]);
    assert!(
        text.contains("big") && text.contains("not kept: its 4.0 KiB"),
        "{text}"
    );
    // Asking for it names the reason.
    let (code, _, err) = env.run_in(&repo, &["get", &id, "big"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("is not kept") && err.contains("keep_outputs_max"),
        "{err}"
    );
    // A bad size in the environment is refused by name.
    let out = env
        .repro()
        .current_dir(&repo)
        .env("REPRO_KEEP_OUTPUTS_MAX", "ten gigs")
        .args(["run", "--host", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("REPRO_KEEP_OUTPUTS_MAX"), "{err}");
}

#[test]
fn a_job_still_writing_its_output_leaves_an_object_named_by_the_bytes_kept() {
    let env = TestEnv::new();
    let repo = env.git_repo("busy");
    // The job exits at once; a child it left behind keeps appending while repro keeps the file.
    let (code, _, err) = env.run_in(
        &repo,
        &[
            "run",
            "--host",
            "--output",
            "log.txt",
            "--",
            "sh",
            "-c",
            ": > log.txt; (i=0; while [ $i -lt 4000 ]; do echo \"line $i of a log a job keeps writing\"; i=$((i+1)); done >> log.txt) & sleep 0.05; exit 0",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let id = env.last_id();
    let run = env.show_json(&id);
    let recorded = run["outputs"][0]["sha256"].as_str().unwrap().to_string();
    // The object's name is the digest of exactly the bytes it holds.
    let objs = stored(&env);
    assert_eq!(objs.len(), 1);
    assert_eq!(objs[0].0, recorded);
    assert_eq!(sha_hex(&objs[0].1), recorded);
    assert_eq!(run["outputs"][0]["bytes"], objs[0].1.len() as u64);
    // What was kept is a prefix of what the writer wrote in the end.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let fin = std::fs::read(repo.join("log.txt")).unwrap();
    assert!(fin.starts_with(&objs[0].1));
    let out = env.root().join("got");
    let (code, _, err) = env.run_in(&repo, &["get", &id, "--to", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(out.join("log.txt")).unwrap(), objs[0].1);
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = StdCommand::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = StdCommand::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_leaves_the_run_outcome_intact_and_nothing_half_written() {
    let env = TestEnv::new();
    let repo = env.git_repo("full");
    let Some(fs) = Tmpfs::mount(&env.root().join("small-disk"), "2m") else {
        skip_or_fail("cannot mount a tmpfs (needs root) for the full-disk test");
        return;
    };
    let db = fs.0.join("repro.db");
    // The database fits; the 3 MiB output does not. The job fails with its own code.
    let out = env
        .repro()
        .current_dir(&repo)
        .env("REPRO_DB", &db)
        .args([
            "run",
            "--host",
            "--output",
            "big.bin",
            "--output",
            "small.txt",
            "--",
            "sh",
            "-c",
            "head -c 3145728 /dev/urandom > big.bin; echo ok > small.txt; exit 3",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "the child's exit code: {err}");
    assert!(
        err.contains("big.bin not kept: no space left on device"),
        "{err}"
    );
    let show = env
        .repro()
        .env("REPRO_DB", &db)
        .args(["ls", "--json"])
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let run = &runs["runs"][0];
    assert_eq!(run["status"], "failed");
    assert_eq!(run["exit_code"], 3);
    let big = std::fs::read(repo.join("big.bin")).unwrap();
    assert_eq!(
        run["outputs"][0]["sha256"],
        sha_hex(&big).as_str(),
        "still hashed"
    );
    assert_eq!(run["outputs"][0]["kept"], false);
    assert_eq!(run["outputs"][0]["not_kept"], "no space left on device");
    assert_eq!(run["outputs"][1]["kept"], true, "the small one fits: {run}");
    // Nothing half-written: no temporary file, and every object is whole.
    let objects = fs.0.join("objects");
    let tmp: Vec<_> = std::fs::read_dir(objects.join("tmp"))
        .unwrap()
        .flatten()
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");
    for d in std::fs::read_dir(objects.join("sha256")).unwrap().flatten() {
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            let name = format!(
                "{}{}",
                d.file_name().to_string_lossy(),
                f.file_name().to_string_lossy()
            );
            assert_eq!(sha_hex(&std::fs::read(f.path()).unwrap()), name);
        }
    }
}
