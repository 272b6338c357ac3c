//! `repro ui` (issue 27): the real server started as a child, its JSON API asked over HTTP, its
//! security rules (method, Host, token) checked, and its pages driven in headless Chromium.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::support::{skip_or_fail, TestEnv};

/// `repro ui` running as a child; killed (SIGTERM) when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    /// `repro ui --listen 127.0.0.1:0 EXTRA…`, once it printed its URL.
    fn start(env: &TestEnv, extra: &[&str]) -> Server {
        let mut child = command(env)
            .args(["ui", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("http://127.0.0.1:"), "{line:?}");
        Server {
            child,
            url: line.trim().to_string(),
        }
    }

    /// The base URL without the token and trailing slash: `http://127.0.0.1:PORT`.
    fn base(&self) -> String {
        let u = self.url.split('?').next().unwrap();
        u.trim_end_matches('/').to_string()
    }

    fn get_json(&self, path: &str) -> Value {
        let resp = ureq::get(&format!("{}{path}", self.base())).call().unwrap();
        assert_eq!(resp.content_type(), "application/json");
        resp.into_json().unwrap()
    }

    /// The status of a GET that fails, with its JSON body.
    fn get_err(&self, path: &str) -> (u16, Value) {
        match ureq::get(&format!("{}{path}", self.base())).call() {
            Err(ureq::Error::Status(code, resp)) => (code, resp.into_json().unwrap()),
            other => panic!("{path}: expected an error status, got {other:?}"),
        }
    }
}

impl Server {
    /// SIGTERM, as a service manager stops it: it must exit 0.
    fn stop(mut self) -> std::process::ExitStatus {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// The `repro` binary with the test environment's settings, as a std `Command` (to spawn).
fn command(env: &TestEnv) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("repro"));
    for (k, _) in std::env::vars() {
        if k.starts_with("REPRO_") || k.starts_with("XDG_") {
            c.env_remove(&k);
        }
    }
    c.env("HOME", env.home()).env("REPRO_DB", env.db());
    c
}

/// The image of runs r1 and r2: one tag, pinned to two digests (the tag moved between them).
const IMAGE: &str = "registry.example.com/team/trainer:1.0";
const DIGESTS: [&str; 2] = [
    "sha256:1111111111111111111111111111111111111111111111111111111111111111",
    "sha256:2222222222222222222222222222222222222222222222222222222222222222",
];

/// Records a host run named `name` that reports `acc` values, with `tags`; returns its id.
fn run(env: &TestEnv, name: &str, accs: &[f64], tags: &[&str]) -> String {
    run_with(env, name, accs, tags, &[])
}

/// [`run`] with extra `repro run` options.
fn run_with(env: &TestEnv, name: &str, accs: &[f64], tags: &[&str], extra: &[&str]) -> String {
    let mut script = String::new();
    for a in accs {
        script.push_str(&format!("echo '{{\"acc\": {a}}}' >> \"$REPRO_METRICS\"\n"));
    }
    let mut args = vec!["run", "--host", "--name", name];
    args.extend(extra);
    for t in tags {
        args.extend(["--tag", t]);
    }
    args.extend(["--", "sh", "-c", &script]);
    let (code, _, err) = env.run_in(env.root(), &args);
    assert_eq!(code, 0, "{err}");
    env.last_id()
}

/// Five runs, acc 0.1 … 0.5 (the last value of each; the first run reports a curve).
fn five_runs(env: &TestEnv) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 1..=5 {
        let acc = i as f64 / 10.0;
        let accs: Vec<f64> = if i == 1 {
            vec![0.05, 0.08, acc]
        } else {
            vec![acc]
        };
        let tags: &[&str] = if i % 2 == 0 { &["even"] } else { &[] };
        let image = match i {
            1 | 2 => Some(format!("{IMAGE}@{}", DIGESTS[i - 1])),
            _ => None,
        };
        let extra: Vec<&str> = match &image {
            Some(img) => vec!["--image", img],
            None => Vec::new(),
        };
        ids.push(run_with(env, &format!("r{i}"), &accs, tags, &extra));
    }
    ids
}

