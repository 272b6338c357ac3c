//! The one user-facing error: what went wrong, the cause chain, a hint, and the exit code by kind.

use std::fmt;

/// What kind of failure this is; decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input or a runtime failure the user can fix (exit 1).
    User,
    /// Malformed command line (exit 2), as clap does.
    Usage,
}

/// An error as shown to the user: `error: MESSAGE`, `caused by: …` lines, then `hint: …` lines.
#[derive(Debug)]
pub struct CliError {
    pub kind: ErrorKind,
    pub message: String,
    pub causes: Vec<String>,
    pub hints: Vec<String>,
}

impl CliError {
    /// A user error with a message.
    pub fn user(message: impl Into<String>) -> Self {
        CliError {
            kind: ErrorKind::User,
            message: message.into(),
            causes: Vec::new(),
            hints: Vec::new(),
        }
    }

    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            kind: ErrorKind::Usage,
            ..CliError::user(message)
        }
    }

    /// Adds a hint line saying what to do.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    /// Builds an error from any std error, keeping its source chain as causes.
    pub fn from_error(err: &(dyn std::error::Error + 'static)) -> Self {
        let mut e = CliError::user(err.to_string());
        let mut src = err.source();
        while let Some(s) = src {
            let text = s.to_string();
            if !e.message.contains(&text) {
                e.causes.push(text);
            }
            src = s.source();
        }
        e
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            ErrorKind::User => 1,
            ErrorKind::Usage => 2,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        for c in &self.causes {
            write!(f, "\n  caused by: {c}")?;
        }
        for h in &self.hints {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

/// Library errors convert into a `CliError` carrying their hint.
pub trait Hinted: std::error::Error + 'static {
    /// A line telling the user what to do, when there is one.
    fn hint(&self) -> Option<String> {
        None
    }

    /// Whether this is a malformed request (exit 2, as clap's usage errors) rather than a
    /// failure of the work (exit 1).
    fn is_usage(&self) -> bool {
        false
    }
}

impl<E: Hinted> From<E> for CliError {
    fn from(err: E) -> Self {
        let hint = err.hint();
        let mut e = CliError::from_error(&err);
        if err.is_usage() {
            e.kind = ErrorKind::Usage;
        }
        if let Some(h) = hint {
            e.hints.push(h);
        }
        e
    }
}

/// A library error as the user would see it (message, causes, hint), for a failure reported
/// as an event while the operation goes on.
pub fn report<E: Hinted>(err: E) -> String {
    CliError::from(err).to_string()
}

/// Result alias for CLI commands.
pub type CliResult<T = ()> = Result<T, CliError>;
