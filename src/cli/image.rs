//! `repro image inspect`: how a reference parses and normalises, and what the registry says.
//! `repro image archive`: keep a copy of runs' images by digest (OCI layout or archive registry).

use std::path::PathBuf;

use super::print_out;
use super::Ctx;
use crate::capture::image::registry::{RegistryClient, RegistryOptions};
use crate::error::{CliError, CliResult};
use crate::ops::image;
use crate::output;
use clap::{Args, Subcommand};

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
    pub filter: super::filter::FilterArgs,
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
    pub registry: super::RegistryArgs,
    /// Parallel registry requests
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub jobs: usize,
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
    #[command(flatten)]
    pub registry: super::RegistryArgs,
}

/// Runs `repro image …`; returns the text to print on stdout. Configured
/// `insecure_registries` apply as for `repro run`.
pub fn cmd_image(ctx: &Ctx, args: &ImageArgs) -> CliResult<String> {
    match &args.command {
        ImageCommand::Inspect(a) => {
            // The configuration's insecure registries and registry_timeout, as for `repro run`.
            cmd_inspect(a, a.registry.options(&ctx.config)?)
        }
        ImageCommand::Archive(a) => cmd_archive(ctx, a),
    }
}

/// Runs `repro image archive`; prints the report and fails when an image could not be archived.
pub fn cmd_archive(ctx: &Ctx, args: &ArchiveArgs) -> CliResult<String> {
    use crate::ops::archive::{ArchiveRequest, Destination};
    let mut store = ctx.open_store()?;
    if let Some(dir) = &args.gc {
        if args.filter.any() {
            return Err(CliError::usage("--gc takes no run filters")
                .hint("it keeps what any recorded run references"));
        }
        let r = image::gc(&store, dir)?;
        return Ok(if args.json {
            output::image::gc_json(&r)
        } else {
            output::image::gc_text(&r)
        });
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
    let client = RegistryClient::new(args.registry.options(&ctx.config)?)?;
    let req = ArchiveRequest {
        runs,
        destination,
        all_platforms: args.all_platforms,
        jobs: args.jobs.clamp(1, 64),
    };
    let now = crate::capture::host::rfc3339(crate::capture::host::now());
    let report = image::archive(&mut store, &client, &req, &now)?;
    let text = if args.json {
        output::image::archive_json(&report)
    } else {
        for s in output::image::archive_status(&report) {
            ctx.status(s);
        }
        output::image::archive_text(&report)
    };
    let failed = report.images.iter().filter(|i| i.error.is_some()).count();
    if failed > 0 {
        print_out(&text)?;
        // The hints of what failed, each once; none that speaks of another failure.
        let mut e = CliError::user(format!("{failed} image(s) could not be archived"))
            .hint("see the FAILED lines");
        for h in report.images.iter().filter_map(|i| i.hint.as_ref()) {
            if !e.hints.contains(h) {
                e.hints.push(h.clone());
            }
        }
        return Err(e);
    }
    Ok(text)
}

/// `repro image inspect` with the registry options already merged ([`super::RegistryArgs`];
/// tests pass their own credentials).
pub fn cmd_inspect(args: &InspectArgs, opts: RegistryOptions) -> CliResult<String> {
    let req = image::InspectRequest {
        reference: args.reference.clone(),
        platform: args.platform.clone(),
        offline: args.offline,
    };
    let found = image::inspect(&req, opts)?;
    Ok(if args.json {
        output::image::inspect_json(&args.reference, &found)
    } else {
        output::image::inspect_text(&args.reference, &found)
    })
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
                registry: Default::default(),
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
