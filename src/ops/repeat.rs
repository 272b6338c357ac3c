//! `rerun --repeat N`: re-run a recorded run N times (each a recorded re-run linked to the
//! original, recorded together as a repeat group) and measure the run-to-run noise: the spread
//! of every metric and which outputs differ between the repeats.

use std::collections::{BTreeMap, BTreeSet};

use crate::ops::output_diff::{first_difference, Difference};
use crate::ops::rerun::{rerun, RerunError, RerunRequest, RerunResult};
use crate::ops::Events;
use crate::record::metrics::MetricSummary;
use crate::record::Output;
use crate::store::objects::Objects;
use crate::store::Store;

/// One repeat that ran.
#[derive(Debug, Clone, PartialEq)]
pub struct Repeat {
    /// 1-based position in the group.
    pub seq: u32,
    /// The recorded re-run's id.
    pub id: String,
    /// Its exit code (128+N for a signal).
    pub exit: i32,
    /// Its outputs as recorded.
    pub outputs: Vec<Output>,
    /// Its metrics.
    pub metrics: Vec<MetricSummary>,
}

/// The spread of a set of values: min, max, sample standard deviation and mean. NaN anywhere
/// makes every statistic NaN (nothing can be said of its spread).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// How many values.
    pub n: usize,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Sample standard deviation (n - 1 in the denominator); 0 for one value.
    pub stddev: f64,
}

impl Stats {
    /// The statistics of `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Stats> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        if values.iter().any(|v| v.is_nan()) {
            let nan = f64::NAN;
            return Some(Stats {
                n,
                min: nan,
                max: nan,
                mean: nan,
                stddev: nan,
            });
        }
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mean = values.iter().sum::<f64>() / n as f64;
        let stddev = if n < 2 || min == max {
            0.0
        } else {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        };
        Some(Stats {
            n,
            min,
            max,
            mean,
            stddev,
        })
    }

    /// The width of the spread, `max - min` (0 when every value is the same, infinities
    /// included).
    pub fn range(&self) -> f64 {
        if self.min == self.max {
            0.0
        } else {
            self.max - self.min
        }
    }

    /// Whether a metric delta lies inside this spread: `|delta| <= max - min`. A NaN delta or
    /// spread is never within noise.
    pub fn within_noise(&self, delta: f64) -> bool {
        delta.abs() <= self.range()
    }
}

/// One metric over the repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSpread {
    pub key: String,
    /// The original run's last value.
    pub original: Option<f64>,
    /// Each repeat's last value, in order (`None` where a repeat did not report it).
    pub values: Vec<Option<f64>>,
    /// Over the repeats that reported it.
    pub stats: Stats,
}

/// One output over the repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputSpread {
    pub path: String,
    /// Each repeat's digest, in order (`None`: missing).
    pub digests: Vec<Option<String>>,
    /// The first repeat whose digest differs from the first repeat's; `None` when all agree.
    pub differs_at: Option<u32>,
    /// Where that repeat's output first differs from the first repeat's (the first repeat on
    /// the original's side of [`Difference`]).
    pub difference: Option<Difference>,
}

impl OutputSpread {
    /// How many different digests the repeats produced.
    pub fn distinct(&self) -> usize {
        self.digests.iter().collect::<BTreeSet<_>>().len()
    }
}

/// What `rerun --repeat N` measured.
#[derive(Debug, Clone, PartialEq)]
pub struct RepeatReport {
    /// The original run's id.
    pub original: String,
    /// The group the repeats are recorded in.
    pub group: String,
    /// How many repeats were asked for.
    pub asked: u32,
    pub repeats: Vec<Repeat>,
    pub metrics: Vec<MetricSpread>,
    pub outputs: Vec<OutputSpread>,
}

impl RepeatReport {
    /// repro's exit code: the first failed repeat's, else 0.
    pub fn exit_code(&self) -> i32 {
        self.repeats
            .iter()
            .map(|r| r.exit)
            .find(|&e| e != 0)
            .unwrap_or(0)
    }

    /// Whether fewer repeats ran than were asked for (one was interrupted by a signal).
    pub fn interrupted(&self) -> bool {
        (self.repeats.len() as u32) < self.asked
    }
}

/// `repro rerun ID --repeat N`: re-runs `req.id` `n` times (as `repro rerun` does, never as a
/// dry run), recording each repeat in one group as it ends; a repeat ended by a signal (Ctrl-C)
/// ends the loop. Then measures the spread.
pub fn repeat(
    ev: &dyn Events,
    store: &mut Store,
    req: &RerunRequest,
    n: u32,
) -> Result<RepeatReport, RerunError> {
    let original = store.get_run(&req.id)?;
    let group = ulid::Ulid::new().to_string().to_ascii_lowercase();
    let req = RerunRequest {
        dry_run: false,
        ..req.clone()
    };
    let mut repeats = Vec::new();
    for seq in 1..=n {
        ev.status(&format!("repeat {seq} of {n}"));
        let RerunResult::Ran { finished, .. } = rerun(ev, store, &req)? else {
            unreachable!("dry_run is off");
        };
        store.add_repeat(&group, &original.id, &finished.id, seq)?;
        let metrics = store.metric_summaries(&finished.id)?;
        let signalled = finished.exit >= 128;
        repeats.push(Repeat {
            seq,
            id: finished.id,
            exit: finished.exit,
            outputs: finished.finish.outputs,
            metrics,
        });
        if signalled {
            ev.warn(&format!(
                "repeat {seq} was ended by a signal; {} of {n} repeats ran",
                seq
            ));
            break;
        }
    }
    let original_metrics = store.metric_summaries(&original.id)?;
    let objects = Objects::beside(store.path());
    Ok(RepeatReport {
        original: original.id.clone(),
        group,
        asked: n,
        metrics: metric_spreads(&original_metrics, &repeats),
        outputs: output_spreads(&objects, &original.outputs, &repeats),
        repeats,
    })
}

