//! `repro rerun`: execute a recorded run again, now, with the same pins — recorded as a new run
//! linked to the original — and compare every output hash with the original's.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Args;

use crate::capture::{code, dataset};
use crate::cli::run::{execute, new_running, pick_engine, Plan, REDACTED};
use crate::cli::Ctx;
use crate::error::{CliError, CliResult};
use crate::record::{DatasetKind, ExecMode, Output, Run};

/// Arguments of `repro rerun`.
#[derive(Debug, Args)]
pub struct RerunArgs {
    /// Run id or any unique prefix
    pub id: String,
    /// Container engine (default: the one recorded)
    #[arg(long, value_name = "docker|podman")]
    pub engine: Option<String>,
    /// Run on the host instead of in the pinned container
    #[arg(long)]
    pub host: bool,
    /// Exit 1 when any output differs from the original's (after a successful command)
    #[arg(long)]
    pub check: bool,
    /// Check the code out into DIR (empty or missing) instead of a new temporary directory
    #[arg(long, value_name = "DIR")]
    pub checkout: Option<PathBuf>,
}

fn git(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Checks out the recorded commit (remote first, then the recorded repository path) and applies
/// the recorded patch. Returns the checkout root.
fn checkout(ctx: &Ctx, orig: &Run, dir: &Path) -> CliResult<()> {
    let c = orig.code.as_ref().expect("caller checks");
    let commit = c.commit.as_deref().ok_or_else(|| {
        CliError::user(format!(
            "run {} was recorded in a repository with no commit",
            orig.id
        ))
        .hint("commit the code before recording runs you want to re-run")
    })?;
    let mut sources: Vec<String> = Vec::new();
    if Path::new(&c.repo_root).exists() {
        sources.push(c.repo_root.clone());
    }
    if let Some(r) = &c.remote {
        sources.push(r.clone());
    }
    let mut errors = Vec::new();
    let parent = dir.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::user(format!("cannot create {}: {e}", dir.display())))?;
    for src in &sources {
        let target = dir.to_string_lossy().into_owned();
        let attempt = git(
            parent,
            &["clone", "--quiet", "--no-checkout", "--", src, &target],
        )
        .and_then(|_| {
            git(
                dir,
                &[
                    "-c",
                    "advice.detachedHead=false",
                    "checkout",
                    "--quiet",
                    "--detach",
                    commit,
                ],
            )
        });
        match attempt {
            Ok(()) => {
                ctx.status(format!(
                    "checked out {commit} from {src} into {}",
                    dir.display()
                ));
                errors.clear();
                break;
            }
            Err(e) => {
                errors.push(format!("{src}: {e}"));
                let _ = std::fs::remove_dir_all(dir.join(".git"));
            }
        }
    }
    if !errors.is_empty() || sources.is_empty() {
        return Err(CliError::user(format!(
            "cannot check out commit {commit} of run {}",
            orig.id
        ))
        .hint(if sources.is_empty() {
            "the recorded repository path is gone and no remote was recorded".to_string()
        } else {
            errors.join("; ")
        }));
    }
    if let Some(patch) = &c.patch {
        let patch_file = dir.join(".git/repro-recorded.patch");
        std::fs::write(&patch_file, patch.as_bytes())
            .map_err(|e| CliError::user(format!("cannot write the patch: {e}")))?;
        git(dir, &["apply", "--binary", ".git/repro-recorded.patch"]).map_err(|e| {
            CliError::user(format!(
                "the recorded patch of run {} does not apply: {e}",
                orig.id
            ))
        })?;
        ctx.status("applied the recorded patch of uncommitted changes");
    }
    Ok(())
}

/// Runs `repro rerun` and returns the exit code.
pub fn cmd_rerun(ctx: &Ctx, args: &RerunArgs) -> i32 {
    match rerun(ctx, args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    }
}

