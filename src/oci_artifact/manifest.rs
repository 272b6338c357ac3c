//! OCI artifacts as data: the image manifest v1.1 repro builds (`artifactType`, the empty config,
//! one layer per file titled with `org.opencontainers.image.title`, annotations, `subject`), the
//! checks on a manifest or referrers index read from a registry (untrusted input), layer titles,
//! and the tags of the referrers fallbacks. Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::capture::image::digest::{Algorithm, Digest};
use crate::capture::image::registry::{DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};

/// The media type of the empty descriptor (OCI 1.1), used as an artifact's config.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// The bytes of the empty config: `{}`.
pub const EMPTY_CONFIG: &[u8] = b"{}";
/// The annotation naming a layer's file (what `oras pull` writes it as).
pub const TITLE: &str = "org.opencontainers.image.title";
/// A layer's media type when none is given.
pub const OCTET_STREAM: &str = "application/octet-stream";
/// The longest title accepted (Linux's `PATH_MAX`).
pub const MAX_TITLE_BYTES: usize = 4096;
/// The most layers a manifest from a registry may list.
pub const MAX_LAYERS: usize = 10_000;
/// The most manifests a referrers index (or the fallback tag's index) may list.
pub const MAX_REFERRERS: usize = 1_000;

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    /// Set on the entries of a referrers index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// The layer's title annotation, when it has one.
    pub fn title(&self) -> Option<&str> {
        self.annotations.get(TITLE).map(String::as_str)
    }
}

/// An OCI image manifest (an artifact when `artifactType` is set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The config descriptor of an artifact: the empty JSON object.
pub fn empty_config() -> Descriptor {
    Descriptor {
        media_type: EMPTY_MEDIA_TYPE.into(),
        digest: Digest::sha256_of(EMPTY_CONFIG).to_string(),
        size: EMPTY_CONFIG.len() as u64,
        artifact_type: None,
        annotations: BTreeMap::new(),
    }
}

/// The artifact manifest for `layers` (each already carrying its title).
pub fn build(
    artifact_type: &str,
    layers: Vec<Descriptor>,
    annotations: BTreeMap<String, String>,
    subject: Option<Descriptor>,
) -> ImageManifest {
    ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        artifact_type: Some(artifact_type.into()),
        config: empty_config(),
        layers,
        subject,
        annotations,
    }
}

/// A layer descriptor for a file of `size` bytes with `digest`, titled `title`.
pub fn file_layer(
    media_type: Option<&str>,
    digest: &Digest,
    size: u64,
    title: &str,
    mut annotations: BTreeMap<String, String>,
) -> Descriptor {
    annotations.insert(TITLE.into(), title.into());
    Descriptor {
        media_type: media_type.unwrap_or(OCTET_STREAM).into(),
        digest: digest.to_string(),
        size,
        artifact_type: None,
        annotations,
    }
}

/// Why a title cannot name a file under the target directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TitleProblem {
    #[error("it is empty")]
    Empty,
    #[error("it is an absolute path")]
    Absolute,
    #[error("it has a `..` component")]
    Parent,
    #[error("it has an empty or `.` component")]
    EmptyComponent,
    #[error("it contains a NUL byte")]
    Nul,
    #[error("it is longer than {MAX_TITLE_BYTES} bytes")]
    TooLong,
}

/// Checks that `title` is a relative path that stays under the directory it is written to:
/// not empty, not absolute, no `..`, `.` or empty component, no NUL.
pub fn validate_title(title: &str) -> Result<(), TitleProblem> {
    if title.is_empty() {
        return Err(TitleProblem::Empty);
    }
    if title.len() > MAX_TITLE_BYTES {
        return Err(TitleProblem::TooLong);
    }
    if title.contains('\0') {
        return Err(TitleProblem::Nul);
    }
    if title.starts_with('/') {
        return Err(TitleProblem::Absolute);
    }
    for c in title.split('/') {
        match c {
            ".." => return Err(TitleProblem::Parent),
            "" | "." => return Err(TitleProblem::EmptyComponent),
            _ => {}
        }
    }
    Ok(())
}

/// Two titles that cannot both be written: the same name twice, or a file that another title
/// needs as a directory (`a` and `a/b`). Returns the first clash.
pub fn title_clash<'a>(titles: impl IntoIterator<Item = &'a str>) -> Option<(String, String)> {
    let titles: Vec<&str> = titles.into_iter().collect();
    let mut seen = BTreeSet::new();
    for t in &titles {
        if !seen.insert(*t) {
            return Some((t.to_string(), t.to_string()));
        }
    }
    for t in &titles {
        let mut end = 0;
        while let Some(i) = t[end..].find('/') {
            let dir = &t[..end + i];
            if seen.contains(dir) {
                return Some((dir.to_string(), t.to_string()));
            }
            end += i + 1;
        }
    }
    None
}

/// The tag cosign keeps attestations of `subject` under: `sha256-<hex>.att`.
pub fn att_tag(subject: &Digest) -> String {
    format!("{}-{}.att", subject.algorithm(), subject.hex())
}

