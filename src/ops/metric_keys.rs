//! Metric keys named on the command line (`ls --sort metric:KEY`, `--where 'metric:KEY>…'`,
//! `--columns metric:KEY`) checked against the store: a key no run has is a typo far more often
//! than a question, so it is refused with the closest recorded keys instead of an empty or
//! silently unsorted list.

use crate::error::Hinted;
use crate::store::{Store, StoreError};

/// A metric key no stored run has.
#[derive(Debug, thiserror::Error)]
pub enum MetricKeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no run has a metric '{}' (in {flag})", crate::sanitize::escape(key))]
    Unknown {
        key: String,
        flag: &'static str,
        /// The recorded keys closest to it, closest first (at most 3).
        closest: Vec<String>,
        /// How many keys are recorded in all.
        recorded: usize,
    },
}

impl Hinted for MetricKeyError {
    fn hint(&self) -> Option<String> {
        match self {
            MetricKeyError::Store(e) => e.hint(),
            MetricKeyError::Unknown { recorded: 0, .. } => {
                Some("no run has recorded metrics yet (see docs/metrics.md)".into())
            }
            MetricKeyError::Unknown {
                closest, recorded, ..
            } if closest.is_empty() => Some(format!(
                "none of the {recorded} recorded keys is close; `repro show ID` lists a run's metrics"
            )),
            MetricKeyError::Unknown { closest, .. } => Some(format!(
                "did you mean {}?",
                closest
                    .iter()
                    .map(|k| format!("metric:{}", crate::sanitize::escape(k)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

/// Checks that some run has each of `keys` (with the flag that named it): a stored run, or a
/// running one whose metrics file has it (its points are stored when it ends).
pub fn check(store: &Store, keys: &[(&str, &'static str)]) -> Result<(), MetricKeyError> {
    let mut recorded: Option<Vec<String>> = None;
    for (key, flag) in keys {
        if store.metric_key_exists(key)? {
            continue;
        }
        let all = match &recorded {
            Some(r) => r,
            None => recorded.insert({
                let mut all = store.metric_keys()?;
                all.extend(live_keys(store)?);
                all.sort();
                all.dedup();
                all
            }),
        };
        if all.iter().any(|k| k == key) {
            continue;
        }
        return Err(MetricKeyError::Unknown {
            key: key.to_string(),
            flag,
            closest: closest(key, all),
            recorded: all.len(),
        });
    }
    Ok(())
}

/// The metric keys in the metrics files of the runs stored as running.
fn live_keys(store: &Store) -> Result<Vec<String>, MetricKeyError> {
    let q = crate::store::RunQuery {
        status: vec![crate::record::Status::Running],
        ..Default::default()
    };
    let mut keys = Vec::new();
    for r in store.query_rows(&q)? {
        keys.extend(
            crate::ops::follow::live_summaries(store, &r.id)
                .into_iter()
                .map(|s| s.key),
        );
    }
    Ok(keys)
}

/// The keys of `known` within a small edit distance of `key` (a third of its length, at least
/// 2; case ignored), closest first, at most 3; a key containing `key` or contained in it counts.
pub fn closest(key: &str, known: &[String]) -> Vec<String> {
    let k = key.to_lowercase();
    let bound = (k.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &String)> = known
        .iter()
        .filter_map(|c| {
            let c_low = c.to_lowercase();
            let d = distance(&k, &c_low);
            let near = d <= bound || (!k.is_empty() && (c_low.contains(&k) || k.contains(&c_low)));
            near.then_some((d, c))
        })
        .collect();
    scored.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    scored.into_iter().take(3).map(|(_, c)| c.clone()).collect()
}

/// Levenshtein distance over characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn typos_find_their_key() {
        let known = keys(&["val_acc", "val_loss", "train/loss", "lr", "epoch"]);
        assert_eq!(closest("val_accc", &known)[0], "val_acc");
        assert_eq!(closest("VAL_ACC", &known)[0], "val_acc");
        assert_eq!(closest("loss", &known), keys(&["val_loss", "train/loss"]));
        assert!(closest("throughput", &known).is_empty());
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "ab"), 2);
    }
}