fn ids_of(doc: &Value) -> Vec<String> {
    doc["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_runs_api_pages_sorts_and_filters_as_ls_does() {
    let env = TestEnv::new();
    let ids = five_runs(&env);
    let srv = Server::start(&env, &[]);

    // ls --json's objects, newest first, with the total and paging facts.
    let all = srv.get_json("/api/runs");
    assert_eq!(all["schema_version"], 1);
    assert_eq!(all["total"], 5);
    assert_eq!(all["more"], false);
    let ls = env.runs();
    assert_eq!(all["runs"].as_array().unwrap(), &ls);

    // Paging with offset.
    let p1 = srv.get_json("/api/runs?limit=2");
    let p2 = srv.get_json("/api/runs?limit=2&offset=2");
    let p3 = srv.get_json("/api/runs?limit=2&offset=4");
    assert_eq!(
        (p1["more"].clone(), p3["more"].clone()),
        (true.into(), false.into())
    );
    assert_eq!(p2["offset"], 2);
    let paged: Vec<String> = [ids_of(&p1), ids_of(&p2), ids_of(&p3)].concat();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(paged, newest_first);
    assert_eq!(p1["total"], 5);

    // Sort by a metric, both ways, and the ls flags as parameters.
    let best = srv.get_json("/api/runs?sort=metric:acc&limit=2");
    assert_eq!(ids_of(&best), vec![ids[4].clone(), ids[3].clone()]);
    let worst = srv.get_json("/api/runs?sort=metric:acc:asc&limit=1");
    assert_eq!(ids_of(&worst), vec![ids[0].clone()]);
    let even = srv.get_json("/api/runs?tag=even");
    assert_eq!(ids_of(&even), vec![ids[3].clone(), ids[1].clone()]);
    let good = srv.get_json("/api/runs?where=metric%3Aacc%3E%3D0.3&name=r*&sort=name");
    assert_eq!(
        ids_of(&good),
        vec![ids[2].clone(), ids[3].clone(), ids[4].clone()]
    );
    let named = srv.get_json("/api/runs?name=r2");
    assert_eq!(ids_of(&named), vec![ids[1].clone()]);
    assert_eq!(srv.get_json("/api/runs?status=failed")["total"], 0);

    // Bad input: a 400 naming the problem and the fix.
    let (code, body) = srv.get_err("/api/runs?sort=metric:nope");
    assert_eq!(code, 400);
    assert!(body["error"].as_str().unwrap().contains("nope"), "{body}");
    let (code, body) = srv.get_err("/api/runs?colour=red");
    assert_eq!(code, 400);
    assert!(body["hint"].as_str().unwrap().contains("status"), "{body}");
}

#[test]
fn a_run_is_show_json_and_its_script_is_repro_scripts() {
    let env = TestEnv::new();
    let ids = five_runs(&env);
    let srv = Server::start(&env, &[]);
    let id = &ids[0];
    assert_eq!(srv.get_json(&format!("/api/runs/{id}")), env.show_json(id));
    let out = env
        .repro()
        .args(["show", id, "--json", "--history"])
        .output()
        .unwrap();
    let with_history: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        srv.get_json(&format!("/api/runs/{id}?history=1")),
        with_history
    );
    // A unique prefix resolves as on the command line; an unknown id is a 404.
    assert_eq!(srv.get_json(&format!("/api/runs/{}", &id[..14]))["id"], *id);
    assert_eq!(srv.get_err("/api/runs/01zzzzzzzzzzzz").0, 404);

    let script = ureq::get(&format!("{}/api/runs/{id}/script", srv.base()))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let out = env.repro().args(["script", id]).output().unwrap();
    assert_eq!(script, String::from_utf8(out.stdout).unwrap());

    // The metric chart: an SVG drawn by the plot code.
    let resp = ureq::get(&format!("{}/api/chart.svg?run={id}&metric=acc", srv.base()))
        .call()
        .unwrap();
    assert_eq!(resp.content_type(), "image/svg+xml");
    let svg = resp.into_string().unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    assert_eq!(doc.root_element().tag_name().name(), "svg");
}

#[test]
fn chart_text_from_a_job_is_escaped() {
    let env = TestEnv::new();
    let name = "</text><script>alert(1)</script>";
    let id = run(&env, name, &[0.1, 0.2], &[]);
    let srv = Server::start(&env, &[]);
    let svg = ureq::get(&format!("{}/api/chart.svg?run={id}&metric=acc", srv.base()))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    assert!(
        !doc.descendants().any(|n| n.tag_name().name() == "script"),
        "{svg}"
    );
    assert!(
        doc.descendants()
            .any(|n| n.text().is_some_and(|t| t.contains(name))),
        "the name shows as text: {svg}"
    );
}

