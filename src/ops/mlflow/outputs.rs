//! Kept outputs as MLflow artifacts: which files of a run's kept outputs go where under
//! `outputs/` (a file output `model.json` → `outputs/model.json`, a directory output `ckpt` →
//! `outputs/ckpt/REL` per file), which are skipped and why, and the upload of one file streamed
//! from the object store with its SHA-256 checked as it is read.

use std::fs::File;
use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

use super::plan::OutputArtifact;
use super::OutputsPolicy;
use crate::mlflow::{Client, MlflowError, Upload};
use crate::record::Run;
use crate::store::kept::{self, human_bytes, ManifestEntry};
use crate::store::objects::Objects;

/// Directory of the kept outputs under a run's artifact root.
pub const OUTPUTS_DIR: &str = "outputs";

/// The files to upload for `run`'s kept outputs and, for each output (or file) left out, a
/// line saying why: not kept, recorded before outputs were kept, gone from the object store,
/// over `mlflow_outputs_max`, a name MLflow refuses, a symbolic link. Whole outputs count
/// against the cap in the run's order, as `keep_outputs_max` does. Nothing when uploading is off.
pub fn plan(
    objects: &Objects,
    run: &Run,
    policy: &OutputsPolicy,
) -> (Vec<OutputArtifact>, Vec<String>) {
    let mut files: Vec<OutputArtifact> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    if !policy.upload {
        return (files, skipped);
    }
    let mut used = 0u64;
    for o in &run.outputs {
        let mut skip = |why: String| skipped.push(format!("{}: {why}", o.path));
        let digest = match (o.kept, &o.sha256) {
            (Some(true), Some(d)) => d,
            (Some(false), _) => {
                let why = o.not_kept.as_deref().unwrap_or("no reason recorded");
                skip(format!("not kept ({why})"));
                continue;
            }
            (None, Some(_)) => {
                skip("recorded before repro kept outputs".into());
                continue;
            }
            (_, None) => {
                skip("no digest (missing when the run ended)".into());
                continue;
            }
        };
        let Some(base) = artifact_base(&o.path) else {
            skip("a path MLflow cannot hold as an artifact name".into());
            continue;
        };
        let mut these = Vec::new();
        match digest.strip_prefix("sha256:") {
            None => these.push(OutputArtifact {
                path: base,
                sha256: digest.clone(),
                bytes: o.bytes.unwrap_or(0),
            }),
            Some(hex) => match directory_files(objects, hex, &base, &mut skip) {
                Some(f) => these = f,
                None => continue,
            },
        }
        if let Some(gone) = these.iter().find(|f| !objects.contains(&f.sha256)) {
            skip(format!(
                "its kept copy of {} is gone from the object store",
                gone.path
            ));
            continue;
        }
        if let Some(dup) = these
            .iter()
            .find(|f| files.iter().any(|g| g.path == f.path))
        {
            skip(format!(
                "{} is already the artifact of an earlier output",
                dup.path
            ));
            continue;
        }
        let size: u64 = these.iter().map(|f| f.bytes).sum();
        if let Some(max) = policy.max_bytes {
            if used.saturating_add(size) > max {
                skip(format!(
                    "its {} would take the run past mlflow_outputs_max ({})",
                    human_bytes(size),
                    human_bytes(max)
                ));
                continue;
            }
        }
        used += size;
        files.extend(these);
    }
    (files, skipped)
}

/// The files of a kept directory output, from its manifest (the object named by its digest),
/// as artifacts under `base`; `None` (and a line in `skip`) when the manifest is not there.
fn directory_files(
    objects: &Objects,
    hex: &str,
    base: &str,
    skip: &mut dyn FnMut(String),
) -> Option<Vec<OutputArtifact>> {
    let manifest = match objects.read(hex) {
        Ok(Some(m)) => m,
        Ok(None) => {
            skip("its kept manifest is gone from the object store (or damaged)".into());
            return None;
        }
        Err(e) => {
            skip(format!("cannot read its kept manifest: {e}"));
            return None;
        }
    };
    let Some(entries) = kept::parse_manifest(&manifest) else {
        skip("its kept manifest is damaged".into());
        return None;
    };
    let mut files = Vec::new();
    for e in entries {
        let rel = String::from_utf8_lossy(e.rel()).into_owned();
        match e {
            ManifestEntry::Symlink { .. } => {
                skip(format!(
                    "{rel} is a symbolic link (MLflow artifacts hold files only)"
                ));
            }
            ManifestEntry::File {
                rel: raw,
                sha256,
                bytes,
            } => {
                let name = std::str::from_utf8(&raw)
                    .ok()
                    .filter(|r| r.split('/').all(segment_ok));
                match name {
                    Some(r) => files.push(OutputArtifact {
                        path: format!("{base}/{r}"),
                        sha256,
                        bytes,
                    }),
                    None => skip(format!(
                        "{rel}: a name MLflow cannot hold as an artifact name"
                    )),
                }
            }
        }
    }
    Some(files)
}

