//! Image references, digests, and how a reference is resolved to the digest that runs.
//!
//! Policy (issue 3): a pinned digest is used as written (checked against the registry when
//! online, a warning if unknown there); otherwise the registry, then the local engine, per
//! [`ResolveMode`]. `latest`, written or implied, is refused unless allowed; so is a reference
//! that cannot be resolved, which is then recorded as [`ResolvedBy::Unpinned`].

pub mod auth;
pub mod digest;
pub mod engine;
pub mod reference;
pub mod registry;

use std::collections::BTreeMap;

use crate::error::Hinted;
use crate::record::{Image, ResolvedBy};
use reference::{Reference, ReferenceError};
use registry::{Platform, RegistryClient, RegistryError, RegistryOptions};

/// Where an unpinned reference may be resolved (`--resolve`, the `resolve` configuration key).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Deserialize,
    serde::Serialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum ResolveMode {
    /// Only the registry.
    Registry,
    /// Only the local engine's `RepoDigests`.
    Engine,
    /// The registry, then the local engine.
    #[default]
    Auto,
}

impl ResolveMode {
    /// Parses `registry|engine|auto`.
    pub fn parse(s: &str) -> Option<ResolveMode> {
        Some(match s {
            "registry" => ResolveMode::Registry,
            "engine" => ResolveMode::Engine,
            "auto" => ResolveMode::Auto,
            _ => return None,
        })
    }

    /// The word used on the command line and in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            ResolveMode::Registry => "registry",
            ResolveMode::Engine => "engine",
            ResolveMode::Auto => "auto",
        }
    }
}

/// Everything `resolve` needs besides the reference.
#[derive(Debug, Clone, Default)]
pub struct ResolveOptions {
    /// Registry, engine, or both.
    pub mode: ResolveMode,
    /// Accept `latest` (written or implied).
    pub allow_latest: bool,
    /// Accept a reference that cannot be resolved (recorded as unpinned).
    pub allow_unpinned: bool,
    /// Do not contact any registry.
    pub offline: bool,
    /// Platform to choose from an index (the host's when `None`).
    pub platform: Option<Platform>,
    /// Engine asked for `ResolveMode::Engine`/`Auto` (decided by the caller with the one engine
    /// detection, `exec::pick_engine`); `None`: no engine is available.
    pub engine: Option<crate::exec::Engine>,
    /// How to reach registries.
    pub registry: RegistryOptions,
}

/// Why an image could not be pinned.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference is invalid.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// `latest` without `--allow-latest`.
    #[error("refusing to run {reference}: the tag `latest` moves, so the run could not be reproduced from it")]
    Latest { reference: String },
    /// No digest could be obtained and unpinned runs are not allowed.
    #[error("cannot pin {reference} to a digest: {}", .attempts.join("; "))]
    Unresolvable {
        reference: String,
        attempts: Vec<String>,
    },
    /// Setting up the registry client failed (e.g. an unreadable `--ca-cert`).
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl Hinted for ImageError {
    fn hint(&self) -> Option<String> {
        match self {
            ImageError::Reference(e) => e.hint(),
            ImageError::Latest { .. } => Some(
                "name a version tag (NAME:1.2.3), pin a digest (NAME@sha256:…), or pass --allow-latest".into(),
            ),
            ImageError::Unresolvable { .. } => Some(
                "pin the image (NAME@sha256:…), log in to the registry, pull it with the engine, or pass --allow-unpinned to record the run as unpinned".into(),
            ),
            ImageError::Registry(e) => e.hint(),
        }
    }
}

