//! `repro run` on the host: git states, exit codes, signals, stdio, bad input.

use crate::support::assert_ok;
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use crate::support::{git, tree, TestEnv};

fn stored_patch(env: &TestEnv, id: &str) -> Vec<u8> {
    let c = rusqlite::Connection::open(env.db()).unwrap();
    c.query_row("SELECT code_patch FROM runs WHERE id = ?1", [id], |r| {
        r.get(0)
    })
    .unwrap()
}

#[test]
fn clean_repository_records_commit_branch_and_remote_without_credentials() {
    let env = TestEnv::new();
    let repo = env.git_repo("clean");
    git(
        &repo,
        &[
            "remote",
            "add",
            "origin",
            "https://alice:s3cret@git.example.com/team/r.git",
        ],
    );
    let (code, _, err) = env.run_in(&repo, &["run", "--host", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    let run = env.show_json(&env.last_id());
    let head = git(&repo, &["rev-parse", "HEAD"]).trim().to_string();
    assert_eq!(run["code"]["commit"], head.as_str());
    assert_eq!(run["code"]["branch"], "main");
    assert_eq!(run["code"]["dirty"], false);
    assert_eq!(run["code"]["patch_sha256"], serde_json::Value::Null);
    assert_eq!(run["code"]["remote"], "https://git.example.com/team/r.git");
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["exit_code"], 0);
    let all = std::fs::read(env.db()).unwrap();
    assert!(!String::from_utf8_lossy(&all).contains("s3cret"));
}

#[test]
fn dirty_tree_patch_reapplied_to_the_commit_reproduces_the_tree_exactly() {
    let env = TestEnv::new();
    let repo = env.git_repo("dirty");
    std::fs::write(repo.join("tracked.txt"), "one\ntwo\n").unwrap();
    std::fs::write(repo.join("gone.txt"), "bye\n").unwrap();
    std::fs::write(repo.join("blob.bin"), [0u8, 1, 2, 255, 254, 0, 10]).unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "two"]);
    // unstaged edit, staged edit, deletion, untracked text + binary in a subdirectory
    std::fs::write(repo.join("tracked.txt"), "one\nTWO\nthree\n").unwrap();
    std::fs::write(repo.join("README"), "hello, staged\n").unwrap();
    git(&repo, &["add", "README"]);
    std::fs::remove_file(repo.join("gone.txt")).unwrap();
    std::fs::write(repo.join("blob.bin"), [9u8, 0, 0, 255, 1]).unwrap();
    std::fs::create_dir_all(repo.join("new/dir")).unwrap();
    std::fs::write(repo.join("new/dir/untracked.py"), "print('x')\n").unwrap();
    std::fs::write(repo.join("new/raw.bin"), [0u8, 159, 146, 150]).unwrap();
    std::fs::write(repo.join(".gitignore"), "*.log\n").unwrap();
    std::fs::write(repo.join("ignored.log"), "not recorded\n").unwrap();

    let (code, _, err) = env.run_in(&repo, &["run", "--host", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    let id = env.last_id();
    let run = env.show_json(&id);
    assert_eq!(run["code"]["dirty"], true);
    let untracked: Vec<&str> = run["code"]["untracked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        untracked,
        vec![".gitignore", "new/dir/untracked.py", "new/raw.bin"]
    );
    let patch = stored_patch(&env, &id);
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&patch))
    };
    assert_eq!(run["code"]["patch_sha256"], sha.as_str());

    // Re-apply on a fresh clone at the recorded commit.
    let clone = env.root().join("clone");
    let commit = run["code"]["commit"].as_str().unwrap();
    git(
        env.root(),
        &[
            "clone",
            "-q",
            repo.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    git(&clone, &["checkout", "-q", "--detach", commit]);
    let patch_file = env.root().join("p.diff");
    std::fs::write(&patch_file, &patch).unwrap();
    git(&clone, &["apply", "--binary", patch_file.to_str().unwrap()]);
    std::fs::remove_file(repo.join("ignored.log")).unwrap();
    assert_eq!(tree(&clone), tree(&repo));
}

#[test]
fn detached_head_and_subdirectory_cwd() {
    let env = TestEnv::new();
    let repo = env.git_repo("det");
    let head = git(&repo, &["rev-parse", "HEAD"]).trim().to_string();
    git(&repo, &["checkout", "-q", "--detach", &head]);
    let sub = repo.join("experiments/resnet");
    std::fs::create_dir_all(&sub).unwrap();
    let (code, _, err) = env.run_in(&sub, &["run", "--host", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    let run = env.show_json(&env.last_id());
    assert_eq!(run["code"]["branch"], serde_json::Value::Null);
    assert_eq!(run["code"]["commit"], head.as_str());
    assert_eq!(run["cwd"], "experiments/resnet");
}

#[test]
fn outside_a_repository_no_code_is_recorded_and_show_says_so() {
    let env = TestEnv::new();
    let dir = env.root().join("plain");
    std::fs::create_dir_all(&dir).unwrap();
    let (code, _, _) = env.run_in(&dir, &["run", "--", "true"]);
    assert_eq!(code, 0);
    let id = env.last_id();
    assert_eq!(env.show_json(&id)["code"], serde_json::Value::Null);
    assert_eq!(env.show_json(&id)["image"], serde_json::Value::Null);
    let (_, text, _) = env.run_in(&dir, &["show", &id]);
    assert!(text.contains("not in a git repository"), "{text}");
    assert!(text.contains("ran on the host without an image"), "{text}");
}

#[test]
fn exit_codes_and_output_pass_through_and_are_recorded() {
    let env = TestEnv::new();
    let dir = env.root();
    let out = env
        .repro()
        .current_dir(dir)
        .args([
            "run",
            "--",
            "sh",
            "-c",
            "echo to-out; echo to-err >&2; exit 3",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "to-out\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("to-err\n"));
    let run = env.show_json(&env.last_id());
    assert_eq!(run["status"], "failed");
    assert_eq!(run["exit_code"], 3);

    // stdin reaches the child
    let out = env
        .repro()
        .current_dir(dir)
        .args(["run", "-q", "--", "cat"])
        .write_stdin("piped data\n")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped data\n");
    assert!(
        out.stderr.is_empty(),
        "--quiet: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // a command that cannot start: 127, recorded failed
    let (code, _, err) = env.run_in(dir, &["run", "--", "definitely-not-a-command-xyz"]);
    assert_eq!(code, 127);
    assert!(
        err.contains("cannot start definitely-not-a-command-xyz"),
        "{err}"
    );
    let run = env.show_json(&env.last_id());
    assert_eq!(run["exit_code"], 127);
    assert_eq!(run["status"], "failed");

    // killed by a signal: 128+N, status killed
    let (code, _, _) = env.run_in(dir, &["run", "--", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(code, 128 + 9);
    let run = env.show_json(&env.last_id());
    assert_eq!(run["status"], "killed");
    assert_eq!(run["signal"], 9);
    assert_eq!(run["exit_code"], serde_json::Value::Null);
}

fn wait_for(path: &std::path::Path) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "timed out waiting for {path:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_to_the_wrapper_reaches_the_child() {
    let env = TestEnv::new();
    let dir = env.root();
    let ready = dir.join("ready");
    let got = dir.join("got-term");
    // The child traps TERM, records it and exits 7: the wrapper must exit 7.
    let script = format!(
        "trap 'echo term > {}; exit 7' TERM; touch {}; while :; do sleep 0.05; done",
        got.display(),
        ready.display()
    );
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("repro"))
        .current_dir(dir)
        .env("REPRO_DB", env.db())
        .env("HOME", env.home())
        .args(["run", "--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&ready);
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(7));
    assert!(got.exists(), "the child did not see SIGTERM");
    let run = env.show_json(&env.last_id());
    assert_eq!(run["exit_code"], 7);

    // A child that does not handle TERM dies of it: exit 143, status killed, signal 15.
    let ready2 = dir.join("ready2");
    let script = format!("touch {}; exec sleep 30", ready2.display());
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("repro"))
        .current_dir(dir)
        .env("REPRO_DB", env.db())
        .env("HOME", env.home())
        .args(["run", "--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&ready2);
    std::thread::sleep(Duration::from_millis(100));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    let run = env.show_json(&env.last_id());
    assert_eq!(run["status"], "killed");
    assert_eq!(run["signal"], 15);
}

/// A SIGTERM that arrives after the child was spawned but before its pid was published to the
/// signal handler is delivered once the pid is known (the seam widens that window to 3 s).
#[test]
fn a_signal_between_spawn_and_pid_store_is_not_lost() {
    let env = TestEnv::new();
    let dir = env.root();
    let ready = dir.join("ready");
    let got = dir.join("got-term");
    let script = format!(
        "trap 'echo term > {}; exit 7' TERM; touch {}; i=0; while [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done",
        got.display(),
        ready.display()
    );
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("repro"))
        .current_dir(dir)
        .env("REPRO_DB", env.db())
        .env("HOME", env.home())
        .env("REPRO_TEST_PID_STORE_DELAY_MS", "3000")
        .args(["run", "--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // The child is running; its pid is published 3 s after it was spawned.
    wait_for(&ready);
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert!(
        got.exists(),
        "the SIGTERM sent before the pid was stored was lost"
    );
    assert_eq!(status.code(), Some(7));
}

#[test]
fn require_clean_refuses_a_dirty_tree_and_records_nothing() {
    let env = TestEnv::new();
    let repo = env.git_repo("rc");
    std::fs::write(repo.join("README"), "changed\n").unwrap();
    std::fs::write(repo.join("new.txt"), "untracked\n").unwrap();
    let marker = env.root().join("ran");
    let (code, _, err) = env.run_in(
        &repo,
        &[
            "run",
            "--require-clean",
            "--",
            "touch",
            marker.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("dirty"), "{err}");
    assert!(err.contains("1 modified, 1 untracked"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert!(!marker.exists(), "the command ran although it was refused");
    assert!(env.runs().is_empty());
}

#[test]
fn params_tags_names_and_env_are_recorded_and_only_named_env() {
    let env = TestEnv::new();
    let (code, _, err) = env.run_in(
        env.root(),
        &[
            "run", "--name", "baseline", "--param", "lr=0.1", "--param", "bs=32", "--tag",
            "nightly", "--env", "SEED", "--", "true",
        ],
    );
    assert_eq!(code, 1, "SEED is not set: {err}");
    assert!(err.contains("SEED"), "{err}");
    let out = env
        .repro()
        .current_dir(env.root())
        .env("SEED", "42")
        .env("OTHER_VAR", "nope")
        .args([
            "run", "--name", "baseline", "--param", "lr=0.1", "--param", "bs=32", "--tag",
            "nightly", "--env", "SEED", "--", "true",
        ])
        .output()
        .unwrap();
    assert_ok(&out);
    let run = env.show_json(&env.last_id());
    assert_eq!(run["name"], "baseline");
    assert_eq!(run["params"]["lr"], "0.1");
    assert_eq!(run["params"]["bs"], "32");
    assert_eq!(run["tags"][0], "nightly");
    assert_eq!(run["env"], serde_json::json!({"SEED": "42"}));
    let (code, _, err) = env.run_in(env.root(), &["run", "--param", "novalue", "--", "true"]);
    assert_eq!(code, 2);
    assert!(err.contains("KEY=VALUE"), "{err}");
}

#[test]
fn ids_resolve_by_prefix_and_errors_are_clear() {
    let env = TestEnv::new();
    for _ in 0..2 {
        env.run_in(env.root(), &["run", "-q", "--", "true"]);
    }
    let id = env.last_id();
    assert_eq!(id.len(), 26);
    assert_eq!(env.show_json(&id[..14])["id"], id.as_str());
    let (code, _, err) = env.run_in(env.root(), &["show", "0"]);
    assert_eq!(code, 1);
    assert!(err.contains("ambiguous") && err.contains(&id), "{err}");
    let (code, _, err) = env.run_in(env.root(), &["show", "zzzz"]);
    assert_eq!(code, 1);
    assert!(err.contains("no run matches"), "{err}");
}

#[test]
fn closed_pipe_is_not_a_panic() {
    let env = TestEnv::new();
    for _ in 0..30 {
        env.run_in(env.root(), &["run", "-q", "--", "true"]);
    }
    let bin = assert_cmd::cargo::cargo_bin("repro");
    let out = StdCommand::new("bash")
        .args([
            "-c",
            &format!(
                "set -o pipefail; '{}' ls --limit 100 | head -1",
                bin.display()
            ),
        ])
        .env("REPRO_DB", env.db())
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

#[test]
fn secret_looking_env_vars_are_redacted_unless_asked() {
    let env = TestEnv::new();
    let out = env
        .repro()
        .current_dir(env.root())
        .env("HF_TOKEN", "hf_supersecret")
        .env("WANDB_API_KEY", "k-supersecret")
        .env("SEED", "1")
        .args([
            "run",
            "-q",
            "--env",
            "HF_TOKEN",
            "--env",
            "WANDB_API_KEY",
            "--env",
            "SEED",
        ])
        .args(["--", "sh", "-c", "printf %s \"$HF_TOKEN\""])
        .output()
        .unwrap();
    // The child still gets the real value.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hf_supersecret");
    let run = env.show_json(&env.last_id());
    assert_eq!(run["env"]["HF_TOKEN"], "<redacted>");
    assert_eq!(run["env"]["WANDB_API_KEY"], "<redacted>");
    assert_eq!(run["env"]["SEED"], "1");
    let db = std::fs::read(env.db()).unwrap();
    let wal = std::fs::read(env.db().with_extension("db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(!String::from_utf8_lossy(&bytes).contains("supersecret"));
    }
    let out = env
        .repro()
        .current_dir(env.root())
        .env("HF_TOKEN", "hf_visible")
        .args([
            "run",
            "-q",
            "--env",
            "HF_TOKEN",
            "--env-unredacted",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(
        env.show_json(&env.last_id())["env"]["HF_TOKEN"],
        "hf_visible"
    );
}

#[test]
fn sigint_sighup_and_sigquit_sent_to_the_wrapper_reach_the_child() {
    let env = TestEnv::new();
    let dir = env.root();
    for (sig, name) in [
        (libc::SIGINT, "INT"),
        (libc::SIGHUP, "HUP"),
        (libc::SIGQUIT, "QUIT"),
    ] {
        let ready = dir.join(format!("ready-{name}"));
        // Default dispositions: if the signal reaches the child, `sleep` dies of it at once.
        let script = format!("touch {ready}; exec sleep 30", ready = ready.display());
        let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("repro"))
            .current_dir(dir)
            .env("REPRO_DB", env.db())
            .env("HOME", env.home())
            .args(["run", "-q", "--", "sh", "-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(&ready);
        std::thread::sleep(Duration::from_millis(100));
        let t0 = Instant::now();
        unsafe {
            libc::kill(child.id() as i32, sig);
        }
        let status = child.wait().unwrap();
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "SIG{name} did not reach the child"
        );
        assert_eq!(status.code(), Some(128 + sig), "SIG{name}");
        let run = env.show_json(&env.last_id());
        assert_eq!(run["status"], "killed", "SIG{name}");
        assert_eq!(run["signal"], sig, "SIG{name}");
    }
}

#[test]
fn a_child_on_a_terminal_keeps_the_terminal() {
    if !crate::support::tool_or_skip(
        "script",
        "util-linux; TTY passthrough is checked on a pseudo-terminal",
    ) {
        return;
    }
    let env = TestEnv::new();
    let bin = assert_cmd::cargo::cargo_bin("repro");
    // `script` gives repro a pseudo-terminal; the child must see it on stdin and stdout.
    let inner = format!(
        "'{}' run -q -- sh -c 'test -t 0 && test -t 1 && echo child-has-tty'",
        bin.display()
    );
    let out = StdCommand::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .env("REPRO_DB", env.db())
        .env("HOME", env.home())
        .current_dir(env.root())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("child-has-tty"), "{text}");
    assert_ok(&out);
}

#[test]
fn an_unmerged_index_is_pointed_out() {
    let env = TestEnv::new();
    let repo = env.git_repo("merge");
    git(&repo, &["checkout", "-q", "-b", "other"]);
    std::fs::write(repo.join("README"), "other side\n").unwrap();
    git(&repo, &["commit", "-qam", "other"]);
    git(&repo, &["checkout", "-q", "main"]);
    std::fs::write(repo.join("README"), "main side\n").unwrap();
    git(&repo, &["commit", "-qam", "main"]);
    let merge = StdCommand::new("git")
        .current_dir(&repo)
        .args(["merge", "-q", "other"])
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(
        !merge.status.success(),
        "the merge was expected to conflict"
    );
    let (code, _, err) = env.run_in(&repo, &["run", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("unmerged paths"), "{err}");
}

#[test]
fn a_mistyped_engine_is_a_usage_error() {
    let env = TestEnv::new();
    for args in [
        &[
            "run",
            "--engine",
            "dockr",
            "--image",
            "busybox@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "--",
            "true",
        ][..],
        &["rerun", "01abc", "--engine", "dockr"][..],
        &["script", "01abc", "--engine", "dockr"][..],
    ] {
        let (code, _, err) = env.run_in(env.root(), args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("dockr"), "{err}");
    }
    assert!(env.runs().is_empty());
}

#[test]
fn with_a_separator_everything_before_it_is_repros() {
    let env = TestEnv::new();
    let marker = env.root().join("ran");
    let (code, _, err) = env.run_in(
        env.root(),
        &["run", "--hots", "--", "touch", marker.to_str().unwrap()],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--hots"), "{err}");
    assert!(!marker.exists());
    assert!(env.runs().is_empty());
    // Without `--` the command starts at the first word that is not an option of repro.
    let (code, _, err) = env.run_in(env.root(), &["run", "true", "--hots"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn verify_says_where_it_looked() {
    let env = TestEnv::new();
    let repo = env.git_repo("v");
    let (code, _, err) = env.run_in(
        &repo,
        &[
            "run",
            "--output",
            "o.txt",
            "--",
            "sh",
            "-c",
            "echo x > o.txt",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = env.run_in(&repo, &["verify", &env.last_id()]);
    assert_eq!(code, 0, "{err}");
    let root = repo.canonicalize().unwrap();
    assert!(
        out.contains(&format!("resolved against {}", root.display()))
            || out.contains(&format!("resolved against {}/", root.display())),
        "{out}"
    );
}

#[test]
fn a_big_untracked_file_is_left_out_of_the_patch_with_a_warning() {
    let env = TestEnv::new();
    let repo = env.git_repo("bigfile");
    std::fs::write(repo.join("small.py"), "print('kept')\n").unwrap();
    // A 40 MiB checkpoint left untracked in the work tree (sparse: cheap to make).
    let f = std::fs::File::create(repo.join("ckpt.bin")).unwrap();
    f.set_len(40 << 20).unwrap();
    let (code, _, err) = env.run_in(&repo, &["run", "--host", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("ckpt.bin (40 MiB) is not in the recorded patch")
            && err.contains(".gitignore"),
        "{err}"
    );
    let id = env.last_id();
    let run = env.show_json(&id);
    assert_eq!(run["code"]["dirty"], true);
    let patch = String::from_utf8_lossy(&stored_patch(&env, &id)).into_owned();
    assert!(
        patch.contains("small.py") && patch.contains("print('kept')"),
        "{patch}"
    );
    assert!(
        !patch.contains("ckpt.bin"),
        "the big file is not in the patch"
    );
    // Its name is still listed among the untracked files.
    assert!(
        run["code"]["untracked"].to_string().contains("ckpt.bin"),
        "{run}"
    );
}