/// `outputs/<path>` for an output recorded as `path` (relative to the run's directory); an
/// absolute path or one that climbs out (`..`) keeps its file name only. `None` when a name
/// would not survive MLflow's path check (`#`, `%`, `\`, control characters).
pub fn artifact_base(path: &str) -> Option<String> {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    let climbs = path.starts_with('/') || parts.contains(&"..");
    let parts: Vec<&str> = if climbs {
        parts
            .last()
            .copied()
            .filter(|p| *p != "..")
            .into_iter()
            .collect()
    } else {
        parts
    };
    if parts.is_empty() || !parts.iter().all(|s| segment_ok(s)) {
        return None;
    }
    Some(format!("{OUTPUTS_DIR}/{}", parts.join("/")))
}

/// One path segment MLflow stores as it is: not empty, `.` or `..`, and without the characters
/// its path check refuses or decodes (`#`, `%`, `\`, control characters).
fn segment_ok(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && !s
            .chars()
            .any(|c| c.is_control() || matches!(c, '#' | '%' | '\\'))
}

/// Why one file was not uploaded.
#[derive(Debug)]
pub enum UploadError {
    /// The kept copy is absent or does not hold the recorded bytes: nothing of it reached the
    /// server; the line says what.
    Object(String),
    /// The server or the connection failed.
    Mlflow(MlflowError),
}

/// Uploads one kept file to the run whose artifact location is `artifact_uri`, read from the
/// object store and checked against its name as it is read: a copy that turns out damaged fails
/// before its last bytes are sent (so the server never completes the file).
pub fn upload(
    client: &Client,
    objects: &Objects,
    artifact_uri: &str,
    file: &OutputArtifact,
    requests: &mut usize,
) -> Result<Upload, UploadError> {
    let path = objects
        .path_of(&file.sha256)
        .map_err(|e| UploadError::Object(format!("{}: {e}", file.path)))?;
    let f = File::open(&path).map_err(|e| {
        UploadError::Object(match e.kind() {
            io::ErrorKind::NotFound => {
                format!("{}: its kept copy is gone from the object store", file.path)
            }
            _ => format!(
                "{}: cannot read its kept copy {}: {e}",
                file.path,
                path.display()
            ),
        })
    })?;
    let mut body = Checked::new(f, &file.sha256, file.bytes);
    let res =
        client.upload_artifact_from(artifact_uri, &file.path, file.bytes, &mut body, requests);
    // The reader's own failure explains a failed request better than the broken connection.
    if let Some(why) = body.damage {
        return Err(UploadError::Object(format!(
            "{}: its kept copy {} {why}; nothing of it was uploaded (`repro verify --store` lists damaged objects)",
            file.path,
            path.display()
        )));
    }
    res.map_err(UploadError::Mlflow)
}

/// A reader of exactly `len` bytes that hashes them as they pass and refuses to hand over the
/// last of them unless the digest is the expected one (or when the file ends early): the
/// request reading it fails before the body is complete.
struct Checked<R> {
    inner: R,
    hasher: Sha256,
    want: String,
    len: u64,
    seen: u64,
    /// Why the bytes are refused, once they are.
    damage: Option<String>,
}

impl<R: Read> Checked<R> {
    fn new(inner: R, sha256: &str, len: u64) -> Checked<R> {
        Checked {
            inner,
            hasher: Sha256::new(),
            want: sha256.to_string(),
            len,
            seen: 0,
            damage: None,
        }
    }

