//! The run filters shared by `ls`, `export`, `gc`, `audit`, `mlflow push` and `image archive`:
//! flags → a validated [`RunQuery`] (the store applies it, `lost` rule included).

use chrono::{DateTime, Duration, NaiveDate, Utc};
use clap::Args;

use crate::capture::host::{now, rfc3339};
use crate::error::{CliError, CliResult, Hinted};
use crate::record::Status;
use crate::store::metrics::parse_metric_where;
use crate::store::{RunFilter, RunQuery, Store};

/// Run filters; all given filters must match.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Run filters")]
pub struct FilterArgs {
    /// Only runs whose image reference contains TEXT (case-insensitive)
    #[arg(long, value_name = "TEXT")]
    pub image: Option<String>,
    /// Only runs whose image digest or index digest starts with PREFIX (`sha256:` optional)
    #[arg(long, value_name = "PREFIX")]
    pub digest: Option<String>,
    /// Only runs whose commit starts with PREFIX
    #[arg(long, value_name = "PREFIX")]
    pub code: Option<String>,
    /// Only runs on this git branch
    #[arg(long, value_name = "BRANCH")]
    pub branch: Option<String>,
    /// Only runs that used this dataset (VERSION matches the version or the content digest)
    #[arg(long, value_name = "NAME[@VERSION]")]
    pub dataset: Option<String>,
    /// Only runs with one of these statuses: running, succeeded, failed, killed, lost, error
    /// (`running` includes runs shown `running?`, whose liveness cannot be decided here)
    #[arg(long, value_name = "STATUS[,STATUS…]")]
    pub status: Option<String>,
    /// Only runs started at or after WHEN: 30m, 12h, 7d, 2w ago, a date (YYYY-MM-DD, UTC) or RFC 3339 time
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only runs started before WHEN (same forms as --since)
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only runs with this param (repeatable; all must match)
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Only runs with this tag (repeatable; all must match)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Only runs whose name matches GLOB (`*`, `?`, `[…]`)
    #[arg(long, value_name = "GLOB")]
    pub name: Option<String>,
    /// Only runs recorded on this host
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Only re-runs of this run (id or unique prefix)
    #[arg(long, value_name = "ID")]
    pub rerun_of: Option<String>,
    /// Only runs that are not re-runs of another
    #[arg(long, conflicts_with = "rerun_of")]
    pub no_reruns: bool,
    /// Only runs of this Slurm job: its id, an array's id (every task) or ARRAY_TASK (one task)
    #[arg(long, value_name = "JOBID")]
    pub job: Option<String>,
    /// Only runs whose metric satisfies 'metric:KEY[:STAT]<op>NUMBER', op one of <, <=, >, >=,
    /// =, != and STAT last (default), min, max or count; a run without KEY never matches
    /// (repeatable; all must match; quote it for the shell)
    #[arg(long = "where", value_name = "EXPR")]
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

fn split_kv(s: &str, what: &str) -> CliResult<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(CliError::usage(format!("{what} '{s}' is not KEY=VALUE"))
            .hint(format!("write it as {what} lr=0.1"))),
    }
}

impl FilterArgs {
    /// Whether any filter is given.
    pub fn any(&self) -> bool {
        self.image.is_some()
            || self.digest.is_some()
            || self.code.is_some()
            || self.branch.is_some()
            || self.dataset.is_some()
            || self.status.is_some()
            || self.since.is_some()
            || self.until.is_some()
            || !self.params.is_empty()
            || !self.tags.is_empty()
            || self.name.is_some()
            || self.host.is_some()
            || self.rerun_of.is_some()
            || self.no_reruns
            || self.job.is_some()
            || !self.wheres.is_empty()
    }

    /// Validates the options into a query (resolving `--rerun-of` against the store).
    pub fn to_query(&self, store: &Store) -> CliResult<RunQuery> {
        let now = now();
        let when = |flag: &str, v: &Option<String>| -> CliResult<Option<String>> {
            v.as_deref()
                .map(|s| parse_when(s, now))
                .transpose()
                .map_err(|m| CliError::usage(format!("--{flag}: {m}")))
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
                .collect::<CliResult<_>>()?,
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
                .map(|w| parse_metric_where(w).map_err(|e| usage_with_hint("--where", e)))
                .collect::<CliResult<_>>()?,
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
    fn statuses(&self) -> CliResult<Vec<Status>> {
        let Some(list) = &self.status else {
            return Ok(Vec::new());
        };
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                Status::parse(s).ok_or_else(|| {
                    CliError::usage(format!("unknown status '{s}'"))
                        .hint("use one of running, succeeded, failed, killed, lost, error")
                })
            })
            .collect()
    }

    /// `--digest`, checked to be hex digits (after an optional `sha256:`).
    fn digest_prefix(&self) -> CliResult<Option<String>> {
        let Some(d) = &self.digest else {
            return Ok(None);
        };
        let hex = d.split_once(':').map(|(_, h)| h).unwrap_or(d);
        if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(
                CliError::usage(format!("--digest '{d}' is not a digest prefix"))
                    .hint("give hex digits, optionally after sha256:"),
            );
        }
        Ok(Some(d.clone()))
    }

    /// `--job`, checked to be a Slurm job id.
    fn job_id(&self) -> CliResult<Option<String>> {
        match self.job.as_deref().map(str::trim) {
            None => Ok(None),
            Some(j) if valid_job_id(j) => Ok(Some(j.to_string())),
            Some(j) => Err(
                CliError::usage(format!("--job '{j}' is not a Slurm job id"))
                    .hint("give a job id (1234), an array id (1234) or an array task (1234_5)"),
            ),
        }
    }
}

/// A malformed metric expression given with `flag`, as a usage error with the parser's hint.
pub fn usage_with_hint(flag: &str, e: impl Hinted) -> CliError {
    let hint = e.hint();
    let err = CliError::usage(format!("{flag} {e}"));
    match hint {
        Some(h) => err.hint(h),
        None => err,
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
}
