//! Metric storage: each run's points per key (`metric_points`) and a per-run summary
//! (`run_metrics`: last, min, max, count, last step) indexed by key for `ls` sorting and
//! filtering; and the `metric:KEY…` expressions of `--sort` / `--where` compiled to SQL.

use std::collections::HashMap;

use rusqlite::types::Value;
use rusqlite::{params, OptionalExtension};

use super::{sql_error, Result, Store, StoreError};
use crate::error::Hinted;
use crate::record::metrics::{summarize, HistoryPoint, MetricPoint, MetricSummary, RunningSummary};

/// What `insert_metrics` wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsWritten {
    /// Distinct keys.
    pub keys: usize,
    /// Points.
    pub points: usize,
}

fn nan_to_null(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

fn null_to_nan(v: Option<f64>) -> f64 {
    v.unwrap_or(f64::NAN)
}

impl Store {
    /// Records metric points of a run in one transaction. Points of a key already stored for the
    /// run are appended to its history and its summary is updated. Fails with `UnknownRun` when
    /// no run has this id.
    pub fn insert_metrics(
        &mut self,
        run_id: &str,
        points: &[MetricPoint],
    ) -> Result<MetricsWritten> {
        let path = self.path.clone();
        // A run's metrics can be a million points (one JSON-lines file). Two connection settings
        // make that write about a third cheaper (BENCHMARKS.md): a page cache large enough to
        // hold the new pages (64 MiB at most, allocated only as used), and no foreign-key probe
        // per point — `insert_metrics_in` checks the run itself inside the transaction, and every
        // point's series is one it just found or created. Both settings are restored afterwards,
        // whether the write succeeded or not (neither can change inside a transaction).
        let cache: i64 = self
            .conn
            .query_row("PRAGMA cache_size", [], |r| r.get(0))
            .map_err(sql_error(&path, "prepare the metrics write"))?;
        self.conn
            .execute_batch("PRAGMA foreign_keys=OFF; PRAGMA cache_size=-65536;")
            .map_err(sql_error(&path, "prepare the metrics write"))?;
        let written = (|| -> Result<MetricsWritten> {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(sql_error(&path, "begin"))?;
            let written = insert_metrics_in(&tx, &path, run_id, points)?;
            tx.commit().map_err(sql_error(&path, "commit"))?;
            Ok(written)
        })();
        let restored = self
            .conn
            .execute_batch(&format!(
                "PRAGMA foreign_keys=ON; PRAGMA cache_size={cache};"
            ))
            .map_err(sql_error(&path, "finish the metrics write"));
        let written = written?;
        restored?;
        Ok(written)
    }

    /// [`Store::insert_metrics`] for many runs in one transaction (fixtures, benchmarks).
    pub fn insert_metrics_batch(
        &mut self,
        runs: &[(String, Vec<MetricPoint>)],
    ) -> Result<MetricsWritten> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql_error(&path, "begin"))?;
        let mut all = MetricsWritten::default();
        for (id, points) in runs {
            let w = insert_metrics_in(&tx, &path, id, points)?;
            all.keys += w.keys;
            all.points += w.points;
        }
        tx.commit().map_err(sql_error(&path, "commit"))?;
        Ok(all)
    }

    /// Whether some run has a metric `key` (one index probe).
    pub fn metric_key_exists(&self, key: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM run_metrics WHERE key = ?1)",
                [key],
                |r| r.get(0),
            )
            .map_err(self.sql_err("read metrics"))
    }

    /// Every metric key recorded for any run, sorted (for hints and completion): a skip scan of
    /// the key index (one probe per distinct key, not a read of every row).
    pub fn metric_keys(&self) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare_cached(
                "WITH RECURSIVE k(key) AS (
                     SELECT min(key) FROM run_metrics
                     UNION ALL
                     SELECT (SELECT min(key) FROM run_metrics WHERE key > k.key) FROM k
                     WHERE k.key IS NOT NULL
                 )
                 SELECT key FROM k WHERE key IS NOT NULL",
            )
            .map_err(self.sql_err("read metrics"))?;
        let keys = st
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(self.sql_err("read metrics"))?;
        Ok(keys)
    }

    /// The summary of every metric of a run, by key.
    pub fn metric_summaries(&self, run_id: &str) -> Result<Vec<MetricSummary>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT key, last, min, max, count, last_step FROM run_metrics WHERE run_id = ?1 ORDER BY key",
            )
            .map_err(self.sql_err("read metrics"))?;
        let rows = st
            .query_map([run_id], |r| {
                Ok(MetricSummary {
                    key: r.get(0)?,
                    last: null_to_nan(r.get(1)?),
                    min: null_to_nan(r.get(2)?),
                    max: null_to_nan(r.get(3)?),
                    count: r.get::<_, i64>(4)? as u64,
                    last_step: r.get(5)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(self.sql_err("read metrics"))?;
        Ok(rows)
    }

    /// The history of one metric of a run in report order (empty when the run has no such key).
    pub fn metric_history(&self, run_id: &str, key: &str) -> Result<Vec<HistoryPoint>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT p.seq, p.step, p.value, p.time FROM run_metrics AS m JOIN metric_points AS p ON p.series = m.series \
                 WHERE m.run_id = ?1 AND m.key = ?2 ORDER BY p.seq",
            )
            .map_err(self.sql_err("read metric history"))?;
        let rows = st
            .query_map([run_id, key], |r| {
                Ok(HistoryPoint {
                    seq: r.get::<_, i64>(0)? as u64,
                    step: r.get(1)?,
                    value: null_to_nan(r.get(2)?),
                    time: r.get(3)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(self.sql_err("read metric history"))?;
        Ok(rows)
    }

    /// Every point of a run, key by key in key order (for export and `show --history`).
    pub fn metric_points(&self, run_id: &str) -> Result<Vec<MetricPoint>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT m.key, p.step, p.value, p.time FROM run_metrics AS m JOIN metric_points AS p ON p.series = m.series \
                 WHERE m.run_id = ?1 ORDER BY m.key, p.seq",
            )
            .map_err(self.sql_err("read metric history"))?;
        let mut out: Vec<MetricPoint> = Vec::new();
        let mut rows = st
            .query([run_id])
            .map_err(self.sql_err("read metric history"))?;
        while let Some(r) = rows.next().map_err(self.sql_err("read metric history"))? {
            let key: String = r.get(0).map_err(self.sql_err("read metric history"))?;
            let key = match out.last() {
                Some(p) if *p.key == *key => p.key.clone(),
                _ => key.into(),
            };
            out.push(MetricPoint {
                key,
                step: r.get(1).map_err(self.sql_err("read metric history"))?,
                value: null_to_nan(r.get(2).map_err(self.sql_err("read metric history"))?),
                time: r.get(3).map_err(self.sql_err("read metric history"))?,
            });
        }
        Ok(out)
    }

    /// One statistic of one metric for each of `run_ids` that has it (for `--columns metric:KEY`).
    pub fn metric_values(
        &self,
        run_ids: &[&str],
        key: &str,
        stat: Stat,
    ) -> Result<HashMap<String, f64>> {
        let sql = format!(
            "SELECT {} FROM run_metrics WHERE run_id = ?1 AND key = ?2",
            stat.column()
        );
        let mut st = self
            .conn
            .prepare_cached(&sql)
            .map_err(self.sql_err("read metrics"))?;
        let mut out = HashMap::new();
        for id in run_ids {
            let v: Option<Option<f64>> = st
                .query_row([id, &key], |r| r.get(0))
                .optional()
                .map_err(self.sql_err("read metrics"))?;
            if let Some(v) = v {
                out.insert(id.to_string(), null_to_nan(v));
            }
        }
        Ok(out)
    }
}

impl Store {
    /// Starts writing the metric points of run `run_id` a batch at a time
    /// ([`MetricsIngest::push`]), for a source too large to hold all its points at once: the
    /// result is that of one [`Store::insert_metrics`] of every point pushed, in one transaction
    /// with the same settings. Nothing is written, not even a transaction begun, until a point
    /// is pushed; nothing is kept unless [`MetricsIngest::finish`] succeeds.
    pub fn ingest_metrics(&mut self, run_id: &str) -> MetricsIngest<'_> {
        MetricsIngest {
            store: self,
            run_id: run_id.to_string(),
            open: None,
            mark: Mark::None,
        }
    }
}

/// Metric points of one run being written in one transaction; see [`Store::ingest_metrics`].
/// Dropped without [`MetricsIngest::finish`], it writes nothing (the transaction rolls back).
pub struct MetricsIngest<'s> {
    store: &'s mut Store,
    run_id: String,
    /// Set from the first point on: the transaction is open.
    open: Option<Open>,
    /// Where the current source began ([`MetricsIngest::begin_source`]).
    mark: Mark,
}