/// Resolves a reference as the user wrote it into the image record, with warnings for the
/// caller to print (library code never prints).
pub fn resolve(
    reference_as_written: &str,
    opts: &ResolveOptions,
) -> Result<(Image, Vec<String>), ImageError> {
    let r = reference::parse_normalized(reference_as_written)?;
    let mut warnings = Vec::new();
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let mut image = Image {
        reference: reference_as_written.to_string(),
        digest: None,
        index_digest: None,
        platform: None,
        resolved_by: ResolvedBy::Unpinned,
        labels: BTreeMap::new(),
    };
    let use_registry = !opts.offline && opts.mode != ResolveMode::Engine;

    if let Some(pinned) = &r.digest {
        image.resolved_by = ResolvedBy::Pinned;
        image.digest = Some(pinned.to_string());
        if use_registry {
            check_pinned(&r, &platform, opts, &mut image, &mut warnings);
        }
        return Ok((image, warnings));
    }

    if r.is_latest() && !opts.allow_latest {
        return Err(ImageError::Latest {
            reference: reference_as_written.to_string(),
        });
    }

    let mut attempts = Vec::new();
    if use_registry {
        match RegistryClient::new(opts.registry.clone()).and_then(|c| c.resolve(&r, &platform)) {
            Ok(remote) => {
                image.resolved_by = ResolvedBy::Registry;
                image.digest = Some(remote.platform_digest.clone());
                if remote.is_index {
                    image.index_digest = Some(remote.digest.clone());
                }
                image.platform = remote.platform.clone();
                image.labels = remote.labels;
                return Ok((image, warnings));
            }
            Err(e) => attempts.push(format!("registry: {e}")),
        }
    } else if opts.mode == ResolveMode::Registry {
        attempts.push("registry: offline".to_string());
    }

    if opts.mode != ResolveMode::Registry {
        match opts.engine.map(|e| e.as_str()) {
            Some(eng) => match engine::engine_digest(eng, &r) {
                Ok(d) => {
                    image.resolved_by = ResolvedBy::Engine;
                    image.digest = Some(d.to_string());
                    if !attempts.is_empty() {
                        warnings.push(format!(
                            "resolved {reference_as_written} with the local {eng} instead of the registry ({})",
                            attempts.join("; ")
                        ));
                    }
                    return Ok((image, warnings));
                }
                Err(e) => attempts.push(format!("engine: {e}")),
            },
            None => attempts.push("engine: neither podman nor docker found on PATH".into()),
        }
    }

    if opts.allow_unpinned {
        warnings.push(format!(
            "{reference_as_written} is UNPINNED: no digest could be obtained ({}); the run is recorded as unpinned",
            attempts.join("; ")
        ));
        return Ok((image, warnings));
    }
    Err(ImageError::Unresolvable {
        reference: reference_as_written.to_string(),
        attempts,
    })
}

/// Time the online check of a pinned digest may take: its failure is only a warning.
pub const PINNED_CHECK_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

/// Online check of a pinned digest: known to the registry? For an index, record the platform
/// manifest that runs. Problems are warnings: the pin itself is authoritative.
fn check_pinned(
    r: &Reference,
    platform: &Platform,
    opts: &ResolveOptions,
    image: &mut Image,
    warnings: &mut Vec<String>,
) {
    let client = match RegistryClient::new(opts.registry.with_budget(PINNED_CHECK_BUDGET)) {
        Ok(c) => c,
        Err(e) => {
            warnings.push(format!("could not check the pinned digest: {e}"));
            return;
        }
    };
    match client.resolve(r, platform) {
        Ok(remote) => {
            if remote.is_index {
                image.index_digest = Some(remote.digest.clone());
                image.digest = Some(remote.platform_digest.clone());
            }
            image.platform = remote.platform;
            image.labels = remote.labels;
        }
        Err(RegistryError::NotFound { .. }) => warnings.push(format!(
            "registry {} does not know the pinned digest {} of {}; using the pin as written",
            r.domain,
            r.manifest_ref(),
            r.name()
        )),
        Err(e) => warnings.push(format!(
            "could not check the pinned digest with the registry ({e}); using the pin as written"
        )),
    }
}

