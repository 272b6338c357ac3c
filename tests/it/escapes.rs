//! Untrusted strings (image labels from a registry, values of an imported run) never reach the
//! terminal with live control characters: `show` (text, markdown, notes), `image inspect`, `diff`,
//! `ls` tables and re-run scripts' status lines escape them; JSON keeps them exact.

use serde_json::Value;

use crate::support::registry::Registry;
use crate::support::TestEnv;

/// Clears the screen, homes the cursor, rings the bell and forges a line of repro output.
const HOSTILE: &str = "fine\x1b[2J\x1b[H\x07\nrepro: verified OK\r\u{202e}txt.exe";
/// How [`HOSTILE`] must be shown.
const SHOWN: &str = "fine\\x1b[2J\\x1b[H\\x07\\nrepro: verified OK\\r\\u{202e}txt.exe";

/// Output meant for a terminal: no ESC, BEL, CR, C1 or bidi override, and no forged line.
fn assert_inert(what: &str, out: &str) {
    let bad: Vec<char> = out
        .chars()
        .filter(|&c| (c.is_control() && c != '\n') || ('\u{202a}'..='\u{202e}').contains(&c))
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: live control characters {bad:?} in:\n{out}"
    );
    assert!(
        !out.lines().any(|l| l.starts_with("repro: verified OK")),
        "{what}: a forged line:\n{out}"
    );
}

fn ok(env: &TestEnv, args: &[&str]) -> String {
    let (code, out, err) = env.run_in(env.root(), args);
    assert_eq!(code, 0, "repro {args:?}: {err}");
    out
}

/// A real image whose labels (key and value) hold ESC, BEL, CR, newline and a bidi override,
/// pushed to a real registry: `image inspect`, then a run recorded with it shown every way.
#[test]
fn image_labels_from_a_registry_are_escaped_on_the_terminal_and_exact_in_json() {
    let registry = Registry::start();
    registry.push_busybox_with_labels(
        "team/evil",
        "1.0",
        &[
            ("org.opencontainers.image.description", HOSTILE),
            ("org.opencontainers.image.revision", "abc\x1b]0;title\x07"),
        ],
    );
    registry.push_busybox_with_labels("team/plain", "1.0", &[("a", "b")]);
    let evil = registry.reference("team/evil", "1.0");
    let plain = registry.reference("team/plain", "1.0");
    let env = TestEnv::new();

    let out = ok(&env, &["image", "inspect", &evil]);
    assert_inert("image inspect", &out);
    assert!(
        out.contains(&format!("org.opencontainers.image.description={SHOWN}")),
        "{out}"
    );
    let json: Value =
        serde_json::from_str(&ok(&env, &["image", "inspect", "--json", &evil])).unwrap();
    assert!(
        json.to_string().contains("\\u001b[2J"),
        "JSON keeps the bytes: {json}"
    );

    let run = |image: &str| {
        ok(
            &env,
            &[
                "run",
                "--host",
                "--resolve",
                "registry",
                "--image",
                image,
                "--",
                "true",
            ],
        );
        env.last_id()
    };
    let a = run(&evil);
    let b = run(&plain);
    let show = ok(&env, &["show", &a]);
    assert_inert("show", &show);
    assert!(show.contains(SHOWN), "{show}");
    assert_inert(
        "show --format markdown",
        &ok(&env, &["show", &a, "--format", "markdown"]),
    );
    let diff = ok(&env, &["diff", &a, &b]);
    assert_inert("diff", &diff);
    assert!(diff.contains(SHOWN), "{diff}");
    assert_inert("ls", &ok(&env, &["ls"]));

    let v = env.show_json(&a);
    assert_eq!(
        v["image"]["labels"]["org.opencontainers.image.description"], HOSTILE,
        "JSON stays exact"
    );
    let dj: Value = serde_json::from_str(&ok(&env, &["diff", &a, &b, "--json"])).unwrap();
    assert!(dj.to_string().contains("\\u001b[2J"), "{dj}");
}

/// An imported run carrying hostile values in its name, params, datasets, notes and tags.
#[test]
fn values_of_an_imported_run_are_escaped_on_the_terminal_and_exact_in_json() {
    let src = TestEnv::new();
    ok(&src, &["run", "--host", "--", "true"]);
    ok(&src, &["run", "--host", "--", "true"]);
    let exported = ok(&src, &["export"]);
    let mut lines: Vec<Value> = exported
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let v = &mut lines[0];
    v["name"] = HOSTILE.into();
    v["params"] = serde_json::json!({ "lr": HOSTILE, "k\x1b[31m": "1" });
    v["notes"] = serde_json::json!([HOSTILE]);
    v["datasets"] = serde_json::json!([{
        "name": HOSTILE, "kind": "label", "uri": null, "version": "v1\x07",
        "digest": null, "files": null, "bytes": null
    }, {
        "name": "d", "kind": "path", "uri": "data/xy",
        "version": null, "digest": format!("sha256:{}", "ab".repeat(32)), "files": 1, "bytes": 1
    }]);
    let a = v["id"].as_str().unwrap().to_string();
    let b = lines[1]["id"].as_str().unwrap().to_string();
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let env = TestEnv::new();
    let file = env.root().join("runs.jsonl");
    std::fs::write(&file, body).unwrap();
    ok(&env, &["import", file.to_str().unwrap()]);

    let show = ok(&env, &["show", &a]);
    assert_inert("show", &show);
    assert!(show.contains(&format!("name         {SHOWN}")), "{show}");
    let md = ok(&env, &["show", &a, "--format", "markdown"]);
    assert_inert("show --format markdown", &md);
    assert!(md.contains(SHOWN), "{md}");
    assert_inert(
        "show --format notes",
        &ok(&env, &["show", &a, "--format", "notes"]),
    );
    for cols in ["id,name,params,datasets", "id,name"] {
        let t = ok(&env, &["ls", "--columns", cols]);
        assert_inert("ls", &t);
        assert!(t.contains("\\x1b[2J"), "{t}");
    }
    let diff = ok(&env, &["diff", &a, &b]);
    assert_inert("diff", &diff);
    assert!(diff.contains(SHOWN), "{diff}");

    // The re-run script's status lines print escaped text, not the bytes, when bash runs them.
    let script = ok(&env, &["script", &a]);
    for l in script.lines().filter(|l| l.starts_with("note ")) {
        assert!(
            !l.contains("$'"),
            "a status line that would print control bytes: {l}"
        );
    }
    assert!(script.contains("not content-addressed"), "{script}");
    let path = env.root().join("rerun.sh");
    std::fs::write(&path, &script).unwrap();
    let out = std::process::Command::new("bash")
        .arg(&path)
        .arg(env.root().join("work"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_inert("the script's status lines", &err);
    assert!(
        err.contains(&format!("dataset {SHOWN} (label) is not content-addressed")),
        "{err}"
    );
    // A value that reaches a status line only at run time (the dataset path in "not found").
    let missing = err
        .lines()
        .find(|l| l.contains("dataset not found"))
        .unwrap_or_else(|| panic!("the path dataset is missing: {err}"));
    assert!(missing.contains("data/xy"), "{missing}");

    let j = env.show_json(&a);
    assert_eq!(j["name"], HOSTILE);
    assert_eq!(j["params"]["lr"], HOSTILE);
    assert_eq!(j["datasets"][0]["name"], HOSTILE);
    let csv = ok(&env, &["ls", "--format", "csv", "--columns", "id,name"]);
    assert!(
        csv.contains("\x1b[2J"),
        "CSV is data and stays exact: {csv}"
    );
}
