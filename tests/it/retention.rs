//! Retention of kept outputs: `repro gc --outputs` by policy, plain `repro gc` leaving no
//! orphans, `repro du`, `repro verify --store`, and gc against runs finishing at the same time.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::TestEnv;

const NOW: &str = "2026-11-26T14:00:00Z";

fn sha_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn objects(env: &TestEnv) -> PathBuf {
    env.db().parent().unwrap().join("objects")
}

fn object_path(env: &TestEnv, sha: &str) -> PathBuf {
    objects(env).join("sha256").join(&sha[..2]).join(&sha[2..])
}

/// Every object: (name, size, mtime).
fn listing(env: &TestEnv) -> Vec<(String, u64, SystemTime)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(objects(env).join("sha256")) else {
        return out;
    };
    for d in rd.flatten() {
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            let m = f.metadata().unwrap();
            out.push((
                format!(
                    "{}{}",
                    d.file_name().to_string_lossy(),
                    f.file_name().to_string_lossy()
                ),
                m.len(),
                m.modified().unwrap(),
            ));
        }
    }
    out.sort();
    out
}

/// Puts bytes in the store as no run would: an orphan, dated an hour ago (before any gc).
fn orphan(env: &TestEnv, data: &[u8]) -> String {
    let sha = sha_hex(data);
    let p = object_path(env, &sha);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, data).unwrap();
    let f = std::fs::File::open(&p).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    sha
}

