//! What every command shares at run time: the global options (`Ctx`, also the ops' event sink),
//! printing to a pipe that may close, questions on a terminal, colour and exit codes.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use crate::config::Config;
use crate::error::{CliError, CliResult};
use crate::store::{default_db_path, Store};

/// Global options every command sees.
pub struct Ctx {
    pub db: Option<PathBuf>,
    pub quiet: bool,
    /// `-v`: extra detail on stderr.
    pub verbose: bool,
    /// Colour on stdout (`--color`, `REPRO_COLOR`, config, `NO_COLOR`, TTY decided).
    pub color: bool,
    pub utc: bool,
    /// The effective configuration (flags included).
    pub config: Config,
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

    /// A detail line on stderr, only with `-v`.
    pub fn debug(&self, msg: impl std::fmt::Display) {
        if self.verbose {
            eprintln!("repro: {msg}");
        }
    }

    /// A warning on stderr (shown even with `--quiet`).
    pub fn warn(&self, msg: impl std::fmt::Display) {
        eprintln!("repro: warning: {msg}");
    }
}

impl crate::ops::Events for Ctx {
    fn status(&self, msg: &str) {
        Ctx::status(self, msg);
    }
    fn warn(&self, msg: &str) {
        Ctx::warn(self, msg);
    }
    fn error(&self, msg: &str) {
        eprintln!("repro: {msg}");
    }
    fn debug(&self, msg: &str) {
        Ctx::debug(self, msg);
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

/// A command's exit code: its own on success, else the error printed and its kind's code.
pub fn exit_with(res: CliResult<i32>) -> i32 {
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    }
}

/// Whether a question can be asked: stdin and stderr are terminals.
pub fn interactive() -> bool {
    io::stdin().is_terminal() && io::stderr().is_terminal()
}

/// Asks a yes/no question on stderr and reads the answer from stdin (`y`/`yes`: true).
pub fn ask_yes(question: &str) -> CliResult<bool> {
    use std::io::BufRead;
    eprint!("{question} [y/N] ");
    let _ = io::stderr().flush();
    let mut answer = String::new();
    io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::user(format!("cannot read the answer: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// Asks on the terminal whether to re-run a run that [`crate::ops::rerun::review`] flags (recorded
/// elsewhere, or risky flags/mounts/variables). `true` when there is nothing to confirm or the
/// user answers yes; `false` without a terminal (the op then refuses with a `--trust` hint).
pub fn confirm_rerun(store: &Store, id: &str) -> CliResult<bool> {
    let run = store.get_run(id)?;
    let Some(review) = crate::ops::rerun::review(&run, &crate::capture::host::hostname()) else {
        return Ok(true);
    };
    if !interactive() {
        return Ok(false);
    }
    eprintln!("repro: this re-run needs your confirmation:");
    for l in &review.lines {
        eprintln!("  {l}");
    }
    ask_yes("re-run it?")
}

/// Whether stdout is a terminal.
pub fn stdout_is_tty() -> bool {
    io::stdout().is_terminal()
}

/// Whether to colour stdout: `always`/`never` as asked; `auto` when `NO_COLOR` is unset and stdout is a TTY.
pub fn use_color(choice: crate::config::Color) -> bool {
    use crate::config::Color;
    match choice {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && stdout_is_tty(),
    }
}
