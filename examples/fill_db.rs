//! Fills a database with N runs of realistic shape for `benches/query.sh`, and writes a JSON-lines
//! file of M further runs for the import benchmark.
//!
//! `cargo run --release --example fill_db -- DB N [IMPORT.jsonl M]`
//!
//! Shape (deterministic, seeded): one year of runs; 40 image repositories with 2,000 digests
//! (30 % multi-arch with an index digest, 5 % no image); 20,000 commits each used by a burst of
//! consecutive runs, 60 % on `main`, 20 % dirty with a small patch; 1–3 datasets out of 10 with
//! 20 versions; params lr/batch_size/seed; 0–2 tags; 16 hosts; 80 % succeeded, 12 % failed,
//! 5 % killed, 3 % lost; metrics `acc` (2 steps) and `loss` on 98 % of runs (see `metrics_of`). Prints the probes the benchmark queries (a digest prefix, a commit
//! prefix, an id prefix) as shell variables.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use repro::record::metrics::MetricPoint;
use repro::record::*;
use repro::store::Store;
use sha2::{Digest as _, Sha256};

/// SplitMix64: a tiny deterministic generator (no dependency needed for a fixture).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn percent(&mut self) -> u64 {
        self.below(100)
    }
}

fn hex_of(seed: &str) -> String {
    hex::encode(Sha256::digest(seed.as_bytes()))
}

const T0_MS: u64 = 1_764_115_200_000; // 2025-11-26T00:00:00Z
const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;

fn make_run(i: u64, n: u64, rng: &mut Rng) -> Run {
    let t = T0_MS + i * (YEAR_MS / n.max(1));
    let ulid = ulid::Ulid::from_parts(t, (rng.next() as u128) << 16 | i as u128);
    let id = ulid.to_string().to_ascii_lowercase();
    let started = chrono::DateTime::from_timestamp_millis(t as i64)
        .expect("time")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let status_roll = rng.percent();
    let (status, exit_code, signal) = match status_roll {
        0..=79 => (Status::Succeeded, Some(0), None),
        80..=91 => (Status::Failed, Some(1), None),
        92..=96 => (Status::Killed, None, Some(9)),
        _ => (Status::Running, None, None),
    };
    let duration = 1_000 + rng.below(6 * 3600 * 1000) as i64;
    let finished = status != Status::Running;
    let ended = chrono::DateTime::from_timestamp_millis(t as i64 + duration)
        .expect("time")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    // Digests and commits change slowly over time, as they do in a real project.
    let digest_no = (i * 2000 / n.max(1) + rng.below(3)) % 2000;
    let repo_no = digest_no % 40;
    let image = (rng.percent() >= 5).then(|| {
        let multi = digest_no % 10 < 3;
        let mut labels = BTreeMap::new();
        labels.insert(
            "org.opencontainers.image.source".to_string(),
            format!("https://git.example.com/team/model-{repo_no}"),
        );
        labels.insert(
            "org.opencontainers.image.revision".to_string(),
            hex_of(&format!("commit{}", digest_no * 10))[..40].to_string(),
        );
        Image {
            reference: format!(
                "registry.example.com/team/model-{repo_no}:{}.{}",
                digest_no / 100,
                digest_no % 100
            ),
            digest: Some(format!(
                "sha256:{}",
                hex_of(&format!("platform{digest_no}"))
            )),
            index_digest: multi.then(|| format!("sha256:{}", hex_of(&format!("index{digest_no}")))),
            platform: Some("linux/amd64".into()),
            resolved_by: ResolvedBy::Registry,
            labels,
        }
    });
    let commit_no = i * 20_000 / n.max(1);
    let dirty = rng.percent() < 20;
    let patch = dirty.then(|| {
        Arg::from(
            format!(
                "diff --git a/train.py b/train.py\n--- a/train.py\n+++ b/train.py\n@@ -1 +1 @@\n-lr = 0.1\n+lr = 0.{}\n",
                rng.below(1000)
            )
            .as_str(),
        )
    });
    let code = Code {
        repo_root: "/home/alice/src/model".into(),
        remote: Some("https://git.example.com/team/model.git".into()),
        commit: Some(hex_of(&format!("commit{commit_no}"))[..40].to_string()),
        branch: Some(if commit_no % 10 < 6 {
            "main".into()
        } else {
            format!("exp-{}", commit_no % 50)
        }),
        dirty,
        untracked: vec![],
        patch_sha256: patch.as_ref().map(|p| hex::encode(Sha256::digest(&p.0))),
        patch,
    };
    let names = [
        "imagenet", "coco", "val", "cifar10", "wiki", "books", "c4", "laion", "squad", "mnist",
    ];
    let datasets = (0..1 + rng.below(3))
        .map(|k| {
            let name = names[((i + k * 3) % 10) as usize];
            Dataset {
                name: name.into(),
                kind: DatasetKind::Uri,
                uri: Some(format!("s3://corp-data/{name}")),
                version: Some(format!("v{}", 1 + rng.below(20))),
                digest: None,
                files: None,
                bytes: None,
            }
        })
        .collect();
    let lr = format!("0.{}", 1 + rng.below(9));
    let mut params = BTreeMap::new();
    params.insert("lr".to_string(), lr.clone());
    params.insert("batch_size".to_string(), (32 << rng.below(4)).to_string());
    params.insert("seed".to_string(), rng.below(10).to_string());
    let tag_names = [
        "nightly", "sweep", "baseline", "prod", "ablation", "debug", "best", "eval", "long",
        "smoke",
    ];
    let mut tags: Vec<String> = (0..rng.below(3))
        .map(|_| tag_names[rng.below(10) as usize].to_string())
        .collect();
    tags.sort();
    tags.dedup();
    let mut env = BTreeMap::new();
    env.insert("CUDA_VISIBLE_DEVICES".to_string(), rng.below(8).to_string());
    let host = format!("gpu-{:02}", 1 + rng.below(16));
    Run {
        schema_version: SCHEMA_VERSION,
        id,
        name: (rng.percent() < 50).then(|| format!("sweep-{}", i % 5000)),
        status,
        exit_code,
        signal,
        started_at: started,
        ended_at: finished.then_some(ended),
        duration_ms: finished.then_some(duration),
        command: ["python", "train.py", "--lr", &lr, "--epochs", "90"]
            .iter()
            .map(|a| Arg::from(*a))
            .collect(),
        cwd: "experiments/resnet".into(),
        exec: Exec {
            mode: if image.is_some() {
                ExecMode::Container
            } else {
                ExecMode::Host
            },
            engine: image.as_ref().map(|_| "docker".into()),
            workdir: image.as_ref().map(|_| "/workspace".into()),
            engine_args: vec![],
            gpus: Some("all".into()),
            registry: None,
        },
        image,
        code: Some(code),
        datasets,
        outputs: vec![Output::hashed(
            "model.pt".into(),
            finished.then(|| hex_of(&format!("out{i}"))),
            finished.then_some(1 << 20),
        )],
        params,
        params_from_argv: Vec::new(),
        params_from_job: Vec::new(),
        tags,
        notes: vec![],
        env,
        host: host.clone(),
        user: "alice".into(),
        platform: "linux/amd64".into(),
        pid: Some(1000 + rng.below(30000) as i64),
        // A boot id no machine has: unfinished runs read as lost.
        boot_id: Some("00000000-0000-0000-0000-000000000000".into()),
        pid_start: Some(rng.below(1 << 30) as i64),
        pid_ns: None,
        rerun_of: None,
        scheduler: None,
    }
}

