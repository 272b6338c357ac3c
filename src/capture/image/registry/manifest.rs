//! Manifest and index bodies from a registry: media types, parsing, the body-hash check, and
//! which index entry runs on a platform. Pure functions (no I/O), so the fuzz target reaches them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::super::digest::{Algorithm, Digest};
use super::error::{Ctx, RegistryError};
use super::platform::Platform;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Sent with every manifest request: without it registries answer 404 or convert manifests.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Manifests and configs larger than this are refused.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// One entry of an image index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlatformManifest {
    /// `os/arch[/variant]`, or `unknown/unknown` for attestation entries.
    pub platform: String,
    /// Digest of that platform's manifest.
    pub digest: String,
}

/// What the registry says about a reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteImage {
    /// Digest of the manifest (or index) the reference points at, checked against the body.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Whether it is an index / manifest list.
    pub is_index: bool,
    /// For an index: every platform manifest.
    pub platforms: Vec<PlatformManifest>,
    /// The digest of the manifest that runs on the chosen platform (`digest` for a plain manifest).
    pub platform_digest: String,
    /// The chosen platform when known (`os/arch[/variant]`).
    pub platform: Option<String>,
    /// Labels of the image config.
    pub labels: BTreeMap<String, String>,
}

/// A manifest body with the headers that matter.
pub(crate) struct Fetched {
    pub(crate) body: Vec<u8>,
    pub(crate) content_type: Option<String>,
    pub(crate) header_digest: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ManifestDoc {
    #[serde(default, rename = "mediaType")]
    pub(crate) media_type: Option<String>,
    #[serde(default)]
    pub(crate) config: Option<Descriptor>,
    #[serde(default)]
    pub(crate) manifests: Option<Vec<IndexEntry>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Descriptor {
    pub(crate) digest: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct IndexEntry {
    pub(crate) digest: String,
    #[serde(default)]
    pub(crate) platform: Option<PlatformJson>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PlatformJson {
    #[serde(default)]
    pub(crate) architecture: String,
    #[serde(default)]
    pub(crate) os: String,
    #[serde(default)]
    pub(crate) variant: Option<String>,
}

impl ManifestDoc {
    /// The media type from the body, else from the `Content-Type` header.
    pub(crate) fn media_type(&self, content_type: Option<&str>) -> String {
        self.media_type
            .clone()
            .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_string()))
            .unwrap_or_default()
    }

    /// Whether the body is an index / manifest list.
    pub(crate) fn is_index(&self, media_type: &str) -> bool {
        media_type == OCI_INDEX
            || media_type == DOCKER_MANIFEST_LIST
            || (self.manifests.is_some() && self.config.is_none())
    }
}

/// Every entry of an index, and the chosen entry's digest and platform.
pub(crate) type IndexChoice = (Vec<PlatformManifest>, Option<(Digest, Platform)>);

/// Every entry of an index, and the one that runs on `platform` (an exact variant match is
/// preferred over "any variant").
pub(crate) fn choose_platform(
    entries: &[IndexEntry],
    platform: &Platform,
    ctx: &Ctx<'_>,
) -> Result<IndexChoice, RegistryError> {
    let mut platforms = Vec::new();
    let mut chosen: Option<(Digest, Platform)> = None;
    for e in entries {
        let p = e.platform.as_ref().map(|p| Platform {
            os: p.os.clone(),
            architecture: p.architecture.clone(),
            variant: p.variant.clone().filter(|v| !v.is_empty()),
        });
        let d = Digest::parse(&e.digest)
            .map_err(|err| ctx.bad(format!("index entry digest: {err}")))?;
        platforms.push(PlatformManifest {
            platform: p
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "unknown".into()),
            digest: d.to_string(),
        });
        if let Some(p) = p {
            let better = match &chosen {
                None => true,
                Some((_, c)) => {
                    platform.variant.is_none() && c.variant.is_some() && p.variant.is_none()
                }
            };
            if platform.matches(&p) && better {
                chosen = Some((d, p));
            }
        }
    }
    Ok((platforms, chosen))
}

/// The digest of a fetched manifest: the body's hash, which must equal the
/// `Docker-Content-Digest` header and the digest asked for, when there are ones.
pub(crate) fn verified_digest(
    f: &Fetched,
    asked: Option<&Digest>,
    ctx: &Ctx<'_>,
) -> Result<Digest, RegistryError> {
    let mismatch = |claimed: String, computed: String| RegistryError::DigestMismatch {
        registry: ctx.registry.to_string(),
        reference: ctx.reference.to_string(),
        claimed,
        computed,
    };
    let mut digest = Digest::sha256_of(&f.body);
    if let Some(h) = f
        .header_digest
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty())
    {
        let claimed =
            Digest::parse(h).map_err(|e| ctx.bad(format!("Docker-Content-Digest header: {e}")))?;
        if !claimed.verify(&f.body) {
            return Err(mismatch(
                claimed.to_string(),
                claimed.algorithm().digest(&f.body).to_string(),
            ));
        }
        if claimed.algorithm() != Algorithm::Sha256 {
            digest = claimed;
        }
    }
    if let Some(a) = asked {
        if !a.verify(&f.body) {
            return Err(mismatch(
                a.to_string(),
                a.algorithm().digest(&f.body).to_string(),
            ));
        }
        digest = a.clone();
    }
    Ok(digest)
}

