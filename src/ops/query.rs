//! The `ls` filters and sorts as given (flag values, still text) read into a validated
//! [`RunQuery`]: one path for `repro ls` (and every command taking its filters) and for
//! `repro ui`'s `/api/runs`, which takes the same names as query parameters.

use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::capture::host::{now, rfc3339};
use crate::error::Hinted;
use crate::record::Status;
use crate::store::metrics::{is_metric_expr, parse_metric_sort, parse_metric_where, MetricSort};
use crate::store::{RunFilter, RunQuery, SortKey, Store, StoreError};

/// A filter or sort that cannot be read, named by its flag, or the store failing.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A malformed value: the message names the flag, the hint the fix.
    #[error("{message}")]
    Bad {
        message: String,
        hint: Option<String>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl QueryError {
    fn bad(message: impl Into<String>, hint: impl Into<String>) -> QueryError {
        QueryError::Bad {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// A malformed value given with `flag`, with the parser's hint.
    pub fn with_flag(flag: &str, e: impl Hinted) -> QueryError {
        QueryError::Bad {
            message: format!("{flag} {e}"),
            hint: e.hint(),
        }
    }
}

impl Hinted for QueryError {
    fn hint(&self) -> Option<String> {
        match self {
            QueryError::Bad { hint, .. } => hint.clone(),
            QueryError::Store(e) => e.hint(),
        }
    }
    fn is_usage(&self) -> bool {
        match self {
            QueryError::Bad { .. } => true,
            QueryError::Store(e) => e.is_usage(),
        }
    }
}

/// The run filters as given (the values of `ls`'s flags); all given filters must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub image: Option<String>,
    pub digest: Option<String>,
    pub code: Option<String>,
    pub branch: Option<String>,
    pub dataset: Option<String>,
    pub status: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub params: Vec<String>,
    pub tags: Vec<String>,
    pub name: Option<String>,
    pub host: Option<String>,
    pub rerun_of: Option<String>,
    pub no_reruns: bool,
    pub job: Option<String>,
    pub wheres: Vec<String>,
}

/// A Slurm job id as `--job` takes it: digits, or `ARRAY_TASK` (digits `_` digits).
fn valid_job_id(j: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match j.split_once('_') {
        Some((a, t)) => digits(a) && digits(t),
        None => digits(j),
    }
}

/// Parses `--since`/`--until`: `30m`, `12h`, `7d`, `2w`, `45s` ago, `YYYY-MM-DD` (UTC midnight),
/// or an RFC 3339 time; returns the stored RFC 3339 form.
pub fn parse_when(s: &str, now: DateTime<Utc>) -> Result<String, String> {
    let s = s.trim();
    let bad = || {
        format!("'{s}' is not a time: use 30m, 12h, 7d, 2w (ago), YYYY-MM-DD or an RFC 3339 time")
    };
    if let Some(unit) = s.chars().last().filter(|c| "smhdw".contains(*c)) {
        let num = &s[..s.len() - 1];
        if !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) {
            let n: i64 = num.parse().map_err(|_| bad())?;
            let d = match unit {
                's' => Duration::try_seconds(n),
                'm' => Duration::try_minutes(n),
                'h' => Duration::try_hours(n),
                'd' => Duration::try_days(n),
                _ => Duration::try_weeks(n),
            }
            .ok_or_else(bad)?;
            return now.checked_sub_signed(d).map(rfc3339).ok_or_else(bad);
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(rfc3339(t.with_timezone(&Utc)));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let t = d.and_hms_opt(0, 0, 0).ok_or_else(bad)?.and_utc();
        return Ok(rfc3339(t));
    }
    Err(bad())
}

fn split_kv(s: &str, what: &str) -> Result<(String, String), QueryError> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(QueryError::bad(
            format!("{what} '{s}' is not KEY=VALUE"),
            format!("write it as {what} lr=0.1"),
        )),
    }
}

