//! Output conventions: colour (`--color`, `NO_COLOR`, TTY), closed pipes, `-q`/`-v`, `--utc`,
//! completion scripts and the man page.
use crate::support::assert_ok_for;

use crate::support::assert_ok;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command as StdCommand, Stdio};

use crate::support::TestEnv;

const ESC: &str = "\x1b[";

fn env_with_runs(n: usize) -> TestEnv {
    let env = TestEnv::new();
    for i in 0..n {
        let cmd = if i % 2 == 0 { "true" } else { "false" };
        env.run_in(env.root(), &["run", "-q", "--", cmd]);
    }
    env
}

fn stdout_of(env: &TestEnv, vars: &[(&str, &str)], args: &[&str]) -> String {
    let mut c = env.repro();
    for (k, v) in vars {
        c.env(k, v);
    }
    let out = c.current_dir(env.root()).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn colour_only_when_asked_or_on_a_terminal_without_no_color() {
    let env = env_with_runs(2);
    // Piped: plain by default.
    let plain = stdout_of(&env, &[], &["ls"]);
    assert!(!plain.contains(ESC), "{plain:?}");
    assert!(plain.contains("succeeded") && plain.contains("failed"));
    // Asked for: escapes even when piped, and the explicit flag beats NO_COLOR.
    let always = stdout_of(&env, &[], &["--color", "always", "ls"]);
    assert!(always.contains(ESC), "{always:?}");
    let always = stdout_of(&env, &[("NO_COLOR", "1")], &["ls", "--color=always"]);
    assert!(always.contains(ESC), "{always:?}");
    let never = stdout_of(
        &env,
        &[("REPRO_COLOR", "always")],
        &["--color", "never", "ls"],
    );
    assert!(!never.contains(ESC), "{never:?}");
    let by_env = stdout_of(&env, &[("REPRO_COLOR", "always")], &["ls"]);
    assert!(by_env.contains(ESC), "{by_env:?}");
    // JSON is never coloured.
    let json = stdout_of(&env, &[], &["--color", "always", "ls", "--json"]);
    assert!(!json.contains(ESC));
    // doctor's ok/warn/FAIL follow the same rule.
    let doc = stdout_of(&env, &[], &["doctor", "--color", "always"]);
    assert!(doc.contains(&format!("{ESC}32mok")), "{doc:?}");
    let doc = stdout_of(&env, &[], &["doctor"]);
    assert!(!doc.contains(ESC), "{doc:?}");
}

#[test]
fn colour_from_the_user_config_file() {
    let env = env_with_runs(1);
    let f = env.home().join(".config/repro/config.toml");
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    std::fs::write(&f, "color = \"always\"\n").unwrap();
    assert!(stdout_of(&env, &[], &["ls"]).contains(ESC));
    assert!(!stdout_of(&env, &[], &["ls", "--color", "never"]).contains(ESC));
}

/// Runs `repro ARGS` on a pseudo-terminal via util-linux `script`; None when it is missing.
fn on_tty(env: &TestEnv, vars: &[(&str, &str)], args: &str) -> Option<String> {
    if !crate::support::tool_or_skip("script", "util-linux `script` gives the pseudo-terminal") {
        return None;
    }
    let bin = assert_cmd::cargo::cargo_bin("repro");
    let mut c = StdCommand::new("script");
    c.args([
        "-qec",
        &format!("stty cols 200; '{}' {args}", bin.display()),
        "/dev/null",
    ])
    .env("REPRO_DB", env.db())
    .env("HOME", env.home())
    .env_remove("NO_COLOR")
    .env_remove("REPRO_COLOR");
    for (k, v) in vars {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    assert_ok(&out);
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn on_a_terminal_colour_is_on_unless_no_color() {
    let env = env_with_runs(2);
    let Some(tty) = on_tty(&env, &[], "ls") else {
        return;
    };
    assert!(tty.contains(ESC), "{tty:?}");
    assert!(tty.contains('│'), "a bordered table on a TTY: {tty}");
    let no_color = on_tty(&env, &[("NO_COLOR", "1")], "ls").unwrap();
    assert!(!no_color.contains(ESC), "{no_color:?}");
    // The table fits the terminal's width.
    let at_width = |cols: u16| {
        let bin = assert_cmd::cargo::cargo_bin("repro");
        let out = StdCommand::new("script")
            .args([
                "-qec",
                &format!("stty cols {cols}; '{}' ls", bin.display()),
                "/dev/null",
            ])
            .env("REPRO_DB", env.db())
            .env("HOME", env.home())
            .env("NO_COLOR", "1")
            .env_remove("COLUMNS")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let short_id = &env.last_id()[..12];
    let narrow_80 = at_width(80);
    assert!(
        narrow_80.contains(short_id),
        "ids are never wrapped: {narrow_80}"
    );
    // A terminal reporting no width must not squeeze every column to one character.
    let unknown = at_width(0);
    assert!(unknown.contains(short_id), "{unknown}");
    assert!(
        unknown.contains("STARTED") && unknown.contains("COMMAND"),
        "{unknown}"
    );
    for l in narrow_80.lines() {
        assert!(
            l.trim_end_matches('\r').chars().count() <= 80,
            "line wider than 80 columns: {l:?}\n{narrow_80}"
        );
    }
}

/// Runs `repro ARGS` with stdout a pipe whose reading end is already closed.
fn with_closed_stdout(env: &TestEnv, args: &[&str]) -> (Option<i32>, String) {
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just returned by pipe(2) and are owned here.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read_end);
    let out = StdCommand::new(assert_cmd::cargo::cargo_bin("repro"))
        .current_dir(env.root())
        .env("HOME", env.home())
        .env("REPRO_DB", env.db())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .args(args)
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn closed_pipes_end_quietly_for_every_printing_command() {
    let env = env_with_runs(1);
    let id = env.last_id();
    for args in [
        vec!["ls"],
        vec!["ls", "--json"],
        vec!["show", &id],
        vec!["show", &id, "--json"],
        vec!["script", &id],
        vec!["completions", "bash"],
        vec!["completions", "zsh"],
        vec!["completions", "fish"],
        vec!["man"],
        vec!["config", "show"],
        vec!["config", "show", "--json"],
        vec!["doctor", "--json"],
        vec!["__complete-ids", ""],
    ] {
        let (code, err) = with_closed_stdout(&env, &args);
        assert_eq!(code, Some(0), "repro {args:?}: {err}");
        assert!(!err.contains("panicked"), "repro {args:?}: {err}");
        assert!(!err.contains("Broken pipe"), "repro {args:?}: {err}");
    }
}

#[test]
fn head_closing_the_pipe_is_clean_for_show_and_completions() {
    let env = env_with_runs(1);
    let id = env.last_id();
    let bin = assert_cmd::cargo::cargo_bin("repro");
    for sub in [
        format!("show {id}"),
        "completions bash".into(),
        "man".into(),
    ] {
        let out = StdCommand::new("bash")
            .args([
                "-c",
                &format!("set -o pipefail; '{}' {sub} | head -1", bin.display()),
            ])
            .env("REPRO_DB", env.db())
            .env("HOME", env.home())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ok_for(&out, &sub);
        assert!(!err.contains("panicked"), "{sub}: {err}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    }
}

fn completion(env: &TestEnv, shell: &str) -> String {
    let out = env.repro().args(["completions", shell]).output().unwrap();
    assert_ok(&out);
    String::from_utf8(out.stdout).unwrap()
}

fn syntax_ok(shell: &str, script: &str, dir: &Path) {
    let f = dir.join(format!("repro.{shell}"));
    std::fs::write(&f, script).unwrap();
    let out = StdCommand::new(shell).arg("-n").arg(&f).output().unwrap();
    assert_ok(&out);
}

#[test]
fn completion_scripts_parse() {
    let env = TestEnv::new();
    let bash = completion(&env, "bash");
    assert!(bash.contains("complete -F _repro_run_ids"), "{bash}");
    syntax_ok("bash", &bash, env.root());
    for shell in ["zsh", "fish"] {
        let script = completion(&env, shell);
        assert!(
            script.contains("__complete-ids"),
            "{shell}: no id completion"
        );
        if crate::support::tool_or_skip(shell, "`-n` on its completion script") {
            syntax_ok(shell, &script, env.root());
        }
    }
}

/// `PATH` with the directory of the repro binary under test first (completion scripts call it).
fn path_with_repro() -> String {
    let bin_dir = assert_cmd::cargo::cargo_bin("repro")
        .parent()
        .unwrap()
        .to_path_buf();
    format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn bash_completes_run_ids_from_the_database() {
    let env = env_with_runs(3);
    let ids: Vec<String> = env
        .runs()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let script = env.root().join("repro.bash");
    std::fs::write(&script, completion(&env, "bash")).unwrap();
    let path = path_with_repro();
    let complete = |line: &str| -> Vec<String> {
        let prog = format!(
            "source '{}'\nCOMP_WORDS=({line})\nCOMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n\
             _repro_run_ids repro\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
            script.display()
        );
        let out = StdCommand::new("bash")
            .args(["-c", &prog])
            .env("PATH", &path)
            .env("REPRO_DB", env.db())
            .env("HOME", env.home())
            .output()
            .unwrap();
        assert_ok(&out);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    };
    let mut all = complete("repro show ''");
    all.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(all, want);
    let one = &ids[0];
    assert_eq!(
        complete(&format!("repro script {}", &one[..24])),
        vec![one.clone()]
    );
    // Both runs of `diff A B` complete.
    assert_eq!(
        complete(&format!("repro diff {one} {}", &one[..25])),
        vec![one.clone()]
    );
    // --db on the command line is honoured; a missing database is not created.
    let missing = env.root().join("none.db");
    assert!(complete(&format!("repro --db '{}' show ''", missing.display())).is_empty());
    assert!(!missing.exists());
    // Not a run-id position: the generated completion answers (subcommands).
    assert!(complete("repro sh").contains(&"show".to_string()));
}

#[test]
fn complete_ids_lists_prefix_matches_newest_first() {
    let env = env_with_runs(3);
    let ids: Vec<String> = env
        .runs()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let out = stdout_of(&env, &[], &["__complete-ids", ""]);
    assert_eq!(out.lines().collect::<Vec<_>>(), ids);
    let out = stdout_of(&env, &[], &["__complete-ids", &ids[1].to_uppercase()]);
    assert_eq!(out.trim(), ids[1]);
    assert!(stdout_of(&env, &[], &["__complete-ids", "zzzz"]).is_empty());
    // Hidden from help.
    assert!(!stdout_of(&env, &[], &["--help"]).contains("__complete-ids"));
}

#[test]
fn man_page_is_roff_and_pages_can_be_written_to_a_directory() {
    let env = TestEnv::new();
    let page = stdout_of(&env, &[], &["man"]);
    assert!(page.contains(".TH repro 1"), "{page}");
    assert!(page.contains("doctor") && page.contains("completions"));
    let dir = env.root().join("man1");
    let (code, _, err) = env.run_in(env.root(), &["man", "--dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for p in [
        "repro.1",
        "repro-run.1",
        "repro-doctor.1",
        "repro-config-show.1",
    ] {
        assert!(dir.join(p).is_file(), "{p} missing");
    }
    assert!(!dir.join("repro-__complete-ids.1").exists());
}

#[test]
fn verbose_shows_detail_and_quiet_silences_it() {
    let env = TestEnv::new();
    let (code, _, err) = env.run_in(env.root(), &["-v", "run", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("exec: true"), "{err}");
    assert!(err.contains("database:"), "{err}");
    let (code, _, err) = env.run_in(env.root(), &["-q", "run", "--", "true"]);
    assert_eq!(code, 0);
    assert!(err.is_empty(), "{err}");
    let (code, _, err) = env.run_in(env.root(), &["-q", "-v", "ls"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn times_are_local_unless_utc_and_durations_exact_in_json() {
    let env = env_with_runs(1);
    let id = env.last_id();
    let tokyo = [("TZ", "Asia/Tokyo")];
    let local = stdout_of(&env, &tokyo, &["show", &id]);
    assert!(local.contains("+0900"), "{local}");
    let utc = stdout_of(&env, &tokyo, &["--utc", "show", &id]);
    assert!(utc.contains(" UTC") && !utc.contains("+0900"), "{utc}");
    let table = stdout_of(&env, &tokyo, &["ls", "--utc"]);
    assert!(table.contains(" UTC"), "{table}");
    let v = env.show_json(&id);
    assert!(v["duration_ms"].is_i64(), "{v}");
    assert!(v["started_at"].as_str().unwrap().ends_with('Z'));
}

/// Issue 25 item 5: `--sort` completes its field names and `metric:KEY` for the recorded keys
/// (bash through `__complete-sort`, colons handled; zsh and fish call the same helper), and
/// `attest verify` completes files.
#[test]
fn sort_values_and_attest_files_complete() {
    let env = TestEnv::new();
    let (code, _, err) = env.run_in(
        env.root(),
        &[
            "run",
            "--host",
            "--",
            "sh",
            "-c",
            "echo '{\"val_acc\": 0.9, \"val_loss\": 0.1}' >> \"$REPRO_METRICS\"",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let out = stdout_of(&env, &[], &["__complete-sort", "metric:val_a"]);
    assert_eq!(out, "metric:val_acc\n");
    let out = stdout_of(&env, &[], &["__complete-sort", "st"]);
    assert_eq!(out, "started\nstatus\n");
    let script = env.root().join("repro.bash");
    std::fs::write(&script, completion(&env, "bash")).unwrap();
    let path = path_with_repro();
    // As bash sees `repro ls --sort metric:val_l<TAB>`: words split at ':'.
    let line = "repro ls --sort metric:val_l";
    let prog = format!(
        "source '{}'\nCOMP_LINE='{line}'\nCOMP_POINT={}\nCOMP_WORDS=(repro ls --sort metric : val_l)\n\
         COMP_CWORD=5\n_repro_run_ids repro\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        line.len()
    );
    let out = StdCommand::new("bash")
        .args(["-c", &prog])
        .env("PATH", &path)
        .env("REPRO_DB", env.db())
        .env("HOME", env.home())
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "val_loss\n");
    let zsh = completion(&env, "zsh");
    assert!(zsh.contains(":FIELD:_repro_sort_values'"), "zsh --sort");
    assert!(
        zsh.lines()
            .any(|l| l.contains("The envelope (or unsigned statement)") && l.contains("_files")),
        "zsh attest verify FILE"
    );
    assert!(completion(&env, "fish").contains("-l sort -x -a \"(repro __complete-sort"));
}
