//! The run filters shared by `ls`, `export`, `gc`, `audit`, `mlflow push` and `image archive`:
//! flags → a validated [`RunQuery`] (read by [`crate::ops::query`], the one path `repro ui`
//! shares; the store applies it, `lost` rule included).

use clap::Args;

use crate::error::CliResult;
use crate::error::{CliError, Hinted};
pub use crate::ops::query::parse_when;
use crate::ops::query::Filters;
use crate::store::{RunQuery, Store};

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

    /// The filters as given, for [`crate::ops::query`].
    pub fn filters(&self) -> Filters {
        Filters {
            image: self.image.clone(),
            digest: self.digest.clone(),
            code: self.code.clone(),
            branch: self.branch.clone(),
            dataset: self.dataset.clone(),
            status: self.status.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
            params: self.params.clone(),
            tags: self.tags.clone(),
            name: self.name.clone(),
            host: self.host.clone(),
            rerun_of: self.rerun_of.clone(),
            no_reruns: self.no_reruns,
            job: self.job.clone(),
            wheres: self.wheres.clone(),
        }
    }

    /// Validates the options into a query (resolving `--rerun-of` against the store).
    pub fn to_query(&self, store: &Store) -> CliResult<RunQuery> {
        Ok(self.filters().to_query(store)?)
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
