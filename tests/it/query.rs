//! `repro ls` filters, sorts and formats; `show --format`; annotations never touch provenance.
//! Runs are inserted through the library so images, digests and datasets vary.

use std::collections::BTreeMap;

use repro::record::*;
use repro::store::Store;
use serde_json::Value;
use sha2::Digest as _;

use crate::support::TestEnv;

/// The fixed clock of these tests.
pub const NOW: &str = "2026-11-26T14:00:00Z";

pub fn sha(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn base(id: &str, name: Option<&str>, started: &str) -> Run {
    Run {
        schema_version: SCHEMA_VERSION,
        id: id.into(),
        name: name.map(Into::into),
        status: Status::Succeeded,
        exit_code: Some(0),
        signal: None,
        started_at: started.into(),
        ended_at: Some(started.replace(":00.000Z", ":10.000Z")),
        duration_ms: Some(10_000),
        command: vec![Arg::from("python"), Arg::from("train.py")],
        cwd: "experiments".into(),
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
        params: BTreeMap::new(),
        tags: vec![],
        notes: vec![],
        env: BTreeMap::new(),
        host: "laptop".into(),
        user: "alice".into(),
        platform: "linux/amd64".into(),
        pid: None,
        boot_id: None,
        pid_start: None,
        pid_ns: None,
        rerun_of: None,
        scheduler: None,
    }
}

fn image(reference: &str, digest: char, index: Option<char>) -> Option<Image> {
    Some(Image {
        reference: reference.into(),
        digest: Some(sha(digest)),
        index_digest: index.map(sha),
        platform: Some("linux/amd64".into()),
        resolved_by: ResolvedBy::Registry,
        labels: BTreeMap::new(),
    })
}

fn code(commit: char, branch: &str, patch: Option<&str>) -> Option<Code> {
    Some(Code {
        repo_root: "/src/trainer".into(),
        remote: Some("https://git.example.com/team/trainer.git".into()),
        commit: Some(commit.to_string().repeat(40)),
        branch: Some(branch.into()),
        dirty: patch.is_some(),
        untracked: vec![],
        patch_sha256: patch.map(|p| hex::encode(sha2::Sha256::digest(p.as_bytes()))),
        patch: patch.map(Arg::from),
    })
}

fn uri(name: &str, u: &str, version: &str) -> Dataset {
    Dataset {
        name: name.into(),
        kind: DatasetKind::Uri,
        uri: Some(u.into()),
        version: Some(version.into()),
        digest: None,
        files: None,
        bytes: None,
    }
}

/// The six runs every test here starts from, oldest first, by label.
pub fn fixture_runs() -> Vec<(&'static str, Run)> {
    // A `running` row on this host from another boot: shown (and filtered) as lost.
    let mut lost = base(
        "01j6x0000000000000000000a5",
        Some("crashed"),
        "2026-09-01T00:00:00.000Z",
    );
    lost.status = Status::Running;
    lost.exit_code = None;
    lost.ended_at = None;
    lost.duration_ms = None;
    lost.host = repro::capture::host::hostname();
    lost.pid = Some(1);
    lost.boot_id = Some("not-this-boot".into());

    let mut plain = base(
        "01j8z0000000000000000000a4",
        None,
        "2026-10-01T00:00:00.000Z",
    );
    plain.command = vec![Arg::from("make"), Arg::from("all")];

    let mut baseline = base(
        "01jd00000000000000000000a1",
        Some("baseline"),
        "2026-11-20T10:00:00.000Z",
    );
    baseline.image = image("registry.example.com/team/trainer:2.3.1", 'a', None);
    baseline.code = code('1', "main", Some("diff --git a/x b/x\n+dirty\n"));
    baseline.datasets = vec![uri("imagenet", "s3://corp/imagenet", "v3")];
    baseline.params.insert("lr".into(), "0.1".into());
    baseline.tags = vec!["nightly".into()];
    baseline.host = "gpu-1".into();
    baseline.duration_ms = Some(3_600_000);
    baseline.exec = Exec {
        mode: ExecMode::Container,
        engine: Some("docker".into()),
        workdir: Some("/workspace".into()),
        engine_args: vec![],
        gpus: Some("all".into()),
        registry: None,
    };

    let mut sweep2 = base(
        "01jdt0000000000000000000a2",
        Some("sweep-lr-0.2"),
        "2026-11-25T09:00:00.000Z",
    );
    sweep2.image = image("registry.example.com/team/trainer:2.3.2", 'b', Some('c'));
    sweep2.code = code('2', "exp", None);
    sweep2.datasets = vec![
        uri("imagenet", "s3://corp/imagenet", "v4"),
        Dataset {
            name: "val".into(),
            kind: DatasetKind::Path,
            uri: Some("data/val".into()),
            version: Some(sha('d')),
            digest: Some(sha('d')),
            files: Some(3),
            bytes: Some(1234),
        },
    ];
    sweep2.params.insert("lr".into(), "0.2".into());
    sweep2.tags = vec!["sweep".into()];
    sweep2.host = "gpu-2".into();
    sweep2.status = Status::Failed;
    sweep2.exit_code = Some(1);
    sweep2.duration_ms = Some(120_000);
    sweep2.command = vec![
        Arg::from("python"),
        Arg::from("train.py"),
        Arg::from("--lr"),
        Arg::from("0.2"),
    ];

    let mut sweep3 = sweep2.clone();
    sweep3.id = "01jdv0000000000000000000a3".into();
    sweep3.name = Some("sweep-lr-0.3".into());
    sweep3.started_at = "2026-11-26T08:00:00.000Z".into();
    sweep3.ended_at = Some("2026-11-26T08:00:05.000Z".into());
    sweep3.status = Status::Killed;
    sweep3.exit_code = None;
    sweep3.signal = Some(9);
    sweep3.duration_ms = Some(5_000);
    sweep3.params.insert("lr".into(), "0.3".into());
    sweep3.command[3] = Arg::from("0.3");
    sweep3.rerun_of = Some(sweep2.id.clone());

    let mut eval = base(
        "01jdw0000000000000000000a6",
        Some("eval, \"final\""),
        "2026-11-26T12:00:00.000Z",
    );
    eval.image = image("ghcr.io/acme/eval:1.0", 'e', None);
    eval.image
        .as_mut()
        .unwrap()
        .labels
        .insert("org.opencontainers.image.revision".into(), "f".repeat(40));
    eval.code = code('1', "main", None);
    eval.tags = vec!["nightly".into(), "release".into()];
    eval.host = "gpu-1".into();

    vec![
        ("lost", lost),
        ("plain", plain),
        ("baseline", baseline),
        ("sweep2", sweep2),
        ("sweep3", sweep3),
        ("eval", eval),
    ]
}

/// A test environment holding the fixture runs.
pub fn seeded() -> (TestEnv, Vec<(&'static str, Run)>) {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.db().parent().unwrap()).unwrap();
    let runs = fixture_runs();
    let mut store = Store::open(&env.db()).unwrap();
    for (_, r) in &runs {
        store.insert_run(r).unwrap();
    }
    (env, runs)
}

/// `repro ARGS` at the fixed clock; (code, stdout, stderr).
pub fn at_now(env: &TestEnv, args: &[&str]) -> (i32, String, String) {
    let out = env
        .repro()
        .env("REPRO_NOW", NOW)
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The fixture labels `ls ARGS` lists, in order.
fn labels(env: &TestEnv, runs: &[(&'static str, Run)], args: &[&str]) -> Vec<&'static str> {
    let mut full = vec!["ls", "--format", "csv", "--columns", "id"];
    full.extend_from_slice(args);
    let (code, out, err) = at_now(env, &full);
    assert_eq!(code, 0, "ls {args:?}: {err}");
    out.lines()
        .skip(1)
        .map(|id| {
            runs.iter()
                .find(|(_, r)| r.id == id)
                .unwrap_or_else(|| panic!("unknown id {id}"))
                .0
        })
        .collect()
}

#[test]
fn every_filter_selects_exactly_its_runs() {
    let (env, runs) = seeded();
    let l = |args: &[&str]| labels(&env, &runs, args);
    assert_eq!(
        l(&[]),
        vec!["eval", "sweep3", "sweep2", "baseline", "plain", "lost"]
    );
    assert_eq!(
        l(&["--image", "team/trainer"]),
        vec!["sweep3", "sweep2", "baseline"]
    );
    assert_eq!(l(&["--image", "trainer:2.3.1"]), vec!["baseline"]);
    // case-insensitive, like the registry host part of a reference
    assert_eq!(
        l(&["--image", "TEAM/Trainer"]),
        vec!["sweep3", "sweep2", "baseline"]
    );
    assert_eq!(l(&["--image", "%"]), Vec::<&str>::new());
    // digest prefix: the platform digest, or the index digest; with or without sha256:
    assert_eq!(l(&["--digest", "aaaa"]), vec!["baseline"]);
    assert_eq!(l(&["--digest", "sha256:bbbb"]), vec!["sweep3", "sweep2"]);
    assert_eq!(l(&["--digest", "cccc"]), vec!["sweep3", "sweep2"]);
    assert_eq!(l(&["--code", "1111"]), vec!["eval", "baseline"]);
    assert_eq!(l(&["--code", "2222", "--status", "failed"]), vec!["sweep2"]);
    assert_eq!(l(&["--branch", "exp"]), vec!["sweep3", "sweep2"]);
    assert_eq!(
        l(&["--dataset", "imagenet"]),
        vec!["sweep3", "sweep2", "baseline"]
    );
    assert_eq!(l(&["--dataset", "imagenet@v3"]), vec!["baseline"]);
    let val = format!("val@{}", "sha256:".to_string() + &"d".repeat(64));
    assert_eq!(l(&["--dataset", &val]), vec!["sweep3", "sweep2"]);
    assert_eq!(l(&["--status", "failed"]), vec!["sweep2"]);
    assert_eq!(l(&["--status", "killed,failed"]), vec!["sweep3", "sweep2"]);
    assert_eq!(l(&["--status", "lost"]), vec!["lost"]);
    assert_eq!(l(&["--status", "running"]), Vec::<&str>::new());
    assert_eq!(l(&["--since", "1d"]), vec!["eval", "sweep3"]);
    assert_eq!(l(&["--since", "2d"]), vec!["eval", "sweep3", "sweep2"]);
    assert_eq!(l(&["--since", "6h"]), vec!["eval", "sweep3"]);
    assert_eq!(l(&["--since", "90m"]), Vec::<&str>::new());
    assert_eq!(l(&["--since", "3h"]), vec!["eval"]);
    assert_eq!(l(&["--until", "30d"]), vec!["plain", "lost"]);
    assert_eq!(
        l(&[
            "--since",
            "2026-10-01",
            "--until",
            "2026-11-21T00:00:00+00:00"
        ]),
        vec!["baseline", "plain"]
    );
    assert_eq!(l(&["--param", "lr=0.2"]), vec!["sweep2"]);
    assert_eq!(
        l(&["--param", "lr=0.1", "--param", "lr=0.2"]),
        Vec::<&str>::new()
    );
    assert_eq!(l(&["--tag", "nightly"]), vec!["eval", "baseline"]);
    assert_eq!(l(&["--tag", "nightly", "--tag", "release"]), vec!["eval"]);
    assert_eq!(l(&["--name", "sweep-*"]), vec!["sweep3", "sweep2"]);
    assert_eq!(l(&["--name", "sweep-lr-0.?"]), vec!["sweep3", "sweep2"]);
    assert_eq!(l(&["--host", "gpu-1"]), vec!["eval", "baseline"]);
    assert_eq!(l(&["--rerun-of", "01jdt"]), vec!["sweep3"]);
    assert_eq!(
        l(&["--no-reruns"]),
        vec!["eval", "sweep2", "baseline", "plain", "lost"],
        "every run but the re-run"
    );
    let (code, _, err) = at_now(&env, &["ls", "--no-reruns", "--rerun-of", "01jdt"]);
    assert_eq!(code, 2, "{err}");
    // filters combine with AND
    assert_eq!(
        l(&["--tag", "nightly", "--host", "gpu-1", "--code", "11", "--since", "7d"]),
        vec!["eval", "baseline"]
    );
    assert_eq!(
        l(&["--tag", "nightly", "--image", "eval", "--status", "failed"]),
        Vec::<&str>::new()
    );
}

#[test]
fn sort_reverse_limit_and_all() {
    let (env, runs) = seeded();
    let l = |args: &[&str]| labels(&env, &runs, args);
    assert_eq!(
        l(&["--reverse"]),
        vec!["lost", "plain", "baseline", "sweep2", "sweep3", "eval"]
    );
    assert_eq!(l(&["--limit", "2"]), vec!["eval", "sweep3"]);
    assert_eq!(l(&["--limit", "2", "--reverse"]), vec!["lost", "plain"]);
    assert_eq!(l(&["--all"]).len(), 6);
    // longest first; the unfinished run last
    assert_eq!(
        l(&["--sort", "duration"]),
        vec!["baseline", "sweep2", "eval", "plain", "sweep3", "lost"]
    );
    // unnamed last, alphabetical
    assert_eq!(
        l(&["--sort", "name"]),
        vec!["baseline", "lost", "eval", "sweep2", "sweep3", "plain"]
    );
    assert_eq!(
        l(&[
            "--sort",
            "host",
            "--status",
            "succeeded,failed,killed",
            "--limit",
            "3"
        ]),
        vec!["eval", "baseline", "sweep3"]
    );
    assert_eq!(
        l(&["--sort", "status"]),
        vec!["sweep2", "sweep3", "lost", "eval", "baseline", "plain"]
    );
    assert_eq!(
        l(&["--sort", "image", "--limit", "2"]),
        vec!["eval", "baseline"]
    );
    let more: Vec<String> = (0..25)
        .map(|i| format!("01jdx00000000000000000{i:04}"))
        .collect();
    let mut store = Store::open(&env.db()).unwrap();
    for id in &more {
        let mut r = runs[1].1.clone();
        r.id = id.clone();
        store.insert_run(&r).unwrap();
    }
    let (_, out, err) = at_now(&env, &["ls", "--format", "csv", "--columns", "id"]);
    assert_eq!(out.lines().count(), 1 + 20, "default limit is 20");
    // A cut list says so on stderr (issue 25 item 5), never on stdout.
    assert!(err.contains("20 of 31 shown (--limit N, --all)"), "{err}");
    let (_, out, err) = at_now(&env, &["ls", "--format", "csv", "--columns", "id", "--all"]);
    assert_eq!(out.lines().count(), 1 + 31);
    assert!(!err.contains("shown"), "nothing cut: {err}");
    let (_, _, err) = at_now(&env, &["ls", "--limit", "31"]);
    assert!(!err.contains("shown"), "exactly the limit: {err}");
    let (_, _, err) = at_now(&env, &["-q", "ls", "--limit", "5"]);
    assert!(!err.contains("shown"), "-q: {err}");
    // `running` is decided per row (a dead wrapper reads `lost`): the note cannot count them.
    let (_, _, err) = at_now(&env, &["ls", "--limit", "1", "--status", "succeeded,lost"]);
    assert!(
        err.contains("the first 1 shown; more match (--limit N, --all)"),
        "{err}"
    );
}

#[test]
fn bad_filter_values_are_usage_errors() {
    let (env, _) = seeded();
    for (args, needle) in [
        (vec!["ls", "--status", "done"], "unknown status 'done'"),
        (
            vec!["ls", "--since", "yesterday"],
            "--since: 'yesterday' is not a time",
        ),
        (vec!["ls", "--until", "7y"], "--until: '7y' is not a time"),
        (vec!["ls", "--columns", "id,nope"], "unknown column 'nope'"),
        (vec!["ls", "--sort", "size"], "cannot sort by 'size'"),
        (
            vec!["ls", "--digest", "sha256:xyz"],
            "is not a digest prefix",
        ),
        (vec!["ls", "--param", "lr"], "'lr' is not KEY=VALUE"),
        (vec!["ls", "--all", "--limit", "3"], "cannot be used with"),
        (
            vec!["ls", "--json", "--format", "csv"],
            "cannot be used with",
        ),
    ] {
        let (code, out, err) = at_now(&env, &args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(out.is_empty());
    }
    let (code, _, err) = at_now(&env, &["ls", "--rerun-of", "01zzzz"]);
    assert_eq!(code, 1);
    assert!(err.contains("no run matches id '01zzzz'"), "{err}");
}

#[test]
fn table_snapshot() {
    let (env, _) = seeded();
    let (code, out, err) = at_now(&env, &["--utc", "ls"]);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("ls_table", out);
    let (_, out, _) = at_now(
        &env,
        &[
            "--utc",
            "ls",
            "--columns",
            "id,status,digest,branch,datasets,params,tags,exit,rerun_of",
            "--tag",
            "sweep",
        ],
    );
    insta::assert_snapshot!("ls_table_columns", out);
}

#[test]
fn csv_snapshot_quotes_and_keeps_full_values() {
    let (env, _) = seeded();
    let all = "id,name,status,started,ended,duration,image,digest,code,branch,datasets,params,tags,command,host,user,exit,rerun_of";
    let (code, out, err) = at_now(
        &env,
        &["ls", "--format", "csv", "--columns", all, "--host", "gpu-1"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"eval, \"\"final\"\"\""));
    assert!(out.ends_with("\r\n"));
    insta::assert_snapshot!("ls_csv", out.replace("\r\n", "\n"));
}

#[test]
fn json_and_jsonl_carry_the_same_run_objects() {
    let (env, runs) = seeded();
    let args = ["ls", "--status", "succeeded,failed,killed"];
    let (code, json, err) = at_now(&env, &[&args[..], &["--json"]].concat());
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["schema_version"], 1);
    insta::assert_json_snapshot!("ls_json", doc);
    let (_, json2, _) = at_now(&env, &[&args[..], &["--format", "json"]].concat());
    assert_eq!(json, json2, "--json is --format json");
    let (_, lines, _) = at_now(&env, &[&args[..], &["--format", "jsonl"]].concat());
    let parsed: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(&parsed, doc["runs"].as_array().unwrap());
    // each object is what `show --json` prints
    let sweep2 = &runs.iter().find(|(l, _)| *l == "sweep2").unwrap().1;
    let shown: Value =
        serde_json::from_str(&at_now(&env, &["show", &sweep2.id, "--json"]).1).unwrap();
    assert_eq!(shown["metrics"], serde_json::json!({}));
    assert!(parsed.contains(&shown));
    // the lost row is reported as lost, in JSON too
    let (_, lost, _) = at_now(&env, &["ls", "--status", "lost", "--format", "jsonl"]);
    let lost: Value = serde_json::from_str(lost.trim()).unwrap();
    assert_eq!(lost["status"], "lost");
}

#[test]
fn show_notes_and_markdown() {
    let (env, runs) = seeded();
    let id = |label: &str| runs.iter().find(|(l, _)| *l == label).unwrap().1.id.clone();
    let (code, notes, err) = at_now(&env, &["show", &id("sweep2"), "--format", "notes"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(notes.lines().count(), 1);
    insta::assert_snapshot!("show_notes", notes);
    let (_, notes, _) = at_now(&env, &["show", &id("plain"), "--format", "notes"]);
    insta::assert_snapshot!("show_notes_no_image", notes);
    let (_, md, _) = at_now(
        &env,
        &["--utc", "show", &id("baseline"), "--format", "markdown"],
    );
    insta::assert_snapshot!("show_markdown", md);
    let (j1, j2) = (
        at_now(&env, &["show", &id("baseline"), "--json"]).1,
        at_now(&env, &["show", &id("baseline"), "--format", "json"]).1,
    );
    assert_eq!(j1, j2);
}

fn provenance_row(env: &TestEnv, id: &str) -> Vec<String> {
    let c = rusqlite::Connection::open(env.db()).unwrap();
    let mut st = c.prepare("SELECT * FROM runs WHERE id = ?1").unwrap();
    let n = st.column_count();
    st.query_row([id], |r| {
        Ok((0..n)
            .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
            .collect())
    })
    .unwrap()
}

fn without_annotations(show_json: &str) -> String {
    let mut v: Value = serde_json::from_str(show_json).unwrap();
    for k in ["params", "tags", "notes"] {
        v.as_object_mut().unwrap().remove(k);
    }
    serde_json::to_string_pretty(&v).unwrap()
}

#[test]
fn annotations_never_change_provenance() {
    let (env, runs) = seeded();
    let id = runs
        .iter()
        .find(|(l, _)| *l == "baseline")
        .unwrap()
        .1
        .id
        .clone();
    let before_json = at_now(&env, &["show", &id, "--json"]).1;
    let before_row = provenance_row(&env, &id);

    let (code, out, err) = at_now(&env, &["tag", &id[..8], "+best", "-nightly", "prod"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "best\nprod\n");
    let (code, _, err) = at_now(&env, &["note", &id, "converged", "at", "epoch 40"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = at_now(&env, &["param", &id, "lr=0.05", "seed=7"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = at_now(&env, &["param", &id, "--unset", "seed"]);
    assert_eq!(code, 0, "{err}");

    let after_json = at_now(&env, &["show", &id, "--json"]).1;
    let after: Value = serde_json::from_str(&after_json).unwrap();
    assert_eq!(after["tags"], serde_json::json!(["best", "prod"]));
    assert_eq!(after["notes"], serde_json::json!(["converged at epoch 40"]));
    assert_eq!(after["params"], serde_json::json!({"lr": "0.05"}));
    assert_ne!(before_json, after_json);
    assert_eq!(
        without_annotations(&before_json),
        without_annotations(&after_json)
    );
    assert_eq!(
        before_row,
        provenance_row(&env, &id),
        "the runs row is untouched"
    );
    assert_eq!(
        labels(&env, &runs, &["--tag", "best", "--param", "lr=0.05"]),
        vec!["baseline"]
    );

    // bad annotations: usage errors, nothing written
    for args in [
        vec!["tag", &id, "+two words"],
        vec!["tag", &id, "+"],
        vec!["param", &id, "novalue"],
        vec!["param", &id],
        vec!["note", &id, " "],
    ] {
        let (code, _, err) = at_now(&env, &args);
        assert_eq!(code, 2, "{args:?}: {err}");
    }
    let (code, _, err) = at_now(&env, &["tag", "01zzzz", "+x"]);
    assert_eq!(code, 1);
    assert!(err.contains("no run matches"), "{err}");
    assert_eq!(after_json, at_now(&env, &["show", &id, "--json"]).1);
}

#[test]
fn filters_work_on_databases_upgraded_from_every_earlier_schema() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut checked = 0;
    for entry in std::fs::read_dir(&fixtures).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("schema-v") && name.ends_with(".db")) {
            continue;
        }
        let env = TestEnv::new();
        std::fs::create_dir_all(env.db().parent().unwrap()).unwrap();
        std::fs::copy(&path, env.db()).unwrap();
        let ls = |args: &[&str]| -> Vec<String> {
            let mut full = vec!["ls", "--all", "--format", "csv", "--columns", "name"];
            full.extend_from_slice(args);
            let (code, out, err) = at_now(&env, &full);
            assert_eq!(code, 0, "{name} {args:?}: {err}");
            out.lines().skip(1).map(String::from).collect()
        };
        // Every filter's index and the image reference table exist after the upgrade.
        assert!(ls(&["--image", "anything"]).is_empty(), "{name}");
        assert_eq!(
            ls(&["--host", "vm", "--status", "succeeded,failed"]).len(),
            2,
            "{name}"
        );
        assert_eq!(
            ls(&["--host", "vm", "--status", "failed"]),
            vec!["fixture-b"],
            "{name}"
        );
        assert_eq!(ls(&["--tag", "old"]).len(), 1, "{name}");
        assert_eq!(
            ls(&["--dataset", "imagenet@v3", "--param", "lr=0.1"]),
            vec!["fixture-a"],
            "{name}"
        );
        // and new runs with an image are found by substring
        let mut r = fixture_runs().remove(2).1;
        r.id = "01jdz00000000000000000000d".into();
        Store::open(&env.db()).unwrap().insert_run(&r).unwrap();
        assert_eq!(ls(&["--image", "team/trainer"]), vec!["baseline"], "{name}");
        checked += 1;
    }
    assert!(
        checked >= 2,
        "schema fixtures missing in {}",
        fixtures.display()
    );
}

#[test]
fn version_two_databases_that_already_have_the_query_indexes_upgrade() {
    // main briefly shipped the query indexes inside migration 2; such databases must still open.
    // Rebuild one: the version-2 fixture with migration 3's statements applied, still at version 2.
    let env = TestEnv::new();
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema-v2.db");
    std::fs::create_dir_all(env.db().parent().unwrap()).unwrap();
    std::fs::copy(&fixture, env.db()).unwrap();
    let runs_before: i64 = {
        let c = rusqlite::Connection::open(env.db()).unwrap();
        let m3 = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/0003.sql"),
        )
        .unwrap();
        c.execute_batch(&m3).unwrap();
        c.execute_batch("PRAGMA user_version = 2").unwrap();
        c.query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
            .unwrap()
    };
    let (code, out, err) = at_now(
        &env,
        &["ls", "--all", "--format", "csv", "--columns", "name"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count() as i64, 1 + runs_before, "{out}");
    let version: i64 = rusqlite::Connection::open(env.db())
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, repro::store::latest_version());
}

/// The fixture with metrics: eval acc .95 loss .2, sweep3 acc .91 loss .6, sweep2 acc .5 then
/// .8, baseline acc NaN, lost acc .92 (and inf loss), plain none.
pub fn seeded_with_metrics() -> (TestEnv, Vec<(&'static str, Run)>) {
    use repro::record::metrics::MetricPoint;
    let (env, runs) = seeded();
    let mut store = Store::open(&env.db()).unwrap();
    let pt = |key: &str, step: i64, value: f64| MetricPoint {
        key: key.into(),
        step: Some(step),
        value,
        time: None,
    };
    let id = |label: &str| runs.iter().find(|(l, _)| *l == label).unwrap().1.id.clone();
    for (label, points) in [
        ("eval", vec![pt("acc", 1, 0.95), pt("loss", 1, 0.2)]),
        ("sweep3", vec![pt("acc", 1, 0.91), pt("loss", 1, 0.6)]),
        ("sweep2", vec![pt("acc", 1, 0.5), pt("acc", 2, 0.8)]),
        ("baseline", vec![pt("acc", 1, f64::NAN)]),
        (
            "lost",
            vec![pt("acc", 1, 0.92), pt("loss", 1, f64::INFINITY)],
        ),
    ] {
        store.insert_metrics(&id(label), &points).unwrap();
    }
    (env, runs)
}

/// `ls --where 'metric:…'`: each operator and statistic, several conditions AND-ed, combined
/// with the other filters and with a metric sort.
#[test]
fn where_filters_runs_by_their_metrics() {
    let (env, runs) = seeded_with_metrics();
    let l = |args: &[&str]| labels(&env, &runs, args);
    assert_eq!(
        l(&["--where", "metric:acc>=0.9"]),
        vec!["eval", "sweep3", "lost"]
    );
    assert_eq!(l(&["--where", "metric:acc>0.95"]), Vec::<&str>::new());
    assert_eq!(l(&["--where", "metric:acc > 0.92"]), vec!["eval"]);
    assert_eq!(l(&["--where", "metric:acc<0.91"]), vec!["sweep2"]);
    assert_eq!(
        l(&["--where", "metric:acc<=0.91"]),
        vec!["sweep3", "sweep2"]
    );
    assert_eq!(l(&["--where", "metric:acc=0.8"]), vec!["sweep2"]);
    // NaN is unequal to every number; a run without the metric never matches.
    assert_eq!(
        l(&["--where", "metric:acc!=0.8"]),
        vec!["eval", "sweep3", "baseline", "lost"]
    );
    assert_eq!(l(&["--where", "metric:acc:min<0.6"]), vec!["sweep2"]);
    assert_eq!(l(&["--where", "metric:acc:max>=0.95"]), vec!["eval"]);
    assert_eq!(l(&["--where", "metric:acc:count=2"]), vec!["sweep2"]);
    assert_eq!(l(&["--where", "metric:loss>=inf"]), vec!["lost"]);
    // Several --where combine with AND, and with the other filters.
    assert_eq!(
        l(&["--where", "metric:acc>=0.9", "--where", "metric:loss<0.5"]),
        vec!["eval"]
    );
    assert_eq!(
        l(&["--where", "metric:acc>=0.9", "--status", "lost"]),
        vec!["lost"]
    );
    assert_eq!(
        l(&["--where", "metric:acc>=0.9", "--name", "sweep*"]),
        vec!["sweep3"]
    );
    assert_eq!(
        l(&["--where", "metric:acc>=0.9", "--image", "team/trainer"]),
        vec!["sweep3"]
    );
    assert_eq!(
        l(&["--where", "metric:acc>=0.9", "--limit", "1"]),
        vec!["eval"]
    );
    // With a metric sort: filtered, then best first.
    assert_eq!(
        l(&["--sort", "metric:acc", "--where", "metric:acc<0.95"]),
        vec!["lost", "sweep3", "sweep2"]
    );
    assert_eq!(
        l(&[
            "--sort",
            "metric:acc",
            "--where",
            "metric:loss<1",
            "--limit",
            "1"
        ]),
        vec!["eval"]
    );
    // export takes the same filter.
    let (code, out, err) = at_now(&env, &["export", "--where", "metric:acc>=0.9"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 3);
}

/// The status post-filter (`lost` is decided when reading) applies before `--limit` with a
/// metric sort: the best `lost` run is found even when better runs of other statuses exist.
#[test]
fn metric_sort_with_a_limit_keeps_the_status_filter() {
    let (env, runs) = seeded_with_metrics();
    let l = |args: &[&str]| labels(&env, &runs, args);
    assert_eq!(l(&["--sort", "metric:acc"])[..2], ["eval", "lost"]);
    assert_eq!(
        l(&["--sort", "metric:acc", "--status", "lost", "--limit", "1"]),
        vec!["lost"]
    );
    assert_eq!(
        l(&[
            "--sort",
            "metric:acc",
            "--status",
            "running",
            "--limit",
            "1"
        ]),
        Vec::<&str>::new()
    );
}

/// Bad metric expressions are usage errors (exit 2) naming the expression and the fix, in
/// --where, --sort and --columns alike.
#[test]
fn bad_metric_expressions_are_usage_errors() {
    let (env, _) = seeded_with_metrics();
    for (args, says) in [
        (vec!["--where", "metric:acc>>1"], "'>1' is not a number"),
        (vec!["--where", "metric:>1"], "names no metric"),
        (
            vec!["--where", "metric:acc>=high"],
            "'high' is not a number",
        ),
        (vec!["--where", "metric:acc>=nan"], "'nan' is not a number"),
        (vec!["--where", "metric:acc"], "has no comparison"),
        (vec!["--where", "acc>=0.9"], "must start with 'metric:'"),
        (
            vec!["--where", "metric:acc:median>=0.9"],
            "unknown statistic ':median' (use :last, :min, :max or :count)",
        ),
        (
            vec!["--sort", "metric:acc:median"],
            "unknown statistic ':median' (use :last, :min, :max or :count)",
        ),
        (
            vec!["--columns", "id,metric:acc:median"],
            "unknown statistic ':median'",
        ),
        (vec!["--columns", "id,metric:"], "names no metric"),
    ] {
        let mut full = vec!["ls"];
        full.extend_from_slice(&args);
        let (code, out, err) = at_now(&env, &full);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(err.to_lowercase().contains("hint"), "{args:?}: {err}");
    }
}

/// `--columns …,metric:KEY` in the table and CSV (NaN and inf as such, a missing metric empty
/// or `-`), and `ls --json` objects are the `show --json` objects, metrics included.
#[test]
fn metric_columns_and_json_metrics() {
    let (env, runs) = seeded_with_metrics();
    let id = |label: &str| runs.iter().find(|(l, _)| *l == label).unwrap().1.id.clone();
    let cols = "id,metric:acc,metric:loss,metric:acc:count,status";
    let (code, csv, err) = at_now(
        &env,
        &[
            "ls",
            "--format",
            "csv",
            "--columns",
            cols,
            "--sort",
            "metric:acc",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let want = format!(
        "id,metric:acc,metric:loss,metric:acc:count,status\r\n\
         {},0.95,0.2,1,succeeded\r\n\
         {},0.92,inf,1,lost\r\n\
         {},0.91,0.6,1,killed\r\n\
         {},0.8,,2,failed\r\n\
         {},NaN,,1,succeeded\r\n\
         {},,,,succeeded\r\n",
        id("eval"),
        id("lost"),
        id("sweep3"),
        id("sweep2"),
        id("baseline"),
        id("plain"),
    );
    assert_eq!(csv, want);
    let (code, table, err) = at_now(&env, &["ls", "--columns", cols, "--sort", "metric:acc"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["ID", "acc", "loss", "acc:count", "STATUS"]);
    assert_eq!(lines[1][1..4], ["0.95", "0.2", "1"]);
    assert_eq!(lines[2][1..4], ["0.92", "inf", "1"]);
    assert_eq!(lines[5][1..4], ["NaN", "-", "1"]);
    assert_eq!(lines[6][1..4], ["-", "-", "-"]);
    // JSON: every object carries its metric summary, exactly as `show --json` prints it.
    let (code, json, err) = at_now(&env, &["ls", "--json", "--columns", cols]);
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&json).unwrap();
    let listed = doc["runs"].as_array().unwrap();
    assert_eq!(listed.len(), 6);
    for (label, _) in &runs {
        let shown: Value =
            serde_json::from_str(&at_now(&env, &["show", &id(label), "--json"]).1).unwrap();
        assert!(listed.contains(&shown), "{label}: {shown}");
    }
    let lost = listed.iter().find(|r| r["id"] == id("lost")).unwrap();
    assert_eq!(lost["metrics"]["loss"]["last"], "Infinity");
    assert_eq!(lost["metrics"]["acc"]["last"], 0.92);
    let base = listed.iter().find(|r| r["id"] == id("baseline")).unwrap();
    assert_eq!(base["metrics"]["acc"]["last"], "NaN");
    let plain = listed.iter().find(|r| r["id"] == id("plain")).unwrap();
    assert_eq!(plain["metrics"], serde_json::json!({}));
    let (_, jsonl, _) = at_now(&env, &["ls", "--format", "jsonl"]);
    let parsed: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(&parsed, listed);
}

/// Issue 25 item 5: a metric key no run has, in `--sort`, `--where` or `--columns`, is a usage
/// error naming the closest recorded keys — not an empty table or start-time order, exit 0.
#[test]
fn an_unknown_metric_key_is_a_usage_error_naming_the_closest() {
    let (env, _runs) = seeded_with_metrics();
    for args in [
        vec!["ls", "--sort", "metric:acc_"],
        vec!["ls", "--where", "metric:acc_>0"],
        vec!["ls", "--columns", "id,metric:acc_"],
    ] {
        let (code, out, err) = at_now(&env, &args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{out}");
        assert!(err.contains("no run has a metric 'acc_'"), "{err}");
        assert!(err.contains("hint: did you mean metric:acc?"), "{err}");
    }
    let (code, _, err) = at_now(&env, &["ls", "--sort", "metric:throughput"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("none of the 2 recorded keys is close"),
        "{err}"
    );
    // A hostile key is escaped in the message.
    let (code, _, err) = at_now(&env, &["ls", "--sort", "metric:a\u{1b}[2J"]);
    assert_eq!(code, 2, "{err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
    // Known keys still work; a store without metrics says so.
    let (code, _, err) = at_now(&env, &["ls", "--sort", "metric:loss:min"]);
    assert_eq!(code, 0, "{err}");
    let (bare, _) = seeded();
    let (code, _, err) = at_now(&bare, &["ls", "--sort", "metric:acc"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no run has recorded metrics yet"), "{err}");
}

/// Issue 25 item 5: several sort keys. Ties of the first metric are broken by the next (`:asc`:
/// lowest first), then newest first — at the limit too (a tie cut by start time was the bug).
#[test]
fn several_sort_keys_break_ties_even_at_the_limit() {
    let env = TestEnv::new();
    let mut ids = Vec::new();
    for (name, point) in [
        ("best", r#"{"acc": 0.95, "loss": 0.5}"#),
        ("tie-a", r#"{"acc": 0.9, "loss": 0.3}"#),
        ("tie-b", r#"{"acc": 0.9, "loss": 0.1}"#),
        ("worse", r#"{"acc": 0.8, "loss": 0.05}"#),
        ("tie-c", r#"{"acc": 0.9}"#),
    ] {
        let job = format!("echo '{point}' >> \"$REPRO_METRICS\"");
        let (code, _, err) = env.run_in(
            env.root(),
            &["run", "--host", "--name", name, "--", "sh", "-c", &job],
        );
        assert_eq!(code, 0, "{err}");
        ids.push(env.last_id());
    }
    let names = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["ls", "--format", "csv", "--columns", "name"];
        a.extend_from_slice(args);
        let (code, out, err) = env.run_in(env.root(), &a);
        assert_eq!(code, 0, "{err}");
        out.lines().skip(1).map(str::to_string).collect()
    };
    assert_eq!(
        names(&["--sort", "metric:acc", "--sort", "metric:loss:asc"]),
        ["best", "tie-b", "tie-a", "tie-c", "worse"]
    );
    assert_eq!(
        names(&[
            "--sort",
            "metric:acc",
            "--sort",
            "metric:loss:asc",
            "--limit",
            "2"
        ]),
        ["best", "tie-b"],
        "the tie at the limit is broken by loss, not by start time"
    );
    assert_eq!(
        names(&["--sort", "metric:acc", "--sort", "metric:loss"]),
        ["best", "tie-a", "tie-b", "tie-c", "worse"]
    );
    // Without a second key, ties go newest first, as before.
    assert_eq!(
        names(&["--sort", "metric:acc", "--limit", "3"]),
        ["best", "tie-c", "tie-b"]
    );
    assert_eq!(
        names(&["--sort", "metric:acc:asc", "--limit", "1"]),
        ["worse"]
    );
    assert_eq!(
        names(&[
            "--sort",
            "metric:acc",
            "--sort",
            "metric:loss:asc",
            "--reverse"
        ]),
        ["worse", "tie-a", "tie-b", "tie-c", "best"]
    );
    let (code, _, err) = env.run_in(
        env.root(),
        &["ls", "--sort", "status", "--sort", "metric:acc"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot break ties of --sort status"), "{err}");
}

/// Issue 25 item 5: in a terminal of 80 or 60 columns every row of `ls` is one line — long
/// cells (the command, the image) are cut with `…`, the id and status never — and nothing
/// wraps (a run used to take 8 lines at 80 columns, 24 at 60).
#[test]
fn the_table_fits_the_terminal_without_wrapping_rows() {
    crate::support::require_tool("script");
    let (env, runs) = seeded();
    let repro = assert_cmd::cargo::cargo_bin("repro");
    for cols in [80usize, 60] {
        let cmd = format!(
            "stty cols {cols} rows 50; REPRO_NOW={NOW} '{}' ls --all",
            repro.display()
        );
        let out = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .current_dir(env.root())
            .env("REPRO_DB", env.db())
            .env("HOME", env.home())
            .env("NO_COLOR", "1")
            .env_remove("COLUMNS")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
        assert!(out.status.success(), "{text}");
        let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        for l in &lines {
            assert!(
                l.chars().count() <= cols,
                "{cols} columns: {l:?} in\n{text}"
            );
        }
        // Borders (top, under the header, bottom), the header, and one line per run.
        assert_eq!(lines.len(), 3 + 1 + runs.len(), "{cols} columns:\n{text}");
        for (_, r) in &runs {
            assert!(text.contains(&r.id[..12]), "ids are never cut:\n{text}");
        }
        assert!(text.contains('…'), "something was cut at {cols}:\n{text}");
    }
}
