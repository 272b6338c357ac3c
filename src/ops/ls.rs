//! The work behind `repro ls` beyond the query itself: refusing metric keys no run has, the
//! values of metric and sweep columns (a running run's from its metrics file), and whether the
//! limit cut the list.

use std::collections::HashMap;

use crate::ops::metric_keys::MetricKeyError;
use crate::record::metrics::MetricSummary;
use crate::record::{Run, Status};
use crate::store::metrics::MetricSort;
use crate::store::{RunQuery, Store, StoreError};

/// Matches counted for the "N of M shown" note; beyond it the note says "over".
pub const COUNT_CAP: u64 = 10_000;

/// How the limit cut the list, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// `shown` of exactly `total` matching runs.
    Of { shown: u64, total: u64 },
    /// `shown` of more than [`COUNT_CAP`] (not counted further).
    OfOver { shown: u64 },
    /// More match than `shown`; how many is not counted (statuses decided row by row, a metric
    /// order, or a metric condition many runs meet next to other filters: see
    /// [`Store::count_matching`]).
    More { shown: u64 },
}

/// Whether the limit of `q` cut a list of `shown` runs: one bounded SQL count, or one more run
/// read when a count cannot be exact.
pub fn cut(store: &Store, q: &RunQuery, shown: u64) -> Result<Option<Cut>, StoreError> {
    let Some(limit) = q.filter.limit else {
        return Ok(None);
    };
    if shown < limit {
        return Ok(None);
    }
    if let Some(total) = store.count_matching(q, COUNT_CAP)? {
        return Ok(match total {
            t if t > COUNT_CAP => Some(Cut::OfOver { shown }),
            t if t > shown => Some(Cut::Of { shown, total: t }),
            _ => None,
        });
    }
    let mut more = q.clone();
    more.filter.limit = Some(limit + 1);
    let found = if q.metric_sort.is_some() {
        store.query(&more)?.len()
    } else {
        store.query_rows(&more)?.len()
    };
    Ok((found as u64 > shown).then_some(Cut::More { shown }))
}