/// The OCI 1.1 referrers tag schema's fallback tag for `subject`: `sha256-<hex>` (an index).
pub fn referrers_tag(subject: &Digest) -> String {
    format!("{}-{}", subject.algorithm(), subject.hex())
}

/// A descriptor's digest, parsed; only sha256 content can be streamed and verified.
pub fn sha256_digest(d: &Descriptor) -> Result<Digest, String> {
    let digest = Digest::parse(&d.digest).map_err(|e| format!("digest {:?}: {e}", d.digest))?;
    if digest.algorithm() != Algorithm::Sha256 {
        return Err(format!("digest {digest}: only sha256 content is accepted"));
    }
    Ok(digest)
}

/// Parses an image manifest from a registry (untrusted): schema version 2, an image manifest
/// media type, at most [`MAX_LAYERS`] layers, every digest well-formed sha256.
pub fn parse_manifest(body: &[u8], media_type: &str) -> Result<ImageManifest, String> {
    if media_type == OCI_INDEX || media_type.contains("manifest.list") {
        return Err(format!(
            "it is an index ({media_type}), not an image manifest"
        ));
    }
    let m: ImageManifest =
        serde_json::from_slice(body).map_err(|e| format!("not an image manifest: {e}"))?;
    if m.schema_version != 2 {
        return Err(format!("schemaVersion is {}, expected 2", m.schema_version));
    }
    if let Some(t) = m.media_type.as_deref() {
        if t != OCI_MANIFEST && t != DOCKER_MANIFEST {
            return Err(format!("mediaType {t:?} is not an image manifest"));
        }
    }
    if m.layers.len() > MAX_LAYERS {
        return Err(format!(
            "{} layers, more than the {MAX_LAYERS} accepted",
            m.layers.len()
        ));
    }
    sha256_digest(&m.config).map_err(|e| format!("config: {e}"))?;
    for (i, l) in m.layers.iter().enumerate() {
        sha256_digest(l).map_err(|e| format!("layer {}: {e}", i + 1))?;
    }
    Ok(m)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// The manifests a referrers index (the API's answer or the fallback tag's index) lists whose
/// `artifactType` is `artifact_type` (all when `None`). The filter is applied here even when the
/// registry says it filtered: its answer is not trusted to.
pub fn parse_referrers(
    body: &[u8],
    artifact_type: Option<&str>,
) -> Result<Vec<Descriptor>, String> {
    let idx: Index =
        serde_json::from_slice(body).map_err(|e| format!("not an image index: {e}"))?;
    if idx.schema_version != 2 {
        return Err(format!(
            "schemaVersion is {}, expected 2",
            idx.schema_version
        ));
    }
    if let Some(t) = idx.media_type.as_deref().filter(|t| *t != OCI_INDEX) {
        return Err(format!("mediaType {t:?} is not an image index"));
    }
    if idx.manifests.len() > MAX_REFERRERS {
        return Err(format!(
            "{} referrers, more than the {MAX_REFERRERS} read",
            idx.manifests.len()
        ));
    }
    let mut out = Vec::new();
    for d in idx.manifests {
        if artifact_type.is_some_and(|t| d.artifact_type.as_deref() != Some(t)) {
            continue;
        }
        sha256_digest(&d)?;
        out.push(d);
    }
    Ok(out)
}

/// Where the referrers of a digest are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReferrersVia {
    /// `GET /v2/NAME/referrers/DIGEST` (OCI distribution 1.1).
    Api,
    /// The tags `sha256-<hex>.att` (cosign) and `sha256-<hex>` (the OCI fallback index).
    Tags,
}

impl ReferrersVia {
    /// How the registry's answer to the referrers endpoint decides: 200 is the API, 404 means
    /// the registry does not serve it (distribution 2.8) and the tags are read instead; any
    /// other status is an error for the caller to report.
    pub fn for_status(status: u16) -> Option<ReferrersVia> {
        match status {
            200 => Some(ReferrersVia::Api),
            404 => Some(ReferrersVia::Tags),
            _ => None,
        }
    }

