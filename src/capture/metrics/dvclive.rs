//! A DVCLive output directory: `metrics.json` (the latest value of every metric, nested by the
//! `/` in its name, with the current `step`) and `plots/metrics/<name>.tsv` (its history:
//! `step`, an optional `timestamp` in milliseconds, and a column named after the metric's last
//! path component). Metrics keep DVCLive's names (`train/loss`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::files::{parse_delimited, parse_json_sep};
use super::{Interner, MetricPoint, Parsed};

/// Reads a DVCLive directory: the history of every plotted metric from its TSV, and the
/// metrics only found in `metrics.json` (logged with `plot=False`) as one point each.
pub fn read_dvclive(dir: &Path) -> Parsed {
    let source = dir.display().to_string();
    let summary = dir.join("metrics.json");
    let plots = dir.join("plots").join("metrics");
    let mut out = Parsed::default();
    if !summary.is_file() && !plots.is_dir() {
        out.warnings.push(format!(
            "{source}: not a DVCLive directory (no metrics.json or plots/metrics); no metrics read"
        ));
        return out;
    }
    let mut tsvs = Vec::new();
    if plots.is_dir() {
        collect_tsv(&plots, &mut tsvs, &mut out.warnings);
        tsvs.sort();
    }
    let mut keys = Interner::default();
    let mut plotted = BTreeSet::new();
    for file in &tsvs {
        let rel = file.strip_prefix(&plots).unwrap_or(file).with_extension("");
        let name: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let key = name.join("/");
        let fname = file.display().to_string();
        let bytes = match super::read_file(file) {
            Ok(b) => b,
            Err(e) => {
                out.warnings.push(e.to_string());
                continue;
            }
        };
        // The value column is named after the last component; any other column that is not
        // step/timestamp is a metric too, named under the same directory.
        let last = name.last().cloned().unwrap_or_default();
        let parent: String = name[..name.len().saturating_sub(1)].join("/");
        let parsed = parse_delimited(&bytes, b'\t', &fname);
        for p in parsed.points {
            let k = if *p.key == *last {
                key.clone()
            } else if parent.is_empty() {
                p.key.to_string()
            } else {
                format!("{parent}/{}", p.key)
            };
            plotted.insert(k.clone());
            out.points.push(MetricPoint {
                key: keys.get(&k),
                ..p
            });
        }
        out.warnings.extend(parsed.warnings);
    }
    if summary.is_file() {
        let fname = summary.display().to_string();
        match super::read_file(&summary) {
            Ok(bytes) => {
                let parsed = parse_json_sep(&bytes, &fname, '/');
                out.points.extend(
                    parsed
                        .points
                        .into_iter()
                        .filter(|p| !plotted.contains(&*p.key))
                        .map(|p| MetricPoint {
                            key: keys.get(&p.key),
                            ..p
                        }),
                );
                out.warnings.extend(parsed.warnings);
            }
            Err(e) => out.warnings.push(e.to_string()),
        }
    }
    out
}

fn collect_tsv(dir: &Path, out: &mut Vec<PathBuf>, warnings: &mut Vec<String>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            warnings.push(format!("{}: cannot list ({e})", dir.display()));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        // Not followed through a symlink: a link to `.` would recurse without end.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_tsv(&path, out, warnings);
        } else if path.extension().is_some_and(|e| e == "tsv") {
            out.push(path);
        }
    }
}