/// The `Labels` of an image config body.
pub(crate) fn config_labels(
    body: &[u8],
    ctx: &Ctx<'_>,
) -> Result<BTreeMap<String, String>, RegistryError> {
    #[derive(Deserialize)]
    struct Cfg {
        #[serde(default)]
        config: Option<Inner>,
    }
    #[derive(Deserialize)]
    struct Inner {
        #[serde(default, rename = "Labels")]
        labels: Option<BTreeMap<String, String>>,
    }
    let cfg: Cfg =
        serde_json::from_slice(body).map_err(|e| ctx.bad(format!("config is not JSON: {e}")))?;
    Ok(cfg.config.and_then(|c| c.labels).unwrap_or_default())
}

/// Fuzzing entry point (`fuzz/fuzz_targets/manifest.rs`): parsing a manifest or index body from
/// a hostile registry never panics; every accepted index entry's digest and platform are checked
/// exactly as `resolve` does.
#[doc(hidden)]
pub fn fuzz_manifest(body: &[u8]) {
    if body.len() as u64 > MAX_MANIFEST_BYTES {
        return;
    }
    let Ok(doc) = serde_json::from_slice::<ManifestDoc>(body) else {
        return;
    };
    let ctx = Ctx::new("fuzz", "fuzz", std::time::Duration::from_secs(1));
    let media_type = doc.media_type(Some("application/json; charset=utf-8"));
    let _ = doc.is_index(&media_type);
    if let Some(c) = &doc.config {
        let _ = Digest::parse(&c.digest);
    }
    let entries = doc.manifests.unwrap_or_default();
    let _ = choose_platform(&entries, &Platform::host(), &ctx);
    for e in entries {
        if let Some(p) = e.platform {
            let plat = Platform {
                os: p.os,
                architecture: p.architecture,
                variant: p.variant,
            };
            let _ = Platform::parse(&plat.to_string());
        }
    }
    let _ = config_labels(body, &ctx);
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Bounded stand-in for `cargo fuzz run manifest` where no nightly toolchain is available.
        #[test]
        fn fuzz_manifest_smoke(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
                               digest in "[a-z0-9:]{0,80}", os in "[a-z0-9/]{0,12}") {
            fuzz_manifest(&data);
            let doc = format!(r#"{{"manifests":[{{"digest":"{digest}","platform":{{"os":"{os}","architecture":"amd64","variant":"{os}"}}}}],"config":{{"digest":"{digest}"}}}}"#);
            fuzz_manifest(doc.as_bytes());
        }
    }

    #[test]
    fn fuzz_manifest_seed_corpus_passes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/manifest");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            fuzz_manifest(&std::fs::read(e.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n >= 1, "no manifest seeds");
    }

    #[test]
    fn digest_header_must_match_body() {
        let ctx = Ctx::new("r", "r/x:1", std::time::Duration::from_secs(1));
        let body = b"{}".to_vec();
        let good = Digest::sha256_of(&body).to_string();
        let f = Fetched {
            body: body.clone(),
            content_type: None,
            header_digest: Some(good.clone()),
        };
        assert_eq!(verified_digest(&f, None, &ctx).unwrap().to_string(), good);
        let bad = Fetched {
            body,
            content_type: None,
            header_digest: Some(format!("sha256:{}", "0".repeat(64))),
        };
        let e = verified_digest(&bad, None, &ctx).unwrap_err();
        assert!(matches!(e, RegistryError::DigestMismatch { .. }), "{e}");
        assert!(e.to_string().contains("r/x:1"));
    }
}
