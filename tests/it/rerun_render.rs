//! Re-run targets rendered from `Run` values and executed: the argv must arrive byte for byte,
//! recorded values must never execute, scripts must pass shellcheck, Jobs must validate.
use crate::support::assert_ok_for;

use crate::support::assert_ok;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use proptest::prelude::*;
use repro::record::{
    Arg, Code, Dataset, DatasetKind, Exec, ExecMode, Image, ResolvedBy, Run, Status,
};
use repro::script::{bash, k8s, slurm};
use sha2::Digest as _;

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const REPO: &str = "127.0.0.1:5000/team/trainer";

/// A git repository with one commit, made once; its HEAD commit.
fn fixture_repo() -> &'static (PathBuf, String) {
    static REPO_DIR: OnceLock<(PathBuf, String)> = OnceLock::new();
    REPO_DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let git = |args: &[&str]| {
            let out = Command::new("git")
                .args(args)
                .current_dir(&dir)
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@t")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@t")
                .output()
                .unwrap();
            assert_ok_for(&out, &format!("git {args:?}"));
            String::from_utf8(out.stdout).unwrap()
        };
        git(&["init", "-q"]);
        std::fs::create_dir_all(dir.join("exp")).unwrap();
        std::fs::write(dir.join("exp/train.py"), "print('hi')\n").unwrap();
        std::fs::create_dir_all(dir.join("data/val")).unwrap();
        std::fs::write(dir.join("data/val/a.txt"), "alpha\n").unwrap();
        std::fs::write(dir.join("data/val/b.txt"), "beta\n").unwrap();
        git(&["add", "."]);
        git(&["commit", "-qm", "init"]);
        let head = git(&["rev-parse", "HEAD"]).trim().to_string();
        (dir, head)
    })
}

/// The canonical dataset digest, as `repro run` records it (docs/datasets.md).
fn dataset_digest(dir: &Path) -> String {
    repro::capture::dataset::hash_path(dir, &Default::default(), None, None)
        .unwrap()
        .digest
}

fn base_run(argv: Vec<Arg>) -> Run {
    let (repo, head) = fixture_repo();
    Run {
        schema_version: 1,
        id: "01jd3kq8x9v5n2m4p6r8t0w2y4".into(),
        name: None,
        status: Status::Succeeded,
        exit_code: Some(0),
        signal: None,
        started_at: "2026-11-26T14:00:00Z".into(),
        ended_at: None,
        duration_ms: None,
        command: argv,
        cwd: "exp".into(),
        exec: Exec {
            mode: ExecMode::Container,
            engine: Some("podman".into()),
            workdir: Some("/workspace".into()),
            engine_args: vec![],
            gpus: None,
            registry: None,
        },
        image: Some(Image {
            reference: format!("{REPO}:1.0"),
            digest: Some(DIGEST.into()),
            index_digest: None,
            platform: None,
            resolved_by: ResolvedBy::Registry,
            labels: BTreeMap::new(),
        }),
        code: Some(Code {
            repo_root: repo.to_string_lossy().into_owned(),
            remote: None,
            commit: Some(head.clone()),
            branch: Some("main".into()),
            dirty: false,
            untracked: vec![],
            patch_sha256: None,
            patch: None,
        }),
        datasets: vec![],
        outputs: vec![],
        params_from_argv: Vec::new(),
        params_from_job: Vec::new(),
        params: BTreeMap::new(),
        tags: vec![],
        notes: vec![],
        env: BTreeMap::new(),
        host: "h".into(),
        user: "u".into(),
        platform: "linux/amd64".into(),
        pid: None,
        boot_id: None,
        pid_start: None,
        pid_ns: None,
        rerun_of: None,
        scheduler: None,
    }
}

/// A directory of stub tools: `podman`/`docker`/`apptainer` dump argv NUL-separated to
/// `$STUB_OUT` (and env to `$STUB_OUT.env`); `pull` succeeds, `image inspect` reports the digest.
fn stub_bin() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let engine = format!(
            r#"#!/usr/bin/env bash
case $1 in
  pull) exit 0 ;;
  image) printf '%s\n' '{REPO}@{DIGEST}'; exit 0 ;;
esac
printf '%s\0' "$@" >"$STUB_OUT"
env -0 >"$STUB_OUT.env"
exit "${{STUB_EXIT:-0}}"
"#
        );
        let dumper = "#!/usr/bin/env bash\nprintf '%s\\0' \"$0\" \"$@\" >\"$STUB_OUT\"\nenv -0 >\"$STUB_OUT.env\"\npwd >\"$STUB_OUT.pwd\"\nexit \"${STUB_EXIT:-0}\"\n";
        for (name, text) in [
            ("podman", engine.as_str()),
            ("docker", engine.as_str()),
            ("apptainer", engine.as_str()),
            ("dump-argv", dumper),
        ] {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        dir
    })
}