/// The state of an open ingest transaction.
#[derive(Clone)]
struct Open {
    /// The connection's page-cache size before, restored at the end.
    cache: i64,
    /// The id the next new series gets: SQLite's own choice (the largest plus one), made here
    /// because a new series' row is written at the end, with its summary, after its points.
    next_series: i64,
    /// Index in `series` by key.
    keys: HashMap<String, usize>,
    /// Every key pushed, in the order first pushed.
    series: Vec<(String, Series)>,
    points: usize,
}

#[derive(Clone)]
struct Series {
    id: i64,
    /// Whether `run_metrics` had this key before (its row is updated, not inserted).
    stored: bool,
    summary: RunningSummary,
    /// The sequence number of the next point.
    next_seq: i64,
}

enum Mark {
    None,
    /// The source began before the transaction: dropping it rolls the transaction back.
    Fresh,
    /// The source began inside the transaction, at savepoint `metrics_source` with this state.
    Saved(Box<Open>),
}

impl MetricsIngest<'_> {
    /// Writes the points of one batch (their keys' summaries are written by `finish`). Fails
    /// with `UnknownRun` when no run has the id; after an error, drop the ingest.
    pub fn push(&mut self, points: &[MetricPoint]) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        if self.open.is_none() {
            self.open = Some(self.begin()?);
        }
        let path = &self.store.path;
        let tx = &self.store.conn;
        let err = |what: &'static str| sql_error(path, what);
        let open = self.open.as_mut().expect("the transaction was just begun");
        let groups = group_by_key(points);
        let mut inserts = PointInserts::prepare(tx, path)?;
        for (key, pts) in &groups {
            let i = match open.keys.get(*key) {
                Some(i) => *i,
                None => {
                    let series = find_series(tx, path, &self.run_id, key, &mut open.next_series)?;
                    open.series.push((key.to_string(), series));
                    open.keys.insert(key.to_string(), open.series.len() - 1);
                    open.series.len() - 1
                }
            };
            let series = &mut open.series[i].1;
            pts.iter().for_each(|p| series.summary.add(p));
            series.next_seq = inserts
                .append(series.id, series.next_seq, pts)
                .map_err(err("insert metric points"))?;
        }
        open.points += points.len();
        Ok(())
    }

    /// Marks the start of one source (a file): [`MetricsIngest::end_source`] keeps or drops
    /// exactly the points pushed since.
    pub fn begin_source(&mut self) -> Result<()> {
        self.mark = match &self.open {
            None => Mark::Fresh,
            Some(open) => {
                self.store
                    .conn
                    .execute_batch("SAVEPOINT metrics_source")
                    .map_err(sql_error(&self.store.path, "insert metrics"))?;
                Mark::Saved(Box::new(open.clone()))
            }
        };
        Ok(())
    }

    /// Ends the source begun last: its points are kept, or (`keep` false: the source was refused
    /// after some of its points were pushed) dropped as if never pushed.
    pub fn end_source(&mut self, keep: bool) -> Result<()> {
        let path = &self.store.path;
        match (std::mem::replace(&mut self.mark, Mark::None), keep) {
            (Mark::None, _) | (Mark::Fresh, true) => Ok(()),
            (Mark::Saved(_), true) => self
                .store
                .conn
                .execute_batch("RELEASE metrics_source")
                .map_err(sql_error(path, "insert metrics")),
            (Mark::Saved(before), false) => {
                self.store
                    .conn
                    .execute_batch("ROLLBACK TO metrics_source; RELEASE metrics_source")
                    .map_err(sql_error(path, "insert metrics"))?;
                self.open = Some(*before);
                Ok(())
            }
            (Mark::Fresh, false) => match self.open.take() {
                Some(open) => self.rollback(&open),
                None => Ok(()),
            },
        }
    }

    /// Writes each key's summary (merged with the one stored before, as `insert_metrics` does)
    /// and commits. Without a point pushed, writes nothing.
    pub fn finish(mut self) -> Result<MetricsWritten> {
        let Some(open) = self.open.take() else {
            return Ok(MetricsWritten::default());
        };
        let written = self.write_summaries(&open).and_then(|()| {
            self.store
                .conn
                .execute_batch("COMMIT")
                .map_err(sql_error(&self.store.path, "commit"))
        });
        if let Err(e) = written {
            let _ = self.rollback(&open);
            return Err(e);
        }
        self.restore(&open)?;
        Ok(MetricsWritten {
            keys: open.series.len(),
            points: open.points,
        })
    }

    /// The settings of `insert_metrics` (see there), `BEGIN IMMEDIATE`, and the run checked.
    fn begin(&mut self) -> Result<Open> {
        let path = self.store.path.clone();
        let conn = &self.store.conn;
        let cache: i64 = conn
            .query_row("PRAGMA cache_size", [], |r| r.get(0))
            .map_err(sql_error(&path, "prepare the metrics write"))?;
        let open = Open {
            cache,
            next_series: 0,
            keys: HashMap::new(),
            series: Vec::new(),
            points: 0,
        };
        let begun = conn
            .execute_batch("PRAGMA foreign_keys=OFF; PRAGMA cache_size=-65536;")
            .map_err(sql_error(&path, "prepare the metrics write"))
            .and_then(|()| {
                conn.execute_batch("BEGIN IMMEDIATE")
                    .map_err(sql_error(&path, "begin"))
            });
        if let Err(e) = begun {
            let _ = self.restore(&open);
            return Err(e);
        }
        let checked = (|| -> Result<i64> {
            let exists: Option<i64> = conn
                .query_row("SELECT 1 FROM runs WHERE id = ?1", [&self.run_id], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(sql_error(&path, "insert metrics"))?;
            if exists.is_none() {
                return Err(StoreError::UnknownRun(self.run_id.clone()));
            }
            let max: Option<i64> = conn
                .query_row("SELECT max(series) FROM run_metrics", [], |r| r.get(0))
                .map_err(sql_error(&path, "insert metrics"))?;
            Ok(max.unwrap_or(0) + 1)
        })();
        match checked {
            Ok(next_series) => Ok(Open {
                next_series,
                ..open
            }),
            Err(e) => {
                let _ = self.rollback(&open);
                Err(e)
            }
        }
    }

    fn write_summaries(&self, open: &Open) -> Result<()> {
        let tx = &self.store.conn;
        let err = |what: &'static str| sql_error(&self.store.path, what);
        let mut insert_series = tx
            .prepare_cached(
                "INSERT INTO run_metrics (series, run_id, key, last, min, max, count, last_step) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(err("insert metrics"))?;
        let mut update_series = tx
            .prepare_cached(
                "UPDATE run_metrics SET last = ?2, min = ?3, max = ?4, count = ?5, last_step = ?6 WHERE series = ?1",
            )
            .map_err(err("insert metrics"))?;
        for (key, s) in &open.series {
            let (last, last_step, min, max) = s.summary.parts();
            let count = s.summary.count() as i64;
            if s.stored {
                update_series.execute(params![
                    s.id,
                    nan_to_null(last),
                    nan_to_null(min),
                    nan_to_null(max),
                    count,
                    last_step
                ])
            } else {
                insert_series.execute(params![
                    s.id,
                    self.run_id,
                    key,
                    nan_to_null(last),
                    nan_to_null(min),
                    nan_to_null(max),
                    count,
                    last_step
                ])
            }
            .map_err(err("insert metrics"))?;
        }
        Ok(())
    }

    fn rollback(&self, open: &Open) -> Result<()> {
        let rolled = self
            .store
            .conn
            .execute_batch("ROLLBACK")
            .map_err(sql_error(&self.store.path, "roll back"));
        let restored = self.restore(open);
        rolled.and(restored)
    }

    /// Foreign keys back on and the page cache as it was.
    fn restore(&self, open: &Open) -> Result<()> {
        self.store
            .conn
            .execute_batch(&format!(
                "PRAGMA foreign_keys=ON; PRAGMA cache_size={};",
                open.cache
            ))
            .map_err(sql_error(&self.store.path, "finish the metrics write"))
    }
}

impl Drop for MetricsIngest<'_> {
    fn drop(&mut self) {
        if let Some(open) = self.open.take() {
            let _ = self.rollback(&open);
        }
    }
}