/// Metrics of a run: `acc` (two steps, the last uniform in 0.5–0.95, so about 11 % reach 0.9;
/// 0.5 % NaN) and `loss` (one point); 2 % of runs (the lost and some failed) report none.
fn metrics_of(r: &Run, rng: &mut Rng) -> Option<Vec<MetricPoint>> {
    if rng.percent() < 2 {
        return None;
    }
    let u = rng.below(1_000_000) as f64 / 1_000_000.0;
    let acc = if rng.below(1000) < 5 {
        f64::NAN
    } else {
        0.5 + 0.45 * u
    };
    let t = chrono::DateTime::parse_from_rfc3339(&r.started_at)
        .map(|t| t.timestamp() as f64)
        .ok();
    let pt = |key: &str, step: i64, value: f64| MetricPoint {
        key: key.into(),
        step: Some(step),
        value,
        time: t,
    };
    Some(vec![
        pt("acc", 1, 0.5 * acc),
        pt("acc", 2, acc),
        pt("loss", 2, 1.0 - u),
    ])
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: fill_db DB N [IMPORT.jsonl M]");
        std::process::exit(2);
    }
    let db = PathBuf::from(&args[0]);
    let n: u64 = args[1].parse().expect("N is a number");
    let mut store = Store::open(&db).expect("open the database");
    let mut rng = Rng(42);
    let started = std::time::Instant::now();
    let mut probe_id = String::new();
    let mut probe_digest = String::new();
    let mut probe_commit = String::new();
    let chunk = 50_000;
    let mut i = 0;
    while i < n {
        let batch: Vec<Run> = (i..(i + chunk).min(n))
            .map(|k| make_run(k, n, &mut rng))
            .collect();
        if i <= n / 2 && n / 2 < i + chunk {
            let r = &batch[(n / 2 - i) as usize];
            probe_id = r.id[..12].to_string();
            let d = r
                .image
                .as_ref()
                .and_then(|im| im.digest.clone())
                .unwrap_or_default();
            probe_digest = d.split(':').nth(1).unwrap_or("")[..12].to_string();
            probe_commit = r
                .code
                .as_ref()
                .and_then(|c| c.commit.clone())
                .unwrap_or_default()[..10]
                .to_string();
        }
        store.insert_runs(&batch).expect("insert");
        let metrics: Vec<(String, Vec<MetricPoint>)> = batch
            .iter()
            .filter_map(|r| metrics_of(r, &mut rng).map(|m| (r.id.clone(), m)))
            .collect();
        store
            .insert_metrics_batch(&metrics)
            .expect("insert metrics");
        i = (i + chunk).min(n);
        eprint!("\r{i} runs ({:.0?})", started.elapsed());
    }
    eprintln!();
    if args.len() >= 4 {
        let m: u64 = args[3].parse().expect("M is a number");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&args[2]).expect("create"));
        // Same shape, ids after the filled range so they are new to the database.
        let mut rng = Rng(7);
        for k in 0..m {
            let mut r = make_run(n + k, n + m, &mut rng);
            r.id = ulid::Ulid::from_parts(T0_MS + YEAR_MS + k * 1000, k as u128 + 1)
                .to_string()
                .to_ascii_lowercase();
            writeln!(out, "{}", serde_json::to_string(&r).expect("json")).expect("write");
        }
        out.flush().expect("flush");
    }
    println!("PROBE_ID={probe_id}");
    println!("PROBE_DIGEST={probe_digest}");
    println!("PROBE_COMMIT={probe_commit}");
}