/// Fuzz entry point for references (used by `fuzz/` and by a bounded `cargo test` run):
/// parsing never panics, and an accepted reference's normalized and familiar forms parse back
/// to the same reference.
#[doc(hidden)]
pub fn fuzz_reference(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = reference::parse(s);
    if let Ok(r) = reference::parse_normalized(s) {
        let again = reference::parse_normalized(&r.to_string()).expect("normalized form parses");
        assert_eq!(again, r, "normalized form of {s:?} is not a fixed point");
        let fam = reference::parse_normalized(&r.familiar()).expect("familiar form parses");
        // Upstream's familiar form drops `docker.io/` even when the path's first component
        // looks like a domain (`docker.io/foo.com/bar` → `foo.com/bar`, which then names the
        // registry foo.com). We keep upstream's output (the conformance tables check it), so
        // the round trip is only required when the first component is not domain-like.
        let first = r.path.split('/').next().unwrap_or("");
        let domain_like = r.path.contains('/')
            && (first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()));
        if !(r.domain == reference::DEFAULT_DOMAIN && domain_like) {
            assert_eq!(fam, r, "familiar form of {s:?} does not normalise back");
        }
        assert!(r.path.len() <= reference::NAME_TOTAL_LENGTH_MAX);
    }
}

/// Fuzz entry point for digests: never panics; an accepted digest prints exactly as written.
#[doc(hidden)]
pub fn fuzz_digest(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = digest::parse(s) {
        assert_eq!(d.to_string(), s);
        assert_eq!(d.hex().len(), d.algorithm().hex_len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offline() -> ResolveOptions {
        ResolveOptions {
            offline: true,
            mode: ResolveMode::Registry,
            registry: RegistryOptions {
                auth: auth::AuthConfig::anonymous(),
                ..RegistryOptions::default()
            },
            ..ResolveOptions::default()
        }
    }

    proptest::proptest! {
        /// Bounded stand-in for `cargo fuzz` where no nightly toolchain is available.
        #[test]
        fn fuzz_smoke(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
                      text in "[a-zA-Z0-9:/@._\\-\\[\\]]{0,80}") {
            fuzz_reference(&data);
            fuzz_digest(&data);
            fuzz_reference(text.as_bytes());
            fuzz_digest(text.as_bytes());
        }
    }

    #[test]
    fn fuzz_seed_corpus_passes() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        let mut n = 0;
        for target in ["reference", "digest"] {
            let dir = root.join(target);
            for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
                let data = std::fs::read(e.unwrap().path()).unwrap();
                fuzz_reference(&data);
                fuzz_digest(&data);
                n += 1;
            }
        }
        assert!(n >= 10, "seed corpus too small: {n}");
    }

    const H: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn pinned_is_fine_offline() {
        let written = format!("ubuntu:22.04@sha256:{H}");
        let (img, warnings) = resolve(&written, &offline()).unwrap();
        assert_eq!(img.reference, written);
        assert_eq!(img.digest.as_deref(), Some(format!("sha256:{H}").as_str()));
        assert_eq!(img.resolved_by, ResolvedBy::Pinned);
        assert!(warnings.is_empty());
    }

    #[test]
    fn latest_refused_unless_allowed() {
        for r in ["ubuntu", "ubuntu:latest", "reg.example.com/a/b:latest"] {
            assert!(
                matches!(resolve(r, &offline()), Err(ImageError::Latest { .. })),
                "{r}"
            );
        }
        let mut o = offline();
        o.allow_latest = true;
        assert!(matches!(
            resolve("ubuntu", &o),
            Err(ImageError::Unresolvable { .. })
        ));
        o.allow_unpinned = true;
        let (img, warnings) = resolve("ubuntu", &o).unwrap();
        assert_eq!(img.resolved_by, ResolvedBy::Unpinned);
        assert!(img.digest.is_none());
        assert!(warnings[0].contains("UNPINNED"));
    }

    #[test]
    fn unresolvable_offline_is_refused_with_a_hint() {
        let e = resolve("reg.example.com/team/trainer:2.3.1", &offline()).unwrap_err();
        assert!(
            e.to_string().contains("reg.example.com/team/trainer:2.3.1"),
            "{e}"
        );
        assert!(e.hint().unwrap().contains("--allow-unpinned"));
        assert!(matches!(
            resolve("Bad//ref", &offline()),
            Err(ImageError::Reference(_))
        ));
    }
}