/// The series of `key` of the run: the stored one, its summary to be continued, or a new id.
fn find_series(
    tx: &rusqlite::Connection,
    path: &std::path::Path,
    run_id: &str,
    key: &str,
    next_series: &mut i64,
) -> Result<Series> {
    type Old = (i64, Option<f64>, Option<f64>, Option<f64>, i64, Option<i64>);
    let old: Option<Old> = tx
        .prepare_cached(
            "SELECT series, last, min, max, count, last_step FROM run_metrics WHERE run_id = ?1 AND key = ?2",
        )
        .and_then(|mut st| {
            st.query_row(params![run_id, key], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
            })
            .optional()
        })
        .map_err(sql_error(path, "insert metrics"))?;
    Ok(match old {
        Some((id, last, min, max, count, last_step)) => Series {
            id,
            stored: true,
            summary: RunningSummary::resume(
                null_to_nan(last),
                last_step,
                null_to_nan(min),
                null_to_nan(max),
                count as u64,
            ),
            next_seq: count,
        },
        None => {
            let id = *next_series;
            *next_series += 1;
            Series {
                id,
                stored: false,
                summary: RunningSummary::default(),
                next_seq: 0,
            }
        }
    })
}

/// Points written by one `INSERT` statement (5 parameters each, far below SQLite's limit).
const POINTS_PER_INSERT: usize = 256;

fn points_insert_sql(rows: usize) -> String {
    let mut sql =
        String::from("INSERT INTO metric_points (series, seq, step, value, time) VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        let b = r * 5;
        sql.push_str(&format!(
            "(?{}, ?{}, ?{}, ?{}, ?{})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5
        ));
    }
    sql
}

/// Binds `points` (as many as the statement has rows) from sequence number `seq` and runs it.
/// Points grouped by key: keys in the order they first appeared, points in report order.
fn group_by_key(points: &[MetricPoint]) -> Vec<(&str, Vec<&MetricPoint>)> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut groups: Vec<(&str, Vec<&MetricPoint>)> = Vec::new();
    for p in points {
        let i = *index.entry(&p.key).or_insert_with(|| {
            groups.push((&p.key, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(p);
    }
    groups
}

/// The statements that append a series' points: many rows per statement, one sqlite3_step per
/// `POINTS_PER_INSERT` points instead of one per point (the per-statement overhead dominated a
/// million-point ingest), the remainder one at a time.
struct PointInserts<'c> {
    many: rusqlite::CachedStatement<'c>,
    one: rusqlite::CachedStatement<'c>,
}

impl<'c> PointInserts<'c> {
    fn prepare(tx: &'c rusqlite::Connection, path: &std::path::Path) -> Result<Self> {
        let err = || sql_error(path, "insert metric points");
        Ok(PointInserts {
            many: tx
                .prepare_cached(&points_insert_sql(POINTS_PER_INSERT))
                .map_err(err())?,
            one: tx
                .prepare_cached(
                    "INSERT INTO metric_points (series, seq, step, value, time) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(err())?,
        })
    }

    /// Appends `points` to `series` from sequence number `seq`; the next free number.
    fn append(
        &mut self,
        series: i64,
        mut seq: i64,
        points: &[&MetricPoint],
    ) -> rusqlite::Result<i64> {
        let mut chunks = points.chunks_exact(POINTS_PER_INSERT);
        for chunk in chunks.by_ref() {
            bind_points(&mut self.many, series, seq, chunk)?;
            seq += chunk.len() as i64;
        }
        for p in chunks.remainder() {
            bind_points(&mut self.one, series, seq, std::slice::from_ref(p))?;
            seq += 1;
        }
        Ok(seq)
    }
}

fn bind_points(
    st: &mut rusqlite::CachedStatement<'_>,
    series: i64,
    seq: i64,
    points: &[&MetricPoint],
) -> rusqlite::Result<()> {
    for (r, p) in points.iter().enumerate() {
        let b = r * 5;
        st.raw_bind_parameter(b + 1, series)?;
        st.raw_bind_parameter(b + 2, seq + r as i64)?;
        st.raw_bind_parameter(b + 3, p.step)?;
        st.raw_bind_parameter(b + 4, nan_to_null(p.value))?;
        st.raw_bind_parameter(b + 5, p.time)?;
    }
    st.raw_execute()?;
    Ok(())
}

/// [`Store::insert_metrics`] inside the caller's transaction (`import` writes a run and its
/// metrics in one).
pub(super) fn insert_metrics_in(
    tx: &rusqlite::Connection,
    path: &std::path::Path,
    run_id: &str,
    points: &[MetricPoint],
) -> Result<MetricsWritten> {
    let err = |what: &'static str| sql_error(path, what);
    let exists: Option<i64> = tx
        .query_row("SELECT 1 FROM runs WHERE id = ?1", [run_id], |r| r.get(0))
        .optional()
        .map_err(err("insert metrics"))?;
    if exists.is_none() {
        return Err(StoreError::UnknownRun(run_id.to_string()));
    }
    let groups = group_by_key(points);
    {
        let mut find = tx
                .prepare_cached(
                    "SELECT series, last, min, max, count, last_step FROM run_metrics WHERE run_id = ?1 AND key = ?2",
                )
                .map_err(err("insert metrics"))?;
        let mut insert_series = tx
                .prepare_cached(
                    "INSERT INTO run_metrics (run_id, key, last, min, max, count, last_step) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(err("insert metrics"))?;
        let mut update_series = tx
                .prepare_cached(
                    "UPDATE run_metrics SET last = ?2, min = ?3, max = ?4, count = ?5, last_step = ?6 WHERE series = ?1",
                )
                .map_err(err("insert metrics"))?;
        let mut inserts = PointInserts::prepare(tx, path)?;
        for (key, pts) in &groups {
            type Old = (i64, Option<f64>, Option<f64>, Option<f64>, i64, Option<i64>);
            let old: Option<Old> = find
                .query_row(params![run_id, key], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })
                .optional()
                .map_err(err("insert metrics"))?;
            let (mut last, mut last_step, mut min, mut max) = summarize(pts);
            let (series, first_seq) = match old {
                None => {
                    insert_series
                        .execute(params![
                            run_id,
                            key,
                            nan_to_null(last),
                            nan_to_null(min),
                            nan_to_null(max),
                            pts.len() as i64,
                            last_step
                        ])
                        .map_err(err("insert metrics"))?;
                    (tx.last_insert_rowid(), 0i64)
                }
                Some((series, o_last, o_min, o_max, o_count, o_step)) => {
                    // The stored last stays when it is at a higher step than anything new.
                    let keep_old = match (o_step, last_step) {
                        (Some(o), Some(n)) => o > n,
                        (Some(_), None) => true,
                        _ => false,
                    };
                    if keep_old {
                        last = null_to_nan(o_last);
                        last_step = o_step;
                    }
                    min = min.min(null_to_nan(o_min));
                    max = max.max(null_to_nan(o_max));
                    let count = o_count + pts.len() as i64;
                    update_series
                        .execute(params![
                            series,
                            nan_to_null(last),
                            nan_to_null(min),
                            nan_to_null(max),
                            count,
                            last_step
                        ])
                        .map_err(err("insert metrics"))?;
                    (series, o_count)
                }
            };
            inserts
                .append(series, first_seq, pts)
                .map_err(err("insert metric points"))?;
        }
    }
    Ok(MetricsWritten {
        keys: groups.len(),
        points: points.len(),
    })
}

/// Which number of a metric's summary an expression means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Stat {
    /// The value at the highest step (the default).
    #[default]
    Last,
    Min,
    Max,
    /// How many points were reported.
    Count,
}

impl Stat {
    /// The `run_metrics` column.
    pub fn column(self) -> &'static str {
        match self {
            Stat::Last => "last",
            Stat::Min => "min",
            Stat::Max => "max",
            Stat::Count => "count",
        }
    }

    fn parse(s: &str) -> Option<Stat> {
        Some(match s {
            "last" => Stat::Last,
            "min" => Stat::Min,
            "max" => Stat::Max,
            "count" => Stat::Count,
            _ => return None,
        })
    }

    /// This statistic of a summary.
    pub fn of(self, s: &MetricSummary) -> f64 {
        match self {
            Stat::Last => s.last,
            Stat::Min => s.min,
            Stat::Max => s.max,
            Stat::Count => s.count as f64,
        }
    }
}

/// A comparison of `--where 'metric:KEY<op>NUMBER'`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl CmpOp {
    fn sql(self) -> &'static str {
        match self {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
        }
    }
}

