//! `repro audit`: can the selected runs still be re-run? Digests still in the registry, tags
//! moved since, tags pointing at the digest now, archived copies intact. Exit 1 when a run that
//! is not archived needs a digest the registry no longer has.

use clap::Args;

use crate::capture::image::registry::RegistryClient;
use crate::cli::filter::FilterArgs;
use crate::cli::{print_out, stdout_is_tty, Ctx, RegistryArgs};
use crate::error::{CliError, CliResult};
use crate::ops::audit::{self, AuditRequest};
use crate::output;
use crate::record::Run;

/// Arguments of `repro audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Runs to audit (ids or unique prefixes); with filters or none: every matching run
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Parallel registry requests
    #[arg(long, value_name = "N", default_value_t = audit::DEFAULT_JOBS)]
    pub jobs: usize,
    /// Re-hash archived blobs (default: check presence and size)
    #[arg(long)]
    pub deep: bool,
    /// Pages of the registry's tag list read per repository
    #[arg(long, value_name = "N", default_value_t = audit::DEFAULT_MAX_TAG_PAGES)]
    pub max_tag_pages: usize,
    /// Tags asked for per page of the registry's tag list
    #[arg(long, value_name = "N", default_value_t = audit::DEFAULT_TAG_PAGE_SIZE)]
    pub tag_page_size: usize,
    /// Tags per repository whose digest is looked up, at most
    #[arg(long, value_name = "N", default_value_t = audit::DEFAULT_MAX_TAGS)]
    pub max_tags: usize,
    /// Machine-readable output (schema_version 1)
    #[arg(long)]
    pub json: bool,
}

/// The runs named by ids, or selected by the `ls` filters (every run when neither is given).
pub fn select_runs(
    ctx: &Ctx,
    store: &crate::store::Store,
    ids: &[String],
    filter: &FilterArgs,
) -> CliResult<Vec<Run>> {
    if !ids.is_empty() {
        if filter.any() {
            return Err(CliError::usage("give run ids or filters, not both")
                .hint("e.g. `--image trainer --since 30d`, or a list of ids"));
        }
        let mut runs = Vec::new();
        for i in ids {
            let id = store.resolve_id(i)?;
            runs.push(store.get_run(&id)?);
        }
        return Ok(runs);
    }
    let _ = ctx;
    let mut q = filter.to_query(store)?;
    q.filter.limit = None;
    Ok(store.query(&q)?)
}

/// Runs `repro audit`; returns the exit code.
pub fn cmd_audit(ctx: &Ctx, args: &AuditArgs) -> i32 {
    match audit_inner(ctx, args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    }
}

fn audit_inner(ctx: &Ctx, args: &AuditArgs) -> CliResult<i32> {
    let opts = args.registry.options(&ctx.config)?;
    let store = ctx.open_store()?;
    let runs = select_runs(ctx, &store, &args.ids, &args.filter)?;
    let client = std::sync::Arc::new(RegistryClient::new(opts)?);
    let req = AuditRequest {
        deep: args.deep,
        jobs: args.jobs.clamp(1, 64),
        tag_page_size: args.tag_page_size.max(1),
        max_tag_pages: args.max_tag_pages.max(1),
        max_tags: args.max_tags,
        ..AuditRequest::of(&store, runs)?
    };
    let report = audit::audit_in(&client, &store, &req);
    // Channel tags moved outside `repro promote` since their last recorded promotion.
    let channels = crate::ops::promote::channels(&store, &client, &[])?;
    let drift: Vec<_> = channels.iter().filter(|c| c.drifted()).collect();
    if args.json {
        let mut v: serde_json::Value = serde_json::from_str(&output::audit::json(&report))
            .map_err(|e| CliError::user(format!("audit JSON: {e}")))?;
        v["channel_drift"] = serde_json::Value::Array(
            drift
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "repository": c.repository,
                        "channel": c.channel,
                        "digest_now": c.now,
                        "recorded": c.last.digest,
                    })
                })
                .collect(),
        );
        print_out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&v).unwrap_or_default()
        ))?;
    } else {
        for c in &drift {
            ctx.warn(format!(
                "channel {}:{} was moved outside repro: it holds {}, the last promotion recorded {} (repro channels)",
                crate::sanitize::escape(&c.repository),
                crate::sanitize::escape(&c.channel),
                c.now.as_deref().unwrap_or("nothing (the tag is gone)"),
                c.last.digest
            ));
        }
        print_out(&output::audit::table(&report, stdout_is_tty()))?;
        for w in output::audit::warnings(&report) {
            ctx.warn(w);
        }
        if let Some(s) = output::audit::unchecked(&report) {
            ctx.status(s);
        }
    }
    Ok(if report.at_risk() { 1 } else { 0 })
}
