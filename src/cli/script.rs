//! `repro script`: a re-run script for a recorded run (bash, Kubernetes Job, Slurm).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::cli::{print_out, Ctx};
use crate::config::Config;
use crate::error::{CliError, CliResult};
use crate::record::Run;
use crate::script::{bash, k8s, slurm, Engine};

/// Where the re-run happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// A bash script using docker or podman
    Bash,
    /// A Kubernetes batch/v1 Job manifest (YAML)
    K8s,
    /// An sbatch script running the image with Apptainer
    Slurm,
}

/// Arguments of `repro script`.
#[derive(Debug, Args)]
pub struct ScriptArgs {
    /// Run id or any unique prefix
    pub id: String,
    /// What to generate
    #[arg(long, value_enum, default_value_t = Target::Bash)]
    pub target: Target,
    /// Container engine used by the bash script (default: the one recorded)
    #[arg(long, value_enum)]
    pub engine: Option<Engine>,
    /// Registry reachable over plain HTTP: the script pulls with podman --tls-verify=false
    /// (default: the configured insecure_registries); repeatable
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// CA certificate (PEM) of the registry, embedded in the script (podman pulls with --cert-dir)
    #[arg(long, value_name = "PATH")]
    pub ca_cert: Option<PathBuf>,
    /// Container runtime of the Slurm script
    #[arg(long, value_enum, default_value_t = slurm::Runtime::Apptainer)]
    pub runtime: slurm::Runtime,
    /// Image of the Kubernetes init container that checks out the code, pinned by digest
    /// (`NAME@sha256:…`, with sh, git, base64, sha256sum); needed when the run has a commit
    #[arg(long, value_name = "REF@DIGEST")]
    pub git_image: Option<String>,
    /// Write the script to FILE (scripts get mode 0755) instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Renders the script for a stored run. The registry options are those of `repro run` and
/// `repro rerun` (configuration, flags, certs.d), so the script pulls as they do, and it falls
/// back to the `fallback` archives as they do.
pub fn render(
    run: &Run,
    args: &ScriptArgs,
    cfg: &Config,
    fallback: Option<crate::script::plan::PullFallback>,
) -> CliResult<String> {
    let engine = args.engine;
    let opts =
        crate::ops::run::registry_options(cfg, &args.insecure_registries, args.ca_cert.clone());
    let registry = run
        .image
        .as_ref()
        .map(|img| crate::ops::run::registry_flags(img, &opts))
        .unwrap_or_default();
    // Every CA that applies to the registry is embedded (never a client key).
    let mut pem = String::new();
    for f in &registry.ca_files {
        let text = std::fs::read_to_string(f).map_err(|e| {
            CliError::user(format!(
                "cannot read the CA certificate {}: {e}",
                f.display()
            ))
            .hint("give --ca-cert a readable PEM file")
        })?;
        pem.push_str(text.trim_end());
        pem.push('\n');
    }
    let ca_pem = (!pem.is_empty()).then_some(pem);
    let bash_opts = bash::BashOptions {
        engine,
        registry,
        ca_pem,
        fallback,
    };
    Ok(match args.target {
        Target::Bash => bash::render(run, &bash_opts)?,
        Target::K8s => k8s::render(
            run,
            &k8s::K8sOptions {
                git_image: args.git_image.clone(),
            },
        )?,
        Target::Slurm => slurm::render(
            run,
            &slurm::SlurmOptions {
                runtime: args.runtime,
                engine: bash_opts,
            },
        )?,
    })
}

/// Renders the script.
pub fn cmd_script(ctx: &Ctx, args: &ScriptArgs) -> CliResult {
    let store = ctx.open_store()?;
    let id = store.resolve_id(&args.id)?;
    let run = store.get_run(&id)?;
    let fallback = match &run.image {
        Some(img) => crate::ops::archive::recorded_fallback(&store, img)?,
        None => None,
    };
    let text = render(&run, args, &ctx.config, fallback)?;
    match &args.output {
        None => print_out(&text),
        Some(path) => {
            let mode = if args.target == Target::K8s {
                0o644
            } else {
                0o755
            };
            let write = || -> std::io::Result<()> {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(mode)
                    .open(path)?;
                f.write_all(text.as_bytes())
            };
            write().map_err(|e| {
                CliError::user(format!("cannot write {}: {e}", path.display()))
                    .hint("choose a writable path for -o")
            })?;
            ctx.status(format!("wrote {}", path.display()));
            Ok(())
        }
    }
}
