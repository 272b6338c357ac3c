//! The job's own channels besides metrics (docs/python.md): `REPRO_PARAMS`, a JSON-lines file of
//! params the job logs while it runs (`repro.log_params`), and `REPRO_OUTPUTS`, a JSON-lines file
//! of outputs it declares (`repro.output`); with `REPRO_WORKDIR`, the job's working directory as
//! the job sees it (the container's in container mode), against which declared paths are made
//! relative. Both files live in a private per-run directory under the data directory
//! (`<db dir>/channels/<run id>/`, 0700, files 0600), mounted at the same path in a container,
//! read when the job ends (as untrusted files: regular ones only, bounded), then removed.
//! Nothing here changes a run's status or exit code: every problem is a warning.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::ops::Events;
use crate::store::Store;

/// The variable naming the params file.
pub const PARAMS_VAR: &str = "REPRO_PARAMS";
/// The variable naming the outputs file.
pub const OUTPUTS_VAR: &str = "REPRO_OUTPUTS";
/// The variable naming the job's working directory as the job sees it.
pub const WORKDIR_VAR: &str = "REPRO_WORKDIR";

const PARAMS_FILE: &str = "params.jsonl";
const OUTPUTS_FILE: &str = "outputs.jsonl";
/// The most a channel file is read (a job that writes more is told and cut).
const MAX_BYTES: u64 = 4 << 20;
/// Directories of runs whose wrapper died are removed by a later run after this long.
const LEFTOVER: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// A run's channel directory.
#[derive(Debug, Clone)]
pub struct Channels {
    /// `<db dir>/channels/<run id>`.
    pub dir: PathBuf,
}

/// What the job sent through the channels.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Params by key, values as text (the last one logged for a key wins).
    pub params: BTreeMap<String, String>,
    /// Declared outputs, relative to the run's working directory, in order, without repeats.
    pub outputs: Vec<String>,
}

impl Channels {
    /// Creates the run's channel directory with its two empty files. `None` (with a warning)
    /// when that cannot be done: the run still starts, without the variables.
    pub fn prepare(ev: &dyn Events, store: &Store, run_id: &str) -> Option<Channels> {
        if store.path() == Path::new(":memory:") {
            return None;
        }
        let root = store
            .path()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
            .join("channels");
        sweep(&root);
        let dir = root.join(run_id);
        let made = (|| -> std::io::Result<PathBuf> {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&root)?;
            Channels::create(&dir).map(|c| c.dir)
        })();
        match made {
            Ok(dir) => Some(Channels { dir }),
            Err(e) => {
                ev.warn(&format!(
                    "cannot create the channel directory {} ({e}); {PARAMS_VAR} and {OUTPUTS_VAR} are not set for this run",
                    dir.display()
                ));
                None
            }
        }
    }

    /// Creates `dir` (0700, it must not exist) with the two empty channel files (0600): for a
    /// job whose files live elsewhere than the data directory (a Slurm job directory).
    pub fn create(dir: &Path) -> std::io::Result<Channels> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new().mode(0o700).create(dir)?;
        for f in [PARAMS_FILE, OUTPUTS_FILE] {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dir.join(f))?;
        }
        Ok(Channels {
            dir: dir.canonicalize()?,
        })
    }

    /// The params and outputs files.
    pub fn files(&self) -> (PathBuf, PathBuf) {
        (self.dir.join(PARAMS_FILE), self.dir.join(OUTPUTS_FILE))
    }

    /// The variables for the child; `workdir` is its working directory as it sees it.
    pub fn env(&self, workdir: &str) -> Vec<(String, String)> {
        vec![
            (
                PARAMS_VAR.to_string(),
                self.dir.join(PARAMS_FILE).to_string_lossy().into_owned(),
            ),
            (
                OUTPUTS_VAR.to_string(),
                self.dir.join(OUTPUTS_FILE).to_string_lossy().into_owned(),
            ),
            (WORKDIR_VAR.to_string(), workdir.to_string()),
        ]
    }

    /// Reads what the job sent and removes the directory.
    pub fn collect(self, ev: &dyn Events) -> Sent {
        let params = read_lines(ev, &self.dir.join(PARAMS_FILE), PARAMS_VAR)
            .into_iter()
            .filter_map(|(n, v)| match parse_params(&v) {
                Ok(p) => Some(p),
                Err(why) => {
                    ev.warn(&format!(
                        "{PARAMS_VAR} line {n}: {why}; skipped (write one JSON object of params a line, e.g. {{\"lr\": 0.1}})"
                    ));
                    None
                }
            })
            .fold(BTreeMap::new(), |mut all, p| {
                all.extend(p);
                all
            });
        let mut outputs: Vec<String> = Vec::new();
        for (n, v) in read_lines(ev, &self.dir.join(OUTPUTS_FILE), OUTPUTS_VAR) {
            match parse_output(&v) {
                Ok(p) if !outputs.contains(&p) => outputs.push(p),
                Ok(_) => {}
                Err(why) => ev.warn(&format!(
                    "{OUTPUTS_VAR} line {n}: {why}; not recorded (declare paths inside the working directory, e.g. {{\"path\": \"model.pt\"}})"
                )),
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        Sent { params, outputs }
    }
}

/// Removes channel directories older than [`LEFTOVER`] (their wrapper died).
fn sweep(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age > LEFTOVER);
        if old {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The file's lines as JSON values with their numbers; an unreadable file is a warning.
fn read_lines(ev: &dyn Events, path: &Path, var: &str) -> Vec<(usize, serde_json::Value)> {
    use std::io::Read;
    let file = match crate::capture::untrusted::open_regular(path, u64::MAX, "a channel file") {
        Ok((f, _)) => f,
        Err(e) => {
            if path.exists() {
                ev.warn(&format!("{var}: {e}; not read"));
            }
            return Vec::new();
        }
    };
    let mut bytes = Vec::new();
    if let Err(e) = file.take(MAX_BYTES + 1).read_to_end(&mut bytes) {
        ev.warn(&format!("{var}: cannot read {} ({e})", path.display()));
        return Vec::new();
    }
    if bytes.len() as u64 > MAX_BYTES {
        ev.warn(&format!(
            "{var}: more than {} MiB; only the first lines were read",
            MAX_BYTES >> 20
        ));
        bytes.truncate(MAX_BYTES as usize);
    }
    let mut out = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice(line) {
            Ok(v) => out.push((i + 1, v)),
            Err(e) => ev.warn(&format!("{var} line {}: not JSON ({e}); skipped", i + 1)),
        }
    }
    out
}

/// One params line: an object; string values as they are, others as their JSON text.
pub fn parse_params(v: &serde_json::Value) -> Result<BTreeMap<String, String>, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| "not a JSON object".to_string())?;
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        if k.is_empty() {
            return Err("a param has an empty key".into());
        }
        if k.len() > 250 {
            return Err(format!(
                "a param key is {} bytes long (at most 250)",
                k.len()
            ));
        }
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.insert(k.clone(), text);
    }
    Ok(out)
}