/// `repro ARGS` in `cwd` at `now` (RFC 3339); (code, stdout, stderr).
fn at(env: &TestEnv, cwd: &Path, now: &str, args: &[&str]) -> (i32, String, String) {
    let out = env
        .repro()
        .current_dir(cwd)
        .env("REPRO_NOW", now)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A host run at `now` whose shell `script` writes the outputs; returns its id.
fn run_at(env: &TestEnv, now: &str, extra: &[&str], outputs: &[&str], script: &str) -> String {
    let mut args: Vec<&str> = vec!["run", "--host"];
    args.extend_from_slice(extra);
    for o in outputs {
        args.extend(["--output", o]);
    }
    args.extend(["--", "sh", "-c", script]);
    let (code, _, err) = at(env, env.root(), now, &args);
    assert_eq!(code, 0, "{err}");
    id_in(&err)
}

/// The run id in a run's closing status line (`repro: run ID succeeded …`): runs started at
/// one `REPRO_NOW` have ids in no particular order.
fn id_in(stderr: &str) -> String {
    let at = stderr
        .find("repro: run ")
        .unwrap_or_else(|| panic!("no run id: {stderr}"));
    stderr[at + 11..at + 11 + 26].to_string()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn du(env: &TestEnv, args: &[&str]) -> Value {
    let mut a = vec!["du", "--json"];
    a.extend_from_slice(args);
    let (code, out, err) = env.run_in(env.root(), &a);
    assert_eq!(code, 0, "{err}");
    json(&out)
}

/// Runs 10 days old but for `fresh`: tagged, best by a metric, fresh, and two that go.
#[test]
fn the_policy_keeps_tagged_best_and_newer_runs_and_removes_the_rest() {
    let env = TestEnv::new();
    let old = "2026-11-16T14:00:00Z";
    let metric = |v: &str| format!("echo '{{\"val_acc\": {v}}}' >> \"$REPRO_METRICS\"");
    let tagged = run_at(
        &env,
        old,
        &["--tag", "release"],
        &["a.bin"],
        &format!("echo tagged > a.bin; {}", metric("0.10")),
    );
    let best = run_at(
        &env,
        old,
        &[],
        &["a.bin"],
        &format!("echo best > a.bin; {}", metric("0.95")),
    );
    let worse = run_at(
        &env,
        old,
        &[],
        &["a.bin"],
        &format!("echo worse > a.bin; {}", metric("0.50")),
    );
    let fresh = run_at(
        &env,
        "2026-11-25T14:00:00Z",
        &[],
        &["a.bin"],
        &format!("echo fresh > a.bin; {}", metric("0.20")),
    );
    let unmeasured = run_at(&env, old, &[], &["a.bin"], "echo unmeasured > a.bin");

    let (code, out, err) = at(
        &env,
        env.root(),
        NOW,
        &[
            "gc",
            "--outputs",
            "--keep-tagged",
            "--keep-best",
            "1",
            "--sort",
            "metric:val_acc",
            "--keep-newer-than",
            "2d",
            "--yes",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let doc = json(&out);
    let mut removed: Vec<&str> = doc["remove"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run"].as_str().unwrap())
        .collect();
    removed.sort();
    let mut want = vec![worse.as_str(), unmeasured.as_str()];
    want.sort();
    assert_eq!(removed, want, "{doc}");
    let why = |id: &str| -> Vec<String> {
        let k = doc["kept"].as_array().unwrap();
        let r = k
            .iter()
            .find(|k| k["run"] == id)
            .unwrap_or_else(|| panic!("{id} kept: {doc}"));
        serde_json::from_value(r["why"].clone()).unwrap()
    };
    assert_eq!(why(&tagged), vec!["tagged release"]);
    assert_eq!(why(&best), vec!["best 1 by metric:val_acc"]);
    assert_eq!(why(&fresh), vec!["newer than 2d"]);
    assert_eq!(doc["done"]["outputs"], 2);
    assert_eq!(doc["done"]["objects"]["count"], 2);

    for (id, content, kept) in [
        (&tagged, "tagged\n", true),
        (&best, "best\n", true),
        (&fresh, "fresh\n", true),
        (&worse, "worse\n", false),
        (&unmeasured, "unmeasured\n", false),
    ] {
        let run = env.show_json(id);
        assert_eq!(run["outputs"][0]["kept"], kept, "{run}");
        assert_eq!(
            object_path(&env, &sha_hex(content.as_bytes())).exists(),
            kept,
            "{content}"
        );
        if !kept {
            assert_eq!(
                run["outputs"][0]["not_kept"],
                "removed by repro gc --outputs on 2026-11-26"
            );
            // The record stays: digest and size as recorded.
            assert_eq!(
                run["outputs"][0]["sha256"],
                sha_hex(content.as_bytes()).as_str()
            );
        }
    }
    let (code, _, err) = env.run_in(env.root(), &["get", &worse, "--to", "back"]);
    assert_eq!(code, 1);
    assert!(err.contains("removed by repro gc --outputs"), "{err}");
    let (code, _, err) = env.run_in(env.root(), &["get", &best, "--to", "back"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read(env.root().join("back/a.bin")).unwrap(),
        b"best\n"
    );

    // Without a rule or a filter, nothing is removed; nor without --yes off a terminal.
    let (code, _, err) = env.run_in(env.root(), &["gc", "--outputs"]);
    assert_eq!(code, 2);
    assert!(err.contains("keep rule or a filter"), "{err}");
    let (code, _, err) = env.run_in(env.root(), &["gc", "--outputs", "--keep-tagged"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--yes"), "{err}");
    assert!(object_path(&env, &sha_hex(b"best\n")).exists());
}

/// A kept run and a run that goes share an object; the run that goes has a directory output
/// whose two files are one object, and there is an orphan.
#[test]
fn a_dry_run_changes_nothing_and_counts_shared_objects_once() {
    let env = TestEnv::new();
    run_at(
        &env,
        NOW,
        &["--tag", "keep"],
        &["shared.bin"],
        "head -c 1000 /dev/zero > shared.bin",
    );
    let goes = run_at(
        &env,
        NOW,
        &[],
        &["shared.bin", "x.bin", "d"],
        "head -c 1000 /dev/zero > shared.bin; printf %0300d 1 > x.bin; mkdir d; \
         cp x.bin d/copy.bin; printf %0200d 2 > d/y.bin; ln -s y.bin d/link",
    );
    let lonely = orphan(&env, b"nobody keeps me");
    let run = env.show_json(&goes);
    let manifest = run["outputs"][2]["sha256"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let manifest_len = std::fs::metadata(object_path(&env, &manifest))
        .unwrap()
        .len();
    // x.bin (= d/copy.bin), d/y.bin, the manifest, the link's target "y.bin".
    let frees = 300 + 200 + manifest_len + 5;

    let objects_before = listing(&env);
    let ls_before = env.run_in(env.root(), &["ls", "--json"]).1;
    let (code, out, err) = env.run_in(
        env.root(),
        &["gc", "--outputs", "--keep-tagged", "--dry-run", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let doc = json(&out);
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["remove"].as_array().unwrap().len(), 3, "{doc}");
    assert_eq!(doc["frees"]["count"], 4, "{doc}");
    assert_eq!(doc["frees"]["bytes"], frees, "{doc}");
    assert_eq!(doc["orphans"]["count"], 1);
    assert_eq!(doc["orphans"]["bytes"], b"nobody keeps me".len());
    assert_eq!(listing(&env), objects_before, "a dry run touches no object");
    assert_eq!(env.run_in(env.root(), &["ls", "--json"]).1, ls_before);

    // The text form lists run, output and size, and the same figures.
    let (code, out, _) = env.run_in(env.root(), &["gc", "--outputs", "--keep-tagged", "-n"]);
    assert_eq!(code, 0);
    assert!(out.contains("x.bin") && out.contains("300 B"), "{out}");
    assert!(out.contains(&format!("{frees} B in 4 object(s)")), "{out}");

    let before = du(&env, &[]);
    let (code, _, err) = env.run_in(env.root(), &["gc", "--outputs", "--keep-tagged", "--yes"]);
    assert_eq!(code, 0, "{err}");
    let after = du(&env, &[]);
    assert_eq!(
        before["objects"]["bytes"].as_u64().unwrap() - after["objects"]["bytes"].as_u64().unwrap(),
        frees + b"nobody keeps me".len() as u64
    );
    assert!(!object_path(&env, &lonely).exists());
    assert!(
        object_path(&env, &sha_hex(&[0u8; 1000])).exists(),
        "shared stays"
    );
    assert_eq!(after["orphans"]["count"], 0);
}

#[test]
fn plain_gc_removes_the_objects_only_its_runs_needed() {
    let env = TestEnv::new();
    let stays = run_at(&env, NOW, &[], &["s.bin"], "echo shared > s.bin");
    let a = run_at(
        &env,
        NOW,
        &["--tag", "old"],
        &["s.bin", "a.bin"],
        "echo shared > s.bin; echo only-a > a.bin",
    );
    let c = run_at(
        &env,
        NOW,
        &["--tag", "old"],
        &["d"],
        "mkdir d; echo only-c > d/f; ln -s f d/l",
    );
    let unrelated = orphan(&env, b"not gc's business");
    let (code, _, err) = env.run_in(env.root(), &["gc", "--tag", "old", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(err.contains("would delete 2 run(s)"), "{err}");
    // a.bin, d/f, the manifest and the link target "f".
    assert!(err.contains("in 4 object(s)"), "{err}");

    let (code, _, err) = env.run_in(env.root(), &["gc", "--tag", "old", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("deleted 2 run(s); removed 4 object(s)"),
        "{err}"
    );
    assert!(env.run_in(env.root(), &["show", &a]).0 != 0);
    assert!(env.run_in(env.root(), &["show", &c]).0 != 0);
    assert!(object_path(&env, &sha_hex(b"shared\n")).exists());
    assert!(!object_path(&env, &sha_hex(b"only-a\n")).exists());
    assert!(!object_path(&env, &sha_hex(b"only-c\n")).exists());
    assert!(
        object_path(&env, &unrelated).exists(),
        "plain gc leaves other orphans"
    );
    let report = du(&env, &[]);
    assert_eq!(report["orphans"]["count"], 1, "{report}");
    assert_eq!(report["runs_total"], 1);
    assert_eq!(report["runs"][0]["id"], stays.as_str());
    let (code, _, err) = env.run_in(env.root(), &["verify", "--store"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn du_reports_a_known_store() {
    let env = TestEnv::new();
    let small = run_at(
        &env,
        NOW,
        &["--name", "small"],
        &["m.bin"],
        "head -c 1000 /dev/zero > m.bin",
    );
    let big = run_at(
        &env,
        NOW,
        &["--name", "big"],
        &["m.bin", "n.bin"],
        "head -c 1000 /dev/zero > m.bin; head -c 500 /dev/zero | tr '\\0' x > n.bin",
    );
    let dir = run_at(
        &env,
        NOW,
        &["--name", "dir"],
        &["d"],
        "mkdir d; printf %0100d 1 > d/a; printf %0200d 2 > d/b; ln -s a d/l",
    );
    let manifest = env.show_json(&dir)["outputs"][0]["sha256"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let manifest_len = std::fs::metadata(object_path(&env, &manifest))
        .unwrap()
        .len();
    orphan(&env, b"orphan!");
    std::fs::write(objects(&env).join("tmp/123-0-0.part"), b"half").unwrap();

    let r = du(&env, &[]);
    let dir_bytes = 100 + 200 + 1 + manifest_len;
    let kept = 1000 + 500 + dir_bytes;
    assert_eq!(r["referenced"]["count"], 6, "{r}");
    assert_eq!(r["referenced"]["bytes"], kept, "{r}");
    assert_eq!(r["objects"]["count"], 7);
    assert_eq!(r["objects"]["bytes"], kept + 7);
    assert!(r["disk_bytes"].as_u64().unwrap() > 0);
    assert_eq!(r["orphans"]["count"], 1);
    assert_eq!(r["orphans"]["bytes"], 7);
    assert_eq!(r["temps"]["count"], 1);
    assert_eq!(r["temps"]["bytes"], 4);
    assert_eq!(r["missing"], 0);
    assert_eq!(r["runs_total"], 3);
    let rows: Vec<(String, u64, u64)> = r["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["id"].as_str().unwrap().to_string(),
                u["bytes"].as_u64().unwrap(),
                u["only_bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (big.clone(), 1500, 500),
            (small.clone(), 1000, 0),
            (dir.clone(), dir_bytes, dir_bytes)
        ],
        "largest first; the shared 1000 B are nobody's alone"
    );
    let r = du(&env, &["-n", "1"]);
    assert_eq!(r["runs"].as_array().unwrap().len(), 1);
    assert_eq!(r["runs_total"], 3);

    let (code, out, _) = env.run_in(env.root(), &["du"]);
    assert_eq!(code, 0);
    assert!(out.contains("orphans    7 B in 1 object(s)"), "{out}");
    assert!(out.contains("big") && out.contains("1.5 KiB"), "{out}");
}

#[test]
fn verify_store_finds_a_damaged_and_a_missing_object() {
    let env = TestEnv::new();
    let id = run_at(
        &env,
        NOW,
        &["--name", "victim"],
        &["good.bin", "bad.bin", "gone.bin"],
        "echo good > good.bin; echo bad > bad.bin; echo gone > gone.bin",
    );
    let (code, out, err) = env.run_in(env.root(), &["verify", "--store"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("checked 3 object(s)"), "{out}");

    let bad = object_path(&env, &sha_hex(b"bad\n"));
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&bad, b"BAD\n").unwrap();
    std::fs::remove_file(object_path(&env, &sha_hex(b"gone\n"))).unwrap();
    let (code, out, err) = env.run_in(env.root(), &["verify", "--store"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!("DAMAGED     {}", sha_hex(b"bad\n"))),
        "{out}"
    );
    assert!(
        out.contains(&format!("MISSING     {}", sha_hex(b"gone\n"))),
        "{out}"
    );
    assert!(
        out.contains(&format!("output bad.bin of run {id} (victim)")),
        "{out}"
    );
    assert!(
        out.contains(&format!("output gone.bin of run {id}")),
        "{out}"
    );
    assert!(
        err.contains("hint:") && err.contains("repro rerun"),
        "{err}"
    );

    let (code, out, _) = env.run_in(env.root(), &["verify", "--store", "--json"]);
    assert_eq!(code, 1);
    let doc = json(&out);
    assert_eq!(doc["ok"], false);
    let problems: Vec<(&str, &str)> = doc["bad"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["problem"].as_str().unwrap(),
                b["affected"][0]["output"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        problems,
        vec![("damaged", "bad.bin"), ("missing", "gone.bin")]
    );
    // A run id and --store do not go together.
    assert_eq!(env.run_in(env.root(), &["verify", &id, "--store"]).0, 2);
}

/// Holds an `flock` on the object store's lock file, as a run keeping outputs (shared) or a
/// gc deleting objects (exclusive) would.
struct HeldLock(#[allow(dead_code)] std::fs::File);

impl HeldLock {
    fn take(env: &TestEnv, exclusive: bool) -> HeldLock {
        std::fs::create_dir_all(objects(env)).unwrap();
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(objects(env).join("lock"))
            .unwrap();
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        // SAFETY: flock on a descriptor this test owns.
        assert_eq!(unsafe { libc::flock(f.as_raw_fd(), op | libc::LOCK_NB) }, 0);
        HeldLock(f)
    }
}

/// Spawns `repro ARGS` (the environment of `TestEnv::repro`) with stderr to a file; returns
/// the child and the file.
fn spawn(env: &TestEnv, args: &[&str]) -> (Child, PathBuf) {
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log = env.root().join(format!("stderr-{n}.log"));
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("repro"));
    for (k, _) in std::env::vars() {
        if k.starts_with("REPRO_") || k.starts_with("XDG_") || k == "NO_COLOR" {
            cmd.env_remove(&k);
        }
    }
    let child = cmd
        .env("HOME", env.home())
        .env("REPRO_DB", env.db())
        .current_dir(env.root())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (child, log)
}

/// Waits (up to a minute) until the log of `child` contains `text`; fails at once if the child
/// ends first.
fn wait_for(child: &mut Child, log: &Path, text: &str) {
    let t0 = Instant::now();
    loop {
        let seen = std::fs::read_to_string(log).unwrap_or_default();
        if seen.contains(text) {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let seen = std::fs::read_to_string(log).unwrap_or_default();
            panic!("ended ({status}) without waiting for the lock: {seen}");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "never saw {text:?}: {seen}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A run between writing its objects and recording them holds the lock shared: gc waits for
/// it before it decides what is unreferenced.
#[test]
fn gc_waits_for_a_run_that_is_keeping_outputs() {
    let env = TestEnv::new();
    run_at(&env, NOW, &[], &["k.bin"], "echo kept > k.bin");
    // The object a finishing run has just found present and reused, not yet in its record.
    let reused = orphan(&env, b"reused by a run still recording\n");
    let keeper = HeldLock::take(&env, false);
    let (mut gc, log) = spawn(&env, &["gc", "--outputs", "--orphans", "--yes"]);
    wait_for(&mut gc, &log, "waiting for runs that are keeping outputs");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        gc.try_wait().unwrap().is_none(),
        "gc went on while the run held the lock"
    );
    assert!(object_path(&env, &reused).exists());
    drop(keeper);
    assert!(gc.wait().unwrap().success());
    // The "run" never recorded it, so once it let go the object was an orphan.
    assert!(!object_path(&env, &reused).exists());
    assert!(object_path(&env, &sha_hex(b"kept\n")).exists());
}

/// While gc deletes (lock exclusive), a run waits before keeping, then keeps afresh.
#[test]
fn a_run_finishing_during_gc_waits_and_keeps_its_outputs() {
    let env = TestEnv::new();
    let data = b"fresh output\n";
    // gc has decided this object is an orphan and is deleting it.
    let doomed = orphan(&env, data);
    let gc = HeldLock::take(&env, true);
    let (mut run, log) = spawn(
        &env,
        &[
            "run",
            "--host",
            "--output",
            "o.bin",
            "--",
            "sh",
            "-c",
            "echo 'fresh output' > o.bin",
        ],
    );
    wait_for(
        &mut run,
        &log,
        "waiting for repro gc to finish deleting kept objects",
    );
    assert!(run.try_wait().unwrap().is_none());
    std::fs::remove_file(object_path(&env, &doomed)).unwrap();
    drop(gc);
    assert!(run.wait().unwrap().success());
    let id = id_in(&std::fs::read_to_string(&log).unwrap());
    assert_eq!(env.show_json(&id)["outputs"][0]["kept"], true);
    assert_eq!(std::fs::read(object_path(&env, &doomed)).unwrap(), data);
    let (code, _, err) = env.run_in(env.root(), &["verify", "--store"]);
    assert_eq!(code, 0, "{err}");
}

/// An import that finds an output's object here (and records it kept) holds the keep lock until
/// it commits: while gc holds the store, it waits, and an object gc deleted meanwhile is
/// recorded as not kept here rather than kept and missing.
#[test]
fn an_import_waits_for_gc_and_records_only_objects_still_there() {
    let from = TestEnv::new();
    let (code, _, err) = from.run_in(
        from.root(),
        &[
            "run",
            "--host",
            "--output",
            "w.bin",
            "--",
            "sh",
            "-c",
            "echo weights > w.bin",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, export, err) = from.run_in(from.root(), &["export"]);
    assert_eq!(code, 0, "{err}");
    let file = from.root().join("runs.jsonl");
    std::fs::write(&file, export).unwrap();

    let env = TestEnv::new();
    // The same bytes are an orphan here, which gc is deleting.
    let doomed = orphan(&env, b"weights\n");
    let gc = HeldLock::take(&env, true);
    let (mut import, _log) = spawn(&env, &["import", file.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        import.try_wait().unwrap().is_none(),
        "the import did not wait for gc"
    );
    std::fs::remove_file(object_path(&env, &doomed)).unwrap();
    drop(gc);
    assert!(import.wait().unwrap().success());
    let run = env.show_json(&from.last_id());
    assert_eq!(run["outputs"][0]["kept"], false, "{run}");
    let (code, _, err) = env.run_in(env.root(), &["verify", "--store"]);
    assert_eq!(code, 0, "{err}");
}

/// `repro get` (which may fetch objects from a registry) holds the keep lock while it records and
/// places them: while gc deletes, it waits, then writes the file.
#[test]
fn get_waits_for_a_gc_that_is_deleting() {
    let env = TestEnv::new();
    let (code, _, err) = env.run_in(
        env.root(),
        &[
            "run",
            "--host",
            "--output",
            "g.bin",
            "--",
            "sh",
            "-c",
            "echo kept > g.bin",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let id = env.last_id();
    let to = env.root().join("back");
    let gc = HeldLock::take(&env, true);
    let (mut get, log) = spawn(&env, &["get", &id, "--to", to.to_str().unwrap()]);
    wait_for(
        &mut get,
        &log,
        "waiting for repro gc to finish deleting kept objects",
    );
    assert!(get.try_wait().unwrap().is_none());
    assert!(!to.join("g.bin").exists());
    drop(gc);
    assert!(get.wait().unwrap().success());
    assert_eq!(std::fs::read(to.join("g.bin")).unwrap(), b"kept\n");
}

/// Runs that reuse orphaned objects race real gcs: whatever the interleaving, every output
/// recorded kept has its object.
#[test]
fn runs_racing_gc_never_lose_a_kept_object() {
    let env = TestEnv::new();
    for i in 0..4 {
        let data = format!("round {i}\n");
        orphan(&env, data.as_bytes());
        let script = format!("printf 'round {i}\\n' > r.bin");
        let (mut run, log) = spawn(
            &env,
            &[
                "run", "--host", "--output", "r.bin", "--", "sh", "-c", &script,
            ],
        );
        let (mut gc, _) = spawn(&env, &["gc", "--outputs", "--orphans", "--yes"]);
        assert!(run.wait().unwrap().success());
        assert!(gc.wait().unwrap().success());
        let id = id_in(&std::fs::read_to_string(&log).unwrap());
        let run = env.show_json(&id);
        assert_eq!(run["outputs"][0]["kept"], true, "{run}");
        assert!(
            object_path(&env, &sha_hex(data.as_bytes())).exists(),
            "round {i}"
        );
    }
    let (code, out, err) = env.run_in(env.root(), &["verify", "--store"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// On a terminal `gc --outputs` shows what goes and asks; only "y" removes.
#[test]
fn gc_outputs_on_a_terminal_asks_and_removes_only_on_yes() {
    if !crate::support::tool_or_skip("script", "util-linux `script` gives the pseudo-terminal") {
        return;
    }
    let env = TestEnv::new();
    let id = run_at(&env, NOW, &[], &["w.bin"], "echo weights > w.bin");
    let bin = assert_cmd::cargo::cargo_bin("repro");
    let gc = |answer: &str| -> String {
        let cmd = format!(
            "HOME='{}' REPRO_DB='{}' '{}' gc --outputs --keep-tagged",
            env.home().display(),
            env.db().display(),
            bin.display()
        );
        let out = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(answer.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = gc("n\n");
    assert!(said.contains("w.bin") && said.contains(&id[..12]), "{said}");
    assert!(said.contains("Remove them?"), "{said}");
    assert!(said.contains("nothing removed"), "{said}");
    assert!(object_path(&env, &sha_hex(b"weights\n")).exists());
    let said = gc("y\n");
    assert!(
        said.contains("removed the kept copies of 1 output(s)"),
        "{said}"
    );
    assert!(!object_path(&env, &sha_hex(b"weights\n")).exists());
    assert_eq!(env.show_json(&id)["outputs"][0]["kept"], false);
}
