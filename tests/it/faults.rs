//! Faults: lost wrappers, concurrent writers and readers, broken databases, old schemas.
use crate::support::assert_ok_for;

use crate::support::assert_ok;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use crate::support::TestEnv;

fn repro_bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("repro")
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn a_wrapper_killed_with_sigkill_leaves_a_run_shown_as_lost() {
    let env = TestEnv::new();
    let ready = env.root().join("ready");
    let mut wrapper = StdCommand::new(repro_bin())
        .current_dir(env.root())
        .env("REPRO_DB", env.db())
        .env("HOME", env.home())
        .args(["run", "-q", "--", "sh", "-c"])
        .arg(format!("touch {}; exec sleep 30", ready.display()))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the child", || ready.exists());
    let id = env.last_id();
    assert_eq!(env.show_json(&id)["status"], "running");
    unsafe {
        libc::kill(wrapper.id() as i32, libc::SIGKILL);
    }
    wrapper.wait().unwrap();
    // The orphaned child still runs, but the wrapper that would record its end is gone.
    let run = env.show_json(&id);
    assert_eq!(run["status"], "lost");
    let (_, listed, _) = env.run_in(env.root(), &["ls", "--status", "lost"]);
    assert!(listed.contains(&id[..12]), "{listed}");
    let (_, running, _) = env.run_in(env.root(), &["ls", "--status", "running"]);
    assert!(!running.contains(&id[..12]), "{running}");
    let _ = StdCommand::new("pkill").args(["-f", "sleep 30"]).status();
}

fn insert_running(db: &Path, id: &str, host: &str, boot_id: &str, pid: i64) {
    use repro::record::*;
    let mut store = repro::store::Store::open(db).unwrap();
    let run = Run {
        schema_version: SCHEMA_VERSION,
        id: id.into(),
        name: None,
        status: Status::Running,
        exit_code: None,
        signal: None,
        started_at: "2026-11-26T10:00:00.000Z".into(),
        ended_at: None,
        duration_ms: None,
        command: vec![Arg::from("train")],
        cwd: "/".into(),
        exec: Exec {
            mode: ExecMode::Host,
            engine: None,
            workdir: None,
            engine_args: vec![],
            gpus: None,
            registry: None,
        },
        image: None,
        code: None,
        datasets: vec![],
        outputs: vec![],
        params_from_argv: Vec::new(),
        params_from_job: Vec::new(),
        params: Default::default(),
        tags: vec![],
        notes: vec![],
        env: Default::default(),
        host: host.into(),
        user: "u".into(),
        platform: "linux/amd64".into(),
        pid: Some(pid),
        boot_id: Some(boot_id.into()),
        pid_start: repro::capture::host::process_start(pid as u32),
        pid_ns: repro::capture::host::pid_namespace(),
        rerun_of: None,
        scheduler: None,
    };
    store.insert_run(&run).unwrap();
}

#[test]
fn after_a_reboot_or_on_another_host_running_rows_are_reported_honestly() {
    let env = TestEnv::new();
    let me = repro::capture::host::hostname();
    let boot = repro::capture::host::boot_id().unwrap();
    let alive = std::process::id() as i64;
    // Same host, an older boot: lost even though the pid exists now.
    insert_running(
        &env.db(),
        "01jd00000000000000000000a1",
        &me,
        "another-boot",
        alive,
    );
    // Same host and boot, live process with the recorded start time: still running.
    insert_running(&env.db(), "01jd00000000000000000000a2", &me, &boot, alive);
    // Another host: cannot be checked from here.
    insert_running(
        &env.db(),
        "01jd00000000000000000000a3",
        "gpu-node-17",
        &boot,
        alive,
    );
    assert_eq!(
        env.show_json("01jd00000000000000000000a1")["status"],
        "lost"
    );
    assert_eq!(
        env.show_json("01jd00000000000000000000a2")["status"],
        "running"
    );
    assert_eq!(
        env.show_json("01jd00000000000000000000a3")["status"],
        "running"
    );
    let (_, text, _) = env.run_in(env.root(), &["show", "01jd00000000000000000000a3"]);
    assert!(text.contains("running? (on gpu-node-17)"), "{text}");
}