#[test]
fn the_images_api_gives_tags_digests_over_time_and_runs() {
    let env = TestEnv::new();
    five_runs(&env);
    let srv = Server::start(&env, &[]);
    let doc = srv.get_json("/api/images");
    let repos = doc["repositories"].as_array().unwrap();
    assert_eq!(repos.len(), 1, "{doc}");
    assert_eq!(repos[0]["name"], "registry.example.com/team/trainer");
    let tags = repos[0]["tags"].as_array().unwrap();
    assert_eq!(tags.len(), 1, "{doc}");
    assert_eq!(tags[0]["tag"], "1.0");
    assert_eq!(tags[0]["moved"], true);
    let digests: Vec<&str> = tags[0]["digests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests, DIGESTS.to_vec(), "first used first");
    assert_eq!(tags[0]["digests"][0]["runs"], 1);
}

#[test]
fn only_get_from_the_bound_host_with_safe_headers() {
    let env = TestEnv::new();
    run(&env, "one", &[0.5], &[]);
    let srv = Server::start(&env, &[]);
    let page = ureq::get(&format!("{}/", srv.base())).call().unwrap();
    let csp = page.header("Content-Security-Policy").unwrap().to_string();
    assert!(
        csp.contains("default-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(page.header("X-Content-Type-Options"), Some("nosniff"));
    let html = page.into_string().unwrap();
    assert!(html.contains("<script src=\"/assets/app.js\""), "{html}");
    assert!(!html.contains("<script>"), "no inline script: {html}");
    let js = ureq::get(&format!("{}/assets/app.js", srv.base()))
        .call()
        .unwrap();
    assert_eq!(js.content_type(), "text/javascript");

    match ureq::post(&format!("{}/api/runs", srv.base())).call() {
        Err(ureq::Error::Status(405, r)) => assert_eq!(r.header("Allow"), Some("GET, HEAD")),
        other => panic!("POST: {other:?}"),
    }
    // DNS rebinding: a page of another name that resolves to 127.0.0.1 sends its own Host.
    match ureq::get(&format!("{}/api/runs", srv.base()))
        .set("Host", "attacker.example:80")
        .call()
    {
        Err(ureq::Error::Status(403, _)) => {}
        other => panic!("foreign Host: {other:?}"),
    }
    let port = srv.base().rsplit(':').next().unwrap().to_string();
    let ok = ureq::get(&format!("{}/api/runs", srv.base()))
        .set("Host", &format!("localhost:{port}"))
        .call()
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(srv.stop().success(), "SIGTERM stops it cleanly");
}

/// The bytes of the database and its WAL.
fn db_bytes(env: &TestEnv) -> Vec<Vec<u8>> {
    let wal = env.db().with_extension("db-wal");
    [env.db(), wal]
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_default())
        .collect()
}

#[test]
fn serving_never_changes_the_database() {
    let env = TestEnv::new();
    let ids = five_runs(&env);
    // Checkpointed by an ordinary command first, so what is compared is settled.
    env.repro().args(["ls"]).output().unwrap();
    let before = db_bytes(&env);
    let srv = Server::start(&env, &[]);
    for path in [
        "/".to_string(),
        "/api/runs?sort=metric:acc".into(),
        "/api/runs?status=running,lost".into(),
        format!("/api/runs/{}?history=1", ids[0]),
        format!("/api/runs/{}/script", ids[0]),
        format!("/api/chart.svg?run={}&metric=acc", ids[0]),
        "/api/images".into(),
        "/api/metric-keys".into(),
    ] {
        ureq::get(&format!("{}{path}", srv.base())).call().unwrap();
    }
    assert!(srv.stop().success());
    assert!(db_bytes(&env) == before, "the database changed");
}

#[test]
fn off_loopback_a_token_is_required() {
    let env = TestEnv::new();
    let out = command(&env)
        .args(["ui", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without a token"), "{err}");
    assert!(err.contains("--new-token"), "{err}");
    assert!(out.stdout.is_empty());

    // With a token, even on loopback: refused without it, let in with it, then by cookie.
    let token = "s3cret-token-0123456789";
    let srv = Server::start(&env, &["--token", token]);
    assert!(
        srv.url.ends_with(&format!("/?token={token}")),
        "{}",
        srv.url
    );
    assert_eq!(srv.get_err("/api/runs").0, 401);
    assert_eq!(srv.get_err("/api/runs?token=wrong-token-0123456789").0, 401);
    let first = ureq::get(&format!("{}/?token={token}", srv.base()))
        .call()
        .unwrap();
    let cookie = first.header("Set-Cookie").unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let pair = cookie.split(';').next().unwrap();
    let api = ureq::get(&format!("{}/api/runs", srv.base()))
        .set("Cookie", pair)
        .call()
        .unwrap();
    assert_eq!(api.status(), 200);
}

/// The selenium venv: `$REPRO_TEST_SELENIUM_VENV`, else `target/py-selenium`.
fn selenium_python() -> Option<PathBuf> {
    let venv = std::env::var_os("REPRO_TEST_SELENIUM_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/py-selenium"));
    let py = venv.join("bin/python");
    py.exists().then_some(py)
}

/// What every browser session starts with: headless Chromium driven by selenium, `d` the
/// driver, `out` what the session saw (printed as JSON at the end), `wait(cond, what)`.
const SELENIUM_PRELUDE: &str = r##"
import json, sys, time, tempfile
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
o = webdriver.ChromeOptions()
for f in ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--user-data-dir=" + tempfile.mkdtemp(), "--window-size=1400,900"]:
    o.add_argument(f)
o.binary_location = "/usr/bin/chromium"
d = webdriver.Chrome(options=o, service=Service("/usr/bin/chromedriver"))
out = {}
def wait(cond, what):
    for _ in range(80):
        try:
            if cond():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise Exception("timed out waiting for " + what + "; page: " + d.find_element(By.TAG_NAME, "body").text[:500])
"##;

/// Runs a browser session (`SELENIUM_PRELUDE` then `body`, in a `try` that quits the driver)
/// with `args` as `sys.argv[1:]`; what it printed. `None` after `skip_or_fail` when selenium
/// or Chromium is missing.
fn browse(body: &str, args: &[&str]) -> Option<Value> {
    let Some(py) = selenium_python() else {
        skip_or_fail("the selenium venv target/py-selenium is missing");
        return None;
    };
    if !Path::new("/usr/bin/chromium").exists() || !Path::new("/usr/bin/chromedriver").exists() {
        skip_or_fail("chromium and chromium-driver are not installed");
        return None;
    }
    let indented: String = body.lines().map(|l| format!("    {l}\n")).collect();
    let script = format!(
        "{SELENIUM_PRELUDE}try:\n{indented}finally:\n    d.quit()\nprint(json.dumps(out))\n"
    );
    let out = Command::new(py)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    crate::support::assert_ok_for(&out, "the browser session");
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// The browser session: each step prints what it saw; an XSS payload that runs sets
/// `window.pwned` or changes the title, which every step reads.
const BROWSER: &str = r##"
from selenium.webdriver.support.ui import Select
base, evil, shots = sys.argv[1:4]
out.update({"steps": []})
def rows():
    return [r.get_attribute("data-id") for r in d.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")]
def probe(step):
    out["steps"].append({"step": step, "pwned": d.execute_script("return window.pwned || null"),
                         "title": d.title})
d.get(base + "/")
wait(lambda: len(rows()) == 6, "six runs")
probe("runs")
out["names"] = [e.text for e in d.find_elements(By.CSS_SELECTOR, "#runs-table td.name")]
out["tags_text"] = d.find_element(By.ID, "runs-table").text
d.save_screenshot(shots + "/runs.png")
# Filter by tag.
d.find_element(By.ID, "f-tag").send_keys("even")
d.find_element(By.ID, "apply").click()
wait(lambda: len(rows()) == 2, "two even runs")
out["filtered"] = rows()
out["filtered_url"] = d.current_url
# Clear the filter, sort by the metric with the column header after choosing the column.
d.get(base + "/?cols=metric:acc")
wait(lambda: len(rows()) == 6, "six runs again")
d.find_element(By.CSS_SELECTOR, "th[data-sort='metric:acc']").click()
wait(lambda: "sort=metric" in d.current_url and len(rows()) == 6, "metric order")
out["by_acc"] = rows()
probe("sorted")
# Open the best run.
d.find_element(By.CSS_SELECTOR, "#runs-table tbody tr a").click()
wait(lambda: "#!/bin/" in d.find_element(By.ID, "script").text or "bash" in d.find_element(By.ID, "script").text, "the script")
out["run_url"] = d.current_url
out["run_name"] = d.find_element(By.ID, "run-name").text
# The evil run's page.
d.get(base + "/run/" + evil)
wait(lambda: d.find_element(By.ID, "run-name").text != "", "the evil run")
wait(lambda: "bash" in d.find_element(By.ID, "script").text, "its script")
time.sleep(0.5)
out["evil_name"] = d.find_element(By.ID, "run-name").text
out["evil_body"] = d.find_element(By.TAG_NAME, "body").text
probe("evil run")
# Compare two runs (checkbox selection), then only differences.
d.get(base + "/?sort=name")
wait(lambda: len(rows()) == 6, "runs by name")
boxes = d.find_elements(By.CSS_SELECTOR, "#runs-table tbody input[type=checkbox]")
boxes[0].click(); boxes[1].click()
d.find_element(By.ID, "compare").click()
wait(lambda: d.find_elements(By.ID, "compare-table"), "the compare table")
keys = lambda: [r.get_attribute("data-key") for r in d.find_elements(By.CSS_SELECTOR, "#compare-table tr[data-key]")]
out["compare_all"] = keys()
d.find_element(By.ID, "only-diff").click()
wait(lambda: 0 < len(keys()) < len(out["compare_all"]), "only differences")
out["compare_diff"] = keys()
out["compare_url"] = d.current_url
probe("compare")
# The image's lineage: its tag moved; a digest's runs.
d.get(base + "/images")
wait(lambda: d.find_elements(By.CSS_SELECTOR, "section.repo"), "the images")
out["images"] = d.find_element(By.TAG_NAME, "main").text
d.find_element(By.CSS_SELECTOR, "section.repo td.num a").click()
wait(lambda: "digest=" in d.current_url and len(rows()) == 1, "the runs of a digest")
out["digest_runs"] = rows()
probe("images")
d.get(base + "/run/" + sys.argv[4])
wait(lambda: d.find_elements(By.CSS_SELECTOR, "img.chart"), "a chart")
wait(lambda: d.execute_script("return document.querySelector('img.chart').naturalWidth") > 0, "the chart drawn")
time.sleep(0.3)
d.save_screenshot(shots + "/run.png")
probe("chart")
"##;

#[test]
fn the_pages_in_a_real_browser_and_stored_text_never_runs() {
    let env = TestEnv::new();
    let ids = five_runs(&env);
    // A run whose name, tag and param try to run script in the page.
    let evil_name = "<img src=x onerror=\"window.pwned=1;document.title='pwned'\">";
    let evil = run(
        &env,
        evil_name,
        &[0.01],
        &["<script>window.pwned=2</script>"],
    );
    let (code, _, err) = env.run_in(
        env.root(),
        &["param", &evil, "<b>x</b>=<svg onload=window.pwned=3>"],
    );
    assert_eq!(code, 0, "{err}");
    let srv = Server::start(&env, &[]);
    let shots = env.root().join("shots");
    std::fs::create_dir_all(&shots).unwrap();
    let Some(seen) = browse(
        BROWSER,
        &[&srv.base(), &evil, &shots.display().to_string(), &ids[0]],
    ) else {
        return;
    };
    if let Some(keep) = std::env::var_os("REPRO_TEST_SCREENSHOTS") {
        for f in ["runs", "run"] {
            let _ = std::fs::copy(
                shots.join(format!("{f}.png")),
                Path::new(&keep).join(format!("ui-{f}.png")),
            );
        }
    }
    // No step saw the payload run.
    for step in seen["steps"].as_array().unwrap() {
        assert_eq!(step["pwned"], Value::Null, "{step}");
        assert_eq!(step["title"], "repro", "{step}");
    }
    // The stored text shows literally.
    assert_eq!(seen["evil_name"], evil_name);
    let names = seen["names"].as_array().unwrap();
    assert!(names.iter().any(|n| n == evil_name), "{names:?}");
    let body = seen["evil_body"].as_str().unwrap();
    assert!(body.contains("<script>window.pwned=2</script>"), "{body}");
    assert!(body.contains("<svg onload=window.pwned=3>"), "{body}");
    assert!(body.contains("<b>x</b>"), "{body}");

    // The filter: the two runs tagged even, and the view in the URL.
    let even: Vec<&str> = seen["filtered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(even, vec![ids[3].as_str(), ids[1].as_str()]);
    assert!(seen["filtered_url"].as_str().unwrap().contains("tag=even"));
    // Sorted by acc, highest first (the five runs with acc; the evil run's 0.01 last).
    let by_acc: Vec<&str> = seen["by_acc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(by_acc[0], ids[4]);
    assert_eq!(seen["run_name"], "r5");
    assert!(seen["run_url"].as_str().unwrap().ends_with(&ids[4]));
    // Compare: every row, then only those that differ (the names do, the host does not).
    let all = seen["compare_all"].as_array().unwrap();
    let diff = seen["compare_diff"].as_array().unwrap();
    assert!(all.iter().any(|k| k == "host"), "{all:?}");
    assert!(!diff.iter().any(|k| k == "host"), "{diff:?}");
    assert!(diff.iter().any(|k| k == "name"), "{diff:?}");
    assert!(seen["compare_url"].as_str().unwrap().contains("diff=1"));
    // Images: the repository, its tag marked moved, the first digest's run.
    let images = seen["images"].as_str().unwrap();
    assert!(
        images.contains("registry.example.com/team/trainer"),
        "{images}"
    );
    assert!(images.contains("1.0 moved"), "{images}");
    assert!(images.contains(DIGESTS[1]), "{images}");
    assert_eq!(seen["digest_runs"][0], ids[0].as_str());
}

#[test]
fn a_kept_output_downloads_verified() {
    let env = TestEnv::new();
    std::fs::write(env.root().join("model.bin"), b"weights \x00\x01\x02").unwrap();
    let (code, _, err) = env.run_in(
        env.root(),
        &["run", "--host", "--output", "model.bin", "--", "true"],
    );
    assert_eq!(code, 0, "{err}");
    let id = env.last_id();
    let srv = Server::start(&env, &[]);
    let resp = ureq::get(&format!("{}/api/runs/{id}/outputs/0", srv.base()))
        .call()
        .unwrap();
    assert_eq!(
        resp.header("Content-Disposition"),
        Some("attachment; filename=\"model.bin\"")
    );
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut got).unwrap();
    assert_eq!(got, b"weights \x00\x01\x02");
    assert_eq!(srv.get_err(&format!("/api/runs/{id}/outputs/1")).0, 404);

    // A damaged kept copy is refused, not served.
    let sha = env.show_json(&id)["outputs"][0]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let obj = env
        .db()
        .parent()
        .unwrap()
        .join("objects/sha256")
        .join(&sha[..2])
        .join(&sha[2..]);
    let mut perms = std::fs::metadata(&obj).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&obj, perms).unwrap();
    std::fs::write(&obj, b"tampered").unwrap();
    let (code, body) = srv.get_err(&format!("/api/runs/{id}/outputs/0"));
    assert_eq!(code, 409);
    assert!(
        body["error"].as_str().unwrap().contains("damaged"),
        "{body}"
    );
}

/// `tar` unpacks `archive` into a new directory; its files and bytes.
fn untar(archive: &[u8], into: &Path) -> Vec<(String, Vec<u8>)> {
    std::fs::create_dir_all(into).unwrap();
    let tarball = into.join("../download.tar");
    std::fs::write(&tarball, archive).unwrap();
    let out = Command::new("tar")
        .arg("-xf")
        .arg(&tarball)
        .arg("-C")
        .arg(into)
        .output()
        .unwrap();
    crate::support::assert_ok_for(&out, "tar -xf");
    crate::support::tree(into)
}

/// A GET's headers (lowercase names) and body bytes.
fn get_bytes(url: &str) -> (std::collections::HashMap<String, String>, Vec<u8>) {
    let resp = ureq::get(url).call().unwrap();
    let headers = resp
        .headers_names()
        .into_iter()
        .map(|h| {
            let v = resp.header(&h).unwrap_or("").to_string();
            (h.to_ascii_lowercase(), v)
        })
        .collect();
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut body).unwrap();
    (headers, body)
}

/// In a git repository: a run on a clean tree reading `data` (version 1), then one on a dirty
/// tree (README changed by hand) reading `data` version 2 and the label `imagenet@v3`, keeping
/// the directory `ckpt/` (`a.bin`, `sub/b.bin`). Returns (clean, dirty).
fn data_runs(env: &TestEnv) -> (String, String) {
    let repo = env.git_repo("proj");
    std::fs::create_dir_all(repo.join("data")).unwrap();
    std::fs::write(repo.join("data/train.csv"), "a,b\n1,2\n").unwrap();
    // A clean tree (data/ ignored), then a dirty one with a second version of the data.
    std::fs::write(repo.join(".gitignore"), "data/\nckpt/\n").unwrap();
    crate::support::git(&repo, &["add", ".gitignore"]);
    crate::support::git(&repo, &["commit", "-q", "-m", "ignore"]);
    let run_here = |args: &[&str]| {
        let (code, _, err) = env.run_in(&repo, args);
        assert_eq!(code, 0, "{err}");
        env.last_id()
    };
    let clean = run_here(&["run", "--host", "--dataset", "data", "--", "true"]);
    std::fs::write(repo.join("data/train.csv"), "a,b\n1,3\n").unwrap();
    std::fs::write(repo.join("README"), "hello\nchanged by hand\n").unwrap();
    let job = "mkdir -p ckpt/sub && printf one > ckpt/a.bin && printf 'two\\000' > ckpt/sub/b.bin";
    let dirty = run_here(&[
        "run",
        "--host",
        "--dataset",
        "data",
        "--dataset",
        "imagenet@v3",
        "--output",
        "ckpt",
        "--",
        "sh",
        "-c",
        job,
    ]);
    (clean, dirty)
}

#[test]
fn datasets_the_patch_and_a_kept_directory_through_the_api() {
    use sha2::Digest;
    let env = TestEnv::new();
    let (clean, dirty) = data_runs(&env);
    let srv = Server::start(&env, &[]);

    // Datasets: by name, versions first used first, the runs of each through its filter.
    let ds = srv.get_json("/api/datasets");
    assert_eq!(ds["schema_version"], 1);
    let names: Vec<&str> = ds["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["data", "imagenet"]);
    let data = &ds["datasets"][0]["versions"];
    assert_eq!(data.as_array().unwrap().len(), 2, "{data}");
    let shown = env.show_json(&clean);
    assert_eq!(data[0]["digest"], shown["datasets"][0]["digest"]);
    assert_eq!(data[0]["runs"], 1);
    assert_eq!(data[0]["files"], 1);
    assert_eq!(data[0]["bytes"], 8);
    assert_eq!(
        data[1]["digest"],
        env.show_json(&dirty)["datasets"][0]["digest"]
    );
    assert_ne!(data[0]["digest"], data[1]["digest"]);
    for (v, id) in [(&data[0], &clean), (&data[1], &dirty)] {
        let filter = v["filter"].as_str().unwrap();
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("dataset", filter)
            .finish();
        assert_eq!(
            ids_of(&srv.get_json(&format!("/api/runs?{q}"))),
            vec![id.clone()]
        );
    }
    let label = &ds["datasets"][1]["versions"][0];
    assert_eq!(label["kind"], "label");
    assert_eq!(label["version"], "v3");
    assert_eq!(label["digest"], Value::Null);
    assert_eq!(label["filter"], "imagenet@v3");

    // The patch: the bytes recorded, whose SHA-256 is the one show --json gives; none for a
    // clean tree.
    let (headers, patch) = get_bytes(&format!("{}/api/runs/{dirty}/patch", srv.base()));
    assert!(
        headers["content-type"].starts_with("text/plain"),
        "{headers:?}"
    );
    let text = String::from_utf8(patch.clone()).unwrap();
    assert!(text.contains("+changed by hand"), "{text}");
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&patch)),
        env.show_json(&dirty)["code"]["patch_sha256"]
            .as_str()
            .unwrap()
    );
    let (code, body) = srv.get_err(&format!("/api/runs/{clean}/patch"));
    assert_eq!(code, 404);
    assert!(body["error"].as_str().unwrap().contains("clean"), "{body}");

    // The kept directory: a tar of its files that tar unpacks into ckpt/, sized exactly.
    let (headers, tarball) = get_bytes(&format!("{}/api/runs/{dirty}/outputs/0", srv.base()));
    assert_eq!(headers["content-type"], "application/x-tar");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"ckpt.tar\""
    );
    assert_eq!(headers["content-length"], tarball.len().to_string());
    let got = untar(&tarball, &env.root().join("unpacked"));
    assert_eq!(
        got,
        vec![
            ("ckpt/a.bin".to_string(), b"one".to_vec()),
            ("ckpt/sub/b.bin".to_string(), b"two\0".to_vec()),
        ]
    );

    // A damaged file of it: refused before a byte is sent, naming the file.
    let objects = env.db().parent().unwrap().join("objects/sha256");
    let sha = hex::encode(sha2::Sha256::digest(b"two\0"));
    let obj = objects.join(&sha[..2]).join(&sha[2..]);
    let mut perms = std::fs::metadata(&obj).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&obj, perms).unwrap();
    std::fs::write(&obj, b"TWO\0").unwrap();
    let (code, body) = srv.get_err(&format!("/api/runs/{dirty}/outputs/0"));
    assert_eq!(code, 409);
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("ckpt/sub/b.bin") && msg.contains("damaged"),
        "{body}"
    );

    // Attestations and archives: none yet, in the documented shape.
    let prov = srv.get_json(&format!("/api/runs/{dirty}/provenance"));
    assert_eq!(prov["attestations"], serde_json::json!([]));
    assert_eq!(prov["archives"], serde_json::json!([]));
}