/// Errors in `metric:` expressions; each names the expression.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricExprError {
    #[error("'{0}' is not a metric expression: it must start with 'metric:'")]
    NoPrefix(String),
    #[error("'{0}' names no metric: the key after 'metric:' is empty")]
    EmptyKey(String),
    #[error("'{0}' has no comparison: use one of <, <=, >, >=, =, !=")]
    NoOperator(String),
    #[error("'{expr}': '{value}' is not a number to compare with")]
    BadNumber { expr: String, value: String },
    #[error("'{expr}': unknown statistic ':{stat}' (use :last, :min, :max or :count)")]
    BadStat { expr: String, stat: String },
}

impl Hinted for MetricExprError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            MetricExprError::BadStat { .. } => {
                "e.g. --sort metric:loss:min or --where 'metric:loss:min<0.2'; a key that contains ':' needs its statistic spelled out: metric:val:acc:last".into()
            }
            _ => "write metric:KEY<op>NUMBER, e.g. --where 'metric:acc>=0.9' (quote it for the shell); sort with --sort metric:KEY".into(),
        })
    }
}

/// `--sort metric:KEY[:last|min|max|count]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSort {
    pub key: String,
    pub stat: Stat,
}

/// `--where 'metric:KEY[:STAT] <op> NUMBER'`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricCond {
    pub key: String,
    pub stat: Stat,
    pub op: CmpOp,
    pub value: f64,
}

/// Whether a `--sort`/`--where`/`--columns` value is a metric expression.
pub fn is_metric_expr(s: &str) -> bool {
    s.trim_start().starts_with("metric:")
}

/// Splits `KEY[:STAT]`. A `:` in the expression always introduces a statistic, so a typo such
/// as `metric:acc:median` is an error rather than a search for a key named `acc:median`; a key
/// that itself contains `:` is written with its statistic spelled out (`metric:val:acc:last`).
fn key_and_stat(expr: &str, body: &str) -> std::result::Result<(String, Stat), MetricExprError> {
    let body = body.trim();
    let (key, stat) = match body.rsplit_once(':') {
        Some((k, s)) => match Stat::parse(s.trim()) {
            Some(stat) => (k.trim(), stat),
            None => {
                return Err(MetricExprError::BadStat {
                    expr: expr.into(),
                    stat: s.trim().into(),
                })
            }
        },
        None => (body, Stat::Last),
    };
    if key.is_empty() {
        return Err(MetricExprError::EmptyKey(expr.into()));
    }
    Ok((key.to_string(), stat))
}

/// Parses `metric:KEY[:last|min|max|count]` (a `--sort` or `--columns` value).
pub fn parse_metric_sort(spec: &str) -> std::result::Result<MetricSort, MetricExprError> {
    let body = spec
        .trim()
        .strip_prefix("metric:")
        .ok_or_else(|| MetricExprError::NoPrefix(spec.into()))?;
    let (key, stat) = key_and_stat(spec, body)?;
    Ok(MetricSort { key, stat })
}

/// Parses `metric:KEY[:STAT]<op>NUMBER` with op one of `<`, `<=`, `>`, `>=`, `=` (or `==`),
/// `!=`. Spaces around the operator are allowed; NUMBER may be `inf`/`-inf` but not NaN.
pub fn parse_metric_where(expr: &str) -> std::result::Result<MetricCond, MetricExprError> {
    let body = expr
        .trim()
        .strip_prefix("metric:")
        .ok_or_else(|| MetricExprError::NoPrefix(expr.into()))?;
    let at = body
        .find(['<', '>', '=', '!'])
        .ok_or_else(|| MetricExprError::NoOperator(expr.into()))?;
    let rest = &body[at..];
    let (op, len) = [
        ("<=", CmpOp::Le),
        (">=", CmpOp::Ge),
        ("!=", CmpOp::Ne),
        ("==", CmpOp::Eq),
        ("<", CmpOp::Lt),
        (">", CmpOp::Gt),
        ("=", CmpOp::Eq),
    ]
    .into_iter()
    .find(|(t, _)| rest.starts_with(t))
    .map(|(t, op)| (op, t.len()))
    .ok_or_else(|| MetricExprError::NoOperator(expr.into()))?;
    let (key, stat) = key_and_stat(expr, &body[..at])?;
    let text = rest[len..].trim();
    let value = crate::capture::metrics::parse_number(text)
        .filter(|v| !v.is_nan())
        .ok_or_else(|| MetricExprError::BadNumber {
            expr: expr.into(),
            value: text.into(),
        })?;
    Ok(MetricCond {
        key,
        stat,
        op,
        value,
    })
}

impl MetricCond {
    /// Whether a value satisfies the comparison. NaN satisfies only `!=`.
    pub fn matches(&self, v: f64) -> bool {
        match self.op {
            CmpOp::Lt => v < self.value,
            CmpOp::Le => v <= self.value,
            CmpOp::Gt => v > self.value,
            CmpOp::Ge => v >= self.value,
            CmpOp::Eq => v == self.value,
            CmpOp::Ne => v != self.value,
        }
    }

    /// The comparison on a `run_metrics` row (`{col} op ?v`); NaN (NULL) matches only `!=`.
    fn cmp_sql(&self, alias: &str, v: usize) -> String {
        let col = format!("{alias}{}", self.stat.column());
        if self.op == CmpOp::Ne {
            format!("({col} != ?{v} OR {col} IS NULL)")
        } else {
            format!("{col} {} ?{v}", self.op.sql())
        }
    }

    /// A condition on `runs` for a `WHERE` clause; binds its values after those in `args`
    /// (`?N` numbering, as `RunFilter::where_clause` produces). A run without the key never
    /// matches. `how` picks the query shape: see [`Store::metric_membership`].
    pub fn sql(&self, args: &mut Vec<Value>, how: Membership) -> String {
        args.push(Value::Text(self.key.clone()));
        let k = args.len();
        args.push(Value::Real(self.value));
        let v = args.len();
        match how {
            Membership::In => format!(
                "id IN (SELECT run_id FROM run_metrics WHERE key = ?{k} AND {})",
                self.cmp_sql("", v)
            ),
            Membership::Exists => format!(
                "EXISTS (SELECT 1 FROM run_metrics AS mw WHERE mw.run_id = runs.id AND mw.key = ?{k} AND {})",
                self.cmp_sql("mw.", v)
            ),
        }
    }
}

