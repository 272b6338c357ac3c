//! Command-line interface: clap definitions, one file per subcommand; the only layer that prints.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::capture::image::registry::RegistryOptions;
use crate::config::{Config, Source};
use crate::error::{CliError, CliResult};

pub use ctx::{
    ask_yes, confirm_rerun, exit_with, interactive, print_out, stdout_is_tty, use_color, Ctx,
};

pub mod annotate;
pub mod attest;
pub mod audit;
pub mod config;
mod ctx;
pub mod dataset;
pub mod diff;
pub mod doctor;
pub mod du;
pub mod export;
pub mod filter;
pub mod gc;
pub mod get;
pub mod image;
pub mod import;
pub mod ls;
pub mod meta;
pub mod mlflow;
pub mod outputs;
pub mod plot;
pub mod promote;
pub mod rerun;
pub mod run;
pub mod script;
pub mod show;
pub mod sweep;
pub mod ui;
pub mod verify;
pub mod which;

/// repro: record exactly what a training run used, and re-run it pinned to exactly that.
#[derive(Debug, Parser)]
#[command(name = "repro", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Database file [env: REPRO_DB] [default: $XDG_DATA_HOME/repro/repro.db]
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        help_heading = "Global options"
    )]
    pub db: Option<PathBuf>,
    /// Silence status messages on stderr
    #[arg(short, long, global = true, help_heading = "Global options")]
    pub quiet: bool,
    /// More detail on stderr (config files read, the engine command line)
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "quiet",
        help_heading = "Global options"
    )]
    pub verbose: bool,
    /// When to use colour [env: REPRO_COLOR, NO_COLOR] [default: auto]
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "WHEN",
        help_heading = "Global options"
    )]
    pub color: Option<ColorChoice>,
    /// Show times in UTC instead of local time
    #[arg(long, global = true, help_heading = "Global options")]
    pub utc: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// How to reach registries: flattened into every command that talks to one (run, rerun,
/// script, image, audit), merged with the configuration by [`RegistryArgs::options`].
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RegistryArgs {
    /// Registry (HOST or HOST:PORT) reachable over plain HTTP: repro's client falls back to
    /// HTTP, podman pulls with --tls-verify=false, and a run records it for its re-runs;
    /// repeatable; adds to the configured `insecure_registries`
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// CA certificate (PEM) to trust for registry TLS, besides the system roots and
    /// certs.d/HOST[:PORT]/*.crt under ~/.config/containers, /etc/containers and /etc/docker
    /// (podman pulls with --cert-dir; scripts embed it; a run records its path and SHA-256)
    #[arg(long, value_name = "PATH")]
    pub ca_cert: Option<PathBuf>,
}

impl RegistryArgs {
    /// The registry options of a command: the configuration (insecure registries,
    /// `registry_timeout`) plus these flags; credentials from the usual places.
    pub fn options(&self, cfg: &Config) -> CliResult<RegistryOptions> {
        use crate::capture::image::registry::options;
        if let Err(e) = options::deadline_from_env() {
            return Err(CliError::user(e).hint(format!(
                "set {} to a whole number of seconds, e.g. 30, or unset it",
                options::DEADLINE_ENV
            )));
        }
        Ok(options::registry_options(
            cfg.insecure_registries.values(),
            cfg.registry_timeout.value,
            &self.insecure_registries,
            self.ca_cert.clone(),
        ))
    }
}