#[test]
fn thirty_two_concurrent_runs_all_land_while_readers_read() {
    let env = TestEnv::new();
    let data = env.root().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut writers = Vec::new();
    for i in 0..32 {
        let child = StdCommand::new(repro_bin())
            .current_dir(env.root())
            .env("REPRO_DB", env.db())
            .env("HOME", env.home())
            .args(["run", "-q", "--name", &format!("job-{i}")])
            .args([
                "--param",
                &format!("seed={i}"),
                "--param",
                "lr=0.1",
                "--tag",
                "swarm",
            ])
            .args([
                "--dataset",
                &format!("shard@{i}"),
                "--dataset",
                "imagenet=s3://corp/imagenet@v3",
            ])
            .args(["--", "sh", "-c", &format!("exit {}", i % 4)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writers.push((i, child));
    }
    let mut reader_failures = Vec::new();
    for _ in 0..10 {
        for args in [vec!["ls", "--json", "--limit", "100"], vec!["ls"]] {
            let out = env
                .repro()
                .current_dir(env.root())
                .args(&args)
                .output()
                .unwrap();
            if !out.status.success() {
                reader_failures.push(String::from_utf8_lossy(&out.stderr).into_owned());
            }
        }
    }
    for (i, child) in writers {
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(i % 4), "job {i}: {err}");
        assert!(!err.contains("locked"), "job {i}: {err}");
        assert!(err.trim().is_empty(), "job {i} printed: {err}");
    }
    assert!(reader_failures.is_empty(), "{reader_failures:?}");
    let runs = env.runs();
    assert_eq!(runs.len(), 32);
    for r in &runs {
        assert_ne!(r["status"], "running");
        assert_eq!(r["datasets"].as_array().unwrap().len(), 2);
        assert_eq!(r["params"]["lr"], "0.1");
        let seed: i32 = r["params"]["seed"].as_str().unwrap().parse().unwrap();
        assert_eq!(r["exit_code"], seed % 4);
        assert_eq!(r["name"], format!("job-{seed}"));
    }
}

/// Runs `repro run -- touch MARKER` against `db` and checks it was refused before running.
fn refused_before_running(env: &TestEnv, db: &Path, expect: &str) -> String {
    let marker = env.root().join(format!("ran-{}", rand_suffix()));
    let out = env
        .repro()
        .current_dir(env.root())
        .env("REPRO_DB", db)
        .args(["run", "--", "touch", marker.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(expect), "expected {expect:?} in: {err}");
    assert!(err.contains("hint:"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !marker.exists(),
        "the command ran although nothing could be recorded"
    );
    err
}

fn rand_suffix() -> String {
    format!("{:?}", Instant::now()).replace(|c: char| !c.is_ascii_alphanumeric(), "")
}

#[test]
fn broken_databases_are_refused_with_one_clear_message_and_left_unchanged() {
    let env = TestEnv::new();
    // Garbage.
    let corrupt = env.root().join("corrupt.db");
    std::fs::write(&corrupt, vec![0x42u8; 8192]).unwrap();
    refused_before_running(&env, &corrupt, "not a repro database");
    assert_eq!(std::fs::read(&corrupt).unwrap(), vec![0x42u8; 8192]);

    // Truncated: a real database cut in half.
    let good = env.root().join("good.db");
    env.repro()
        .env("REPRO_DB", &good)
        .args(["run", "-q", "--", "true"])
        .assert()
        .success();
    let _ = rusqlite::Connection::open(&good)
        .unwrap()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
    let bytes = std::fs::read(&good).unwrap();
    let truncated = env.root().join("truncated.db");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let out = env
        .repro()
        .env("REPRO_DB", &truncated)
        .args(["ls"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error:") && err.contains("truncated.db"),
        "{err}"
    );

    // Newer schema.
    let newer = env.root().join("newer.db");
    std::fs::copy(&good, &newer).unwrap();
    rusqlite::Connection::open(&newer)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let before = std::fs::read(&newer).unwrap();
    refused_before_running(&env, &newer, "newer than this repro understands");
    assert_eq!(std::fs::read(&newer).unwrap(), before);

    // A directory.
    let dir = env.root().join("adir");
    std::fs::create_dir_all(&dir).unwrap();
    refused_before_running(&env, &dir, "is a directory");

    // A read-only directory (root ignores permission bits, so use a read-only bind of /proc).
    refused_before_running(
        &env,
        Path::new("/proc/repro-test/repro.db"),
        "cannot create",
    );
}

/// A 1 MiB tmpfs: room for a new database (its first WAL is about 400 KiB with today's schema)
/// and one run, which the child then fills.
fn mount_tiny_tmpfs(dir: &Path) -> bool {
    std::fs::create_dir_all(dir).unwrap();
    StdCommand::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

struct Unmount(PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = StdCommand::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_never_masks_the_childs_exit_code() {
    let env = TestEnv::new();
    let mnt = env.root().join("tiny");
    if !mount_tiny_tmpfs(&mnt) {
        crate::support::skip_or_fail("cannot mount a tmpfs here (needs root); full-disk case");
        return;
    }
    let _guard = Unmount(mnt.clone());
    let db = mnt.join("repro.db");
    // The child fills the disk, then exits 5: finishing the record fails, the code survives.
    let fill = format!(
        "dd if=/dev/zero of={}/fill bs=4k 2>/dev/null; exit 5",
        mnt.display()
    );
    let big_note = "x".repeat(50_000);
    let out = env
        .repro()
        .current_dir(env.root())
        .env("REPRO_DB", &db)
        .args([
            "run",
            "--param",
            &format!("note={big_note}"),
            "--",
            "sh",
            "-c",
            &fill,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("could not finish the record"), "{err}");
    // With the disk still full, a new run is refused before it starts.
    refused_before_running(&env, &db, "error:");
    std::fs::remove_file(mnt.join("fill")).unwrap();
    // Space back: the database is intact and the run is shown (lost, as its wrapper is gone).
    let out = env
        .repro()
        .env("REPRO_DB", &db)
        .args(["ls", "--json"])
        .output()
        .unwrap();
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["runs"].as_array().unwrap().len(), 1);
    assert_eq!(v["runs"][0]["status"], "lost");
}

#[test]
fn databases_from_every_earlier_schema_version_open_and_keep_their_runs() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut checked = 0;
    for entry in std::fs::read_dir(&fixtures).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("schema-v") && name.ends_with(".db")) {
            continue;
        }
        let env = TestEnv::new();
        let db = env.root().join(&name);
        std::fs::copy(&path, &db).unwrap();
        let out = env
            .repro()
            .env("REPRO_DB", &db)
            .args(["ls", "--json"])
            .output()
            .unwrap();
        assert_ok_for(&out, &name);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let runs = v["runs"].as_array().unwrap();
        assert!(runs.len() >= 2, "{name}");
        let a = runs.iter().find(|r| r["name"] == "fixture-a").unwrap();
        assert_eq!(a["status"], "succeeded");
        assert_eq!(a["params"]["lr"], "0.1");
        assert_eq!(a["env"]["SEED"], "3");
        assert_eq!(a["datasets"][0]["version"], "v3");
        let b = runs.iter().find(|r| r["name"] == "fixture-b").unwrap();
        assert_eq!(b["exit_code"], 4);
        let version: i64 = rusqlite::Connection::open(&db)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            version,
            repro::store::latest_version(),
            "{name} was not migrated"
        );
        // And it accepts new runs.
        env.repro()
            .env("REPRO_DB", &db)
            .args(["run", "-q", "--", "true"])
            .assert()
            .success();
        checked += 1;
    }
    assert!(
        checked >= 1,
        "no schema fixtures found in {}",
        fixtures.display()
    );
}
