//! Resolution through the local container engine (`docker`/`podman image inspect`'s
//! `RepoDigests`). Which engine is asked is decided by the caller (`exec::pick_engine`).

use std::ffi::OsStr;
use std::process::Command;

use super::digest::Digest;
use super::reference::{self, Reference};
use crate::error::Hinted;

/// The local engine could not answer.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine binary could not be started.
    #[error("cannot run `{engine}`: {problem}")]
    Spawn { engine: String, problem: String },
    /// The image is not present locally (or inspect failed).
    #[error("`{engine} image inspect {reference}` failed: {stderr}")]
    Inspect {
        engine: String,
        reference: String,
        stderr: String,
    },
    /// The engine knows the image but has no repository digest for this name (built locally
    /// or never pushed/pulled).
    #[error("{engine} has {reference} but no repository digest for {name} (built locally, never pulled or pushed?)")]
    NoRepoDigest {
        engine: String,
        reference: String,
        name: String,
    },
    /// The engine's output was not the JSON list we asked for.
    #[error("unexpected output from `{engine} image inspect`: {output}")]
    Output { engine: String, output: String },
}

impl Hinted for EngineError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            EngineError::Spawn { .. } => {
                "install docker or podman, set REPRO_ENGINE, or resolve against the registry (--resolve registry)".into()
            }
            _ => "pull the image first (`docker pull NAME:TAG`) or pin it by digest (NAME@sha256:…)".into(),
        })
    }
}

/// Asks `engine` for the digest of `r` in its repository (`RepoDigests` entry with the same
/// normalized name).
pub fn engine_digest(engine: &str, r: &Reference) -> Result<Digest, EngineError> {
    // Fully qualified, so podman's short-name search cannot pick another registry.
    let target = r.with_default_tag();
    let out = Command::new(engine)
        .args(["image", "inspect", "--format", "{{json .RepoDigests}}"])
        .arg(OsStr::new(&target))
        .output()
        .map_err(|e| EngineError::Spawn {
            engine: engine.to_string(),
            problem: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(EngineError::Inspect {
            engine: engine.to_string(),
            reference: target,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first_line = stdout.lines().next().unwrap_or("").trim();
    let list: Option<Vec<String>> = if first_line == "null" {
        Some(Vec::new())
    } else {
        serde_json::from_str(first_line).ok()
    };
    let Some(list) = list else {
        return Err(EngineError::Output {
            engine: engine.to_string(),
            output: first_line.chars().take(200).collect(),
        });
    };
    repo_digest_for(&list, r).ok_or_else(|| EngineError::NoRepoDigest {
        engine: engine.to_string(),
        reference: target,
        name: r.name(),
    })
}

/// The digest of the first `RepoDigests` entry whose normalized name equals `r`'s.
pub fn repo_digest_for(repo_digests: &[String], r: &Reference) -> Option<Digest> {
    let want = r.name();
    repo_digests.iter().find_map(|entry| {
        let parsed = reference::parse_normalized(entry).ok()?;
        (parsed.name() == want).then_some(parsed.digest?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn picks_the_digest_of_the_same_repository() {
        let list = vec![format!("other/app@{A}"), format!("ubuntu@{B}")];
        let r = reference::parse_normalized("docker.io/library/ubuntu:22.04").unwrap();
        assert_eq!(repo_digest_for(&list, &r).unwrap().to_string(), B);
        let r = reference::parse_normalized("localhost:5000/ubuntu").unwrap();
        assert!(repo_digest_for(&list, &r).is_none());
    }

    #[test]
    fn a_fake_engine_is_asked_for_repo_digests() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("fake-engine");
        std::fs::write(
            &fake,
            format!("#!/bin/sh\n[ \"$1 $2 $5\" = \"image inspect localhost:5000/app:1\" ] || exit 3\necho '[\"localhost:5000/app@{A}\"]'\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let engine = fake.to_str().unwrap();
        let r = reference::parse_normalized("localhost:5000/app:1").unwrap();
        assert_eq!(engine_digest(engine, &r).unwrap().to_string(), A);
        let other = reference::parse_normalized("localhost:5000/app:2").unwrap();
        assert!(matches!(
            engine_digest(engine, &other),
            Err(EngineError::Inspect { .. })
        ));
    }
}