impl Filters {
    /// Validates the filters into a query (resolving `rerun_of` against the store).
    pub fn to_query(&self, store: &Store) -> Result<RunQuery, QueryError> {
        let now = now();
        let when = |flag: &str, v: &Option<String>| -> Result<Option<String>, QueryError> {
            v.as_deref()
                .map(|s| parse_when(s, now))
                .transpose()
                .map_err(|m| QueryError::Bad {
                    message: format!("--{flag}: {m}"),
                    hint: None,
                })
        };
        let status = self.statuses()?;
        let digest = self.digest_prefix()?;
        let job = self.job_id()?;
        let filter = RunFilter {
            image: self.image.clone(),
            digest,
            code: self.code.clone(),
            branch: self.branch.clone(),
            dataset: self.dataset.as_ref().map(|d| match d.split_once('@') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (d.clone(), None),
            }),
            since: when("since", &self.since)?,
            until: when("until", &self.until)?,
            params: self
                .params
                .iter()
                .map(|p| split_kv(p, "--param"))
                .collect::<Result<_, _>>()?,
            tags: self.tags.clone(),
            name: self.name.clone(),
            rerun_of: self
                .rerun_of
                .as_deref()
                .map(|r| store.resolve_id(r))
                .transpose()?,
            no_reruns: self.no_reruns,
            host: self.host.clone(),
            job,
            metrics: self
                .wheres
                .iter()
                .map(|w| parse_metric_where(w).map_err(|e| QueryError::with_flag("--where", e)))
                .collect::<Result<_, _>>()?,
            ..Default::default()
        };
        Ok(RunQuery {
            filter,
            status,
            metric_sort: None,
            then_by: Vec::new(),
        })
    }

    /// `--status`, comma-separated.
    fn statuses(&self) -> Result<Vec<Status>, QueryError> {
        let Some(list) = &self.status else {
            return Ok(Vec::new());
        };
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                Status::parse(s).ok_or_else(|| {
                    QueryError::bad(
                        format!("unknown status '{s}'"),
                        "use one of running, succeeded, failed, killed, lost, error",
                    )
                })
            })
            .collect()
    }

    /// `--digest`, checked to be hex digits (after an optional `sha256:`).
    fn digest_prefix(&self) -> Result<Option<String>, QueryError> {
        let Some(d) = &self.digest else {
            return Ok(None);
        };
        let hex = d.split_once(':').map(|(_, h)| h).unwrap_or(d);
        if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(QueryError::bad(
                format!("--digest '{d}' is not a digest prefix"),
                "give hex digits, optionally after sha256:",
            ));
        }
        Ok(Some(d.clone()))
    }

    /// `--job`, checked to be a Slurm job id.
    fn job_id(&self) -> Result<Option<String>, QueryError> {
        match self.job.as_deref().map(str::trim) {
            None => Ok(None),
            Some(j) if valid_job_id(j) => Ok(Some(j.to_string())),
            Some(j) => Err(QueryError::bad(
                format!("--job '{j}' is not a Slurm job id"),
                "give a job id (1234), an array id (1234) or an array task (1234_5)",
            )),
        }
    }
}

/// A metric order: the key and statistic, and whether highest first.
pub type MetricOrder = (MetricSort, bool);

/// The field key, the metric order of the first `--sort` (if a metric) and those after it.
pub type Sorts = (SortKey, Option<MetricOrder>, Vec<MetricOrder>);

/// A `--sort` value (an `ls` sort key, or `metric:KEY[:STAT]`, highest first unless
/// `reverse`): the key and the metric order (`repro gc --keep-best` sorts the same way).
pub fn parse_sort(sort: &str, reverse: bool) -> Result<(SortKey, Option<MetricOrder>), QueryError> {
    if is_metric_expr(sort) {
        return Ok((SortKey::Started, Some(metric_sort(sort, reverse)?)));
    }
    let key = SortKey::parse(sort).ok_or_else(|| {
        QueryError::bad(
            format!("cannot sort by '{sort}'"),
            format!(
                "use one of {}, or metric:KEY[:STAT]",
                SortKey::NAMES.join(", ")
            ),
        )
    })?;
    Ok((key, None))
}

/// `metric:KEY[:STAT][:asc|:desc]` and whether highest first (`--reverse` flips it).
fn metric_sort(spec: &str, reverse: bool) -> Result<MetricOrder, QueryError> {
    let (body, desc) = match spec.trim_end() {
        s if s.ends_with(":asc") => (&s[..s.len() - 4], false),
        s if s.ends_with(":desc") => (&s[..s.len() - 5], true),
        s => (s, true),
    };
    let ms = parse_metric_sort(body).map_err(|e| QueryError::with_flag("--sort", e))?;
    Ok((ms, desc != reverse))
}