struct Executed {
    status: i32,
    argv: Vec<Vec<u8>>,
    env: Vec<Vec<u8>>,
    stderr: String,
    work: tempfile::TempDir,
}

/// Writes `script`, runs it with bash and the stubs first on PATH, returns the dumped argv.
fn execute(script: &str, extra_env: &[(&str, &str)]) -> Executed {
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("rerun.sh");
    std::fs::write(&path, script).unwrap();
    let out_file = work.path().join("argv");
    let path_var = format!(
        "{}:{}",
        stub_bin().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.arg(&path)
        .arg(work.path().join("src"))
        .current_dir(work.path())
        .env("PATH", path_var)
        .env("STUB_OUT", &out_file)
        .env_remove("REPRO_ENGINE");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let split = |b: Vec<u8>| {
        let mut v: Vec<Vec<u8>> = b.split(|&c| c == 0).map(<[u8]>::to_vec).collect();
        v.pop();
        v
    };
    Executed {
        status: out.status.code().unwrap_or(-1),
        argv: std::fs::read(&out_file).map(split).unwrap_or_default(),
        env: std::fs::read(work.path().join("argv.env"))
            .map(split)
            .unwrap_or_default(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        work,
    }
}

/// The argv after the first element equal to `marker` (the image argument).
fn after<'a>(argv: &'a [Vec<u8>], marker: &[u8]) -> &'a [Vec<u8>] {
    let i = argv
        .iter()
        .position(|a| a == marker)
        .unwrap_or_else(|| panic!("no {:?} in {argv:?}", String::from_utf8_lossy(marker)));
    &argv[i + 1..]
}

fn bytes_of(argv: &[Arg]) -> Vec<Vec<u8>> {
    argv.iter().map(|a| a.as_bytes().to_vec()).collect()
}

fn check_bash(run: &Run) -> Executed {
    let script = bash::render(run, &bash::BashOptions::default()).unwrap();
    let ex = execute(&script, &[]);
    assert_eq!(ex.status, 0, "script failed: {}", ex.stderr);
    let pinned = format!("{REPO}@{DIGEST}");
    assert_eq!(
        after(&ex.argv, pinned.as_bytes()),
        bytes_of(&run.command),
        "stderr: {}",
        ex.stderr
    );
    ex
}

fn check_slurm(run: &Run) -> Executed {
    let script = slurm::render(run, &slurm::SlurmOptions::default()).unwrap();
    let ex = execute(&script, &[]);
    assert_eq!(ex.status, 0, "script failed: {}", ex.stderr);
    let image = format!("docker://{REPO}@{DIGEST}");
    assert_eq!(
        after(&ex.argv, image.as_bytes()),
        bytes_of(&run.command),
        "stderr: {}",
        ex.stderr
    );
    ex
}

fn check_k8s(run: &Run) {
    let mut r = run.clone();
    if let Some(c) = r.code.as_mut() {
        c.remote
            .get_or_insert_with(|| "https://git.example.com/p.git".into());
    }
    r.command
        .retain(|a| std::str::from_utf8(a.as_bytes()).is_ok());
    if r.command.is_empty() {
        return;
    }
    let yaml = k8s::render(&r, &crate::k8s::pinned_options()).unwrap();
    let v: yaml_serde::Value = yaml_serde::from_str(&yaml).unwrap();
    let c = &v["spec"]["template"]["spec"]["containers"][0];
    let mut got = vec![c["command"][0].as_str().unwrap().as_bytes().to_vec()];
    for a in c["args"].as_sequence().unwrap() {
        got.push(a.as_str().unwrap().as_bytes().to_vec());
    }
    assert_eq!(got, bytes_of(&r.command));
}

/// Hard argv elements: every byte but NUL, weighted towards what shells care about.
fn arg_strategy() -> impl Strategy<Value = Vec<u8>> {
    let meta: Vec<u8> = b"$`'\"\\!*?[]{}()<>|&;#~=% \t\n\r^,.:/@+-_aZ9".to_vec();
    prop_oneof![
        proptest::collection::vec(1u8..=255, 0..24),
        proptest::collection::vec(proptest::sample::select(meta), 0..24),
        "\\PC{0,12}".prop_map(String::into_bytes),
        Just(Vec::new()),
        (1usize..4000).prop_map(|n| vec![b'x'; n]),
        "[~#-][a-z$`'{}*]{0,6}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn argv_arrives_byte_for_byte(args in proptest::collection::vec(arg_strategy(), 1..8)) {
        let argv: Vec<Arg> = args.into_iter().map(Arg).collect();
        let run = base_run(argv);
        check_bash(&run);
        check_slurm(&run);
        check_k8s(&run);
    }
}

