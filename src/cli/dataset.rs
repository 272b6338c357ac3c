//! `repro dataset hash|verify`: the content digest of a path, and checking a path against one.

use std::cell::RefCell;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::capture::dataset::{self, HashOptions, Phase, Progress};
use crate::error::{CliError, CliResult};
use crate::ops;
use crate::output::formats;
use crate::store::Store;

/// `repro dataset …` subcommands.
#[derive(Debug, Subcommand)]
pub enum DatasetCmd {
    /// Print the content digest of a file or directory (format: docs/datasets.md)
    Hash {
        /// File or directory to hash
        path: PathBuf,
        /// Machine-readable output: {"schema_version":1,"path","digest","files","bytes","from_cache"}
        #[arg(long)]
        json: bool,
        /// Read every file; neither use nor update the hash cache in the database
        #[arg(long)]
        no_cache: bool,
        /// Hash what symlinks point at instead of recording them as links
        #[arg(long)]
        follow_symlinks: bool,
        /// Print the canonical manifest (whose SHA-256 is the digest) instead of the digest
        #[arg(long, conflicts_with = "json")]
        manifest: bool,
    },
    /// Check a file or directory against a digest; exit 1 when it does not match
    Verify {
        /// File or directory to check
        path: PathBuf,
        /// `sha256:<hex>` dataset digest, or a bare 64-hex SHA-256 of a file (as sha256sum prints)
        digest: String,
        /// Read every file; neither use nor update the hash cache
        #[arg(long)]
        no_cache: bool,
        /// Hash what symlinks point at (use when the digest was made with --follow-symlinks)
        #[arg(long)]
        follow_symlinks: bool,
    },
}

/// Whether a subcommand wants the hash cache (the caller opens the store only then).
pub fn wants_store(cmd: &DatasetCmd) -> bool {
    match cmd {
        DatasetCmd::Hash {
            no_cache, manifest, ..
        } => !no_cache && !manifest,
        DatasetCmd::Verify { no_cache, .. } => !no_cache,
    }
}

/// Runs a `repro dataset` subcommand and returns the text for stdout. `store` supplies the hash
/// cache; pass `None` for `--no-cache`.
pub fn cmd_dataset(cmd: &DatasetCmd, store: Option<&Store>) -> CliResult<String> {
    match cmd {
        DatasetCmd::Hash {
            path,
            json,
            no_cache,
            follow_symlinks,
            manifest,
        } => {
            let opts = HashOptions {
                follow_symlinks: *follow_symlinks,
            };
            if *manifest {
                let m = dataset::manifest_of(path, &opts)?;
                return Ok(String::from_utf8_lossy(&m).into_owned());
            }
            let cache = store.filter(|_| !no_cache).map(Store::conn);
            let d = with_progress(|p| dataset::hash_path(path, &opts, cache, p))?;
            Ok(if *json {
                formats::dataset_hash_json(path, &d)
            } else {
                formats::dataset_hash_text(&d)
            })
        }
        DatasetCmd::Verify {
            path,
            digest,
            no_cache,
            follow_symlinks,
        } => {
            let opts = HashOptions {
                follow_symlinks: *follow_symlinks,
            };
            let cache = store.filter(|_| !no_cache).map(Store::conn);
            verify_path(path, digest, &opts, cache)
        }
    }
}

/// `dataset verify`: the check's verdict, a mismatch as an error (exit 1) saying both digests.
fn verify_path(
    path: &Path,
    expected: &str,
    opts: &HashOptions,
    cache: Option<&rusqlite::Connection>,
) -> CliResult<String> {
    let check = with_progress(|p| ops::dataset::verify_path(path, expected, opts, cache, p))?;
    if check.matches() {
        Ok(format!(
            "ok: {} matches {}\n",
            path.display(),
            check.expected
        ))
    } else {
        Err(CliError::user(format!("{} does not match", path.display()))
            .hint(format!("expected {}", check.expected))
            .hint(format!("found    {}", check.actual))
            .hint("`repro dataset hash --manifest PATH` lists what is hashed; diff it against a good copy"))
    }
}

/// Runs `f` with a progress callback that draws a bar on stderr when it is a terminal and the
/// work lasts long enough to be worth one.
fn with_progress<T>(f: impl FnOnce(Option<&dyn Fn(Progress)>) -> T) -> T {
    if !std::io::stderr().is_terminal() {
        return f(None);
    }
    let start = Instant::now();
    // (bar, shown): created hidden at the first hashing report so its rate estimate has history,
    // drawn only once the work has lasted long enough to be worth a bar.
    let bar: RefCell<Option<(ProgressBar, bool)>> = RefCell::new(None);
    let cb = |p: Progress| {
        if p.phase == Phase::Scanning {
            return;
        }
        let mut b = bar.borrow_mut();
        let (pb, shown) = b.get_or_insert_with(|| {
            let pb = ProgressBar::with_draw_target(Some(p.bytes_total), ProgressDrawTarget::hidden());
            pb.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            (pb, false)
        });
        pb.set_position(p.bytes_done);
        pb.set_message(format!("{}/{} files", p.files_done, p.files_total));
        if !*shown && start.elapsed() >= Duration::from_millis(300) {
            pb.set_draw_target(ProgressDrawTarget::stderr());
            *shown = true;
        }
    };
    let out = f(Some(&cb));
    if let Some((pb, _)) = bar.borrow_mut().take() {
        pb.finish_and_clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_prints_digest_first_and_json_has_the_documented_fields() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("a"), b"abc").unwrap();
        let store = Store::open_in_memory().unwrap();
        let cmd = DatasetCmd::Hash {
            path: t.path().into(),
            json: true,
            no_cache: false,
            follow_symlinks: false,
            manifest: false,
        };
        let out = cmd_dataset(&cmd, Some(&store)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "bytes",
                "digest",
                "files",
                "from_cache",
                "path",
                "schema_version"
            ]
        );
        assert_eq!(v["schema_version"], 1);
        assert_eq!(
            (v["files"].as_u64(), v["bytes"].as_u64()),
            (Some(1), Some(3))
        );
        let digest = v["digest"].as_str().unwrap().to_string();

        let text = cmd_dataset(
            &DatasetCmd::Hash {
                path: t.path().into(),
                json: false,
                no_cache: true,
                follow_symlinks: false,
                manifest: false,
            },
            None,
        )
        .unwrap();
        assert_eq!(text.lines().next(), Some(digest.as_str()));
        assert!(text.contains("from cache  0"), "{text}");

        let ok = cmd_dataset(
            &DatasetCmd::Verify {
                path: t.path().into(),
                digest: digest.clone(),
                no_cache: true,
                follow_symlinks: false,
            },
            None,
        )
        .unwrap();
        assert!(ok.starts_with("ok: "), "{ok}");
        std::fs::write(t.path().join("a"), b"abd").unwrap();
        let e = cmd_dataset(
            &DatasetCmd::Verify {
                path: t.path().into(),
                digest,
                no_cache: true,
                follow_symlinks: false,
            },
            None,
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("does not match"), "{e}");
    }

    #[test]
    fn verify_accepts_a_bare_file_sha256_and_refuses_junk() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("m");
        std::fs::write(&f, b"abc").unwrap();
        let v = |d: &str| {
            cmd_dataset(
                &DatasetCmd::Verify {
                    path: f.clone(),
                    digest: d.into(),
                    no_cache: true,
                    follow_symlinks: false,
                },
                None,
            )
        };
        // SHA-256("abc")
        assert!(v("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad").is_ok());
        assert!(v("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ae").is_err());
        assert_eq!(v("md5:abc").unwrap_err().exit_code(), 2);
    }
}