/// Every metric of the original or any repeat, by key.
pub fn metric_spreads(original: &[MetricSummary], repeats: &[Repeat]) -> Vec<MetricSpread> {
    let keys: BTreeSet<&String> = original
        .iter()
        .chain(repeats.iter().flat_map(|r| &r.metrics))
        .map(|m| &m.key)
        .collect();
    keys.into_iter()
        .map(|k| {
            let last = |ms: &[MetricSummary]| ms.iter().find(|m| &m.key == k).map(|m| m.last);
            let values: Vec<Option<f64>> = repeats.iter().map(|r| last(&r.metrics)).collect();
            let present: Vec<f64> = values.iter().flatten().copied().collect();
            let nan = f64::NAN;
            MetricSpread {
                key: k.clone(),
                original: last(original),
                stats: Stats::of(&present).unwrap_or(Stats {
                    n: 0,
                    min: nan,
                    max: nan,
                    mean: nan,
                    stddev: nan,
                }),
                values,
            }
        })
        .collect()
}

/// Every output path (the original's, in its order, then any new ones) with each repeat's
/// digest and where the first differing repeat first differs from the first repeat.
fn output_spreads(objects: &Objects, original: &[Output], repeats: &[Repeat]) -> Vec<OutputSpread> {
    let mut paths: Vec<&String> = original.iter().map(|o| &o.path).collect();
    for o in repeats.iter().flat_map(|r| &r.outputs) {
        if !paths.contains(&&o.path) {
            paths.push(&o.path);
        }
    }
    paths
        .into_iter()
        .map(|p| {
            let digests: Vec<Option<String>> = repeats
                .iter()
                .map(|r| {
                    r.outputs
                        .iter()
                        .find(|o| &o.path == p)
                        .and_then(|o| o.sha256.clone())
                })
                .collect();
            let first = digests.first().cloned().flatten();
            let other = digests.iter().position(|d| *d != first);
            let difference = other.and_then(|i| match (&first, &digests[i]) {
                (Some(a), Some(b)) => Some(first_difference(objects, a, b, None)),
                _ => None,
            });
            OutputSpread {
                path: p.clone(),
                differs_at: other.map(|i| repeats[i].seq),
                difference,
                digests,
            }
        })
        .collect()
}

/// The spread of each metric's last value over the recorded runs `ids` (a repeat group), by key.
pub fn recorded_spread(
    store: &Store,
    ids: &[String],
) -> Result<BTreeMap<String, Stats>, crate::store::StoreError> {
    let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for id in ids {
        for m in store.metric_summaries(id)? {
            values.entry(m.key).or_default().push(m.last);
        }
    }
    Ok(values
        .into_iter()
        .filter_map(|(k, v)| Stats::of(&v).map(|s| (k, s)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::diff::one_point;

    #[test]
    fn stats_are_min_max_and_the_sample_standard_deviation() {
        let s = Stats::of(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!((s.n, s.min, s.max, s.mean), (4, 1.0, 4.0, 2.5));
        assert!((s.stddev - 1.2909944487358056).abs() < 1e-12);
        assert_eq!(s.range(), 3.0);
        assert!(s.within_noise(-3.0) && s.within_noise(2.0) && !s.within_noise(3.5));
        assert!(!s.within_noise(f64::NAN));
        let one = Stats::of(&[0.5]).unwrap();
        assert_eq!((one.stddev, one.range()), (0.0, 0.0));
        assert!(one.within_noise(0.0) && !one.within_noise(1e-9));
        let inf = Stats::of(&[f64::INFINITY, f64::INFINITY]).unwrap();
        assert_eq!((inf.stddev, inf.range()), (0.0, 0.0));
        assert!(Stats::of(&[1.0, f64::NAN]).unwrap().stddev.is_nan());
        assert_eq!(Stats::of(&[]), None);
    }

    fn repeat_of(seq: u32, metrics: Vec<MetricSummary>, digest: Option<&str>) -> Repeat {
        Repeat {
            seq,
            id: format!("r{seq}"),
            exit: 0,
            outputs: vec![Output {
                path: "model.bin".into(),
                sha256: digest.map(String::from),
                bytes: None,
                kept: None,
                not_kept: None,
            }],
            metrics,
        }
    }

    #[test]
    fn spreads_cover_every_key_and_name_the_first_differing_repeat() {
        let repeats = vec![
            repeat_of(1, vec![one_point("acc", 0.9)], Some("aa")),
            repeat_of(
                2,
                vec![one_point("acc", 0.8), one_point("new", 1.0)],
                Some("aa"),
            ),
            repeat_of(3, vec![one_point("acc", 0.7)], Some("bb")),
        ];
        let m = metric_spreads(&[one_point("acc", 0.85), one_point("gone", 2.0)], &repeats);
        let keys: Vec<&str> = m.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, vec!["acc", "gone", "new"]);
        assert_eq!(m[0].original, Some(0.85));
        assert_eq!(m[0].values, vec![Some(0.9), Some(0.8), Some(0.7)]);
        assert!((m[0].stats.stddev - 0.1).abs() < 1e-12);
        assert_eq!(m[1].stats.n, 0);
        assert_eq!(m[2].values, vec![None, Some(1.0), None]);
        let dir = tempfile::tempdir().unwrap();
        let objects = Objects::beside(&dir.path().join("db.sqlite"));
        let o = output_spreads(&objects, &[], &repeats);
        assert_eq!(o[0].differs_at, Some(3));
        assert_eq!(o[0].distinct(), 2);
        assert!(o[0].difference.is_some());
    }
}