    /// `referrers API` / `tag scheme`, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            ReferrersVia::Api => "referrers API",
            ReferrersVia::Tags => "tag scheme",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    #[test]
    fn artifact_manifest_has_the_v1_1_shape() {
        let layer = file_layer(None, &digest(1), 5, "out/model.bin", BTreeMap::new());
        let subject = Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest(2).to_string(),
            size: 400,
            artifact_type: None,
            annotations: BTreeMap::new(),
        };
        let mut ann = BTreeMap::new();
        ann.insert("dev.repro.run.id".to_string(), "01abc".to_string());
        let m = build(
            "application/vnd.dev.repro.outputs.v1",
            vec![layer],
            ann,
            Some(subject),
        );
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["schemaVersion"], 2);
        assert_eq!(v["mediaType"], OCI_MANIFEST);
        assert_eq!(v["artifactType"], "application/vnd.dev.repro.outputs.v1");
        assert_eq!(v["config"]["mediaType"], EMPTY_MEDIA_TYPE);
        assert_eq!(
            v["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(v["config"]["size"], 2);
        assert!(v["config"].get("annotations").is_none());
        assert_eq!(v["layers"][0]["mediaType"], OCTET_STREAM);
        assert_eq!(v["layers"][0]["size"], 5);
        assert_eq!(v["layers"][0]["annotations"][TITLE], "out/model.bin");
        assert_eq!(v["subject"]["digest"], digest(2).to_string());
        assert_eq!(v["annotations"]["dev.repro.run.id"], "01abc");
        // What repro builds, it reads back.
        let body = serde_json::to_vec(&m).unwrap();
        assert_eq!(parse_manifest(&body, OCI_MANIFEST).unwrap(), m);
        // No subject: no key at all (a registry that refused it must not see `null`).
        let bare = build("t", Vec::new(), BTreeMap::new(), None);
        assert!(serde_json::to_value(&bare)
            .unwrap()
            .get("subject")
            .is_none());
    }

    #[test]
    fn titles_must_stay_inside_the_directory() {
        for ok in ["model.bin", "out/model.bin", "a b/ü.txt", ".hidden", "a..b"] {
            assert_eq!(validate_title(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", TitleProblem::Empty),
            ("/etc/passwd", TitleProblem::Absolute),
            ("../x", TitleProblem::Parent),
            ("a/../../x", TitleProblem::Parent),
            ("a/..", TitleProblem::Parent),
            ("a//b", TitleProblem::EmptyComponent),
            ("a/", TitleProblem::EmptyComponent),
            ("./a", TitleProblem::EmptyComponent),
            ("a\0b", TitleProblem::Nul),
        ] {
            assert_eq!(validate_title(bad), Err(why), "{bad:?}");
        }
        assert_eq!(
            validate_title(&"a".repeat(MAX_TITLE_BYTES + 1)),
            Err(TitleProblem::TooLong)
        );
    }

    #[test]
    fn clashing_titles_are_found() {
        assert_eq!(title_clash(["a", "b", "c/d"]), None);
        assert_eq!(title_clash(["a", "a"]), Some(("a".into(), "a".into())));
        assert_eq!(
            title_clash(["a/b/c", "a/b"]),
            Some(("a/b".into(), "a/b/c".into()))
        );
        assert_eq!(title_clash(["ab", "a/b"]), None);
    }

    #[test]
    fn fallback_tags_name_the_subject() {
        let d = Digest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap();
        assert_eq!(att_tag(&d), format!("sha256-{}.att", "ab".repeat(32)));
        assert_eq!(referrers_tag(&d), format!("sha256-{}", "ab".repeat(32)));
    }

    #[test]
    fn a_404_from_the_referrers_endpoint_selects_the_tag_scheme() {
        assert_eq!(ReferrersVia::for_status(200), Some(ReferrersVia::Api));
        assert_eq!(ReferrersVia::for_status(404), Some(ReferrersVia::Tags));
        for other in [400, 401, 403, 405, 500] {
            assert_eq!(ReferrersVia::for_status(other), None, "{other}");
        }
    }

    #[test]
    fn referrers_are_filtered_here_and_checked() {
        let entry = |t: &str, d: &str| serde_json::json!({"mediaType": OCI_MANIFEST, "digest": d, "size": 10, "artifactType": t});
        let good = digest(3).to_string();
        let body = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [entry("a/x", &good), entry("b/y", &digest(4).to_string())]
        });
        let all = parse_referrers(body.to_string().as_bytes(), None).unwrap();
        assert_eq!(all.len(), 2);
        let only = parse_referrers(body.to_string().as_bytes(), Some("a/x")).unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].digest, good);
        let bad = serde_json::json!({"schemaVersion": 2, "manifests": [entry("a/x", "sha256:zz")]});
        assert!(parse_referrers(bad.to_string().as_bytes(), None).is_err());
        assert!(parse_referrers(b"<html>", None).is_err());
        let manifest_not_index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST});
        assert!(parse_referrers(manifest_not_index.to_string().as_bytes(), None).is_err());
    }

    #[test]
    fn untrusted_manifests_are_checked() {
        let cfg = empty_config();
        let ok = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": []});
        assert!(parse_manifest(ok.to_string().as_bytes(), OCI_MANIFEST).is_ok());
        let v1 = serde_json::json!({"schemaVersion": 1, "config": cfg});
        assert!(parse_manifest(v1.to_string().as_bytes(), OCI_MANIFEST)
            .unwrap_err()
            .contains("schemaVersion"));
        let sha512 = serde_json::json!({"schemaVersion": 2, "config": cfg, "layers": [
            {"mediaType": OCTET_STREAM, "digest": format!("sha512:{}", "a".repeat(128)), "size": 1}
        ]});
        assert!(parse_manifest(sha512.to_string().as_bytes(), OCI_MANIFEST)
            .unwrap_err()
            .contains("layer 1"));
        assert!(parse_manifest(b"{}", OCI_INDEX)
            .unwrap_err()
            .contains("index"));
    }
}