/// The two shapes of a metric condition. `In` collects the matching runs through the
/// `(key, stat)` index: its cost grows with the number of matches. `Exists` checks each run in
/// the query's order through `(run_id, key)` and stops at the limit: its cost grows with the
/// number of runs passed over, i.e. with how rare matches are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    In,
    Exists,
}

/// At most this many matches, `In` is cheaper than walking runs newest first (measured on a
/// million runs: `In` over 100,000 matches ≈ 0.3 s of CPU, `Exists` with a limit of 20 ≈ 1 ms;
/// `Exists` over 10 matches walks all runs, `In` ≈ 1 ms).
pub const IN_MAX_MATCHES: u64 = 2_000;

impl Store {
    /// Which shape of `cond` to use: `In` without a limit or when few runs match (counted
    /// through the index, stopping after `IN_MAX_MATCHES + 1`), else `Exists`.
    pub fn metric_membership(&self, cond: &MetricCond, limited: bool) -> Result<Membership> {
        if !limited {
            return Ok(Membership::In);
        }
        let sql = format!(
            "SELECT count(*) FROM (SELECT 1 FROM run_metrics WHERE key = ?1 AND {} LIMIT {})",
            cond.cmp_sql("", 2),
            IN_MAX_MATCHES + 1
        );
        let n: i64 = self
            .conn
            .query_row(&sql, params![cond.key, cond.value], |r| r.get(0))
            .map_err(self.sql_err("count metric matches"))?;
        Ok(if n as u64 <= IN_MAX_MATCHES {
            Membership::In
        } else {
            Membership::Exists
        })
    }
}

impl Store {
    /// `ls --sort metric:KEY[:STAT]`: the runs of `filter` with the metric, best first (`desc`:
    /// highest first), then those without it (or NaN), newest first; at most `filter.limit`.
    /// `keep` sees each row before it is counted (the CLI's `lost` status filter): a rejected
    /// row does not use up the limit.
    pub fn runs_by_metric(
        &self,
        filter: &super::RunFilter,
        sort: &MetricSort,
        desc: bool,
        mut keep: Option<&mut dyn FnMut(&crate::record::Run) -> bool>,
    ) -> Result<Vec<crate::record::Run>> {
        // With a post-filter the SQL limit would count rejected rows; both queries stream in
        // order (an index walk), so stopping at the limit here costs no sort either way.
        let sql_limit = if keep.is_some() { None } else { filter.limit };
        let qs = sort.queries(super::RUN_COLUMNS, filter.where_clause(), desc, sql_limit);
        let full = |n: usize| filter.limit.is_some_and(|l| n as u64 >= l);
        let mut runs = Vec::new();
        for (sql, args) in &qs {
            if full(runs.len()) {
                break;
            }
            let mut stmt = self
                .conn
                .prepare(sql)
                .map_err(self.sql_err("sort by metric"))?;
            let mut rows = stmt
                .query(rusqlite::params_from_iter(args.iter()))
                .map_err(self.sql_err("sort by metric"))?;
            while !full(runs.len()) {
                let Some(row) = rows.next().map_err(self.sql_err("sort by metric"))? else {
                    break;
                };
                let run = super::run_from_row(row).map_err(self.sql_err("sort by metric"))?;
                if keep.as_mut().is_none_or(|k| k(&run)) {
                    runs.push(run);
                }
            }
        }
        self.load_children(&mut runs)?;
        Ok(runs)
    }
}

impl Store {
    /// `ls --sort metric:A --sort metric:B …`: the runs by `first` as [`Store::runs_by_metric`]
    /// lists them, then every run tied with the last one listed on `first` (one indexed query:
    /// a tie at the limit would otherwise be cut by start time), ordered by `first`, then by each
    /// key of `then` (a run without a key after those with it), then newest first; cut to the
    /// limit. Runs without `first` come after, as `runs_by_metric` orders them.
    pub fn runs_by_metrics(
        &self,
        filter: &super::RunFilter,
        first: (&MetricSort, bool),
        then: &[(MetricSort, bool)],
        mut keep: Option<&mut dyn FnMut(&crate::record::Run) -> bool>,
    ) -> Result<Vec<crate::record::Run>> {
        let (sort, desc) = first;
        let mut runs = {
            let has_keep = keep.is_some();
            let mut inner = |r: &crate::record::Run| keep.as_mut().is_none_or(|k| k(r));
            let inner =
                has_keep.then_some(&mut inner as &mut dyn FnMut(&crate::record::Run) -> bool);
            self.runs_by_metric(filter, sort, desc, inner)?
        };
        let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
        let firsts = self.metric_values(&ids, &sort.key, sort.stat)?;
        let last_value = runs
            .last()
            .and_then(|r| firsts.get(&r.id).copied())
            .filter(|v| !v.is_nan());
        if let (Some(limit), Some(v)) = (filter.limit, last_value) {
            if runs.len() as u64 >= limit {
                let (wh, mut args) = filter.where_clause();
                let cond = wh.trim_start().strip_prefix("WHERE").map(str::trim);
                args.push(Value::Text(sort.key.clone()));
                let k = args.len();
                args.push(Value::Real(v));
                let mut sql = format!(
                    "SELECT {} FROM run_metrics AS ms CROSS JOIN runs ON runs.id = ms.run_id \
                     WHERE ms.key = ?{k} AND ms.{} = ?{}",
                    super::RUN_COLUMNS,
                    sort.stat.column(),
                    k + 1
                );
                if let Some(c) = cond {
                    sql.push_str(&format!(" AND ({c})"));
                }
                let mut stmt = self
                    .conn
                    .prepare(&sql)
                    .map_err(self.sql_err("sort by metric"))?;
                let mut rows = stmt
                    .query(rusqlite::params_from_iter(args.iter()))
                    .map_err(self.sql_err("sort by metric"))?;
                let mut tied = Vec::new();
                while let Some(row) = rows.next().map_err(self.sql_err("sort by metric"))? {
                    let run = super::run_from_row(row).map_err(self.sql_err("sort by metric"))?;
                    if runs.iter().all(|r| r.id != run.id) && keep.as_mut().is_none_or(|k| k(&run))
                    {
                        tied.push(run);
                    }
                }
                self.load_children(&mut tied)?;
                runs.extend(tied);
            }
        }
        let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
        let mut keys = vec![(self.metric_values(&ids, &sort.key, sort.stat)?, desc)];
        for (m, d) in then {
            keys.push((self.metric_values(&ids, &m.key, m.stat)?, *d));
        }
        // A value to compare: present and not NaN; absent values sort after present ones.
        let value =
            |map: &HashMap<String, f64>, id: &str| map.get(id).copied().filter(|v| !v.is_nan());
        runs.sort_by(|a, b| {
            let with_first = |r: &crate::record::Run| value(&keys[0].0, &r.id).is_some();
            // Runs without the first key keep runs_by_metric's order (newest first) at the end.
            match (with_first(a), with_first(b)) {
                (true, false) => return std::cmp::Ordering::Less,
                (false, true) => return std::cmp::Ordering::Greater,
                (false, false) => return b.id.cmp(&a.id),
                _ => {}
            }
            for (map, desc) in &keys {
                let ord = match (value(map, &a.id), value(map, &b.id)) {
                    (Some(x), Some(y)) if *desc => y.total_cmp(&x),
                    (Some(x), Some(y)) => x.total_cmp(&y),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => std::cmp::Ordering::Equal,
                };
                if ord.is_ne() {
                    return ord;
                }
            }
            b.id.cmp(&a.id)
        });
        if let Some(limit) = filter.limit {
            runs.truncate(limit.min(usize::MAX as u64) as usize);
        }
        Ok(runs)
    }
}