fn conformance_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance");
    dir.join("shell_strings.jsonl").is_file().then_some(dir)
}

/// Every non-NUL string of the shared quoting tables, as bytes.
fn conformance_strings() -> Option<Vec<Vec<u8>>> {
    let Some(dir) = conformance_dir() else {
        // Locally the tables may be absent; in CI a silent pass would hide a broken checkout.
        crate::support::skip_or_fail(
            "../shared/conformance/shell_strings.jsonl not found (../shared/conformance beside the repository)",
        );
        return None;
    };
    let mut out = Vec::new();
    for line in std::fs::read_to_string(dir.join("shell_strings.jsonl"))
        .unwrap()
        .lines()
    {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let s = v["input"].as_str().unwrap();
        if !s.contains('\0') {
            out.push(s.as_bytes().to_vec());
        }
    }
    for line in std::fs::read_to_string(dir.join("shell_bytes.jsonl"))
        .unwrap()
        .lines()
    {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let b = hex::decode(v["input_hex"].as_str().unwrap()).unwrap();
        if !b.contains(&0) {
            out.push(b);
        }
    }
    Some(out)
}

#[test]
fn conformance_strings_survive_every_shell_target() {
    let Some(strings) = conformance_strings() else {
        return;
    };
    assert!(strings.len() >= 370, "only {} strings", strings.len());
    let mut run = base_run(strings.iter().cloned().map(Arg).collect());
    // The same strings as env values (UTF-8 ones; env values are recorded as text).
    for (i, s) in strings.iter().enumerate() {
        if let Ok(t) = std::str::from_utf8(s) {
            run.env.insert(format!("V{i}"), t.to_string());
        }
    }
    shellcheck(&bash::render(&run, &bash::BashOptions::default()).unwrap());
    shellcheck(&slurm::render(&run, &slurm::SlurmOptions::default()).unwrap());
    let ex = check_bash(&run);
    // Variables go to the engine by name (`--env K`), as `repro run` passes them.
    for (k, v) in &run.env {
        assert!(
            ex.argv.contains(&k.as_bytes().to_vec()),
            "--env {k} missing"
        );
        assert!(
            ex.env.contains(&format!("{k}={v}").into_bytes()),
            "env value {k} did not arrive intact"
        );
    }
    let ex = check_slurm(&run);
    for (k, v) in &run.env {
        let want = format!("APPTAINERENV_{k}={v}").into_bytes();
        assert!(
            ex.env.contains(&want),
            "APPTAINERENV_{k} did not arrive intact"
        );
    }
    check_k8s(&run);
    // Host mode: the recorded argv[0] is a program on PATH that dumps its argv.
    let mut host = run.clone();
    host.exec.mode = ExecMode::Host;
    host.command.insert(0, Arg::from("dump-argv"));
    let ex = execute(
        &bash::render(&host, &bash::BashOptions::default()).unwrap(),
        &[],
    );
    assert_eq!(ex.status, 0, "{}", ex.stderr);
    assert_eq!(ex.argv[1..], bytes_of(&host.command)[1..]);
    for (k, v) in &run.env {
        assert!(
            ex.env.contains(&format!("{k}={v}").into_bytes()),
            "host env {k}"
        );
    }
    eprintln!(
        "checked {} conformance strings as argv and {} as env values",
        strings.len(),
        run.env.len()
    );
}

fn shellcheck(script: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.sh");
    std::fs::write(&p, script).unwrap();
    let out = Command::new("shellcheck")
        .arg(&p)
        .output()
        .expect("shellcheck is installed");
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "shellcheck findings:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let n = Command::new("bash").arg("-n").arg(&p).status().unwrap();
    assert!(n.success());
}

