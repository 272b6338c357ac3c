//! Code provenance from git: commit, branch, remote (credentials stripped), dirty state, untracked
//! files, and the binary patch of every uncommitted change (untracked files included).

use std::path::{Path, PathBuf};

use git2::{Diff, DiffFormat, DiffOptions, Repository, StatusOptions};
use sha2::{Digest, Sha256};

use crate::error::Hinted;
use crate::record::{Bytes, Code};

/// Errors reading the repository.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error("cannot read the git repository at {path}")]
    Git {
        path: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error("the working tree at {path} is dirty ({files} changed or untracked file(s)) and --require-clean was given")]
    Dirty { path: PathBuf, files: usize },
    #[error("the repository at {0} is bare; repro needs a working tree")]
    Bare(PathBuf),
}

impl Hinted for CodeError {
    fn hint(&self) -> Option<String> {
        match self {
            CodeError::Dirty { .. } => Some(
                "commit or stash your changes, or drop --require-clean (the patch is then recorded)"
                    .into(),
            ),
            CodeError::Git { .. } => Some("check the repository with `git status`".into()),
            CodeError::Bare(_) => Some("run repro from a checkout".into()),
        }
    }
}

/// What code capture found for a working directory.
#[derive(Debug, Clone)]
pub struct Captured {
    /// The code record; `None` outside a git repository.
    pub code: Option<Code>,
    /// The working directory relative to the repository root (`.` at the root), or absolute
    /// when there is no repository.
    pub cwd: String,
    /// Things the caller should tell the user (e.g. an unmerged index).
    pub warnings: Vec<String>,
}

/// Discovers the repository containing `cwd` and records its state.
pub fn capture(cwd: &Path) -> Result<Captured, CodeError> {
    let cwd_abs = cwd.canonicalize().unwrap_or_else(|_| cwd.to_path_buf());
    let repo = match Repository::discover(&cwd_abs) {
        Ok(r) => r,
        Err(e) if e.code() == git2::ErrorCode::NotFound => {
            return Ok(Captured {
                code: None,
                cwd: cwd_abs.to_string_lossy().into_owned(),
                warnings: Vec::new(),
            })
        }
        Err(source) => {
            return Err(CodeError::Git {
                path: cwd_abs,
                source,
            })
        }
    };
    let git = |source| CodeError::Git {
        path: cwd_abs.clone(),
        source,
    };
    let root = repo
        .workdir()
        .ok_or_else(|| CodeError::Bare(cwd_abs.clone()))?
        .canonicalize()
        .map_err(|e| git(git2::Error::from_str(&e.to_string())))?;
    let rel = cwd_abs
        .strip_prefix(&root)
        .map(|p| {
            if p.as_os_str().is_empty() {
                ".".to_string()
            } else {
                p.to_string_lossy().into_owned()
            }
        })
        .unwrap_or_else(|_| ".".into());

    let (commit, branch) = match repo.head() {
        Ok(head) => {
            let commit = head.peel_to_commit().map_err(git)?.id().to_string();
            let branch = if head.is_branch() {
                head.shorthand().map(str::to_string)
            } else {
                None
            };
            (Some(commit), branch)
        }
        // A repository with no commits yet: HEAD is unborn.
        Err(e) if e.code() == git2::ErrorCode::UnbornBranch => {
            let branch = repo
                .find_reference("HEAD")
                .ok()
                .and_then(|r| r.symbolic_target().map(str::to_string))
                .map(|t| t.trim_start_matches("refs/heads/").to_string());
            (None, branch)
        }
        Err(e) => return Err(git(e)),
    };

    let remote = pick_remote(&repo).map(|u| strip_credentials(&u));

    let mut sopts = StatusOptions::new();
    sopts
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        .exclude_submodules(true);
    let statuses = repo.statuses(Some(&mut sopts)).map_err(git)?;
    let mut untracked = Vec::new();
    let mut changed = 0usize;
    let (mut in_patch, mut too_big) = (Vec::new(), Vec::new());
    for s in statuses.iter() {
        let st = s.status();
        if st.is_ignored() {
            continue;
        }
        changed += 1;
        if let Some(p) = s.path() {
            if st.is_wt_new() && !st.is_index_new() {
                untracked.push(p.to_string());
            }
            match std::fs::symlink_metadata(root.join(p)) {
                Ok(m) if m.is_file() && m.len() > PATCH_FILE_MAX => {
                    too_big.push((p.to_string(), m.len()))
                }
                _ => in_patch.push(p.to_string()),
            }
        }
    }
    untracked.sort();
    too_big.sort();
    let dirty = changed > 0;
    let mut warnings = Vec::new();
    for (p, size) in &too_big {
        warnings.push(format!(
            "{p} ({} MiB) is not in the recorded patch: uncommitted files over {} MiB are left out, so a re-run will not have it; commit it, add it to .gitignore, or record it with --dataset/--output",
            size >> 20,
            PATCH_FILE_MAX >> 20
        ));
    }
    let (patch, patch_sha256) = if dirty {
        let only = (!too_big.is_empty()).then_some(in_patch.as_slice());
        let bytes = if only.is_some_and(<[String]>::is_empty) {
            Vec::new()
        } else {
            patch_bytes(&repo, only).map_err(git)?
        };
        if bytes.is_empty() {
            (None, None)
        } else {
            let sha = hex::encode(Sha256::digest(&bytes));
            (Some(Bytes::from_vec(bytes)), Some(sha))
        }
    } else {
        (None, None)
    };

    if repo.index().map(|i| i.has_conflicts()).unwrap_or(false) {
        warnings.push(format!(
            "the repository at {} has unmerged paths (a merge in conflict): the recorded patch may not re-apply; finish the merge for a reproducible run",
            root.display()
        ));
    }
    Ok(Captured {
        warnings,
        code: Some(Code {
            repo_root: root.to_string_lossy().into_owned(),
            remote,
            commit,
            branch,
            dirty,
            untracked,
            patch_sha256,
            patch,
        }),
        cwd: rel,
    })
}

