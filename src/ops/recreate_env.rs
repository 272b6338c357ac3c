//! `repro rerun --recreate-env`: a fresh venv with the recorded Python distributions pinned
//! (`name==version`, through `uv` when it is on `PATH`, else `python3 -m venv` and pip), so a host
//! re-run runs with what the original had. pip and uv read their own settings from the
//! environment (`PIP_FIND_LINKS`, `PIP_NO_INDEX`, `UV_FIND_LINKS`, …): an offline wheel
//! directory works.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::ops::Events;
use crate::record::environment::{normalize_name, PythonEnv};

/// Why the environment could not be recreated; nothing ran.
#[derive(Debug, thiserror::Error)]
pub enum RecreateError {
    /// The run recorded no Python.
    #[error("run {id} recorded no Python environment to recreate")]
    NoPython { id: String },
    /// The target directory is in use.
    #[error("{} is not empty", path.display())]
    NotEmpty { path: PathBuf },
    /// No interpreter to make the venv with.
    #[error("no python3 on PATH to create the environment with")]
    NoInterpreter,
    /// A step (venv creation, the install) failed.
    #[error("{step} failed: {detail}")]
    Step { step: String, detail: String },
}

impl crate::error::Hinted for RecreateError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            RecreateError::NoPython { .. } => "re-run it without --recreate-env".into(),
            RecreateError::NotEmpty { .. } => "give --recreate-env an empty or missing directory".into(),
            RecreateError::NoInterpreter => "install Python 3 (with its venv module) or put it on PATH".into(),
            RecreateError::Step { .. } => "the installer's message is above; offline, point PIP_FIND_LINKS (and PIP_NO_INDEX=1) at a directory of wheels".into(),
        })
    }
}

/// What was built.
#[derive(Debug, Clone)]
pub struct Recreated {
    /// The venv.
    pub dir: PathBuf,
    /// How many distributions were installed (the rest came with the venv).
    pub installed: usize,
    /// Recorded distributions that could not be pinned (name, why): local paths, editable.
    pub unpinned: Vec<(String, String)>,
}

impl Recreated {
    /// The variables that make the child use the venv: `VIRTUAL_ENV` and `PATH`.
    pub fn child_env(&self) -> Vec<(String, String)> {
        let path = std::env::var("PATH").unwrap_or_default();
        vec![
            ("VIRTUAL_ENV".into(), self.dir.display().to_string()),
            (
                "PATH".into(),
                format!("{}:{path}", self.dir.join("bin").display()),
            ),
        ]
    }
}

/// The `name==version` pins to install into a venv that already holds `present`, and the
/// recorded distributions that cannot be pinned.
pub fn pins(
    recorded: &PythonEnv,
    present: &std::collections::BTreeMap<String, String>,
) -> (Vec<String>, Vec<(String, String)>) {
    let have: std::collections::BTreeMap<String, &String> = present
        .iter()
        .map(|(n, v)| (normalize_name(n), v))
        .collect();
    let mut specs = Vec::new();
    let mut unpinned = Vec::new();
    for (name, version) in &recorded.packages {
        if let Some(why) = recorded.local.get(name) {
            unpinned.push((name.clone(), why.clone()));
        } else if have.get(&normalize_name(name)).map(|v| v.as_str()) != Some(version.as_str()) {
            specs.push(format!("{name}=={version}"));
        }
    }
    (specs, unpinned)
}

/// Builds the venv at `dir` (empty or missing) with `recorded`'s distributions.
pub fn recreate(
    ev: &dyn Events,
    id: &str,
    recorded: Option<&PythonEnv>,
    dir: &Path,
) -> Result<Recreated, RecreateError> {
    let recorded = recorded.ok_or_else(|| RecreateError::NoPython { id: id.into() })?;
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(RecreateError::NotEmpty { path: dir.into() });
    }
    let uv = which::which("uv").ok();
    let python = which::which("python3").map_err(|_| RecreateError::NoInterpreter)?;
    ev.status(&format!("creating the environment {}", dir.display()));
    let mut create = match &uv {
        Some(uv) => {
            let mut c = Command::new(uv);
            c.arg("venv").arg("--seed").arg("--python").arg(&python);
            c
        }
        None => {
            let mut c = Command::new(&python);
            c.args(["-m", "venv"]);
            c
        }
    };
    step("creating the venv", create.arg(dir))?;
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let venv = dir.clone().into_os_string();
    let present =
        crate::capture::python_env::capture(&|k| (k == "VIRTUAL_ENV").then(|| venv.clone()))
            .map(|p| p.packages)
            .unwrap_or_default();
    let (specs, unpinned) = pins(recorded, &present);
    for (name, why) in &unpinned {
        ev.warn(&format!(
            "cannot pin {} ({}): not installed in {}",
            crate::sanitize::escape(name),
            why,
            dir.display()
        ));
    }
    if !specs.is_empty() {
        ev.status(&format!(
            "installing {} pinned distribution(s)",
            specs.len()
        ));
        let exe: OsString = dir.join("bin/python").into_os_string();
        let mut install = match &uv {
            Some(uv) => {
                let mut c = Command::new(uv);
                c.args(["pip", "install", "--no-deps", "--python"])
                    .arg(&exe);
                c
            }
            None => {
                let mut c = Command::new(&exe);
                c.args([
                    "-m",
                    "pip",
                    "install",
                    "--no-deps",
                    "--disable-pip-version-check",
                ]);
                c
            }
        };
        step(
            "installing the recorded distributions",
            install.args(&specs),
        )?;
    }
    Ok(Recreated {
        dir,
        installed: specs.len(),
        unpinned,
    })
}

fn step(what: &str, c: &mut Command) -> Result<(), RecreateError> {
    let out = c.output().map_err(|e| RecreateError::Step {
        step: what.into(),
        detail: e.to_string(),
    })?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let last: Vec<&str> = err.lines().rev().take(3).collect();
    Err(RecreateError::Step {
        step: what.into(),
        detail: crate::sanitize::escape(&last.into_iter().rev().collect::<Vec<_>>().join(" / "))
            .into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::environment::PythonKind;

    #[test]
    fn pins_skip_what_the_venv_has_and_name_local_installs() {
        let rec = PythonEnv {
            executable: "/v/bin/python".into(),
            version: None,
            kind: PythonKind::Venv,
            packages: [("pip", "23.2.1"), ("Tiny_Pkg", "0.3.1"), ("mine", "0.1")]
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            local: [("mine".to_string(), "editable".to_string())].into(),
        };
        let present = [("pip".to_string(), "23.2.1".to_string())].into();
        let (specs, unpinned) = pins(&rec, &present);
        assert_eq!(specs, ["Tiny_Pkg==0.3.1"]);
        assert_eq!(unpinned, [("mine".to_string(), "editable".to_string())]);
    }
}