/// Checks the metric keys `ls` was given (`--sort`, `--where`, `--columns`, each with its flag):
/// some run must have each (see [`crate::ops::metric_keys::check`]).
pub fn check_keys(
    store: &Store,
    q: &RunQuery,
    columns: &[&MetricSort],
) -> Result<(), MetricKeyError> {
    let mut keys: Vec<(&str, &'static str)> = Vec::new();
    for (m, _) in q.metric_sort.iter().chain(&q.then_by) {
        keys.push((&m.key, "--sort"));
    }
    keys.extend(q.filter.metrics.iter().map(|c| (c.key.as_str(), "--where")));
    keys.extend(columns.iter().map(|m| (m.key.as_str(), "--columns")));
    crate::ops::metric_keys::check(store, &keys)
}

/// A run's metric summaries: the stored ones, or, for a running run that has none stored yet,
/// those of its metrics file so far.
pub fn summaries(store: &Store, run: &Run) -> Result<Vec<MetricSummary>, StoreError> {
    let stored = store.metric_summaries(&run.id)?;
    if stored.is_empty() && run.status == Status::Running {
        return Ok(crate::ops::follow::live_summaries(store, &run.id));
    }
    Ok(stored)
}

/// The values of each metric column for `runs`, by run id: stored values, and for running runs
/// the latest ones of their metrics file (read once per running run).
pub fn metric_columns(
    store: &Store,
    runs: &[Run],
    metrics: &[&MetricSort],
) -> Result<Vec<HashMap<String, f64>>, StoreError> {
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    let mut live: HashMap<&str, Vec<MetricSummary>> = HashMap::new();
    if !metrics.is_empty() {
        for r in runs.iter().filter(|r| r.status == Status::Running) {
            live.insert(&r.id, crate::ops::follow::live_summaries(store, &r.id));
        }
    }
    let mut out = Vec::with_capacity(metrics.len());
    for m in metrics {
        let mut values = store.metric_values(&ids, &m.key, m.stat)?;
        for (id, summaries) in &live {
            if let Some(s) = summaries.iter().find(|s| s.key == m.key) {
                values.entry(id.to_string()).or_insert(m.stat.of(s));
            }
        }
        out.push(values);
    }
    Ok(out)
}

/// The sweep of each run that belongs to one.
pub fn sweeps(store: &Store, runs: &[Run]) -> Result<HashMap<String, String>, StoreError> {
    let mut out = HashMap::new();
    for r in runs {
        if let Some(s) = store.sweep_of(&r.id)? {
            out.insert(r.id.clone(), s);
        }
    }
    Ok(out)
}

/// One page of an `ls` listing (`repro ui`'s `/api/runs`): the runs after `offset`, how many
/// match in all when one bounded count (or the end of the list) says it, and whether more follow.
#[derive(Debug, Clone)]
pub struct Page {
    /// The runs of the page, in the query's order.
    pub runs: Vec<Run>,
    /// How many runs match in all, when known: counted up to [`COUNT_CAP`], or seen to end on
    /// this page.
    pub total: Option<u64>,
    /// More than [`COUNT_CAP`] runs match (not counted further).
    pub total_over: bool,
    /// Runs follow this page.
    pub more: bool,
}

/// The page of `q` (its limit is the page size, `None`: every run) starting `offset` runs in:
/// the runs before it are skipped by the query (see [`Store::query_from`]), not completed.
pub fn page(store: &Store, q: &RunQuery, offset: u64) -> Result<Page, StoreError> {
    let mut read = q.clone();
    read.filter.limit = q.filter.limit.map(|l| l.saturating_add(1));
    let mut runs = store.query_from(&read, offset)?;
    let more = q.filter.limit.is_some_and(|l| runs.len() as u64 > l);
    if let Some(l) = q.filter.limit {
        runs.truncate(l as usize);
    }
    let (total, total_over) = match store.count_matching(q, COUNT_CAP)? {
        Some(t) if t > COUNT_CAP => (None, true),
        Some(t) => (Some(t), false),
        // Not counted (statuses decided row by row, a metric order, or a metric condition with
        // too many candidates): known only when the list ended here.
        None if !more => {
            // The runs before the page: all of the offset when some are on it; past the end,
            // as many as there are.
            let before = if runs.is_empty() && offset > 0 {
                store.count_upto(q, offset)?
            } else {
                offset
            };
            (Some(before + runs.len() as u64), false)
        }
        None => (None, false),
    };
    Ok(Page {
        runs,
        total,
        total_over,
        more,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{paged_queries, paged_store};

    /// The page as [`page`] made it before offsets were pushed into the query: it read
    /// `offset + limit + 1` complete runs and dropped the first `offset`.
    fn old_page(store: &Store, q: &RunQuery, offset: u64) -> Page {
        let mut read = q.clone();
        read.filter.limit = q
            .filter
            .limit
            .map(|l| l.saturating_add(offset).saturating_add(1));
        let mut runs = store.query(&read).unwrap();
        let skip = (offset as usize).min(runs.len());
        runs.drain(..skip);
        let more = q.filter.limit.is_some_and(|l| runs.len() as u64 > l);
        if let Some(l) = q.filter.limit {
            runs.truncate(l as usize);
        }
        let (total, total_over) = match store.count_matching(q, COUNT_CAP).unwrap() {
            Some(t) if t > COUNT_CAP => (None, true),
            Some(t) => (Some(t), false),
            None if !more => (Some(skip as u64 + runs.len() as u64), false),
            None => (None, false),
        };
        Page {
            runs,
            total,
            total_over,
            more,
        }
    }

    #[test]
    fn pages_say_what_the_old_pages_said() {
        let s = paged_store(17);
        for (what, q) in paged_queries() {
            for limit in [Some(1), Some(4), None] {
                for offset in [0, 1, 3, 4, 7, 8, 12, 13, 16, 17, 30] {
                    let mut q = q.clone();
                    q.filter.limit = limit;
                    let want = old_page(&s, &q, offset);
                    let got = page(&s, &q, offset).unwrap();
                    let at = format!("{what}, limit {limit:?}, offset {offset}");
                    assert_eq!(got.runs, want.runs, "{at}");
                    assert_eq!(
                        (got.total, got.total_over, got.more),
                        (want.total, want.total_over, want.more),
                        "{at}"
                    );
                }
            }
        }
    }
}
