//! `repro image inspect`: how a reference parses and normalises, and what the registry says.
//! `repro image archive`: keep a copy of runs' images by digest (OCI layout or archive registry).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use super::print_out;
use super::Ctx;
use crate::capture::image::reference;
use crate::capture::image::registry::{Platform, RegistryClient, RegistryOptions, RemoteImage};
use crate::error::{CliError, CliResult};

/// Arguments of `repro image`.
#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// `repro image` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Parse a reference and show what the registry resolves it to
    Inspect(InspectArgs),
    /// Copy runs' images by digest into an OCI image layout (or an archive registry) that
    /// re-runs fall back to; `--gc DIR` removes blobs no recorded run needs
    Archive(Box<ArchiveArgs>),
}

/// Arguments of `repro image archive`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("dest").required(true).args(["to", "to_registry", "gc"])))]
pub struct ArchiveArgs {
    /// Runs to archive (ids or unique prefixes); or select them with the filters
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,
    #[command(flatten)]
    pub filter: super::ls::FilterArgs,
    /// OCI image layout directory (created when new; shared between runs)
    #[arg(long, value_name = "DIR")]
    pub to: Option<PathBuf>,
    /// Archive registry repository REGISTRY[:PORT]/REPO (copied by digest; blobs mounted when
    /// the registry allows it)
    #[arg(long, value_name = "REG/REPO")]
    pub to_registry: Option<String>,
    /// Remove from the layout DIR every entry and blob no recorded run references
    #[arg(long, value_name = "DIR", conflicts_with_all = ["to", "to_registry", "ids"])]
    pub gc: Option<PathBuf>,
    /// For a multi-arch index, archive every platform (default: the platforms the runs used)
    #[arg(long)]
    pub all_platforms: bool,
    #[command(flatten)]
    pub registry: super::audit::RegistryArgs,
    /// Machine-readable output (schema_version 1)
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `repro image inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Image reference, e.g. ubuntu:22.04 or registry.example.com/team/trainer@sha256:…
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Only parse; do not contact the registry
    #[arg(long)]
    pub offline: bool,
    /// Platform to pick from a multi-arch index: OS/ARCH[/VARIANT] [default: this machine's]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Machine-readable output (schema_version 1)
    #[arg(long)]
    pub json: bool,
    /// Registry (HOST or HOST:PORT) that may be reached over plain HTTP when it does not speak
    /// HTTPS (loopback ones always may); adds to the configured `insecure_registries`
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// Extra CA certificates (PEM) to trust for registry TLS, besides the system roots and
    /// certs.d/HOST[:PORT]/*.crt under ~/.config/containers, /etc/containers and /etc/docker
    #[arg(long, value_name = "PATH")]
    pub ca_cert: Option<PathBuf>,
}

/// Runs `repro image …`; returns the text to print on stdout. Configured
/// `insecure_registries` apply as for `repro run`.
pub fn cmd_image(ctx: &Ctx, args: &ImageArgs) -> CliResult<String> {
    match &args.command {
        ImageCommand::Inspect(a) => {
            // The configuration's insecure registries and registry_timeout, as for `repro run`.
            cmd_inspect(a, crate::ops::run::registry_options(&ctx.config, &[], None))
        }
        ImageCommand::Archive(a) => cmd_archive(ctx, a),
    }
}

/// Runs `repro image archive`; prints the report and fails when an image could not be archived.
pub fn cmd_archive(ctx: &Ctx, args: &ArchiveArgs) -> CliResult<String> {
    use crate::ops::archive::{self, ArchiveRequest, Destination};
    let mut store = ctx.open_store()?;
    if let Some(dir) = &args.gc {
        if args.filter.any() {
            return Err(CliError::usage("--gc takes no run filters")
                .hint("it keeps what any recorded run references"));
        }
        let keep = store.referenced_image_digests()?;
        let r = archive::gc(dir, &keep)?;
        if args.json {
            return json_text(&serde_json::json!({
                "schema_version": crate::record::SCHEMA_VERSION, "gc": r }));
        }
        return Ok(format!(
            "{}: removed {} blob(s) ({} bytes) and {} index entr(ies); kept {} blob(s)\n",
            r.location,
            r.blobs_removed,
            r.bytes_freed,
            r.entries_dropped.len(),
            r.blobs_kept
        ));
    }
    if args.ids.is_empty() && !args.filter.any() {
        return Err(CliError::usage("name the runs to archive")
            .hint("give run ids, or filters such as --image trainer --since 30d"));
    }
    let runs = super::audit::select_runs(ctx, &store, &args.ids, &args.filter)?;
    let destination = match (&args.to, &args.to_registry) {
        (Some(d), _) => Destination::Layout(d.clone()),
        (None, Some(r)) => Destination::registry(r)?,
        (None, None) => unreachable!("clap requires a destination"),
    };
    let client = RegistryClient::new(args.registry.options(ctx)?)?;
    let req = ArchiveRequest {
        runs,
        destination,
        all_platforms: args.all_platforms,
        jobs: args.registry.jobs(),
    };
    let now = crate::capture::host::rfc3339(crate::capture::host::now());
    let report = archive::archive(&client, &req, &now)?;
    for rec in &report.records {
        store.record_archive(rec)?;
    }
    let failed = report.images.iter().filter(|i| i.error.is_some()).count();
    let text = if args.json {
        json_text(&serde_json::json!({
            "schema_version": crate::record::SCHEMA_VERSION, "archive": report }))?
    } else {
        let mut s = String::new();
        for i in &report.images {
            let runs = i
                .runs
                .iter()
                .map(|r| &r[..r.len().min(12)])
                .collect::<Vec<_>>()
                .join(",");
            match &i.error {
                None => s.push_str(&format!(
                    "archived  {}  {}  runs {runs}{}\n",
                    crate::output::sanitize::escape(&i.reference),
                    i.digest,
                    if i.platform_digests.is_empty() {
                        String::new()
                    } else {
                        format!("  platforms {}", i.platform_digests.join(","))
                    }
                )),
                Some(e) => s.push_str(&format!(
                    "FAILED    {}  {}  runs {runs}: {e}\n",
                    crate::output::sanitize::escape(&i.reference),
                    i.digest
                )),
            }
        }
        if !report.skipped.is_empty() {
            ctx.status(format!(
                "{} run(s) without a pinned image skipped",
                report.skipped.len()
            ));
        }
        ctx.status(format!(
            "{} {}: {} blob(s) fetched ({} bytes), {} already there",
            report.kind,
            report.location,
            report.blobs_fetched,
            report.bytes_fetched,
            report.blobs_present
        ));
        s
    };
    if failed > 0 {
        print_out(&text)?;
        return Err(CliError::user(format!(
            "{failed} image(s) could not be archived"
        ))
        .hint("see the FAILED lines; an image gone from the registry can no longer be archived from it"));
    }
    Ok(text)
}

fn json_text(v: &serde_json::Value) -> CliResult<String> {
    let mut s = serde_json::to_string_pretty(v).map_err(|e| CliError::user(e.to_string()))?;
    s.push('\n');
    Ok(s)
}

/// `repro image inspect` with explicit registry options (tests pass their own credentials).
pub fn cmd_inspect(args: &InspectArgs, mut opts: RegistryOptions) -> CliResult<String> {
    let r = reference::parse_normalized(&args.reference)?;
    let platform = match &args.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let remote: Option<RemoteImage> = if args.offline {
        None
    } else {
        for i in &args.insecure_registries {
            if !opts.insecure_registries.contains(i) {
                opts.insecure_registries.push(i.clone());
            }
        }
        if args.ca_cert.is_some() {
            opts.ca_cert = args.ca_cert.clone();
        }
        let client = RegistryClient::new(opts)?;
        Some(client.resolve(&r, &platform).map_err(CliError::from)?)
    };
    if args.json {
        let registry = remote.as_ref().map(|m| {
            json!({
                "digest": m.digest,
                "media_type": m.media_type,
                "is_index": m.is_index,
                "platforms": m.platforms,
                "platform_digest": m.platform_digest,
                "labels": m.labels,
            })
        });
        let v = json!({
            "schema_version": crate::record::SCHEMA_VERSION,
            "input": args.reference,
            "domain": r.domain,
            "path": r.path,
            "tag": r.tag,
            "digest": r.digest.as_ref().map(|d| d.to_string()),
            "normalized": r.with_default_tag(),
            "registry": registry,
        });
        let mut s = serde_json::to_string_pretty(&v).map_err(|e| CliError::user(e.to_string()))?;
        s.push('\n');
        return Ok(s);
    }
    let mut out = String::new();
    // Registry answers (labels, media types) are untrusted: controls shown, never obeyed.
    let mut line = |k: &str, v: &str| {
        out.push_str(&format!("{k:<16}{}\n", crate::output::sanitize::escape(v)))
    };
    line("input", &args.reference);
    line("domain", &r.domain);
    line("path", &r.path);
    line("tag", r.tag.as_deref().unwrap_or("-"));
    line(
        "digest",
        &r.digest
            .as_ref()
            .map(|d| d.to_string())
            .unwrap_or("-".into()),
    );
    line("normalized", &r.with_default_tag());
    line("familiar", &r.familiar());
    if let Some(m) = remote {
        line("registry digest", &m.digest);
        line("media type", &m.media_type);
        line("index", if m.is_index { "yes" } else { "no" });
        for p in &m.platforms {
            line("  platform", &format!("{} {}", p.platform, p.digest));
        }
        if m.is_index {
            line(
                "runs",
                &format!(
                    "{} on {}",
                    m.platform_digest,
                    m.platform.as_deref().unwrap_or("?")
                ),
            );
        }
        for (k, v) in &m.labels {
            line("label", &format!("{k}={v}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inspect(reference: &str, json: bool) -> CliResult<String> {
        cmd_inspect(
            &InspectArgs {
                reference: reference.into(),
                offline: true,
                platform: None,
                json,
                insecure_registries: vec![],
                ca_cert: None,
            },
            RegistryOptions::default(),
        )
    }

    #[test]
    fn offline_json_shape() {
        let out = inspect("ubuntu", true).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["schema_version"], 1);
        assert_eq!(v["domain"], "docker.io");
        assert_eq!(v["path"], "library/ubuntu");
        assert_eq!(v["tag"], serde_json::Value::Null);
        assert_eq!(v["digest"], serde_json::Value::Null);
        assert_eq!(v["normalized"], "docker.io/library/ubuntu:latest");
        assert_eq!(v["registry"], serde_json::Value::Null);
    }

    #[test]
    fn invalid_reference_is_a_user_error_with_a_reason() {
        let e = inspect("Foo/Bar:x", false).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(e.message.contains("lowercase"), "{e}");
        assert!(!e.hints.is_empty());
        let e = inspect(&format!("a@sha256:{}", "A".repeat(64)), false).unwrap_err();
        assert!(e.to_string().contains("lowercase"), "{e}");
    }
}