    fn refuse(&mut self, why: String) -> io::Error {
        let e = io::Error::new(io::ErrorKind::InvalidData, why.clone());
        self.damage = Some(why);
        e
    }
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.damage.is_some() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "refused"));
        }
        let left = self.len - self.seen;
        if left == 0 {
            if self.seen == 0 && hex::encode(self.hasher.clone().finalize()) != self.want {
                return Err(self.refuse("does not hold the recorded bytes".into()));
            }
            return Ok(0);
        }
        let max = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(self.refuse(format!(
                "is shorter than recorded ({} of {} bytes)",
                self.seen, self.len
            )));
        }
        self.hasher.update(&buf[..n]);
        self.seen += n as u64;
        if self.seen == self.len && hex::encode(self.hasher.clone().finalize()) != self.want {
            return Err(self.refuse(
                "does not hold the recorded bytes (its SHA-256 differs from its name)".into(),
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Output;

    #[test]
    fn output_paths_map_under_outputs_and_unsafe_ones_keep_their_file_name() {
        for (p, want) in [
            ("model.json", Some("outputs/model.json")),
            ("./out//ckpt/", Some("outputs/out/ckpt")),
            ("../results/m.bin", Some("outputs/m.bin")),
            ("/tmp/abs/m.bin", Some("outputs/m.bin")),
            ("a b/ü.txt", Some("outputs/a b/ü.txt")),
            ("..", None),
            ("/", None),
            ("50%.bin", None),
            ("x#y", None),
            ("a\nb", None),
        ] {
            assert_eq!(artifact_base(p).as_deref(), want, "{p:?}");
        }
    }

    #[test]
    fn the_checked_reader_hands_over_the_last_bytes_only_when_the_digest_matches() {
        let data = vec![7u8; 100_000];
        let sha = hex::encode(Sha256::digest(&data));
        let mut out = Vec::new();
        let mut ok = Checked::new(&data[..], &sha, data.len() as u64);
        ok.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);

        // One byte changed at the very end: everything before it may pass, never the end.
        let mut bad = data.clone();
        *bad.last_mut().unwrap() = 8;
        let mut r = Checked::new(&bad[..], &sha, bad.len() as u64);
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let err = loop {
            match r.read(&mut buf) {
                Ok(0) => panic!("a damaged copy was read to the end"),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break e,
            }
        };
        assert!(got.len() < bad.len(), "the last bytes were handed over");
        assert!(r.damage.as_deref().unwrap().contains("SHA-256"), "{err}");

        // Shorter than recorded.
        let mut short = Checked::new(&data[..10], &sha, data.len() as u64);
        assert!(short.read_to_end(&mut Vec::new()).is_err());
        assert!(short.damage.unwrap().contains("shorter"));

        // Empty, and an empty file whose name is another digest.
        let empty = hex::encode(Sha256::digest(b""));
        assert_eq!(Checked::new(&b""[..], &empty, 0).read(&mut buf).unwrap(), 0);
        assert!(Checked::new(&b""[..], &sha, 0).read(&mut buf).is_err());
    }

    fn output(path: &str, sha: Option<&str>, bytes: u64, kept: Option<bool>) -> Output {
        Output {
            path: path.into(),
            sha256: sha.map(str::to_string),
            bytes: Some(bytes),
            kept,
            not_kept: kept
                .is_some_and(|k| !k)
                .then(|| "keep_outputs = false".to_string()),
        }
    }

    #[test]
    fn kept_files_and_directories_are_planned_within_the_cap_and_the_rest_is_said() {
        let dir = tempfile::tempdir().unwrap();
        let objects = Objects::at(dir.path().join("objects"));
        let a = objects.store_bytes(b"aaaa").unwrap();
        let b = objects.store_bytes(b"bb").unwrap();
        let link = objects.store_bytes(b"b.txt").unwrap();
        let manifest = format!("{b} 2 sub/b.txt\n{link} symlink sub/l\n{a} 4 odd#name\n");
        let m = objects.store_bytes(manifest.as_bytes()).unwrap();
        let gone = "0".repeat(64);
        let mut run = Run::start(
            vec!["true".into()],
            ".".into(),
            crate::record::Exec {
                mode: crate::record::ExecMode::Host,
                engine: None,
                workdir: None,
                engine_args: vec![],
                gpus: None,
                registry: None,
            },
            crate::capture::host::start_facts(),
        );
        run.outputs = vec![
            output("model.json", Some(&a), 4, Some(true)),
            output("ckpt", Some(&format!("sha256:{m}")), 6, Some(true)),
            output("off.bin", Some(&a), 4, Some(false)),
            output("old.bin", Some(&a), 4, None),
            output("lost.bin", Some(&gone), 4, Some(true)),
            output("./model.json", Some(&b), 2, Some(true)),
            output("big.bin", Some(&a), 4, Some(true)),
        ];
        let policy = OutputsPolicy {
            upload: true,
            max_bytes: Some(7),
        };
        let (files, skipped) = plan(&objects, &run, &policy);
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["outputs/model.json", "outputs/ckpt/sub/b.txt"]);
        assert_eq!(files[1].sha256, b);
        let text = skipped.join("\n");
        for want in [
            "ckpt: sub/l is a symbolic link",
            "ckpt: odd#name: a name MLflow cannot hold",
            "off.bin: not kept (keep_outputs = false)",
            "old.bin: recorded before repro kept outputs",
            "lost.bin: its kept copy of outputs/lost.bin is gone",
            "./model.json: outputs/model.json is already the artifact of an earlier output",
            "big.bin: its 4 B would take the run past mlflow_outputs_max (7 B)",
        ] {
            assert!(text.contains(want), "{want:?} not in:\n{text}");
        }
        let off = OutputsPolicy {
            upload: false,
            max_bytes: None,
        };
        assert_eq!(plan(&objects, &run, &off), (vec![], vec![]));
    }
}