/// Every `--sort`: the first as [`parse_sort`] reads it, then the metric keys breaking its ties
/// (further keys are metric keys, after a metric key).
pub fn parse_sorts(sorts: &[String], reverse: bool) -> Result<Sorts, QueryError> {
    let first = sorts.first().map(String::as_str).unwrap_or("started");
    let (key, primary) = parse_sort(first, reverse)?;
    let mut then = Vec::new();
    for s in sorts.iter().skip(1) {
        if primary.is_none() || !is_metric_expr(s) {
            return Err(QueryError::bad(
                format!("cannot break ties of --sort {first} with --sort {s}"),
                "several --sort keys are metric keys: --sort metric:val_acc --sort metric:val_loss:asc",
            ));
        }
        then.push(metric_sort(s, reverse)?);
    }
    Ok((key, primary, then))
}

/// What `ls` lists: filters, the sweep, the sorts (in `--sort` form), `--reverse` and the limit
/// (`None`: every run).
#[derive(Debug, Clone, Default)]
pub struct LsRequest {
    pub filters: Filters,
    pub sweep: Option<String>,
    /// `--promoted CHANNEL`: runs whose digest the channel holds, as last recorded.
    pub promoted: Option<String>,
    pub sort: Vec<String>,
    pub reverse: bool,
    pub limit: Option<u64>,
}

impl LsRequest {
    /// The validated query `ls` runs.
    pub fn to_query(&self, store: &Store) -> Result<RunQuery, QueryError> {
        let (sort, metric_sort, then_by) = parse_sorts(&self.sort, self.reverse)?;
        let mut q = self.filters.to_query(store)?;
        q.filter.sort = sort;
        q.filter.sweep = self.sweep.clone();
        q.filter.promoted = self.promoted.clone();
        q.metric_sort = metric_sort;
        q.then_by = then_by;
        q.filter.oldest_first = self.reverse;
        q.filter.limit = self.limit;
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_relative_dates_and_rfc3339() {
        let now = DateTime::parse_from_rfc3339("2026-11-26T14:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_when("7d", now).unwrap(), "2026-11-19T14:00:00.000Z");
        assert_eq!(parse_when("12h", now).unwrap(), "2026-11-26T02:00:00.000Z");
        assert_eq!(parse_when("30m", now).unwrap(), "2026-11-26T13:30:00.000Z");
        assert_eq!(parse_when("2w", now).unwrap(), "2026-11-12T14:00:00.000Z");
        assert_eq!(
            parse_when("2026-01-02", now).unwrap(),
            "2026-01-02T00:00:00.000Z"
        );
        assert_eq!(
            parse_when("2026-01-02T03:04:05+02:00", now).unwrap(),
            "2026-01-02T01:04:05.000Z"
        );
        for bad in ["", "7", "d", "-3d", "7y", "yesterday", "2026-13-01"] {
            assert!(parse_when(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn job_ids_are_digits_or_array_tasks() {
        for ok in ["1234", "1234_5"] {
            assert!(valid_job_id(ok), "{ok}");
        }
        for bad in ["", "12a", "1234_", "_5", "1_2_3"] {
            assert!(!valid_job_id(bad), "{bad}");
        }
    }

    #[test]
    fn malformed_sorts_and_filters_are_usage_errors_naming_the_flag() {
        let store = Store::open_in_memory().unwrap();
        let e = parse_sorts(&["size".into()], false).unwrap_err();
        assert!(e.is_usage() && e.to_string().contains("'size'"), "{e}");
        let f = Filters {
            status: Some("done".into()),
            ..Default::default()
        };
        let e = f.to_query(&store).unwrap_err();
        assert!(e.is_usage() && e.to_string().contains("'done'"), "{e}");
        let f = Filters {
            wheres: vec!["metric:acc>>1".into()],
            ..Default::default()
        };
        let e = f.to_query(&store).unwrap_err();
        assert!(e.to_string().starts_with("--where"), "{e}");
    }
}