/// Refuses a dirty tree (for `--require-clean`).
pub fn require_clean(code: &Code) -> Result<(), CodeError> {
    if code.dirty {
        let files = if code.patch.is_some() || !code.untracked.is_empty() {
            code.untracked.len().max(1)
        } else {
            1
        };
        return Err(CodeError::Dirty {
            path: PathBuf::from(&code.repo_root),
            files,
        });
    }
    Ok(())
}

fn pick_remote(repo: &Repository) -> Option<String> {
    if let Ok(r) = repo.find_remote("origin") {
        if let Some(u) = r.url() {
            return Some(u.to_string());
        }
    }
    let names = repo.remotes().ok()?;
    let first = names.iter().flatten().next()?.to_string();
    repo.find_remote(&first).ok()?.url().map(str::to_string)
}

/// Removes `user:password@` (or a bare token) from a URL, and its `?query` and `#fragment`
/// (`https://host/x.git?token=…` carries a secret there); scp-like `git@host:path` keeps its
/// user, which is not a secret, and local paths and `file://` URLs are kept as written (a `?`
/// is a file name character there).
pub fn strip_credentials(url: &str) -> String {
    let url = strip_query(url);
    strip_userinfo(url)
}

fn strip_query(url: &str) -> &str {
    match url.find("://") {
        Some(scheme_end) if !url[..scheme_end].eq_ignore_ascii_case("file") => {
            let end = url.find(['?', '#']).unwrap_or(url.len());
            &url[..end]
        }
        _ => url,
    }
}

fn strip_userinfo(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let after = &url[scheme_end + 3..];
        let auth_end = after.find('/').unwrap_or(after.len());
        if let Some(at) = after[..auth_end].rfind('@') {
            let userinfo = &after[..at];
            // ssh://git@host is a user name, not a credential; anything with a password or on
            // http(s) is stripped.
            let scheme = &url[..scheme_end];
            let keep_user = scheme == "ssh" && !userinfo.contains(':');
            let host_rest = &after[at + 1..];
            return if keep_user {
                url.to_string()
            } else {
                format!("{scheme}://{host_rest}")
            };
        }
    }
    url.to_string()
}

/// Uncommitted files bigger than this are left out of the recorded patch (with a warning): a
/// checkpoint or dataset left untracked in the work tree would otherwise be deflated into the
/// database on every run (and past SQLite's 1 GB value limit, fail the run).
pub const PATCH_FILE_MAX: u64 = 32 << 20;

/// The binary patch from HEAD (or the empty tree) to the working tree, untracked files included;
/// only the paths `only` when given.
fn patch_bytes(repo: &Repository, only: Option<&[String]>) -> Result<Vec<u8>, git2::Error> {
    let head_tree = match repo.head() {
        Ok(h) => Some(h.peel_to_tree()?),
        Err(_) => None,
    };
    let mut opts = DiffOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .show_untracked_content(true)
        .show_binary(true)
        .include_typechange(true);
    if let Some(paths) = only {
        opts.disable_pathspec_match(true);
        for p in paths {
            opts.pathspec(p);
        }
    }
    let diff = repo.diff_tree_to_workdir_with_index(head_tree.as_ref(), Some(&mut opts))?;
    render_patch(&diff)
}

fn render_patch(diff: &Diff) -> Result<Vec<u8>, git2::Error> {
    let mut out = Vec::new();
    diff.print(DiffFormat::Patch, |_delta, _hunk, line| {
        match line.origin() {
            '+' | '-' | ' ' => out.push(line.origin() as u8),
            _ => {}
        }
        out.extend_from_slice(line.content());
        true
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_stripped() {
        assert_eq!(
            strip_credentials("https://user:tok@github.com/a/b.git"),
            "https://github.com/a/b.git"
        );
        assert_eq!(
            strip_credentials("https://ghp_secret@github.com/a/b"),
            "https://github.com/a/b"
        );
        assert_eq!(
            strip_credentials("ssh://git@host.example/a.git"),
            "ssh://git@host.example/a.git"
        );
        assert_eq!(
            strip_credentials("ssh://git:pw@host.example/a.git"),
            "ssh://host.example/a.git"
        );
        assert_eq!(
            strip_credentials("git@github.com:a/b.git"),
            "git@github.com:a/b.git"
        );
        assert_eq!(strip_credentials("/local/path"), "/local/path");
        assert_eq!(
            strip_credentials("https://host/p@ath"),
            "https://host/p@ath"
        );
    }

    #[test]
    fn query_and_fragment_of_a_remote_are_stripped() {
        assert_eq!(
            strip_credentials("https://host/x.git?token=s3cr3t"),
            "https://host/x.git"
        );
        assert_eq!(
            strip_credentials("https://u:p@host/x.git?private_token=s#frag"),
            "https://host/x.git"
        );
        assert_eq!(
            strip_credentials("https://host/x.git#access_token=s"),
            "https://host/x.git"
        );
        assert_eq!(strip_credentials("https://host?t=a@b/x"), "https://host");
        assert_eq!(
            strip_credentials("/local/dir?odd#name"),
            "/local/dir?odd#name"
        );
        assert_eq!(
            strip_credentials("git@host:a/b?c.git"),
            "git@host:a/b?c.git"
        );
    }
}