impl MetricSort {
    /// The two queries of `ls --sort metric:KEY`: first the runs with a (non-NaN) value, best
    /// first (`desc`: highest first; ties newest first), then the others (no such metric, or
    /// NaN), newest first. Run the first; when it returns fewer than `limit` rows, run the second
    /// with the rest of the limit. `base` is `RunFilter::where_clause()`: `" WHERE …"` (or empty)
    /// and its arguments; `columns` are unqualified `runs` columns (`RUN_COLUMNS`).
    pub fn queries(
        &self,
        columns: &str,
        base: (String, Vec<Value>),
        desc: bool,
        limit: Option<u64>,
    ) -> [(String, Vec<Value>); 2] {
        let (wh, base_args) = base;
        let cond = wh.trim_start().strip_prefix("WHERE").map(str::trim);
        let col = self.stat.column();
        let dir = if desc { "DESC" } else { "ASC" };
        let limit_sql = |args: &mut Vec<Value>| match limit {
            Some(l) => {
                args.push(Value::Integer(l.min(i64::MAX as u64) as i64));
                format!(" LIMIT ?{}", args.len())
            }
            None => String::new(),
        };

        let mut a1 = base_args.clone();
        a1.push(Value::Text(self.key.clone()));
        let k1 = a1.len();
        let mut q1 = format!(
            "SELECT {columns} FROM run_metrics AS ms CROSS JOIN runs ON runs.id = ms.run_id \
             WHERE ms.key = ?{k1} AND ms.{col} IS NOT NULL"
        );
        if let Some(c) = cond {
            q1.push_str(&format!(" AND ({c})"));
        }
        q1.push_str(&format!(" ORDER BY ms.{col} {dir}, ms.run_id {dir}"));
        q1.push_str(&limit_sql(&mut a1));

        let mut a2 = base_args;
        a2.push(Value::Text(self.key.clone()));
        let k2 = a2.len();
        let mut q2 = format!(
            "SELECT {columns} FROM runs WHERE NOT EXISTS (SELECT 1 FROM run_metrics AS mx \
             WHERE mx.run_id = runs.id AND mx.key = ?{k2} AND mx.{col} IS NOT NULL)"
        );
        if let Some(c) = cond {
            q2.push_str(&format!(" AND ({c})"));
        }
        q2.push_str(" ORDER BY id DESC");
        q2.push_str(&limit_sql(&mut a2));
        [(q1, a1), (q2, a2)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::sample_run;
    use crate::store::RUN_COLUMNS;

    fn pt(key: &str, step: Option<i64>, value: f64) -> MetricPoint {
        MetricPoint {
            key: key.into(),
            step,
            value,
            time: None,
        }
    }

    const IDS: [&str; 4] = [
        "01jd3k0000000000000000000a",
        "01jd3k0000000000000000000b",
        "01jd3k0000000000000000000c",
        "01jd3k0000000000000000000d",
    ];

    fn store_with_runs() -> Store {
        let mut s = Store::open_in_memory().unwrap();
        for id in IDS {
            s.insert_run(&sample_run(id)).unwrap();
        }
        s
    }

    #[test]
    fn summary_history_and_append() {
        let mut s = store_with_runs();
        let w = s
            .insert_metrics(
                IDS[0],
                &[
                    pt("loss", Some(0), 1.0),
                    pt("acc", Some(0), 0.5),
                    pt("loss", Some(2), f64::NAN),
                    pt("loss", Some(1), 0.25),
                    MetricPoint {
                        time: Some(1.5e9),
                        ..pt("loss", Some(3), f64::NEG_INFINITY)
                    },
                ],
            )
            .unwrap();
        assert_eq!(w, MetricsWritten { keys: 2, points: 5 });
        let sum = s.metric_summaries(IDS[0]).unwrap();
        assert_eq!(sum.len(), 2);
        assert_eq!(sum[0].key, "acc");
        let loss = &sum[1];
        assert_eq!(
            (loss.last, loss.min, loss.max, loss.count, loss.last_step),
            (f64::NEG_INFINITY, f64::NEG_INFINITY, 1.0, 4, Some(3))
        );
        let h = s.metric_history(IDS[0], "loss").unwrap();
        assert_eq!(h.len(), 4);
        assert_eq!(h[1].step, Some(2));
        assert!(h[1].value.is_nan());
        assert_eq!(h[3].time, Some(1.5e9));
        assert_eq!(h[3].seq, 3);
        // Appending: a lower step does not replace `last`; a new key is added.
        s.insert_metrics(IDS[0], &[pt("loss", Some(1), 5.0), pt("lr", None, 0.1)])
            .unwrap();
        let sum = s.metric_summaries(IDS[0]).unwrap();
        let loss = sum.iter().find(|m| m.key == "loss").unwrap();
        assert_eq!(
            (loss.last, loss.max, loss.count),
            (f64::NEG_INFINITY, 5.0, 5)
        );
        assert_eq!(s.metric_history(IDS[0], "loss").unwrap()[4].seq, 4);
        assert_eq!(s.metric_keys().unwrap(), vec!["acc", "loss", "lr"]);
        assert!(s.metric_history(IDS[1], "loss").unwrap().is_empty());
        let all = s.metric_points(IDS[0]).unwrap();
        assert_eq!(all.len(), 7);
        assert_eq!(&*all[0].key, "acc");
    }

    #[test]
    fn points_written_many_per_statement_keep_their_order_and_values() {
        let mut s = store_with_runs();
        let n = POINTS_PER_INSERT * 2 + 88;
        let pts: Vec<MetricPoint> = (0..n)
            .map(|i| MetricPoint {
                time: (i % 3 == 0).then_some(1e9 + i as f64),
                ..pt("x", (i % 5 != 0).then_some(i as i64), i as f64 / 7.0)
            })
            .collect();
        s.insert_metrics(IDS[0], &pts).unwrap();
        // Appended later: numbering continues.
        s.insert_metrics(IDS[0], &pts[..POINTS_PER_INSERT + 1])
            .unwrap();
        let h = s.metric_history(IDS[0], "x").unwrap();
        assert_eq!(h.len(), n + POINTS_PER_INSERT + 1);
        for (i, p) in h.iter().enumerate() {
            let src = &pts[if i < n { i } else { i - n }];
            assert_eq!(p.seq, i as u64);
            assert_eq!((p.step, p.value, p.time), (src.step, src.value, src.time));
        }
        assert_eq!(s.metric_summaries(IDS[0]).unwrap()[0].count, h.len() as u64);
    }

    #[test]
    fn without_steps_last_is_the_last_reported_and_all_nan_is_nan() {
        let mut s = store_with_runs();
        s.insert_metrics(
            IDS[1],
            &[
                pt("a", None, 3.0),
                pt("a", None, 1.0),
                pt("n", None, f64::NAN),
            ],
        )
        .unwrap();
        let sum = s.metric_summaries(IDS[1]).unwrap();
        assert_eq!((sum[0].last, sum[0].min, sum[0].max), (1.0, 1.0, 3.0));
        assert!(sum[1].last.is_nan() && sum[1].min.is_nan() && sum[1].max.is_nan());
        assert_eq!(sum[1].to_json()["last"], "NaN");
    }

    #[test]
    fn unknown_run_is_refused_and_nothing_written() {
        let mut s = store_with_runs();
        let e = s
            .insert_metrics("01jd3k000000000000000000zz", &[pt("a", None, 1.0)])
            .unwrap_err();
        assert!(matches!(e, StoreError::UnknownRun(_)));
        assert!(s.metric_keys().unwrap().is_empty());
    }

    /// The write turns foreign keys off and enlarges the page cache for its own transaction
    /// only: afterwards, whether it succeeded or failed, the connection enforces foreign keys
    /// and has its cache size back.
    #[test]
    fn the_metrics_write_restores_foreign_keys_and_cache_size() {
        let mut s = store_with_runs();
        let settings = |s: &Store| -> (i64, i64) {
            let fk: i64 = s
                .conn()
                .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
                .unwrap();
            let cache: i64 = s
                .conn()
                .query_row("PRAGMA cache_size", [], |r| r.get(0))
                .unwrap();
            (fk, cache)
        };
        let before = settings(&s);
        assert_eq!(before.0, 1);
        s.insert_metrics(IDS[0], &[pt("a", Some(1), 1.0)]).unwrap();
        assert_eq!(settings(&s), before);
        let e = s.insert_metrics("01jd3k000000000000000000zz", &[pt("a", None, 1.0)]);
        assert!(matches!(e, Err(StoreError::UnknownRun(_))));
        assert_eq!(settings(&s), before);
        // Enforced again: a point of a series that does not exist is refused.
        let e = s.conn().execute(
            "INSERT INTO metric_points (series, seq, step, value, time) VALUES (9999, 0, 0, 1.0, NULL)",
            [],
        );
        assert!(e.is_err(), "foreign keys are not enforced after the write");
    }

    const POINT_ROWS: &str =
        "SELECT series, seq, step, value, time FROM metric_points ORDER BY series, seq";
    const SUMMARY_ROWS: &str = "SELECT series, run_id, key, last, min, max, count, last_step FROM run_metrics ORDER BY series";

    /// The rows of these queries, as text.
    fn rows(s: &Store, queries: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for sql in queries {
            let mut st = s.conn().prepare(sql).unwrap();
            let n = st.column_count();
            let rows = st
                .query_map([], |r| {
                    (0..n)
                        .map(|i| r.get::<_, Value>(i).map(|v| format!("{v:?}")))
                        .collect::<rusqlite::Result<Vec<_>>>()
                        .map(|v| v.join("|"))
                })
                .unwrap();
            out.extend(rows.map(|r| r.unwrap()));
        }
        out
    }

    /// Every row the metrics write touches: the points, the summaries (series ids included) and
    /// the change counter their triggers move.
    fn metric_rows(s: &Store) -> Vec<String> {
        rows(
            s,
            &[
                POINT_ROWS,
                SUMMARY_ROWS,
                "SELECT seq FROM run_change_counter",
                "SELECT run_id, seq FROM run_changes ORDER BY run_id",
            ],
        )
    }

    fn varied_points(n: usize) -> Vec<MetricPoint> {
        (0..n)
            .map(|i| {
                let key = ["loss", "acc", "lr", "val.loss"][i % 4 + (i / 50) % 2 * (3 - i % 4)];
                let step = (i % 9 != 4).then_some((i as i64 * 7) % 23);
                let value = match i % 11 {
                    3 => f64::NAN,
                    5 => f64::INFINITY,
                    _ => i as f64 / 3.0 - 40.0,
                };
                MetricPoint {
                    time: (i % 3 == 0).then_some(1.7e9 + i as f64),
                    ..pt(key, step, value)
                }
            })
            .collect()
    }

    /// Pushed a batch at a time, points give the very rows one `insert_metrics` of them all
    /// gives: the points in order, each key's summary, series ids, the change counter; also
    /// onto metrics stored before (the summaries continue them).
    #[test]
    fn points_pushed_in_batches_are_stored_as_one_insert_of_them_all() {
        let points = varied_points(700);
        for earlier in [false, true] {
            let before = [pt("loss", Some(30), 9.0), pt("old", None, 1.0)];
            let mut whole = store_with_runs();
            if earlier {
                whole.insert_metrics(IDS[0], &before).unwrap();
                whole.insert_metrics(IDS[1], &before).unwrap();
            }
            let w = whole.insert_metrics(IDS[0], &points).unwrap();
            for batch in [1, 7, 256, 299, 700] {
                let mut s = store_with_runs();
                if earlier {
                    s.insert_metrics(IDS[0], &before).unwrap();
                    s.insert_metrics(IDS[1], &before).unwrap();
                }
                let mut ingest = s.ingest_metrics(IDS[0]);
                for b in points.chunks(batch) {
                    ingest.push(b).unwrap();
                }
                assert_eq!(ingest.finish().unwrap(), w, "batches of {batch}");
                assert_eq!(
                    metric_rows(&s),
                    metric_rows(&whole),
                    "batches of {batch}, earlier {earlier}"
                );
                assert_eq!(
                    s.metric_summaries(IDS[0]).unwrap().len(),
                    if earlier { 5 } else { 4 }
                );
            }
        }
    }

    /// A source ended with `keep` false leaves no trace of its points, whether it began the
    /// transaction or began inside it; an ingest dropped or without points writes nothing, and
    /// the connection settings come back every time.
    #[test]
    fn a_dropped_source_or_ingest_leaves_no_points() {
        let settings = |s: &Store| -> (i64, i64) {
            let fk: i64 = s
                .conn()
                .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
                .unwrap();
            let cache: i64 = s
                .conn()
                .query_row("PRAGMA cache_size", [], |r| r.get(0))
                .unwrap();
            (fk, cache)
        };
        let points = varied_points(300);
        let mut expected = store_with_runs();
        expected.insert_metrics(IDS[0], &points[..100]).unwrap();
        expected.insert_metrics(IDS[0], &points[200..]).unwrap();

        let mut s = store_with_runs();
        let clean = metric_rows(&s);
        let initial = settings(&s);
        // Refused first source (it began the transaction), kept one, refused one, kept one.
        let mut ingest = s.ingest_metrics(IDS[0]);
        ingest.begin_source().unwrap();
        ingest.push(&points[250..]).unwrap();
        ingest.end_source(false).unwrap();
        ingest.begin_source().unwrap();
        ingest.push(&points[..60]).unwrap();
        ingest.push(&points[60..100]).unwrap();
        ingest.end_source(true).unwrap();
        ingest.begin_source().unwrap();
        ingest.push(&points[100..200]).unwrap();
        ingest.end_source(false).unwrap();
        ingest.begin_source().unwrap();
        ingest.push(&points[200..]).unwrap();
        ingest.end_source(true).unwrap();
        ingest.finish().unwrap();
        assert_eq!(settings(&s), initial);
        // (Not the change counter: the two writes of `expected` moved it once more.)
        assert_eq!(
            rows(&s, &[POINT_ROWS, SUMMARY_ROWS]),
            rows(&expected, &[POINT_ROWS, SUMMARY_ROWS])
        );

        let mut s = store_with_runs();
        let mut ingest = s.ingest_metrics(IDS[0]);
        ingest.push(&points).unwrap();
        drop(ingest);
        assert_eq!(metric_rows(&s), clean, "dropped: nothing written");
        assert_eq!(settings(&s), initial);
        assert_eq!(
            s.ingest_metrics(IDS[0]).finish().unwrap(),
            MetricsWritten::default()
        );
        let mut ingest = s.ingest_metrics("01jd3k000000000000000000zz");
        assert!(matches!(
            ingest.push(&points),
            Err(StoreError::UnknownRun(_))
        ));
        drop(ingest);
        assert_eq!(metric_rows(&s), clean);
        assert_eq!(settings(&s), initial);
    }

    #[test]
    fn deleting_a_run_deletes_its_metrics() {
        let mut s = store_with_runs();
        s.insert_metrics(IDS[2], &[pt("a", Some(1), 1.0)]).unwrap();
        s.conn()
            .execute("DELETE FROM runs WHERE id = ?1", [IDS[2]])
            .unwrap();
        let n: i64 = s
            .conn()
            .query_row("SELECT count(*) FROM metric_points", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
        assert!(s.metric_keys().unwrap().is_empty());
    }

    #[test]
    fn where_expressions_parse() {
        let c = parse_metric_where("metric:acc>=0.9").unwrap();
        assert_eq!(
            c,
            MetricCond {
                key: "acc".into(),
                stat: Stat::Last,
                op: CmpOp::Ge,
                value: 0.9
            }
        );
        for (e, op) in [
            ("metric:a<1", CmpOp::Lt),
            ("metric:a<=1", CmpOp::Le),
            ("metric:a>1", CmpOp::Gt),
            ("metric:a >= 1", CmpOp::Ge),
            ("metric:a=1", CmpOp::Eq),
            ("metric:a==1", CmpOp::Eq),
            ("metric:a!=1", CmpOp::Ne),
        ] {
            assert_eq!(parse_metric_where(e).unwrap().op, op, "{e}");
        }
        let c = parse_metric_where("metric:val/loss:min < -1e-3").unwrap();
        assert_eq!(
            (c.key.as_str(), c.stat, c.value),
            ("val/loss", Stat::Min, -0.001)
        );
        let c = parse_metric_where("metric:ratio:x:last>inf").unwrap();
        assert_eq!((c.key.as_str(), c.value), ("ratio:x", f64::INFINITY));
        // A `:` always starts a statistic: a typo is an error naming the allowed ones, not a
        // silent search for a key `acc:median`.
        let e = parse_metric_where("metric:acc:median>=0.9").unwrap_err();
        assert_eq!(
            e,
            MetricExprError::BadStat {
                expr: "metric:acc:median>=0.9".into(),
                stat: "median".into()
            }
        );
        assert!(e.to_string().contains(":last, :min, :max or :count"), "{e}");
        assert!(matches!(
            parse_metric_where("metric:>1"),
            Err(MetricExprError::EmptyKey(_))
        ));
        assert!(matches!(
            parse_metric_where("metric:acc>>1").unwrap_err(),
            MetricExprError::BadNumber { .. }
        ));
        let err = |e: &str| parse_metric_where(e).unwrap_err();
        assert!(matches!(err("acc>=0.9"), MetricExprError::NoPrefix(_)));
        assert!(matches!(err("metric:>=0.9"), MetricExprError::EmptyKey(_)));
        assert!(matches!(err("metric:acc"), MetricExprError::NoOperator(_)));
        assert!(matches!(
            err("metric:acc>=high"),
            MetricExprError::BadNumber { .. }
        ));
        assert!(matches!(
            err("metric:acc>="),
            MetricExprError::BadNumber { .. }
        ));
        assert!(matches!(
            err("metric:acc=>1"),
            MetricExprError::BadNumber { .. }
        ));
        assert!(matches!(
            err("metric:acc>=nan"),
            MetricExprError::BadNumber { .. }
        ));
        assert!(matches!(
            err("metric:acc:>=1"),
            MetricExprError::BadStat { .. }
        ));
        assert_eq!(
            err("metric:acc>=high").to_string(),
            "'metric:acc>=high': 'high' is not a number to compare with"
        );
        assert!(MetricCond {
            value: 1.0,
            ..c.clone()
        }
        .matches(2.0));
        assert!(!c.matches(f64::NAN));
    }

    #[test]
    fn sort_expressions_parse() {
        assert_eq!(
            parse_metric_sort("metric:loss:min").unwrap(),
            MetricSort {
                key: "loss".into(),
                stat: Stat::Min
            }
        );
        assert_eq!(parse_metric_sort("metric:a:b:max").unwrap().key, "a:b");
        assert!(matches!(
            parse_metric_sort("metric:acc:median"),
            Err(MetricExprError::BadStat { .. })
        ));
        assert!(parse_metric_sort("acc").is_err());
        assert!(parse_metric_sort("metric:").is_err());
        assert!(is_metric_expr("metric:acc") && !is_metric_expr("name"));
    }

    fn ids(s: &Store, sql: &str, args: &[Value]) -> Vec<String> {
        let sql = sql.replacen(RUN_COLUMNS, "id", 1);
        let mut st = s.conn().prepare(&sql).unwrap();
        st.query_map(rusqlite::params_from_iter(args.iter()), |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<Vec<String>>>()
            .unwrap()
    }

    fn filled() -> Store {
        let mut s = store_with_runs();
        s.insert_metrics(
            IDS[0],
            &[pt("acc", Some(1), 0.95), pt("loss", Some(1), 0.3)],
        )
        .unwrap();
        s.insert_metrics(
            IDS[1],
            &[pt("acc", Some(1), 0.80), pt("acc", Some(2), f64::NAN)],
        )
        .unwrap();
        s.insert_metrics(
            IDS[2],
            &[pt("acc", Some(1), 0.90), pt("acc", Some(2), 0.99)],
        )
        .unwrap();
        // IDS[3] has no metrics.
        s
    }

    #[test]
    fn where_sql_selects_matching_runs_in_either_shape() {
        let s = filled();
        for how in [Membership::In, Membership::Exists] {
            let run = |e: &str| {
                let mut args = Vec::new();
                let c = parse_metric_where(e).unwrap().sql(&mut args, how);
                ids(
                    &s,
                    &format!("SELECT id FROM runs WHERE {c} ORDER BY id"),
                    &args,
                )
            };
            assert_eq!(run("metric:acc>=0.9"), vec![IDS[0], IDS[2]]);
            assert_eq!(run("metric:acc<0.96"), vec![IDS[0]]);
            assert_eq!(run("metric:acc!=0.95"), vec![IDS[1], IDS[2]]);
            assert_eq!(run("metric:acc:min<0.85"), vec![IDS[1]]);
            assert_eq!(run("metric:acc:count=2"), vec![IDS[1], IDS[2]]);
            assert_eq!(run("metric:loss=0.3"), vec![IDS[0]]);
            assert!(run("metric:nope>0").is_empty());
            // Several conditions combine with AND after other bound filters.
            let mut args = vec![Value::Text("running".into())];
            let a = parse_metric_where("metric:acc>0.5")
                .unwrap()
                .sql(&mut args, how);
            let b = parse_metric_where("metric:loss<1")
                .unwrap()
                .sql(&mut args, how);
            assert_eq!(
                ids(
                    &s,
                    &format!("SELECT id FROM runs WHERE status = ?1 AND {a} AND {b}"),
                    &args
                ),
                vec![IDS[0]]
            );
        }
    }

    #[test]
    fn membership_follows_the_number_of_matches() {
        let mut s = Store::open_in_memory().unwrap();
        let n = IN_MAX_MATCHES as usize + 20;
        for i in 0..n {
            let id = format!("01jd3k{:020}", i);
            s.insert_run(&sample_run(&id)).unwrap();
            let v = if i < 10 { 0.99 } else { 0.5 };
            s.insert_metrics(&id, &[pt("acc", None, v)]).unwrap();
        }
        let rare = parse_metric_where("metric:acc>0.9").unwrap();
        let common = parse_metric_where("metric:acc<0.9").unwrap();
        assert_eq!(s.metric_membership(&rare, true).unwrap(), Membership::In);
        assert_eq!(
            s.metric_membership(&common, true).unwrap(),
            Membership::Exists
        );
        assert_eq!(s.metric_membership(&common, false).unwrap(), Membership::In);
    }

    #[test]
    fn sort_queries_put_missing_and_nan_last() {
        let s = filled();
        let sort = parse_metric_sort("metric:acc").unwrap();
        let run = |desc: bool, base: (String, Vec<Value>), limit: Option<u64>| {
            let [(q1, a1), (q2, a2)] = sort.queries(RUN_COLUMNS, base, desc, limit);
            let mut out = ids(&s, &q1, &a1);
            out.extend(ids(&s, &q2, &a2));
            out
        };
        assert_eq!(
            run(true, (String::new(), vec![]), None),
            vec![IDS[2], IDS[0], IDS[3], IDS[1]]
        );
        assert_eq!(
            run(false, (String::new(), vec![]), None),
            vec![IDS[0], IDS[2], IDS[3], IDS[1]]
        );
        let base = (
            " WHERE status = ?1 AND id != ?2".to_string(),
            vec![Value::Text("running".into()), Value::Text(IDS[2].into())],
        );
        assert_eq!(run(true, base, Some(1)), vec![IDS[0], IDS[3]]);
        let by_max = parse_metric_sort("metric:acc:max").unwrap();
        let [(q1, a1), _] = by_max.queries(RUN_COLUMNS, (String::new(), vec![]), true, None);
        assert_eq!(ids(&s, &q1, &a1), vec![IDS[2], IDS[0], IDS[1]]);
        // The sorted part walks the (key, last) index instead of sorting.
        let [(q1, a1), _] = sort.queries(RUN_COLUMNS, (String::new(), vec![]), true, Some(20));
        let plan: Vec<String> = s
            .conn()
            .prepare(&format!("EXPLAIN QUERY PLAN {q1}"))
            .unwrap()
            .query_map(rusqlite::params_from_iter(a1.iter()), |r| r.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("run_metrics_key_last"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
}
