//! `repro audit`: can the selected runs still be re-run? Digests still in the registry, tags
//! moved since, tags pointing at the digest now, archived copies intact. Exit 1 when a run that
//! is not archived needs a digest the registry no longer has.

use std::path::PathBuf;

use clap::Args;
use comfy_table::{presets, ContentArrangement, Table};
use serde_json::json;

use crate::capture::image::registry::{options, RegistryClient, RegistryOptions};
use crate::cli::ls::FilterArgs;
use crate::cli::{print_out, stdout_is_tty, Ctx};
use crate::error::{CliError, CliResult};
use crate::ops::audit::{self, AuditReport, AuditRequest, Availability};
use crate::record::Run;

/// How to reach registries, as for `repro run`.
#[derive(Debug, Clone, Default, Args)]
pub struct RegistryArgs {
    /// Registry (HOST or HOST:PORT) that may be reached over plain HTTP when it does not speak
    /// HTTPS (loopback ones always may); adds to the configured `insecure_registries`
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// Extra CA certificates (PEM) to trust for registry TLS, besides the system roots and
    /// certs.d/HOST[:PORT]/*.crt under ~/.config/containers, /etc/containers and /etc/docker
    #[arg(long, value_name = "PATH")]
    pub ca_cert: Option<PathBuf>,
    /// Parallel registry requests
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub jobs: usize,
}

impl RegistryArgs {
    /// The registry options: configured insecure registries plus the flags; credentials from
    /// the usual places.
    pub fn options(&self, ctx: &Ctx) -> CliResult<RegistryOptions> {
        if let Err(e) = options::deadline_from_env() {
            return Err(CliError::user(e).hint(format!(
                "set {} to a whole number of seconds, e.g. 30, or unset it",
                options::DEADLINE_ENV
            )));
        }
        let mut opts = RegistryOptions {
            insecure_registries: ctx.config.insecure_registries.values(),
            ..RegistryOptions::default()
        };
        for i in &self.insecure_registries {
            if !opts.insecure_registries.contains(i) {
                opts.insecure_registries.push(i.clone());
            }
        }
        if self.ca_cert.is_some() {
            opts.ca_cert = self.ca_cert.clone();
        }
        Ok(opts)
    }

    /// The job bound, at least 1 and at most 64.
    pub fn jobs(&self) -> usize {
        self.jobs.clamp(1, 64)
    }
}

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
    /// Re-hash archived blobs (default: check presence and size)
    #[arg(long)]
    pub deep: bool,
    /// Pages of the registry's tag list read per repository
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub max_tag_pages: usize,
    /// Tags asked for per page of the registry's tag list
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub tag_page_size: usize,
    /// Tags per repository whose digest is looked up, at most
    #[arg(long, value_name = "N", default_value_t = 1000)]
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
    q.run(store)
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
    let opts = args.registry.options(ctx)?;
    let store = ctx.open_store()?;
    let runs = select_runs(ctx, &store, &args.ids, &args.filter)?;
    let mut archives = Vec::new();
    for r in &runs {
        archives.extend(store.archives(&r.id)?);
    }
    let client = RegistryClient::new(opts)?;
    let req = AuditRequest {
        runs,
        archives,
        deep: args.deep,
        jobs: args.registry.jobs(),
        tag_page_size: args.tag_page_size.max(1),
        max_tag_pages: args.max_tag_pages.max(1),
        max_tags: args.max_tags,
    };
    let mut used_by = |d: &str, except: &[String]| -> Option<String> {
        store.run_using_digest(d, except).ok().flatten()
    };
    let report = audit::audit(&client, &req, &mut used_by);
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&json!({
            "schema_version": crate::record::SCHEMA_VERSION,
            "images": report.rows,
            "unpinned_runs": report.unpinned,
            "at_risk": report.at_risk(),
        }))
        .map_err(|e| CliError::user(e.to_string()))?;
        s.push('\n');
        s
    } else {
        render(&report, stdout_is_tty())
    };
    print_out(&text)?;
    if !args.json {
        for r in report.rows.iter().filter(|r| r.error.is_some()) {
            ctx.warn(format!(
                "{}: {}",
                r.reference,
                r.error.as_deref().unwrap_or_default()
            ));
        }
        for r in &report.rows {
            for a in r.archives.iter().filter(|a| !a.intact) {
                ctx.warn(format!(
                    "archive {} of {}: {}",
                    a.location,
                    r.digest,
                    a.problems.join("; ")
                ));
            }
        }
        if !report.unpinned.is_empty() {
            ctx.status(format!(
                "{} run(s) have no pinned digest and were not checked",
                report.unpinned.len()
            ));
        }
    }
    Ok(if report.at_risk() { 1 } else { 0 })
}

fn short(d: &str) -> String {
    match d.split_once(':') {
        Some((a, h)) if h.len() > 12 => format!("{a}:{}", &h[..12]),
        _ => d.to_string(),
    }
}

/// The audit table: RUNS, REFERENCE, DIGEST, STATUS, TAG, TAGS NOW.
pub fn render(report: &AuditReport, tty: bool) -> String {
    use crate::output::sanitize::escape;
    let mut t = Table::new();
    if tty {
        t.load_preset(presets::UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic);
    } else {
        t.load_preset(presets::NOTHING);
    }
    t.set_header(vec![
        "RUNS",
        "REFERENCE",
        "DIGEST",
        "STATUS",
        "TAG",
        "TAGS NOW",
    ]);
    if !tty {
        for col in t.column_iter_mut() {
            col.set_padding((0, 2));
        }
    }
    for r in &report.rows {
        let runs = match r.runs.len() {
            1 => r.runs[0][..r.runs[0].len().min(12)].to_string(),
            n => format!("{} (+{})", &r.runs[0][..r.runs[0].len().min(12)], n - 1),
        };
        let mut status = r.status.word().to_string();
        if r.status == Availability::Present && r.archives.iter().any(|a| a.intact) {
            status.push_str(" +archived");
        }
        if r.archives.iter().any(|a| !a.intact) {
            status.push_str(" (archive damaged)");
        }
        let tag = match &r.tag {
            None => "-".to_string(),
            Some(t) if !t.moved => format!("{}: unchanged", t.tag),
            Some(t) => match &t.digest {
                None => format!("{}: gone", t.tag),
                Some(d) => format!(
                    "{}: moved → {}{}",
                    t.tag,
                    short(d),
                    t.used_by
                        .as_ref()
                        .map(|u| format!(" (run {})", &u[..u.len().min(12)]))
                        .unwrap_or_else(|| " (no run here)".into())
                ),
            },
        };
        let mut tags_now = if r.tags_now.is_empty() {
            "-".to_string()
        } else {
            r.tags_now.join(",")
        };
        if r.tags_truncated {
            tags_now.push_str(" (tag list cut short)");
        }
        t.add_row(vec![
            runs,
            escape(&r.reference).to_string(),
            short(&r.digest),
            status,
            escape(&tag).to_string(),
            escape(&tags_now).to_string(),
        ]);
    }
    t.to_string()
        .lines()
        .map(|l| format!("{}\n", l.trim_end()))
        .collect()
}