fn rerun(ctx: &Ctx, args: &RerunArgs) -> CliResult<i32> {
    let mut store = ctx.open_store()?;
    let id = store.resolve_id(&args.id)?;
    let orig = store.get_run(&id)?;

    let mode = if args.host || orig.image.is_none() {
        ExecMode::Host
    } else {
        orig.exec.mode
    };
    let engine = match mode {
        ExecMode::Container => Some(pick_engine(
            args.engine.as_deref().or(orig.exec.engine.as_deref()),
        )?),
        ExecMode::Host => None,
    };
    if mode == ExecMode::Container {
        if let Some(img) = &orig.image {
            if img.digest.is_none() {
                return Err(CliError::user(format!(
                    "run {} has no image digest (recorded unpinned); it cannot be re-run pinned",
                    orig.id
                ))
                .hint("re-run it on the host with --host, or run it anew with a pinned image"));
            }
        }
    }

    // Named variables: the current value, else the recorded one; a redacted one must be set now.
    let mut env = Vec::new();
    for (k, v) in &orig.env {
        match std::env::var(k) {
            Ok(now) => env.push((k.clone(), now)),
            Err(_) if v == REDACTED => {
                return Err(
                    CliError::user(format!("{k} was recorded redacted and is not set now"))
                        .hint(format!("export {k}=… and run `repro rerun` again")),
                )
            }
            Err(_) => env.push((k.clone(), v.clone())),
        }
    }

    // Code: the recorded commit and patch in a fresh checkout.
    let (cwd, new_code, checkout_root) = match &orig.code {
        None => (PathBuf::from(&orig.cwd), None, None),
        Some(_) => {
            let dir = match &args.checkout {
                Some(d) => {
                    if d.exists()
                        && std::fs::read_dir(d)
                            .map(|mut r| r.next().is_some())
                            .unwrap_or(true)
                    {
                        return Err(CliError::user(format!("{} is not empty", d.display()))
                            .hint("give --checkout an empty or missing directory"));
                    }
                    d.clone()
                }
                None => {
                    let base = std::env::temp_dir().join(format!("repro-rerun-{}", &orig.id[..12]));
                    let mut d = base.clone();
                    let mut n = 1;
                    while d.exists() {
                        n += 1;
                        d = PathBuf::from(format!("{}-{n}", base.display()));
                    }
                    d
                }
            };
            checkout(ctx, &orig, &dir)?;
            let root = dir.canonicalize().unwrap_or(dir);
            let captured =
                code::capture(&root.join(&orig.cwd).canonicalize().unwrap_or(root.clone()))?;
            (root.join(&orig.cwd), captured.code, Some(root))
        }
    };
    if let (Some(new), Some(old)) = (&new_code, &orig.code) {
        if new.patch_sha256 != old.patch_sha256 || new.commit != old.commit {
            ctx.warn("the checkout does not reproduce the recorded code state exactly");
        }
    }

    // Datasets: path datasets are re-hashed where they were and must still match.
    let mut extra_mounts = Vec::new();
    for d in &orig.datasets {
        if d.kind != DatasetKind::Path {
            continue;
        }
        let Some(uri) = &d.uri else { continue };
        let original = match (&orig.code, Path::new(uri).is_absolute()) {
            (_, true) => PathBuf::from(uri),
            (Some(c), false) => Path::new(&c.repo_root).join(uri),
            (None, false) => Path::new(&orig.cwd).join(uri),
        };
        let now = dataset::hash_path(
            &original,
            &dataset::HashOptions::default(),
            Some(store.conn()),
            None,
        )?;
        if Some(&now.digest) != d.digest.as_ref() {
            return Err(CliError::user(format!(
                "dataset {} at {} has changed: digest {} (the run used {})",
                d.name,
                original.display(),
                now.digest,
                d.digest.as_deref().unwrap_or("?")
            ))
            .hint("restore the data the run used, or record a new run"));
        }
        // Data inside the repository is usually not committed: make it visible in the checkout.
        if let (Some(root), false) = (&checkout_root, Path::new(uri).is_absolute()) {
            let inside = root.join(uri);
            if !inside.exists() {
                match mode {
                    ExecMode::Host => {
                        if let Some(p) = inside.parent() {
                            let _ = std::fs::create_dir_all(p);
                        }
                        std::os::unix::fs::symlink(&original, &inside).map_err(|e| {
                            CliError::user(format!("cannot link dataset {}: {e}", d.name))
                        })?;
                    }
                    ExecMode::Container => {
                        let workdir = orig
                            .exec
                            .workdir
                            .clone()
                            .unwrap_or_else(|| "/workspace".into());
                        extra_mounts.push((
                            original.clone(),
                            format!("{}/{uri}", workdir.trim_end_matches('/')),
                        ));
                    }
                }
            }
        } else if Path::new(uri).is_absolute() && mode == ExecMode::Container {
            extra_mounts.push((original.clone(), uri.clone()));
        }
    }

    let mut exec = orig.exec.clone();
    exec.mode = mode;
    exec.engine = engine;
    if mode == ExecMode::Host {
        exec.workdir = None;
    }
    let run = Run {
        name: orig.name.clone(),
        image: orig.image.clone(),
        code: new_code.or(orig.code.clone()),
        datasets: orig.datasets.clone(),
        params: orig.params.clone(),
        tags: orig.tags.clone(),
        env: orig.env.clone(),
        rerun_of: Some(orig.id.clone()),
        ..new_running(orig.command.clone(), orig.cwd.clone(), exec)
    };
    let plan = Plan {
        cwd,
        output_paths: orig.outputs.iter().map(|o| o.path.clone()).collect(),
        extra_mounts,
        env,
    };
    let (code, fin) = execute(ctx, &mut store, run, &plan)?;
    let mismatches = report_outputs(&orig.outputs, &fin.outputs);
    if args.check && mismatches > 0 && code == 0 {
        return Ok(1);
    }
    Ok(code)
}

/// Prints match/mismatch per output to stderr; returns the number of mismatches.
fn report_outputs(old: &[Output], new: &[Output]) -> usize {
    let mut bad = 0;
    for o in old {
        let n = new.iter().find(|n| n.path == o.path);
        let verdict = match (n.and_then(|n| n.sha256.as_ref()), o.sha256.as_ref()) {
            (Some(a), Some(b)) if a == b => "match",
            (None, None) => "missing in both",
            (None, Some(_)) => {
                bad += 1;
                "MISSING now"
            }
            _ => {
                bad += 1;
                "MISMATCH"
            }
        };
        eprintln!("repro: output {}: {verdict}", o.path);
    }
    bad
}
