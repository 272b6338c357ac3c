//! The directories a recorded run names for a re-run: `cwd` (where the command ran) and
//! `exec.workdir` (where the repository was mounted in the container). One check for `import`
//! and for `rerun`, so that a record written by someone else cannot point a re-run outside the
//! checkout (`"cwd": "../../../../tmp/x"`) or at a system directory (`"/../../etc"`).

use super::Run;

/// Whether `p` has a `..` component (`a/../b`, `/../etc`, `..`).
fn has_parent_component(p: &str) -> bool {
    p.split('/').any(|c| c == "..")
}

/// The working directory of a run: never with a `..` component, and relative to the repository
/// root when the run has a repository (`code`), as `repro run` records it. Without a repository
/// `run` records the absolute directory it ran in, which a re-run uses as it is.
pub fn check_cwd(cwd: &str, has_repository: bool) -> Result<(), String> {
    let shown = crate::sanitize::escape(cwd);
    if has_parent_component(cwd) {
        return Err(format!(
            "'{shown}' has a '..' component: a re-run could leave the checkout"
        ));
    }
    if cwd.is_empty() {
        return Err("the working directory is empty".into());
    }
    if has_repository && cwd.starts_with('/') {
        return Err(format!(
            "'{shown}' is absolute, but a run with a repository records its directory relative to the repository root"
        ));
    }
    Ok(())
}

/// The directory inside the container where the repository is mounted: absolute, no `..`.
pub fn check_workdir(w: &str) -> Result<(), String> {
    let shown = crate::sanitize::escape(w);
    if !w.starts_with('/') {
        return Err(format!(
            "'{shown}' is not an absolute path inside the container (e.g. /workspace)"
        ));
    }
    if has_parent_component(w) {
        return Err(format!(
            "'{shown}' has a '..' component (e.g. /../../etc would mount the repository over a system directory)"
        ));
    }
    Ok(())
}

/// Both directories of `run`, as `import` checks them and a re-run must check them again
/// before it changes into `cwd` or mounts at `exec.workdir`. The message names the field.
pub fn check_run(run: &Run) -> Result<(), String> {
    check_cwd(&run.cwd, run.code.is_some()).map_err(|m| format!("cwd: {m}"))?;
    if let Some(w) = &run.exec.workdir {
        check_workdir(w).map_err(|m| format!("exec.workdir: {m}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cwd_stays_inside_the_checkout() {
        for ok in [".", "experiments/resnet", "a/..b/c..", "x/.../y"] {
            assert!(check_cwd(ok, true).is_ok(), "{ok}");
        }
        for bad in ["../../../../tmp/x", "a/../../b", "..", "/tmp/x", "/", ""] {
            assert!(check_cwd(bad, true).is_err(), "{bad}");
        }
        assert!(check_cwd("/home/me/exp", false).is_ok());
        assert!(check_cwd("exp", false).is_ok());
        for bad in ["/home/../etc", "../exp", ""] {
            assert!(check_cwd(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn workdir_is_absolute_without_parent_components() {
        assert!(check_workdir("/workspace").is_ok());
        assert!(check_workdir("/work/..space").is_ok());
        for bad in ["/../../etc", "/workspace/..", "workspace", "/a/../b"] {
            assert!(check_workdir(bad).is_err(), "{bad}");
        }
    }
}
