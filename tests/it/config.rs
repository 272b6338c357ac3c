//! Configuration: precedence of the layers, errors naming file/key/line, `config show` provenance,
//! and the repository file treated as untrusted.

use crate::support::assert_ok;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{git, TestEnv};

/// The user config file under this environment's HOME (`~/.config/repro/config.toml`).
fn user_file(env: &TestEnv) -> PathBuf {
    env.home().join(".config/repro/config.toml")
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// `repro config show --json` in `cwd` with extra env vars and args.
fn show(env: &TestEnv, cwd: &Path, vars: &[(&str, &str)], args: &[&str]) -> Value {
    let mut c = env.repro();
    c.current_dir(cwd);
    for (k, v) in vars {
        c.env(k, v);
    }
    let out = c
        .args(args)
        .args(["config", "show", "--json"])
        .output()
        .unwrap();
    assert_ok(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn src(v: &Value, key: &str) -> (String, String) {
    let s = &v["settings"][key]["source"];
    (
        s["kind"].as_str().unwrap().to_string(),
        s["detail"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn each_layer_overrides_the_one_below() {
    let env = TestEnv::new();
    let repo = env.git_repo("proj");
    let sub = repo.join("src/deep");
    std::fs::create_dir_all(&sub).unwrap();
    let uf = user_file(&env);
    let rf = repo.join(".repro.toml");

    // Defaults (REPRO_DB removed so the default db shows).
    let mut c = env.repro();
    let out = c
        .env_remove("REPRO_DB")
        .current_dir(&sub)
        .args(["config", "show", "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["settings"]["resolve"]["value"], "auto");
    assert_eq!(src(&v, "resolve").0, "default");
    assert_eq!(
        v["settings"]["db"]["value"],
        env.home()
            .join(".local/share/repro/repro.db")
            .display()
            .to_string()
    );
    assert_eq!(v["settings"]["workdir"]["value"], "/workspace");

    // User file.
    write(
        &uf,
        "resolve = \"engine\"\nworkdir = \"/u\"\ncolor = \"never\"\ndb = \"~/mine.db\"\n",
    );
    let v = show(&env, &sub, &[], &[]);
    assert_eq!(v["settings"]["resolve"]["value"], "engine");
    assert_eq!(
        src(&v, "resolve"),
        ("user".into(), uf.display().to_string())
    );
    assert_eq!(v["settings"]["workdir"]["value"], "/u");
    // REPRO_DB (set by TestEnv) is above the user file.
    assert_eq!(src(&v, "db"), ("env".into(), "REPRO_DB".into()));

    // Repository file, found from a subdirectory by git discovery.
    write(&rf, "resolve = \"registry\"\ncolor = \"always\"\n");
    let v = show(&env, &sub, &[], &[]);
    assert_eq!(v["settings"]["resolve"]["value"], "registry");
    assert_eq!(
        src(&v, "resolve"),
        ("repo".into(), rf.display().to_string())
    );
    assert_eq!(v["settings"]["workdir"]["value"], "/u", "user value kept");
    assert_eq!(v["settings"]["color"]["value"], "always");

    // Environment.
    let v = show(
        &env,
        &sub,
        &[("REPRO_RESOLVE", "auto"), ("REPRO_COLOR", "never")],
        &[],
    );
    assert_eq!(v["settings"]["resolve"]["value"], "auto");
    assert_eq!(src(&v, "resolve"), ("env".into(), "REPRO_RESOLVE".into()));
    assert_eq!(src(&v, "color"), ("env".into(), "REPRO_COLOR".into()));

    // Flags.
    let flag_db = env.root().join("flag.db");
    let v = show(
        &env,
        &sub,
        &[("REPRO_COLOR", "never")],
        &["--color", "always", "--db", flag_db.to_str().unwrap()],
    );
    assert_eq!(v["settings"]["color"]["value"], "always");
    assert_eq!(src(&v, "color"), ("flag".into(), "--color".into()));
    assert_eq!(src(&v, "db"), ("flag".into(), "--db".into()));

    // And without REPRO_DB the user file's db (with ~ expanded) wins over the default.
    let out = env
        .repro()
        .env_remove("REPRO_DB")
        .current_dir(&sub)
        .args(["config", "show", "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["settings"]["db"]["value"],
        env.home().join("mine.db").display().to_string()
    );
    assert_eq!(src(&v, "db").0, "user");
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["kind"], "user");
    assert_eq!(files[1]["kind"], "repo");
    assert_eq!(files[1]["found"], true);
}

#[test]
fn xdg_config_home_is_where_the_user_file_lives() {
    let env = TestEnv::new();
    let xdg = env.root().join("xdg");
    write(&xdg.join("repro/config.toml"), "resolve = \"engine\"\n");
    // A file in ~/.config is not read when XDG_CONFIG_HOME is set.
    write(&user_file(&env), "resolve = \"registry\"\n");
    let v = show(
        &env,
        env.root(),
        &[("XDG_CONFIG_HOME", xdg.to_str().unwrap())],
        &[],
    );
    assert_eq!(v["settings"]["resolve"]["value"], "engine");
}

#[test]
fn lists_add_up_with_the_source_of_each_entry() {
    let env = TestEnv::new();
    let repo = env.git_repo("proj");
    write(&user_file(&env), "env = [\"SEED\"]\nmounts = [\"/a:/a\"]\n");
    write(
        &repo.join(".repro.toml"),
        "env = [\"CUDA_VISIBLE_DEVICES\", \"SEED\"]\n",
    );
    let v = show(&env, &repo, &[("REPRO_ENV", "RANK, WORLD_SIZE")], &[]);
    let env_list: Vec<(String, String)> = v["settings"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["value"].as_str().unwrap().to_string(),
                i["source"]["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        env_list,
        vec![
            ("SEED".to_string(), "user".to_string()),
            ("CUDA_VISIBLE_DEVICES".into(), "repo".into()),
            ("RANK".into(), "env".into()),
            ("WORLD_SIZE".into(), "env".into()),
        ]
    );
}

#[test]
fn config_show_text_names_every_source() {
    let env = TestEnv::new();
    let repo = env.git_repo("proj");
    let uf = user_file(&env);
    let rf = repo.join(".repro.toml");
    write(&uf, "workdir = \"/u\"\n");
    write(&rf, "engine_args = [\"--shm-size=8g\"]\n");
    let out = env
        .repro()
        .current_dir(&repo)
        .env("REPRO_RESOLVE", "engine")
        .args(["--color", "never", "config", "show"])
        .output()
        .unwrap();
    assert_ok(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |key: &str| -> String {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .to_string()
    };
    assert!(line("workdir").contains(&format!("user file {}", uf.display())));
    assert!(line("engine_args").contains("--shm-size=8g"));
    assert!(line("engine_args").contains(&format!("repo file {}", rf.display())));
    assert!(line("resolve").contains("env REPRO_RESOLVE"));
    assert!(line("db").contains("env REPRO_DB"));
    assert!(line("color").contains("flag --color"));
    assert!(line("allow_latest").ends_with("default"));
    assert!(text.contains(&format!("{} (read)", rf.display())), "{text}");
}

fn fails_with(env: &TestEnv, cwd: &Path, vars: &[(&str, &str)], needles: &[&str]) {
    let mut c = env.repro();
    for (k, v) in vars {
        c.env(k, v);
    }
    let out = c.current_dir(cwd).args(["ls"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for n in needles {
        assert!(err.contains(n), "missing {n:?} in: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn unknown_key_is_an_error_naming_file_key_and_line() {
    let env = TestEnv::new();
    let uf = user_file(&env);
    write(&uf, "# mine\nengine = \"podman\"\nmountz = [\"/a:/a\"]\n");
    fails_with(
        &env,
        env.root(),
        &[],
        &[&uf.display().to_string(), "line 3", "mountz", "hint:"],
    );
}

#[test]
fn wrong_type_is_an_error_naming_file_key_and_line() {
    let env = TestEnv::new();
    let repo = env.git_repo("proj");
    let rf = repo.join(".repro.toml");
    write(&rf, "resolve = \"auto\"\n\nallow_latest = \"yes\"\n");
    fails_with(
        &env,
        &repo,
        &[],
        &[&rf.display().to_string(), "line 3", "allow_latest"],
    );
    write(&rf, "mounts = \"/a:/a\"\n");
    fails_with(
        &env,
        &repo,
        &[],
        &[&rf.display().to_string(), "line 1", "mounts"],
    );
    write(&rf, "resolve = \"sometimes\"\n");
    fails_with(
        &env,
        &repo,
        &[],
        &[&rf.display().to_string(), "line 1", "resolve", "sometimes"],
    );
    write(&rf, "workdir = \"relative\"\n");
    fails_with(&env, &repo, &[], &["line 1", "workdir", "absolute"]);
    write(&rf, "this is not toml\n");
    fails_with(&env, &repo, &[], &[&rf.display().to_string(), "line 1"]);
}

#[test]
fn bad_environment_variable_is_named() {
    let env = TestEnv::new();
    fails_with(
        &env,
        env.root(),
        &[("REPRO_ALLOW_LATEST", "perhaps")],
        &["REPRO_ALLOW_LATEST", "perhaps"],
    );
    fails_with(
        &env,
        env.root(),
        &[("REPRO_ENGINE", "lxc")],
        &["REPRO_ENGINE", "docker or podman"],
    );
}

#[test]
fn a_repository_file_cannot_choose_the_database() {
    let env = TestEnv::new();
    let repo = env.git_repo("proj");
    let rf = repo.join(".repro.toml");
    let evil = env.root().join("elsewhere.db");
    write(&rf, &format!("\ndb = \"{}\"\n", evil.display()));
    let (code, _, err) = env.run_in(&repo, &["run", "--", "true"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&rf.display().to_string()) && err.contains("line 2"),
        "{err}"
    );
    assert!(err.contains("`db`"), "{err}");
    assert!(
        !evil.exists(),
        "no database may be created where the repo file says"
    );
}

#[test]
fn repository_settings_that_widen_a_run_are_announced() {
    let env = TestEnv::new();
    let repo = env.git_repo("proj");
    write(
        &repo.join(".repro.toml"),
        "engine_args = [\"--privileged\"]\nmounts = [\"/etc:/host-etc:ro\"]\n",
    );
    let (code, _, err) = env.run_in(&repo, &["run", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(".repro.toml sets:"), "{err}");
    assert!(
        err.contains("--privileged") && err.contains("/etc:/host-etc:ro"),
        "{err}"
    );
    // --quiet silences status lines, not this: a repo changing the container is a warning.
    let (_, _, err) = env.run_in(&repo, &["-q", "run", "--", "true"]);
    assert!(err.contains("--privileged"), "{err}");
}

#[test]
fn repository_metrics_files_and_mlflow_experiment_are_announced() {
    // A cloned repository's `.repro.toml` decides which files every run reads and where the
    // team's runs go: both are said before the run, also under --quiet.
    let env = TestEnv::new();
    let repo = env.git_repo("proj");
    write(
        &repo.join(".repro.toml"),
        "metrics = [\"m.jsonl\"]\nmlflow_experiment = \"elsewhere\"\n",
    );
    let (code, _, err) = env.run_in(&repo, &["-q", "run", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(".repro.toml sets:"), "{err}");
    assert!(err.contains("metrics = [\"m.jsonl\"]"), "{err}");
    assert!(err.contains("mlflow_experiment = \"elsewhere\""), "{err}");
}

#[test]
fn configured_env_is_recorded_and_flags_add_to_it() {
    let env = TestEnv::new();
    let repo = env.git_repo("proj");
    write(&user_file(&env), "env = [\"SEED\", \"NOT_SET_ANYWHERE\"]\n");
    let out = env
        .repro()
        .current_dir(&repo)
        .env("SEED", "7")
        .env("RANK", "0")
        .env_remove("NOT_SET_ANYWHERE")
        .args(["run", "--env", "RANK", "--", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ok(&out);
    assert!(err.contains("NOT_SET_ANYWHERE is not set"), "{err}");
    let run = env.show_json(&env.last_id());
    assert_eq!(run["env"], serde_json::json!({"SEED": "7", "RANK": "0"}));
}

#[test]
fn require_clean_from_the_repo_file_and_the_flag_that_overrides_it() {
    let env = TestEnv::new();
    let repo = env.git_repo("proj");
    write(&repo.join(".repro.toml"), "require_clean = true\n");
    git(&repo, &["add", ".repro.toml"]);
    git(&repo, &["commit", "-q", "-m", "team config"]);
    std::fs::write(repo.join("README"), "changed\n").unwrap();
    let (code, _, err) = env.run_in(&repo, &["run", "--", "true"]);
    assert_eq!(code, 1, "{err}");
    assert!(env.runs().is_empty(), "a refused run records nothing");
    let (code, _, err) = env.run_in(&repo, &["run", "--no-require-clean", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(env.runs().len(), 1);
}

#[test]
fn policy_from_the_environment_and_flags_that_win() {
    let env = TestEnv::new();
    let args = [
        "run",
        "--host",
        "--offline",
        "--image",
        "busybox:latest",
        "--",
        "true",
    ];
    let (code, _, err) = env.run_in(env.root(), &args);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("latest"), "{err}");
    let out = env
        .repro()
        .current_dir(env.root())
        .env("REPRO_ALLOW_LATEST", "1")
        .env("REPRO_ALLOW_UNPINNED", "yes")
        .args(args)
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(
        env.show_json(&env.last_id())["image"]["resolved_by"],
        "unpinned"
    );
    // The negative flag beats the environment.
    let mut with_flag = args.to_vec();
    with_flag.insert(1, "--no-allow-latest");
    let out = env
        .repro()
        .current_dir(env.root())
        .env("REPRO_ALLOW_LATEST", "1")
        .env("REPRO_ALLOW_UNPINNED", "yes")
        .args(&with_flag)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn engine_from_the_environment_is_still_honoured() {
    // REPRO_ENGINE used to be read by clap; it is now the config env layer.
    let env = TestEnv::new();
    let v = show(&env, env.root(), &[("REPRO_ENGINE", "docker")], &[]);
    assert_eq!(v["settings"]["engine"]["value"], "docker");
    assert_eq!(src(&v, "engine"), ("env".into(), "REPRO_ENGINE".into()));
}

/// `workdir` becomes `--volume=SRC:WORKDIR`: a `:` (podman's `:U` chowns the host repository), a
/// newline or another control character is refused wherever it is set.
#[test]
fn a_workdir_with_volume_options_or_control_characters_is_refused_everywhere() {
    let env = TestEnv::new();
    let repo = env.git_repo("proj");
    for bad in ["/workspace:U", "/work\nspace"] {
        let (code, _, err) = env.run_in(&repo, &["run", "--workdir", bad, "--", "true"]);
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(err.contains("--workdir"), "{err}");
    }
    let rf = repo.join(".repro.toml");
    write(&rf, "workdir = \"/workspace:U\"\n");
    fails_with(&env, &repo, &[], &["line 1", "workdir", "':'"]);
    write(&rf, "workdir = \"/work\\nspace\"\n");
    fails_with(
        &env,
        &repo,
        &[],
        &["line 1", "workdir", "control character"],
    );
    std::fs::remove_file(&rf).unwrap();
    write(&user_file(&env), "workdir = \"/w:z\"\n");
    fails_with(&env, &repo, &[], &["workdir", "':'"]);
    std::fs::remove_file(user_file(&env)).unwrap();
    fails_with(
        &env,
        &repo,
        &[("REPRO_WORKDIR", "/w:U")],
        &["REPRO_WORKDIR"],
    );
    assert!(env.runs().is_empty(), "nothing may be recorded");
}

/// Every relaxation a committed file makes is announced before anything runs, `resolve =
/// "engine"` (pinning through whatever the local engine holds) included.
#[test]
fn a_repo_files_resolve_and_require_clean_relaxations_are_announced() {
    let env = TestEnv::new();
    let repo = env.git_repo("proj");
    write(&user_file(&env), "require_clean = true\n");
    write(
        &repo.join(".repro.toml"),
        "resolve = \"engine\"\nrequire_clean = false\n",
    );
    git(&repo, &["add", ".repro.toml"]);
    git(&repo, &["commit", "-q", "-m", "cfg"]);
    let (code, _, err) = env.run_in(&repo, &["-q", "run", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(".repro.toml sets:"), "{err}");
    assert!(err.contains("resolve = \"engine\""), "{err}");
    assert!(err.contains("require_clean = false"), "{err}");
}
