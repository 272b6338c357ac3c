//! `repro ui`: a local web page over the store, read-only: the runs (the `ls` query), a run
//! (`show --json`), compare, and the JSON API the page uses. A synchronous server
//! (`tiny_http`) with a few worker threads, each with its own read-only SQLite connection; the
//! page (one HTML shell, one script, one style sheet) is embedded in the binary.

pub mod api;
mod assets;
pub mod routes;
pub mod server;
pub mod tarball;

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::error::Hinted;
use crate::script::ScriptOptions;

/// How `repro ui` serves.
#[derive(Debug, Clone)]
pub struct UiConfig {
    /// The address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// The token every request must carry (`?token=` once, then a cookie); required off
    /// loopback.
    pub token: Option<String>,
    /// The database, opened read-only by each worker.
    pub db: PathBuf,
    /// The options of the re-run script the run page offers (those of `repro script ID`).
    pub script: ScriptOptions,
}

/// Why the page cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("refusing to listen on {addr} without a token: anyone who can reach it could read every run")]
    NeedsToken { addr: SocketAddr },
    #[error(
        "the token is too weak: it needs at least 16 characters, letters, digits, '-', '_' or '.'"
    )]
    WeakToken,
    #[error("cannot listen on {addr}: {why}")]
    Bind { addr: SocketAddr, why: String },
}

impl Hinted for UiError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            UiError::NeedsToken { .. } => "add --new-token (a random token, printed in the URL) or --token TOKEN (or REPRO_UI_TOKEN); or listen on 127.0.0.1".into(),
            UiError::WeakToken => "use --new-token to have one generated".into(),
            UiError::Bind { .. } => "pick another port (--listen 127.0.0.1:0 takes any free one)".into(),
        })
    }
    fn is_usage(&self) -> bool {
        matches!(self, UiError::NeedsToken { .. } | UiError::WeakToken)
    }
}

/// A random token (32 hex digits, 128 bits) for `--new-token`.
pub fn new_token() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the system random source");
    hex::encode(b)
}

/// Checks the token rules: off loopback a token is required; a given token must be strong
/// enough to stand in for a password and travel in a URL unescaped.
pub fn check_token(listen: SocketAddr, token: Option<&str>) -> Result<(), UiError> {
    match token {
        None if !listen.ip().is_loopback() => Err(UiError::NeedsToken { addr: listen }),
        None => Ok(()),
        Some(t)
            if t.len() < 16
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
        {
            Err(UiError::WeakToken)
        }
        Some(_) => Ok(()),
    }
}

/// The commands that open `url` in a browser, in the order to try them: each of `$BROWSER`'s
/// `:`-separated commands (`%s` replaced by the URL, else the URL appended), as Python's
/// `webbrowser` and Jupyter read it, then `xdg-open URL`.
pub fn browser_commands(browser_var: Option<&str>, url: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for cmd in browser_var.unwrap_or("").split(':') {
        let mut words: Vec<String> = cmd.split_whitespace().map(String::from).collect();
        if words.is_empty() {
            continue;
        }
        if words.iter().any(|w| w.contains("%s")) {
            for w in &mut words {
                *w = w.replace("%s", url);
            }
        } else {
            words.push(url.to_string());
        }
        out.push(words);
    }
    out.push(vec!["xdg-open".into(), url.into()]);
    out
}

/// Opens `url` in the user's browser ([`browser_commands`], the first that starts); the
/// browser process is waited for on a thread of its own, so it never lingers as a zombie.
/// Returns the program started, or why none could be.
pub fn open_browser(url: &str) -> Result<String, String> {
    let var = std::env::var("BROWSER").ok();
    let mut why = Vec::new();
    for words in browser_commands(var.as_deref(), url) {
        match std::process::Command::new(&words[0])
            .args(&words[1..])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(mut child) => {
                std::thread::spawn(move || child.wait());
                return Ok(words[0].clone());
            }
            Err(e) => why.push(format!("{}: {e}", words[0])),
        }
    }
    Err(why.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browser_is_read_as_webbrowser_reads_it() {
        let u = "http://127.0.0.1:1/?token=t";
        assert_eq!(browser_commands(None, u), vec![vec!["xdg-open", u]]);
        assert_eq!(
            browser_commands(Some("firefox -new-tab:chromium --app=%s"), u),
            vec![
                vec!["firefox", "-new-tab", u],
                vec!["chromium", &format!("--app={u}")],
                vec!["xdg-open", u]
            ]
        );
        assert_eq!(browser_commands(Some(" : "), u).len(), 1);
    }

    #[test]
    fn tokens_are_required_off_loopback_and_strong() {
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8000".parse().unwrap();
        assert!(check_token(lo, None).is_ok());
        assert!(matches!(
            check_token(any, None),
            Err(UiError::NeedsToken { .. })
        ));
        assert!(matches!(
            check_token(any, Some("short")),
            Err(UiError::WeakToken)
        ));
        assert!(matches!(
            check_token(lo, Some("0123456789abcdef<")),
            Err(UiError::WeakToken)
        ));
        let t = new_token();
        assert_eq!(t.len(), 32);
        assert!(check_token(any, Some(&t)).is_ok());
        assert_ne!(t, new_token());
    }
}
