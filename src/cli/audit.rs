//! `repro audit`: can the selected runs still be re-run? Digests still in the registry, tags
//! moved since, tags pointing at the digest now, archived copies intact. Exit 1 when a run that
//! is not archived needs a digest the registry no longer has.

use std::path::PathBuf;

use clap::Args;

use crate::capture::image::registry::{options, RegistryClient, RegistryOptions};
use crate::cli::ls::FilterArgs;
use crate::cli::{print_out, stdout_is_tty, Ctx};
use crate::error::{CliError, CliResult};
use crate::ops::audit::{self, AuditRequest};
use crate::output;
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
    let client = std::sync::Arc::new(RegistryClient::new(opts)?);
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
    if args.json {
        print_out(&output::audit::json(&report))?;
    } else {
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