/// Runs covering container/host, clean/dirty, datasets, GPUs, no code, unpinned.
fn varied_runs() -> Vec<Run> {
    let (repo, _) = fixture_repo();
    let argv = vec![
        Arg::from("python"),
        Arg::from("train.py"),
        Arg::from("it's $HOME"),
    ];
    let mut runs = vec![base_run(argv.clone())];
    let mut r = base_run(argv.clone());
    r.exec.mode = ExecMode::Host;
    runs.push(r);
    let mut r = base_run(argv.clone());
    let patch = b"diff --git a/exp/new.txt b/exp/new.txt\nnew file mode 100644\nindex 0000000..ce01362\n--- /dev/null\n+++ b/exp/new.txt\n@@ -0,0 +1 @@\n+hello\n".to_vec();
    let code = r.code.as_mut().unwrap();
    code.dirty = true;
    code.patch_sha256 = Some(format!("{:x}", sha2::Sha256::digest(&patch)));
    code.patch = Some(Arg(patch));
    code.remote = Some("https://example.invalid/$(touch pwned).git".into());
    r.exec.gpus = Some("device=0,1".into());
    r.exec.engine_args = vec!["--shm-size=1g".into()];
    r.env.insert("SEED".into(), "42".into());
    r.datasets = vec![Dataset {
        name: "val".into(),
        kind: DatasetKind::Path,
        uri: Some("data/val".into()),
        version: None,
        digest: Some(dataset_digest(&repo.join("data/val"))),
        files: Some(2),
        bytes: Some(11),
    }];
    runs.push(r.clone());
    r.exec.mode = ExecMode::Host;
    runs.push(r);
    let mut r = base_run(argv.clone());
    r.code = None;
    r.cwd = "/tmp".into();
    r.image.as_mut().unwrap().digest = None;
    r.image.as_mut().unwrap().resolved_by = ResolvedBy::Unpinned;
    runs.push(r);
    runs
}

#[test]
fn shell_scripts_pass_shellcheck() {
    for run in varied_runs() {
        shellcheck(&bash::render(&run, &bash::BashOptions::default()).unwrap());
        shellcheck(&slurm::render(&run, &slurm::SlurmOptions::default()).unwrap());
    }
}

#[test]
fn dirty_run_with_dataset_executes_and_checks_everything() {
    let runs = varied_runs();
    let ex = check_bash(&runs[2]);
    // The patch was applied in the checkout that was mounted.
    let src = ex.work.path().join("src");
    assert_eq!(
        std::fs::read_to_string(src.join("exp/new.txt")).unwrap(),
        "hello\n"
    );
    assert!(ex.stderr.contains("verifying dataset"), "{}", ex.stderr);
    assert!(
        ex.argv.contains(&b"--gpus=device=0,1".to_vec())
            || ex.argv.contains(&b"--device=nvidia.com/gpu=0".to_vec())
    );
    // A wrong dataset digest stops the script before the command runs.
    let mut bad = runs[2].clone();
    bad.datasets[0].digest = Some(format!("sha256:{}", "0".repeat(64)));
    let ex = execute(
        &bash::render(&bad, &bash::BashOptions::default()).unwrap(),
        &[],
    );
    assert_ne!(ex.status, 0);
    assert!(ex.argv.is_empty(), "command ran despite a dataset mismatch");
    // A patch that does not match its recorded SHA-256 stops it too.
    let mut bad = runs[2].clone();
    bad.code.as_mut().unwrap().patch_sha256 = Some("f".repeat(64));
    let ex = execute(
        &bash::render(&bad, &bash::BashOptions::default()).unwrap(),
        &[],
    );
    assert_ne!(ex.status, 0);
    assert!(
        ex.stderr.contains("does not match its recorded SHA-256"),
        "{}",
        ex.stderr
    );
}

#[test]
fn exit_status_and_missing_tools() {
    let run = base_run(vec![Arg::from("x")]);
    let script = bash::render(&run, &bash::BashOptions::default()).unwrap();
    let ex = execute(&script, &[("STUB_EXIT", "7")]);
    assert_eq!(ex.status, 7);
    let ex = execute(&script, &[("REPRO_ENGINE", "no-such-engine")]);
    assert_eq!(ex.status, 1);
    assert!(
        ex.stderr.contains("missing required tools: no-such-engine"),
        "{}",
        ex.stderr
    );
}

#[test]
fn dry_run_prints_quoted_commands_and_runs_nothing() {
    let run = base_run(vec![Arg::from("python"), Arg::from("a b'c")]);
    let script = bash::render(&run, &bash::BashOptions::default()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let p = work.path().join("s.sh");
    std::fs::write(&p, script).unwrap();
    let out = Command::new("bash")
        .arg(&p)
        .arg("--dry-run")
        .env(
            "PATH",
            format!(
                "{}:{}",
                stub_bin().display(),
                std::env::var("PATH").unwrap()
            ),
        )
        .env("STUB_OUT", work.path().join("argv"))
        .output()
        .unwrap();
    assert_ok(&out);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("+ podman pull"), "{stdout}");
    assert!(stdout.contains("a\\ b\\'c"), "{stdout}");
    assert!(
        !work.path().join("argv").exists(),
        "dry run executed the engine"
    );
}