/// One outputs line: `{"path": "REL"}`, a relative path that stays inside the working directory.
pub fn parse_output(v: &serde_json::Value) -> Result<String, String> {
    let path = v
        .get("path")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| "not an object with a \"path\" string".to_string())?;
    let p = Path::new(path);
    if path.is_empty() {
        return Err("the path is empty".into());
    }
    if p.is_absolute() {
        return Err(format!(
            "{} is outside the working directory",
            crate::sanitize::escape(path)
        ));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!(
            "{} leaves the working directory",
            crate::sanitize::escape(path)
        ));
    }
    // `./model.pt` and `model.pt` are one output.
    let clean: PathBuf = p
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    let clean = clean.to_string_lossy().into_owned();
    if clean.is_empty() {
        return Err("the path names the working directory itself".into());
    }
    Ok(clean)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_lines_keep_strings_and_write_other_values_as_json() {
        let p = parse_params(&json!({"lr": 0.1, "opt": "adam", "flag": true, "layers": [1, 2]}))
            .unwrap();
        assert_eq!(p["lr"], "0.1");
        assert_eq!(p["opt"], "adam");
        assert_eq!(p["flag"], "true");
        assert_eq!(p["layers"], "[1,2]");
        assert!(parse_params(&json!([1])).is_err());
        assert!(parse_params(&json!({"": 1})).is_err());
        assert!(parse_params(&json!({"k".repeat(251): 1})).is_err());
    }

    #[test]
    fn outputs_stay_inside_the_working_directory() {
        assert_eq!(
            parse_output(&json!({"path": "./out/model.pt"})).unwrap(),
            "out/model.pt"
        );
        for bad in [
            json!({"path": "/etc/passwd"}),
            json!({"path": "../x"}),
            json!({"path": "a/../../x"}),
            json!({"path": ""}),
            json!({"path": "."}),
            json!({"file": "x"}),
            json!("x"),
        ] {
            assert!(parse_output(&bad).is_err(), "{bad}");
        }
    }
}