/// Colour choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl From<ColorChoice> for crate::config::Color {
    fn from(c: ColorChoice) -> Self {
        match c {
            ColorChoice::Auto => crate::config::Color::Auto,
            ColorChoice::Always => crate::config::Color::Always,
            ColorChoice::Never => crate::config::Color::Never,
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command, recording its image digest, code, datasets, argv and outcome
    Run(Box<run::RunArgs>),
    /// Run a command once per combination of a parameter grid, each a recorded run
    Sweep(Box<sweep::SweepArgs>),
    /// List recorded runs, newest first
    Ls(ls::LsArgs),
    /// Show everything recorded about one run
    Show(show::ShowArgs),
    /// Write a run's kept outputs back, verified against the recorded digests
    Get(get::GetArgs),
    /// Print a script that re-runs a recorded run, pinned to its digest and commit
    Script(script::ScriptArgs),
    /// Re-run a recorded run now with the same pins, as a new run linked to it; compare outputs
    Rerun(rerun::RerunArgs),
    /// Draw one metric's history for several runs on one chart (SVG or PNG)
    Plot(plot::PlotArgs),
    /// Show what differs between two runs: image, code, data, command, env, outcome
    Diff(diff::DiffArgs),
    /// Serve a local, read-only web page: runs, a run, compare, and a JSON API
    Ui(ui::UiArgs),
    /// Add (+TAG) or remove (-TAG) tags of a run
    Tag(annotate::TagArgs),
    /// Add a note to a run
    Note(annotate::NoteArgs),
    /// Set or remove params of a run (annotations; provenance is never changed)
    Param(annotate::ParamArgs),
    /// Write matching runs as JSON lines (patches included), for `repro import` elsewhere
    Export(export::ExportArgs),
    /// Import runs written by `repro export` (FILE or - for stdin); idempotent by run id
    Import(import::ImportArgs),
    /// Delete runs matching filters (at least one), after confirmation; --outputs: remove kept
    /// copies of outputs by a retention policy
    Gc(gc::GcArgs),
    /// What the object store of kept outputs takes: in all, per run, orphans
    Du(du::DuArgs),
    /// Parse an image reference and ask its registry what it points at; archive runs' images
    Image(image::ImageArgs),
    /// Point channel tags (staging, prod) at a run's exact image digest through the registry
    /// API, recorded; --rollback points one back (docs/promote.md)
    Promote(Box<promote::PromoteArgs>),
    /// Each channel tag's digest now beside its last recorded promotion; drift flagged
    Channels(promote::ChannelsArgs),
    /// Release notes from the recorded promotions: tags, digests, commits, datasets, metrics
    Notes(promote::NotesArgs),
    /// Can these runs still be re-run? Digests gone from the registry, moved tags, archives
    Audit(audit::AuditArgs),
    /// Content digests of datasets: hash a path, or verify one against a digest
    #[command(subcommand)]
    Dataset(dataset::DatasetCmd),
    /// SLSA provenance for a run's outputs (in-toto statement, DSSE-signed); verify one
    Attest(attest::AttestArgs),
    /// Re-hash a run's path datasets and outputs and report match or mismatch (exit 1 on any);
    /// --store: rehash the object store of kept outputs
    Verify(verify::VerifyArgs),
    /// Which runs produced a file (or directory) with this content, and which read it
    Which(which::WhichArgs),
    /// Show the effective configuration and where each value came from
    #[command(subcommand)]
    Config(config::ConfigCmd),
    /// Check the database, container engines, git, registry credentials and config files
    Doctor(doctor::DoctorArgs),
    /// Share runs with an MLflow tracking server (`repro mlflow push`)
    #[command(subcommand)]
    Mlflow(mlflow::MlflowCmd),
    /// Share a run's kept outputs through an OCI registry (`repro outputs push`)
    #[command(subcommand)]
    Outputs(outputs::OutputsCmd),
    /// Print a shell completion script (bash, zsh, fish)
    Completions(meta::CompletionsArgs),
    /// Print the man page (roff), or write every page to a directory
    Man(meta::ManArgs),
    /// Run ids starting with PREFIX, one a line (used by the completion scripts)
    #[command(name = "__complete-ids", hide = true)]
    CompleteIds(meta::CompleteIdsArgs),
    /// `--sort` values starting with PREFIX, one a line (used by the completion scripts)
    #[command(name = "__complete-sort", hide = true)]
    CompleteSort(meta::CompleteSortArgs),
}

/// Parses the command line, runs the command, and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    // Completions and the man page need no configuration; doctor reports a broken one.
    let standalone = matches!(
        cli.command,
        Command::Completions(_) | Command::Man(_) | Command::Doctor(_)
    );
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let (mut config, config_error) = match crate::config::load(&cwd) {
        Ok(c) => (c, None),
        Err(e) if standalone => (crate::config::load_env_only(), Some(CliError::from(e))),
        Err(e) => {
            eprintln!("{}", CliError::from(e));
            return 1;
        }
    };
    if let Some(db) = &cli.db {
        config.db.set(db.clone(), Source::Flag("--db".into()));
    }
    if let Some(c) = cli.color {
        config.color.set(c.into(), Source::Flag("--color".into()));
    }
    let ctx = Ctx {
        db: Some(config.db.value.clone()),
        quiet: cli.quiet,
        verbose: cli.verbose,
        color: use_color(config.color.value),
        utc: cli.utc,
        config,
    };
    for f in ctx.config.files.iter().filter(|f| f.found) {
        ctx.debug(format!("config: read {} file {}", f.kind, f.path.display()));
    }
    ctx.debug(format!(
        "database: {} ({})",
        ctx.db_path().display(),
        ctx.config.db.source
    ));
    let result = match &cli.command {
        Command::Run(args) => return run::cmd_run(&ctx, args),
        Command::Sweep(args) => return sweep::cmd_sweep(&ctx, args),
        Command::Ls(args) => ls::cmd_ls(&ctx, args),
        Command::Show(args) => show::cmd_show(&ctx, args),
        Command::Get(args) => get::cmd_get(&ctx, args),
        Command::Script(args) => script::cmd_script(&ctx, args),
        Command::Rerun(args) => return rerun::cmd_rerun(&ctx, args),
        Command::Diff(args) => diff::cmd_diff(&ctx, args),
        Command::Ui(args) => ui::cmd_ui(&ctx, args),
        Command::Plot(args) => plot::cmd_plot(&ctx, args),
        Command::Tag(args) => annotate::cmd_tag(&ctx, args),
        Command::Note(args) => annotate::cmd_note(&ctx, args),
        Command::Param(args) => annotate::cmd_param(&ctx, args),
        Command::Export(args) => export::cmd_export(&ctx, args),
        Command::Import(args) => import::cmd_import(&ctx, args),
        Command::Gc(args) => gc::cmd_gc(&ctx, args),
        Command::Du(args) => du::cmd_du(&ctx, args),
        Command::Image(args) => image::cmd_image(&ctx, args).and_then(|text| print_out(&text)),
        Command::Dataset(cmd) => {
            let store = if dataset::wants_store(cmd) {
                match ctx.open_store() {
                    Ok(s) => Some(s),
                    Err(e) => {
                        eprintln!("{e}");
                        return e.exit_code();
                    }
                }
            } else {
                None
            };
            dataset::cmd_dataset(cmd, store.as_ref()).and_then(|out| print_out(&out))
        }
        Command::Verify(args) => return verify::cmd_verify(&ctx, args),
        Command::Which(args) => return which::cmd_which(&ctx, args),
        Command::Audit(args) => return audit::cmd_audit(&ctx, args),
        Command::Promote(args) => promote::cmd_promote(&ctx, args),
        Command::Channels(args) => return promote::cmd_channels(&ctx, args),
        Command::Notes(args) => promote::cmd_notes(&ctx, args),
        Command::Attest(args) => return attest::cmd_attest(&ctx, args),
        Command::Config(cmd) => config::cmd_config(&ctx, cmd),
        Command::Doctor(args) => return doctor::cmd_doctor(&ctx, args, config_error.as_ref()),
        Command::Mlflow(cmd) => mlflow::cmd_mlflow(&ctx, cmd),
        Command::Outputs(cmd) => outputs::cmd_outputs(&ctx, cmd),
        Command::Completions(args) => meta::cmd_completions(args),
        Command::Man(args) => meta::cmd_man(&ctx, args),
        Command::CompleteIds(args) => meta::cmd_complete_ids(&ctx, args),
        Command::CompleteSort(args) => meta::cmd_complete_sort(&ctx, args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    }
}
