//! System metrics (`sys/…`): sampled while the job runs, on the host from its process tree and
//! in a podman container from its cgroup; `0s` turns them off; a bad interval is a usage error.

use std::ffi::OsString;

use crate::support::engine::{Dockerd, PushedBusybox};
use crate::support::TestEnv;

/// About three seconds: a second and a half of busy loop, then sleep; exits 7.
const BUSY_THEN_SLEEP: &str =
    "end=$(( $(date +%s%N) + 1500000000 )); while [ $(date +%s%N) -lt $end ]; do :; done; sleep 1.5; exit 7";

/// `show --json --history` of the newest run.
fn history(env: &TestEnv) -> serde_json::Value {
    let id = env.last_id();
    let out = env
        .repro()
        .args(["show", &id, "--json", "--history"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The `(step, value, time)` points of `key`.
fn points(run: &serde_json::Value, key: &str) -> Vec<(i64, f64, String)> {
    run["history"][key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {}", run["history"]))
        .iter()
        .map(|p| {
            (
                p[0].as_i64().unwrap(),
                p[1].as_f64().unwrap(),
                p[2].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn sys_keys(run: &serde_json::Value) -> Vec<String> {
    run["metrics"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("sys/"))
        .cloned()
        .collect()
}

#[test]
fn a_three_second_host_job_sampled_every_second_has_cpu_and_memory_points() {
    let env = TestEnv::new();
    let (code, _, err) = env.run_in(
        env.root(),
        &[
            "-v",
            "run",
            "--sys-metrics-interval",
            "1s",
            "--",
            "bash",
            "-c",
            BUSY_THEN_SLEEP,
        ],
    );
    assert_eq!(code, 7, "the child's exit code passes through: {err}");
    assert!(
        err.contains("system metrics: sampled the process tree of pid"),
        "{err}"
    );
    let run = history(&env);
    assert_eq!(run["exit_code"], 7);
    let cpu = points(&run, "sys/cpu_percent");
    let rss = points(&run, "sys/rss_bytes");
    let mem = points(&run, "sys/system_memory_used_bytes");
    assert!(cpu.len() >= 2 && rss.len() >= 2, "{cpu:?} {rss:?}");
    assert!(rss.iter().all(|p| p.1 > 0.0), "{rss:?}");
    assert!(mem.iter().all(|p| p.1 > 0.0), "{mem:?}");
    // The busy second shows; nothing is over the machine's cores.
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    assert!(cpu.iter().any(|p| p.1 > 10.0), "{cpu:?}");
    assert!(
        cpu.iter().all(|p| p.1 >= 0.0 && p.1 <= cores * 100.0 + 5.0),
        "{cpu:?}"
    );
    for series in [&cpu, &rss, &mem] {
        assert!(
            series
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].2 < w[1].2),
            "{series:?}"
        );
    }
    // The samples fall inside the run.
    let (started, ended) = (
        run["started_at"].as_str().unwrap(),
        run["ended_at"].as_str().unwrap(),
    );
    assert!(
        cpu[0].2.as_str() >= started && cpu.last().unwrap().2.as_str() <= ended,
        "{started} {ended} {cpu:?}"
    );
}

#[test]
fn zero_turns_sampling_off_from_the_flag_and_the_config() {
    let env = TestEnv::new();
    let (code, _, err) = env.run_in(
        env.root(),
        &["run", "--sys-metrics-interval", "0s", "--", "sleep", "1.5"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(sys_keys(&env.show_json(&env.last_id())).is_empty());

    let cfg = env.home().join(".config/repro");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(cfg.join("config.toml"), "sys_metrics_interval = \"0s\"\n").unwrap();
    let (code, out, err) = env.run_in(env.root(), &["config", "show"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("sys_metrics_interval") && out.contains("0s"),
        "{out}"
    );
    let (code, _, err) = env.run_in(env.root(), &["run", "--", "sleep", "1.5"]);
    assert_eq!(code, 0, "{err}");
    assert!(sys_keys(&env.show_json(&env.last_id())).is_empty());
    // The flag wins over the configuration.
    let (code, _, err) = env.run_in(
        env.root(),
        &["run", "--sys-metrics-interval", "200ms", "--", "sleep", "1"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(sys_keys(&env.show_json(&env.last_id())).contains(&"sys/rss_bytes".to_string()));
}

#[test]
fn a_bad_interval_is_a_usage_error_and_records_nothing() {
    let env = TestEnv::new();
    for bad in ["5", "fast", "10ms", "2d"] {
        let (code, _, err) = env.run_in(
            env.root(),
            &["run", "--sys-metrics-interval", bad, "--", "true"],
        );
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(
            err.contains("--sys-metrics-interval") && err.contains("not a sampling interval"),
            "{err}"
        );
        assert!(
            err.contains("hint:") && err.contains("0s turns sampling off"),
            "{err}"
        );
    }
    // A bad value in the configuration is refused before anything runs, naming the key.
    let cfg = env.home().join(".config/repro");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("config.toml"),
        "sys_metrics_interval = \"often\"\n",
    )
    .unwrap();
    let marker = env.root().join("ran");
    let (code, _, err) = env.run_in(
        env.root(),
        &["run", "--", "touch", marker.to_str().unwrap()],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("sys_metrics_interval") && err.contains("hint:"),
        "{err}"
    );
    assert!(!marker.exists());
    std::fs::remove_file(cfg.join("config.toml")).unwrap();
    let out = env.repro().args(["ls", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["runs"].as_array().unwrap().len(),
        0,
        "nothing was recorded"
    );
}

#[test]
fn ls_sorts_runs_by_their_peak_resident_memory() {
    let env = TestEnv::new();
    let mut ids = Vec::new();
    // ~1 MB and ~60 MB held in a shell variable for a second and a half.
    for size in [1_000_000, 60_000_000] {
        let script = format!("x=$(head -c {size} /dev/zero | tr '\\0' a); sleep 1.5; echo ${{#x}}");
        let (code, _, err) = env.run_in(
            env.root(),
            &[
                "run",
                "--sys-metrics-interval",
                "500ms",
                "--",
                "bash",
                "-c",
                &script,
            ],
        );
        assert_eq!(code, 0, "{err}");
        ids.push(env.last_id());
    }
    let out = env
        .repro()
        .args(["ls", "--json", "--sort", "metric:sys/rss_bytes:max"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let order: Vec<&str> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        [ids[1].as_str(), ids[0].as_str()],
        "the bigger one first"
    );
    // `plot` draws them as any other metric.
    let out = env
        .repro()
        .args([
            "plot",
            &ids[0],
            &ids[1],
            "-m",
            "sys/rss_bytes",
            "-m",
            "sys/cpu_percent",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = String::from_utf8_lossy(&out.stdout);
    assert!(
        svg.contains("<svg") && svg.contains("sys/rss_bytes"),
        "{svg:.300}"
    );
    let big = env.show_json(&ids[1]);
    assert!(
        big["metrics"]["sys/rss_bytes"]["max"].as_f64().unwrap() > 60e6,
        "{}",
        big["metrics"]
    );
}

/// A 3-second container job sampled every second: CPU and memory points from the cgroup.
fn container_is_sampled_from_its_cgroup(
    engine: &str,
    engine_env: &[(String, OsString)],
    image: &str,
) {
    let env = TestEnv::new();
    let out = env
        .repro()
        .current_dir(env.root())
        .envs(engine_env.iter().map(|(k, v)| (k, v)))
        .args(["-v", "run", "--engine", engine, "--image", image])
        .args([
            "--engine-arg=--network=none",
            "--sys-metrics-interval",
            "1s",
        ])
        .args(["--", "/bin/busybox", "sh", "-c"])
        .arg("i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; /bin/busybox sleep 3; exit 5")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{engine}: {err}");
    assert!(
        err.contains("system metrics: sampled the cgroup"),
        "{engine}: {err}"
    );
    let run = history(&env);
    let cpu = points(&run, "sys/cpu_percent");
    let rss = points(&run, "sys/rss_bytes");
    assert!(
        cpu.len() >= 2 && rss.len() >= 2,
        "{engine}: {cpu:?} {rss:?}"
    );
    assert!(rss.iter().all(|p| p.1 > 0.0), "{engine}: {rss:?}");
    assert!(
        rss.windows(2).all(|w| w[0].0 < w[1].0 && w[0].2 < w[1].2),
        "{engine}: {rss:?}"
    );
}

#[test]
fn a_podman_container_is_sampled_from_its_cgroup() {
    let bb = PushedBusybox::new("team/trainer", "sys");
    container_is_sampled_from_its_cgroup("podman", &bb.podman_env(), &bb.image);
}

#[test]
fn a_docker_container_is_sampled_from_its_cgroup() {
    let Some(dockerd) = Dockerd::start() else {
        return;
    };
    let bb = PushedBusybox::in_registry("team/trainer", "sys");
    container_is_sampled_from_its_cgroup("docker", &dockerd.env(), &bb.image);
}

#[test]
fn mlflow_push_sends_them_under_mlflows_system_metric_names_and_units() {
    let srv = crate::support::mlflow::server();
    let env = TestEnv::new();
    let (code, _, err) = env.run_in(
        env.root(),
        &[
            "run",
            "--sys-metrics-interval",
            "500ms",
            "--",
            "bash",
            "-c",
            BUSY_THEN_SLEEP,
        ],
    );
    assert_eq!(code, 7, "{err}");
    let id = env.last_id();
    let recorded = history(&env);
    let exp = format!("sysmetrics-{}", std::process::id());
    let out = env
        .repro()
        .env("MLFLOW_TRACKING_URI", &srv.uri)
        .args(["mlflow", "push", "--experiment", &exp])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = srv.run_by_repro_id(&exp, &id).expect("pushed");
    let mlflow_id = run["info"]["run_id"].as_str().unwrap().to_string();
    let keys: Vec<&str> = run["data"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["key"].as_str().unwrap())
        .collect();
    assert!(keys.iter().all(|k| !k.starts_with("sys/")), "{keys:?}");
    for (ours, theirs, factor) in [
        ("sys/cpu_percent", "system/cpu_utilization_percentage", 1.0),
        (
            "sys/system_memory_used_bytes",
            "system/system_memory_usage_megabytes",
            1e-6,
        ),
        ("sys/rss_bytes", "system/job_memory_usage_megabytes", 1e-6),
    ] {
        let h = srv.get(
            "metrics/get-history",
            &[
                ("run_id", &mlflow_id),
                ("metric_key", theirs),
                ("max_results", "1000"),
            ],
        );
        let mut sent: Vec<(i64, f64)> = h["metrics"]
            .as_array()
            .unwrap_or_else(|| panic!("no {theirs}: {h}"))
            .iter()
            .map(|p| (p["step"].as_i64().unwrap(), p["value"].as_f64().unwrap()))
            .collect();
        sent.sort_by_key(|p| p.0);
        let want: Vec<(i64, f64)> = points(&recorded, ours)
            .into_iter()
            .map(|(step, v, _)| (step, v * factor))
            .collect();
        assert!(want.len() >= 2, "{ours}: {want:?}");
        assert_eq!(sent.len(), want.len(), "{theirs}: {sent:?} vs {want:?}");
        for (s, w) in sent.iter().zip(&want) {
            assert_eq!(s.0, w.0);
            assert!(
                (s.1 - w.1).abs() <= 1e-9 * w.1.abs().max(1.0),
                "{theirs}: {s:?} vs {w:?}"
            );
        }
    }
}

/// A re-run samples too, at the configured interval (`REPRO_SYS_METRICS_INTERVAL` here).
#[test]
fn a_rerun_is_sampled_like_a_run() {
    let env = TestEnv::new();
    let repo = env.git_repo("proj");
    let (code, _, err) = env.run_in(
        &repo,
        &[
            "run",
            "--sys-metrics-interval",
            "0s",
            "--",
            "sh",
            "-c",
            "sleep 2.5",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let orig = env.last_id();
    assert!(sys_keys(&history(&env)).is_empty());
    let out = env
        .repro()
        .current_dir(&repo)
        .env("REPRO_SYS_METRICS_INTERVAL", "1s")
        .args(["rerun", &orig])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rerun = history(&env);
    assert_eq!(rerun["rerun_of"], orig.as_str());
    assert!(
        points(&rerun, "sys/rss_bytes").len() >= 2,
        "{}",
        rerun["history"]
    );
}
