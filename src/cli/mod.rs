//! Command-line interface: clap definitions, one file per subcommand; the only layer that prints.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::error::{CliError, CliResult};
use crate::store::{default_db_path, Store};

pub mod annotate;
pub mod dataset;
pub mod diff;
pub mod export;
pub mod gc;
pub mod image;
pub mod import;
pub mod ls;
pub mod rerun;
pub mod run;
pub mod script;
pub mod show;
pub mod verify;

/// repro: record exactly what a training run used, and re-run it pinned to exactly that.
#[derive(Debug, Parser)]
#[command(name = "repro", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Database file [env: REPRO_DB] [default: $XDG_DATA_HOME/repro/repro.db]
    #[arg(long, global = true, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Silence status messages on stderr
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// When to use colour
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Show times in UTC instead of local time
    #[arg(long, global = true)]
    pub utc: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Colour choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command, recording its image digest, code, datasets, argv and outcome
    Run(Box<run::RunArgs>),
    /// List recorded runs, newest first
    Ls(ls::LsArgs),
    /// Show everything recorded about one run
    Show(show::ShowArgs),
    /// Print a script that re-runs a recorded run, pinned to its digest and commit
    Script(script::ScriptArgs),
    /// Re-run a recorded run now with the same pins, as a new run linked to it; compare outputs
    Rerun(rerun::RerunArgs),
    /// Show what differs between two runs: image, code, data, command, env, outcome
    Diff(diff::DiffArgs),
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
    /// Delete runs matching filters (at least one), after confirmation
    Gc(gc::GcArgs),
    /// Parse an image reference and ask its registry what it points at
    Image(image::ImageArgs),
    /// Content digests of datasets: hash a path, or verify one against a digest
    #[command(subcommand)]
    Dataset(dataset::DatasetCmd),
    /// Re-hash a run's path datasets and outputs and report match or mismatch (exit 1 on any)
    Verify(verify::VerifyArgs),
}

/// Global options every command sees.
pub struct Ctx {
    pub db: Option<PathBuf>,
    pub quiet: bool,
    pub color: bool,
    pub utc: bool,
}

impl Ctx {
    /// The database path in effect.
    pub fn db_path(&self) -> PathBuf {
        self.db.clone().unwrap_or_else(default_db_path)
    }

    /// Opens (creating and migrating) the store.
    pub fn open_store(&self) -> CliResult<Store> {
        Ok(Store::open(&self.db_path())?)
    }

    /// A status line on stderr, unless `--quiet`.
    pub fn status(&self, msg: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("repro: {msg}");
        }
    }

    /// A warning on stderr (shown even with `--quiet`).
    pub fn warn(&self, msg: impl std::fmt::Display) {
        eprintln!("repro: warning: {msg}");
    }
}

/// Writes data to stdout; a closed pipe (`repro ls | head -1`) ends output quietly.
pub fn print_out(text: &str) -> CliResult {
    let mut out = io::stdout().lock();
    let res = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    match res {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::user(format!("cannot write to stdout: {e}"))),
    }
}

/// Whether stdout is a terminal.
pub fn stdout_is_tty() -> bool {
    io::stdout().is_terminal()
}

fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && stdout_is_tty()
        }
    }
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
    let ctx = Ctx {
        db: cli.db.clone(),
        quiet: cli.quiet,
        color: use_color(cli.color),
        utc: cli.utc,
    };
    let result = match &cli.command {
        Command::Run(args) => return run::cmd_run(&ctx, args),
        Command::Ls(args) => ls::cmd_ls(&ctx, args),
        Command::Show(args) => show::cmd_show(&ctx, args),
        Command::Script(args) => script::cmd_script(&ctx, args),
        Command::Rerun(args) => return rerun::cmd_rerun(&ctx, args),
        Command::Diff(args) => diff::cmd_diff(&ctx, args),
        Command::Tag(args) => annotate::cmd_tag(&ctx, args),
        Command::Note(args) => annotate::cmd_note(&ctx, args),
        Command::Param(args) => annotate::cmd_param(&ctx, args),
        Command::Export(args) => export::cmd_export(&ctx, args),
        Command::Import(args) => import::cmd_import(&ctx, args),
        Command::Gc(args) => gc::cmd_gc(&ctx, args),
        Command::Image(args) => image::cmd_image(args).and_then(|text| print_out(&text)),
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
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    }
}
