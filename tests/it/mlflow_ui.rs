//! What a teammate sees of a pushed run in MLflow (issue 24): REST checks of each point against
//! the real MLflow server, and its web UI opened in headless Chromium (selenium).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::mlflow::{kv, server};
use crate::support::{git, skip_or_fail, TestEnv};

const DIGEST: &str = "sha256:4c5f7a0e9d8b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a19";
const REFERENCE: &str = "registry.example.com/team/trainer:2.3.1";

/// A repository with a remote and a path dataset; two runs of `train.py` that write a metric
/// point, sleep 1.2 s and write another (without `ts`), the second failing with exit code 3.
fn two_runs(env: &TestEnv) -> (PathBuf, String, String) {
    let repo = env.git_repo("app");
    git(
        &repo,
        &[
            "remote",
            "add",
            "origin",
            "https://git.example.com/team/app.git",
        ],
    );
    std::fs::create_dir_all(repo.join("data")).unwrap();
    std::fs::write(repo.join("data/train.csv"), "x,y\n1,2\n3,4\n").unwrap();
    std::fs::write(
        repo.join("train.sh"),
        "echo '{\"loss\": 1.0}' >> \"$REPRO_METRICS\"\nsleep 1.2\necho '{\"loss\": 0.5}' >> \"$REPRO_METRICS\"\necho weights > model.bin\nexit \"${1:-0}\"\n",
    )
    .unwrap();
    git(&repo, &["add", "train.sh"]);
    git(&repo, &["commit", "-q", "-m", "train"]);
    let image = format!("{REFERENCE}@{DIGEST}");
    let mut ids = Vec::new();
    for (name, code) in [("good", "0"), ("bad", "3")] {
        let (c, _, err) = env.run_in(
            &repo,
            &[
                "run",
                "--host",
                "--image",
                &image,
                "--name",
                name,
                "--tag",
                "best",
                "--dataset",
                "data",
                "--output",
                "model.bin",
                "--",
                "sh",
                "train.sh",
                code,
            ],
        );
        assert_eq!(c.to_string(), code, "{err}");
        ids.push(env.last_id());
    }
    (repo, ids[0].clone(), ids[1].clone())
}