/// `--open` starts `$BROWSER` with the URL: here a real headless Chromium that writes the DOM
/// it rendered, which must hold the runs table with the run.
#[test]
fn open_starts_the_browser_on_the_page() {
    if !Path::new("/usr/bin/chromium").exists() {
        skip_or_fail("chromium is not installed");
        return;
    }
    let env = TestEnv::new();
    let id = run(&env, "opened-run", &[0.5], &[]);
    let dom = env.root().join("dom.html");
    let browser = env.root().join("browser.sh");
    std::fs::write(
        &browser,
        format!(
            "#!/bin/sh\n/usr/bin/chromium --headless --no-sandbox --disable-gpu --no-first-run \
             --user-data-dir={} --virtual-time-budget=5000 --dump-dom \"$1\" > {}.part 2>/dev/null && mv {}.part {}\n",
            env.root().join("chromium-profile").display(),
            dom.display(),
            dom.display(),
            dom.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &browser,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut child = command(&env)
        .args(["ui", "--listen", "127.0.0.1:0", "--open"])
        .env("BROWSER", &browser)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let srv = {
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Server {
            child,
            url: line.trim().to_string(),
        }
    };
    let mut html = String::new();
    for _ in 0..300 {
        if let Ok(s) = std::fs::read_to_string(&dom) {
            html = s;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        html.contains(&format!("data-id=\"{id}\"")) && html.contains("opened-run"),
        "the browser did not render the runs page of {}: {html}",
        srv.url
    );
    assert!(srv.stop().success());
}

/// The Datasets page and the run page's code, data and outputs, in headless Chromium; a stored
/// dataset version that is markup never runs.
const DATA_BROWSER: &str = r##"
base, dirty = sys.argv[1:3]
out.update({"pwned": []})
def probe():
    out["pwned"].append(d.execute_script("return window.pwned || null"))
d.get(base + "/datasets")
wait(lambda: len(d.find_elements(By.CSS_SELECTOR, "section.dataset")) == 2, "two datasets")
out["datasets"] = [s.get_attribute("data-name") for s in d.find_elements(By.CSS_SELECTOR, "section.dataset")]
out["versions"] = len(d.find_elements(By.CSS_SELECTOR, "section.dataset[data-name=data] tr[data-digest]"))
out["label_text"] = d.find_element(By.CSS_SELECTOR, "section.dataset[data-name=imagenet]").text
probe()
# The runs of data's second version.
d.find_elements(By.CSS_SELECTOR, "section.dataset[data-name=data] td.num a")[1].click()
wait(lambda: "dataset=" in d.current_url and len(d.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")) == 1, "its runs")
out["version_runs"] = [r.get_attribute("data-id") for r in d.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")]
out["filter_field"] = d.find_element(By.ID, "f-dataset").get_attribute("value")
# The dirty run's page: code and its patch, datasets, the kept directory.
d.get(base + "/run/" + dirty)
wait(lambda: "changed by hand" in d.find_element(By.ID, "patch").text, "the patch")
out["code"] = d.find_element(By.ID, "code").text
out["data_rows"] = len(d.find_elements(By.CSS_SELECTOR, "#datasets tr")) - 1
out["output_href"] = d.find_element(By.CSS_SELECTOR, "#outputs a").get_attribute("href")
wait(lambda: "No attestation" in d.find_element(By.ID, "provenance").text, "the provenance")
probe()
d.find_element(By.CSS_SELECTOR, "#datasets td a").click()
wait(lambda: "name=data" in d.current_url and len(d.find_elements(By.CSS_SELECTOR, "section.dataset")) == 1, "one dataset")
probe()
"##;

#[test]
fn the_datasets_page_and_a_runs_code_data_and_outputs_in_a_real_browser() {
    let env = TestEnv::new();
    let (_, dirty) = data_runs(&env);
    // A version label that is markup, as an imported or hand-edited database could hold.
    let evil = "<img src=x onerror=\"window.pwned=1\">";
    let db = rusqlite::Connection::open(env.db()).unwrap();
    let n = db
        .execute(
            "UPDATE run_datasets SET version = ?1 WHERE name = 'imagenet'",
            [evil],
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(db);
    let srv = Server::start(&env, &[]);
    let Some(seen) = browse(DATA_BROWSER, &[&srv.base(), &dirty]) else {
        return;
    };
    for p in seen["pwned"].as_array().unwrap() {
        assert_eq!(*p, Value::Null, "{seen}");
    }
    assert_eq!(seen["datasets"], serde_json::json!(["data", "imagenet"]));
    assert_eq!(seen["versions"], 2);
    assert!(
        seen["label_text"].as_str().unwrap().contains(evil),
        "{seen}"
    );
    assert_eq!(seen["version_runs"], serde_json::json!([dirty]));
    assert!(seen["filter_field"]
        .as_str()
        .unwrap()
        .starts_with("data@sha256:"));
    let code = seen["code"].as_str().unwrap();
    assert!(code.contains("dirty: a patch is recorded"), "{code}");
    assert_eq!(seen["data_rows"], 2);
    assert!(seen["output_href"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/api/runs/{dirty}/outputs/0")));
}

/// The Images page's button: `repro audit` over one repository's runs, against a real
/// registry — a digest deleted from it is missing, the moved tag names where it points now.
const AUDIT_BROWSER: &str = r##"
base, d1, d2 = sys.argv[1:4]
def cell(digest):
    return d.find_element(By.CSS_SELECTOR, "tr[data-digest='" + digest + "'] td.registry").text
d.get(base + "/images")
for _ in range(80):
    if d.find_elements(By.CSS_SELECTOR, "button.audit"):
        break
    time.sleep(0.1)
out["before"] = cell(d1)
d.find_element(By.CSS_SELECTOR, "button.audit").click()
for _ in range(300):
    if cell(d1) != out["before"]:
        break
    time.sleep(0.1)
out["d1"] = cell(d1)
out["d2"] = cell(d2)
"##;

#[test]
fn the_images_page_asks_the_registry_what_audit_knows() {
    use crate::support::registry::Registry;
    let registry = Registry::start();
    let env = TestEnv::new();
    let image = registry.reference("team/app", "v1");
    let record = || {
        let (code, _, err) = env.run_in(
            env.root(),
            &["run", "--host", "--image", &image, "--", "true"],
        );
        assert_eq!(code, 0, "{err}");
        env.last_id()
    };
    let d1 = registry.push_busybox("team/app", "v1");
    let run1 = record();
    let d2 = registry.push_busybox("team/app", "v1");
    let run2 = record();
    assert_ne!(d1, d2);
    registry.delete_manifest("team/app", &d1);
    let srv = Server::start(&env, &[]);
    let repo = format!("{}/team/app", registry.addr());
    let names: Vec<String> = srv.get_json("/api/images")["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec![repo.clone()]);
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("repository", &repo)
        .finish();
    let a = srv.get_json(&format!("/api/audit?{q}"));
    assert_eq!(a["at_risk"], true, "{a}");
    let row = |d: &str| {
        a["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["digest"] == d)
            .unwrap_or_else(|| panic!("no row for {d}: {a}"))
            .clone()
    };
    assert_eq!(row(&d1)["status"], "missing");
    assert_eq!(row(&d1)["runs"], serde_json::json!([run1]));
    assert_eq!(row(&d1)["tag"]["moved"], true);
    assert_eq!(row(&d1)["tag"]["digest"], d2.as_str());
    assert_eq!(row(&d2)["status"], "present");
    assert_eq!(row(&d2)["runs"], serde_json::json!([run2]));
    // An unknown repository, and none given: errors naming the fix; nothing stored either way.
    assert_eq!(srv.get_err("/api/audit?repository=nowhere/x").0, 404);
    let (code, body) = srv.get_err("/api/audit");
    assert_eq!(code, 400);
    assert!(
        body["error"].as_str().unwrap().contains("repository"),
        "{body}"
    );

    let Some(seen) = browse(AUDIT_BROWSER, &[&srv.base(), &d1, &d2]) else {
        return;
    };
    assert_eq!(seen["before"], "not asked");
    let c1 = seen["d1"].as_str().unwrap();
    assert!(
        c1.starts_with("missing") && c1.contains(&format!("points at {d2}")),
        "{seen}"
    );
    assert_eq!(seen["d2"], "present");
}