#[test]
fn recorded_values_never_execute() {
    let payloads = [
        "$(touch pwned)",
        "`touch pwned`",
        "'; touch pwned; '",
        "\"; touch pwned; \"",
    ];
    let (repo, _) = fixture_repo();
    for p in payloads {
        let mut run = base_run(vec![Arg::from("echo"), Arg::from(p)]);
        let code = run.code.as_mut().unwrap();
        code.branch = Some(format!("b{p}"));
        code.remote = Some(format!("/nonexistent/{p}"));
        run.env.insert("E".into(), p.into());
        run.name = Some(p.into());
        run.datasets = vec![Dataset {
            name: p.into(),
            kind: DatasetKind::Path,
            uri: Some(format!("data/{p}")),
            version: None,
            digest: Some(DIGEST.into()),
            files: None,
            bytes: None,
        }];
        for script in [
            bash::render(&run, &bash::BashOptions::default()).unwrap(),
            slurm::render(&run, &slurm::SlurmOptions::default()).unwrap(),
        ] {
            let ex = execute(&script, &[]);
            // The dataset does not exist, so the script stops there; nothing else may run.
            assert_ne!(ex.status, 0);
            assert!(ex.stderr.contains("dataset not found"), "{}", ex.stderr);
            assert!(
                !ex.work.path().join("pwned").exists(),
                "payload {p} executed"
            );
            assert!(
                !ex.work.path().join("src/pwned").exists(),
                "payload {p} executed"
            );
            assert!(!repo.join("pwned").exists(), "payload {p} executed");
        }
        // With the dataset gone, the env value and argv arrive intact.
        run.datasets.clear();
        let ex = check_bash(&run);
        assert!(ex.env.contains(&format!("E={p}").into_bytes()));
        assert!(!ex.work.path().join("pwned").exists());
    }
}

#[test]
fn k8s_job_validates_against_the_schema() {
    let mut run = base_run(vec![Arg::from("python"), Arg::from("$(x) `y`\n'z'")]);
    run.code.as_mut().unwrap().remote = Some("https://git.example.com/p.git".into());
    run.exec.gpus = Some("2".into());
    run.env.insert("SEED".into(), "4\n2".into());
    let yaml = k8s::render(&run, &crate::k8s::pinned_options()).unwrap();
    check_k8s(&run);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("job.yaml");
    std::fs::write(&p, &yaml).unwrap();
    match Command::new("kubernetes-validate").arg("--strict").arg(&p).output() {
        Ok(out) => assert_ok_for(&out, &format!("kubernetes-validate rejected the Job:\n{yaml}")),
        Err(_) => crate::support::skip_or_fail(
            "kubernetes-validate is not installed (pip install kubernetes-validate); the Job's schema was not validated",
        ),
    }
    // A non-UTF-8 argument is refused, naming it.
    run.command.push(Arg(vec![0xff]));
    let err = k8s::render(&run, &crate::k8s::pinned_options()).unwrap_err();
    assert!(err.to_string().contains("argument 2"), "{err}");
}

#[test]
fn slurm_with_the_podman_runtime_runs_the_engine_plan() {
    let mut run = base_run(vec![
        Arg::from("python"),
        Arg::from("a b"),
        Arg::from("it's"),
    ]);
    run.env.insert("SEED".into(), "7 $(x)".into());
    run.exec.engine_args = vec![
        "--cap-add".into(),
        "A".into(),
        "--cap-add".into(),
        "B".into(),
    ];
    let opts = slurm::SlurmOptions {
        runtime: slurm::Runtime::Podman,
        ..Default::default()
    };
    let script = slurm::render(&run, &opts).unwrap();
    assert!(
        script.starts_with("#!/usr/bin/env bash\n#SBATCH"),
        "{script}"
    );
    assert!(!script.contains("apptainer exec"), "{script}");
    shellcheck(&script);
    let ex = execute(&script, &[]);
    assert_eq!(ex.status, 0, "script failed: {}", ex.stderr);
    let pinned = format!("{REPO}@{DIGEST}");
    assert_eq!(after(&ex.argv, pinned.as_bytes()), bytes_of(&run.command));
    let flags: Vec<&[u8]> = ex.argv.iter().map(Vec::as_slice).collect();
    assert!(
        flags
            .windows(4)
            .any(|w| w == [&b"--cap-add"[..], b"A", b"--cap-add", b"B"]),
        "engine flag repeats must survive"
    );
    assert!(ex.env.contains(&b"SEED=7 $(x)".to_vec()));
}