fn push(env: &TestEnv, uri: &str, exp: &str, extra: &[&str]) {
    let mut c = env.repro();
    for (k, _) in std::env::vars() {
        if k.starts_with("MLFLOW_") {
            c.env_remove(&k);
        }
    }
    let out = c
        .env("MLFLOW_TRACKING_URI", uri)
        .current_dir(env.root())
        .args(["mlflow", "push", "--experiment", exp])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_pushed_run_looks_native_over_rest() {
    let srv = server();
    let env = TestEnv::new();
    let exp = format!("ui-rest-{}", std::process::id());
    let (_repo, good, bad) = two_runs(&env);

    // 1. Points written without `ts` keep the time repro first saw them.
    let (c, out, err) = env.run_in(env.root(), &["show", &good, "--json", "--history"]);
    assert_eq!(c, 0, "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    let times: Vec<f64> = shown["history"]["loss"]
        .as_array()
        .unwrap_or_else(|| panic!("{shown}"))
        .iter()
        .map(|p| {
            chrono::DateTime::parse_from_rfc3339(p[2].as_str().unwrap())
                .unwrap()
                .timestamp_millis() as f64
                / 1000.0
        })
        .collect();
    assert_eq!(times.len(), 2, "{shown}");
    assert!(times[1] - times[0] >= 1.0, "stored times {times:?}");

    push(&env, &srv.uri, &exp, &[]);
    let run = srv.run_by_repro_id(&exp, &good).expect("pushed");
    let mlflow_id = run["info"]["run_id"].as_str().unwrap().to_string();
    let exp_id = run["info"]["experiment_id"].as_str().unwrap().to_string();
    let h = srv.get(
        "metrics/get-history",
        &[("run_id", &mlflow_id), ("metric_key", "loss")],
    );
    let ts: Vec<i64> = h["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["timestamp"]
                .as_str()
                .map_or_else(|| m["timestamp"].as_i64().unwrap(), |s| s.parse().unwrap())
        })
        .collect();
    assert_eq!(ts.len(), 2, "{h}");
    assert!((ts[1] - ts[0]).abs() >= 1000, "pushed timestamps {ts:?}");

    // 4. Few, short tags; hand-added tags carry `true`; the image URI keeps the tag.
    let tags = kv(&run["data"]["tags"]);
    let repro: Vec<&String> = tags.keys().filter(|k| k.starts_with("repro.")).collect();
    assert!(repro.len() <= 6, "{repro:?}");
    assert!(repro.iter().all(|k| k.len() <= 12), "{repro:?}");
    assert_eq!(tags["repro.run_id"], good);
    assert_eq!(tags["repro.digest"], DIGEST);
    assert_eq!(tags["repro.ref"], REFERENCE);
    assert_eq!(tags["repro.exit"], "0");
    assert_eq!(tags["best"], "true");
    assert_eq!(
        tags["mlflow.docker.image.uri"],
        format!("{REFERENCE}@{DIGEST}")
    );
    // 6. The source is the script that ran; the remote in its own tag.
    assert_eq!(tags["mlflow.source.name"], "train.sh");
    assert_eq!(
        tags["mlflow.source.git.repoURL"],
        "https://git.example.com/team/app.git"
    );

    // 3. A Markdown description (digest once), the outcome first for a failed run, README.md.
    let note = &tags["mlflow.note.content"];
    assert!(note.starts_with("- **Image**"), "{note}");
    assert_eq!(note.matches(DIGEST).count(), 1, "{note}");
    let bad_run = srv.run_by_repro_id(&exp, &bad).unwrap();
    let bad_note = kv(&bad_run["data"]["tags"])["mlflow.note.content"].clone();
    assert!(
        bad_note.starts_with("**Failed** (exit code 3)."),
        "{bad_note}"
    );
    let readme = String::from_utf8(srv.download(&exp_id, &mlflow_id, "repro/README.md")).unwrap();
    let script = String::from_utf8(srv.download(&exp_id, &mlflow_id, "repro/rerun.sh")).unwrap();
    assert!(
        readme.contains(&format!("```bash\n{script}```")),
        "{readme}"
    );

    // 5. Datasets: 12-hex label, context `training`, digest, files and bytes in the profile.
    let inputs = run["inputs"]["dataset_inputs"].as_array().unwrap();
    let ds = &inputs[0]["dataset"];
    let full = env.show_json(&good)["datasets"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(ds["digest"].as_str().unwrap(), &full[7..19]);
    let context = kv(&inputs[0]["tags"]);
    assert_eq!(context["mlflow.data.context"], "training");
    let profile: Value = serde_json::from_str(ds["profile"].as_str().unwrap()).unwrap();
    assert_eq!(profile["digest"], full);
    assert_eq!(profile["files"], 1);
    assert_eq!(profile["bytes"], 12);

    // Another context on request (MLflow keeps a dataset input's first context: a new
    // experiment gets new runs).
    let exp2 = format!("{exp}-eval");
    push(&env, &srv.uri, &exp2, &["--dataset-context", "evaluation"]);
    let run = srv.run_by_repro_id(&exp2, &good).unwrap();
    let contexts: Vec<String> = run["inputs"]["dataset_inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| kv(&i["tags"])["mlflow.data.context"].clone())
        .collect();
    assert_eq!(contexts, ["evaluation"]);
}

#[test]
fn old_repro_tags_are_deleted_by_the_next_push() {
    let srv = server();
    let env = TestEnv::new();
    let exp = format!("ui-old-{}", std::process::id());
    let (_repo, good, _bad) = two_runs(&env);
    push(&env, &srv.uri, &exp, &[]);
    let run = srv.run_by_repro_id(&exp, &good).unwrap();
    let id = run["info"]["run_id"].as_str().unwrap().to_string();
    // What mapping 1 wrote; the ledger is lost too, so the push re-links by repro.run_id.
    srv.post(
        "runs/set-tag",
        serde_json::json!({"run_id": id, "key": "repro.image.digest", "value": DIGEST}),
    );
    let conn = rusqlite::Connection::open(env.db()).unwrap();
    conn.execute("DELETE FROM mlflow_pushes", []).unwrap();
    drop(conn);
    push(&env, &srv.uri, &exp, &[]);
    let tags = kv(&srv.run_by_repro_id(&exp, &good).unwrap()["data"]["tags"]);
    assert!(!tags.contains_key("repro.image.digest"), "{tags:?}");
    assert_eq!(tags["repro.digest"], DIGEST);
}

/// The selenium venv (`scripts/install-deps.sh` creates it): `$REPRO_TEST_SELENIUM_VENV`, else
/// `target/py-selenium`.
fn selenium_python() -> Option<PathBuf> {
    let venv = std::env::var_os("REPRO_TEST_SELENIUM_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/py-selenium"));
    let py = venv.join("bin/python");
    py.exists().then_some(py)
}

/// The browser check, run by the selenium venv's Python: opens the run's overview, its chart
/// page and the compare view, prints what it found as JSON and saves screenshots.
const BROWSER: &str = r#"
import json, sys, time, tempfile
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
uri, exp, run, other, shots = sys.argv[1:6]
o = webdriver.ChromeOptions()
for f in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--user-data-dir=" + tempfile.mkdtemp(), "--window-size=1800,1000"]:
    o.add_argument(f)
o.binary_location = "/usr/bin/chromium"
d = webdriver.Chrome(options=o, service=Service("/usr/bin/chromedriver"))
out = {}
def page(url, name, wait_for):
    d.get(url)
    text = ""
    for _ in range(60):
        time.sleep(0.5)
        text = d.find_element(By.TAG_NAME, "body").text
        if wait_for in text:
            break
    time.sleep(1.5)
    d.save_screenshot(shots + "/" + name + ".png")
    return d.find_element(By.TAG_NAME, "body").text
try:
    out["overview"] = page(f"{uri}/#/experiments/{exp}/runs/{run}", "overview", "Description")
    page(f"{uri}/#/experiments/{exp}/runs/{run}/model-metrics", "chart-step", "loss")
    # The x-axis as relative time: the global chart settings (the button after Auto-refresh).
    d.find_element(By.XPATH, "//button[contains(., 'Auto-refresh')]/following::button[1]").click()
    time.sleep(0.5)
    d.find_element(By.XPATH, "//*[@role='menuitemcheckbox'][contains(., 'Time (relative)')]").click()
    time.sleep(0.5)
    d.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    time.sleep(2)
    d.save_screenshot(shots + "/chart.png")
    out["chart"] = d.find_element(By.TAG_NAME, "body").text
    # What every chart plots (plotly): x values and the x-axis title.
    out["xs"] = d.execute_script(
        "return Array.from(document.querySelectorAll('.js-plotly-plot')).map(g => ({x: (g.data||[]).map(t => Array.from(t.x||[])), title: JSON.stringify(((g.layout||{}).xaxis||{}).title||null), type: ((g.layout||{}).xaxis||{}).type||null}))")
    out["artifacts"] = page(f"{uri}/#/experiments/{exp}/runs/{run}/artifacts", "artifacts", "repro")
    # Open the outputs/ folder: the kept output is listed in it.
    d.find_element(By.XPATH, "//*[normalize-space(text())='outputs']").click()
    for _ in range(20):
        time.sleep(0.5)
        if "model.bin" in d.find_element(By.TAG_NAME, "body").text:
            break
    d.save_screenshot(shots + "/artifacts-outputs.png")
    out["outputs"] = d.find_element(By.TAG_NAME, "body").text
    ids = json.dumps([run, other])
    out["compare"] = page(f"{uri}/#/compare-runs?runs={ids}&experiments=[\"{exp}\"]", "compare", "loss")
finally:
    d.quit()
print(json.dumps(out))
"#;

#[test]
fn the_web_ui_shows_description_digest_and_a_time_chart() {
    let Some(py) = selenium_python() else {
        skip_or_fail("the selenium venv target/py-selenium is missing");
        return;
    };
    if !Path::new("/usr/bin/chromium").exists() || !Path::new("/usr/bin/chromedriver").exists() {
        skip_or_fail("chromium and chromium-driver are not installed");
        return;
    }
    let srv = server();
    let env = TestEnv::new();
    let exp = format!("ui-web-{}", std::process::id());
    let (_repo, good, bad) = two_runs(&env);
    push(&env, &srv.uri, &exp, &[]);
    let run = srv.run_by_repro_id(&exp, &good).unwrap();
    let id = run["info"]["run_id"].as_str().unwrap().to_string();
    let exp_id = run["info"]["experiment_id"].as_str().unwrap().to_string();
    let other = srv.run_by_repro_id(&exp, &bad).unwrap()["info"]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let shots = env.root().join("shots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = std::process::Command::new(py)
        .args(["-c", BROWSER, &srv.uri, &exp_id, &id, &other])
        .arg(&shots)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    if let Some(keep) = std::env::var_os("REPRO_TEST_SCREENSHOTS") {
        for f in [
            "overview",
            "chart",
            "artifacts",
            "artifacts-outputs",
            "compare",
        ] {
            let _ = std::fs::copy(
                shots.join(format!("{f}.png")),
                Path::new(&keep).join(format!("{f}.png")),
            );
        }
    }
    let overview = seen["overview"].as_str().unwrap();
    assert!(overview.contains("Image"), "no description: {overview}");
    assert!(overview.contains(DIGEST), "digest not whole: {overview}");
    // A chart on relative time whose x-range spans the 1.2 s between the two points.
    let charts = seen["xs"].as_array().unwrap();
    let spans: Vec<f64> = charts
        .iter()
        .filter(|c| c["title"].as_str().unwrap_or("").contains("Relative Time"))
        .flat_map(|c| c["x"].as_array().cloned().unwrap_or_default())
        .map(|xs| {
            let xs: Vec<f64> = xs
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_f64)
                .collect();
            xs.iter().cloned().fold(f64::MIN, f64::max)
                - xs.iter().cloned().fold(f64::MAX, f64::min)
        })
        .collect();
    assert!(
        spans.iter().any(|s| *s >= 1.0),
        "no chart spans a second: {charts:?}"
    );
    let chart = seen["chart"].as_str().unwrap();
    assert!(chart.contains("loss"), "{chart}");
    let compare = seen["compare"].as_str().unwrap();
    assert!(
        compare.contains("good") && compare.contains("bad"),
        "{compare}"
    );
    // The kept output was uploaded under outputs/, and the Artifacts tab lists it beside repro/.
    let listed = srv.artifacts(&id, "outputs");
    assert!(!listed.is_empty(), "the server lists no outputs/ for {id}");
    let artifacts = seen["artifacts"].as_str().unwrap();
    assert!(artifacts.contains("repro"), "{artifacts}");
    assert!(artifacts.contains("outputs"), "{artifacts}");
    let opened = seen["outputs"].as_str().unwrap();
    assert!(opened.contains("model.bin"), "outputs/ opened: {opened}");
}
