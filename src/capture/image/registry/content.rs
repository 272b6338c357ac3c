//! Content by digest, for `repro audit` and `repro image archive`: manifests by digest (body
//! hash checked), where a tag points now, the repository's tags (`tags/list` with `Link`
//! pagination, bounded), blobs streamed to a writer and verified while streaming, pushes to
//! another repository (cross-repository mount when the registry allows it), and what OCI
//! artifacts need: small blobs from memory, the answer to a manifest PUT, the referrers API.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::super::digest::{Algorithm, Digest};
use super::super::reference::Reference;
use super::error::{Ctx, RegistryError};
use super::manifest::{verified_digest, ManifestDoc};
use super::transport::{Body, Extra};
use super::RegistryClient;

/// How long one blob may take to stream (the resolution deadline is for small documents).
pub const BLOB_DEADLINE: Duration = Duration::from_secs(3600);

/// A manifest (or index) fetched by digest; its body hashes to `digest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawManifest {
    pub digest: Digest,
    /// From the body's `mediaType`, else the `Content-Type` header.
    pub media_type: String,
    pub body: Vec<u8>,
}

/// The tags of a repository as far as they were read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagList {
    pub tags: Vec<String>,
    /// The listing was cut short at the page bound; more tags exist.
    pub truncated: bool,
}

/// Where a blob push ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The destination already had it.
    Present,
    /// Mounted from the source repository (same registry), no bytes sent.
    Mounted,
    /// Uploaded.
    Uploaded,
}

impl RegistryClient {
    fn ctx_for<'a>(&self, r: &'a Reference, written: &'a str, limit: Duration) -> Ctx<'a> {
        Ctx::new(&r.domain, written, limit)
    }

    /// The manifest or index `digest` of `r`'s repository; `None` when the registry does not
    /// have it (404).
    pub fn manifest_by_digest(
        &self,
        r: &Reference,
        digest: &Digest,
    ) -> Result<Option<RawManifest>, RegistryError> {
        let written = format!("{}@{digest}", r.name());
        let ctx = self.ctx_for(r, &written, self.opts.deadline);
        let host = self.opts.host_settings(&r.domain);
        let base = self.base_url(r, &host, &ctx)?;
        let fetched = match self.get_manifest(r, &host, &base, &digest.to_string(), &ctx) {
            Ok(f) => f,
            Err(RegistryError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let d = verified_digest(&fetched, Some(digest), &ctx)?;
        let doc: ManifestDoc =
            serde_json::from_slice(&fetched.body).map_err(|e| ctx.bad(format!("not JSON: {e}")))?;
        Ok(Some(RawManifest {
            digest: d,
            media_type: doc.media_type(fetched.content_type.as_deref()),
            body: fetched.body,
        }))
    }

    /// The digest `tag` of `r`'s repository points at now (`HEAD`, the `Docker-Content-Digest`
    /// header; a `GET` and the body's hash when the header is missing); `None` when the tag is gone.
    pub fn tag_digest(&self, r: &Reference, tag: &str) -> Result<Option<Digest>, RegistryError> {
        let written = format!("{}:{tag}", r.name());
        let ctx = self.ctx_for(r, &written, self.opts.deadline);
        let host = self.opts.host_settings(&r.domain);
        let base = self.base_url(r, &host, &ctx)?;
        let url = format!("{base}/v2/{}/manifests/{tag}", r.path);
        let resp = match self.send("HEAD", &url, r, &host, &ctx) {
            Ok(resp) => resp,
            Err(RegistryError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if let Some(h) = resp
            .header("Docker-Content-Digest")
            .map(str::trim)
            .filter(|h| !h.is_empty())
        {
            return Digest::parse(h)
                .map(Some)
                .map_err(|e| ctx.bad(format!("Docker-Content-Digest header: {e}")));
        }
        let fetched = match self.get_manifest(r, &host, &base, tag, &ctx) {
            Ok(f) => f,
            Err(RegistryError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        verified_digest(&fetched, None, &ctx).map(Some)
    }

    /// The repository's tags (`GET /v2/NAME/tags/list?n=PAGE_SIZE`, following
    /// `Link: <…>; rel="next"`), at most `max_pages` pages; `truncated` says when more were left.
    pub fn tags(
        &self,
        r: &Reference,
        page_size: usize,
        max_pages: usize,
    ) -> Result<TagList, RegistryError> {
        let written = r.name();
        let ctx = self.ctx_for(r, &written, self.opts.deadline);
        let host = self.opts.host_settings(&r.domain);
        let base = self.base_url(r, &host, &ctx)?;
        let mut url = format!("{base}/v2/{}/tags/list?n={}", r.path, page_size.max(1));
        let mut out = TagList::default();
        for page in 0.. {
            if page >= max_pages {
                out.truncated = true;
                break;
            }
            let resp = match self.send("GET", &url, r, &host, &ctx) {
                Ok(resp) => resp,
                Err(RegistryError::NotFound { .. }) => return Ok(out),
                Err(e) => return Err(e),
            };
            let next = resp.header("Link").and_then(next_link);
            let body = super::transport::read_limited(resp, &ctx, "tag list")?;
            #[derive(Deserialize)]
            struct Tags {
                #[serde(default)]
                tags: Option<Vec<String>>,
            }
            let t: Tags = serde_json::from_slice(&body)
                .map_err(|e| ctx.bad(format!("tag list is not JSON: {e}")))?;
            out.tags.extend(t.tags.unwrap_or_default());
            match next {
                None => break,
                Some(n) if n.starts_with('/') => url = format!("{base}{n}"),
                Some(n) if n.starts_with(&base) => url = n,
                Some(n) => {
                    return Err(ctx.bad(format!(
                        "tag list pagination points at another host ({n}); refused"
                    )))
                }
            }
        }
        Ok(out)
    }

    /// Whether the repository has the blob (`HEAD /v2/NAME/blobs/DIGEST`).
    pub fn has_blob(&self, r: &Reference, digest: &Digest) -> Result<bool, RegistryError> {
        let written = format!("{}@{digest}", r.name());
        let ctx = self.ctx_for(r, &written, self.opts.deadline);
        let host = self.opts.host_settings(&r.domain);
        let base = self.base_url(r, &host, &ctx)?;
        let url = format!("{base}/v2/{}/blobs/{digest}", r.path);
        match self.send("HEAD", &url, r, &host, &ctx) {
            Ok(_) => Ok(true),
            Err(RegistryError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Streams the blob `digest` of `r`'s repository into `out`, hashing while streaming;
    /// returns the byte count. A body that does not hash to `digest`, or whose length differs
    /// from `size` when given, is an error (the caller discards what it wrote).
    pub fn blob_to(
        &self,
        r: &Reference,
        digest: &Digest,
        size: Option<u64>,
        out: &mut dyn Write,
    ) -> Result<u64, RegistryError> {
        let written = format!("{}@{digest}", r.name());
        let ctx = self.ctx_for(r, &written, BLOB_DEADLINE);
        if digest.algorithm() != Algorithm::Sha256 {
            return Err(ctx.bad(format!(
                "blob digest {digest}: only sha256 blobs can be streamed and verified"
            )));
        }
        let host = self.opts.host_settings(&r.domain);
        let base = self.base_url(r, &host, &ctx)?;
        let url = format!("{base}/v2/{}/blobs/{digest}", r.path);
        let extra = Extra {
            body: None,
            timeout: Some(BLOB_DEADLINE),
        };
        let resp = self.send_with("GET", &url, r, &host, &ctx, "pull", &extra)?;
        let mut reader = resp.into_reader();
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut n: u64 = 0;
        loop {
            let got = reader
                .read(&mut buf)
                .map_err(|e| ctx.transport(format!("reading blob {digest}: {e}")))?;
            if got == 0 {
                break;
            }
            hasher.update(&buf[..got]);
            n += got as u64;
            if size.is_some_and(|s| n > s) {
                return Err(ctx.bad(format!(
                    "blob {digest} is longer than the {} bytes its descriptor says",
                    size.unwrap_or(0)
                )));
            }
            out.write_all(&buf[..got])
                .map_err(|e| ctx.transport(format!("writing blob {digest}: {e}")))?;
        }
        let computed = format!("sha256:{}", hex::encode(hasher.finalize()));
        if computed != digest.to_string() {
            return Err(RegistryError::DigestMismatch {
                registry: r.domain.clone(),
                reference: written.clone(),
                claimed: digest.to_string(),
                computed,
            });
        }
        if let Some(s) = size.filter(|s| *s != n) {
            return Err(ctx.bad(format!(
                "blob {digest} is {n} bytes, its descriptor says {s}"
            )));
        }
        Ok(n)
    }

    /// Puts blob `digest` into `dst`'s repository: nothing when it is there, a cross-repository
    /// mount from `src` when both are on one registry and it allows it, else an upload of
    /// `file` (which must already hold the verified bytes; `None` fails when an upload is needed).
    pub fn push_blob(
        &self,
        dst: &Reference,
        src: Option<&Reference>,
        digest: &Digest,
        file: Option<&Path>,
    ) -> Result<Pushed, RegistryError> {
        self.push_blob_from(dst, src, digest, file.map(Body::File))
    }

    /// Puts a small blob held in memory (an artifact's empty config) into `dst`'s repository;
    /// nothing is sent when the registry has it.
    pub fn push_blob_bytes(
        &self,
        dst: &Reference,
        digest: &Digest,
        bytes: &[u8],
    ) -> Result<Pushed, RegistryError> {
        self.push_blob_from(dst, None, digest, Some(Body::Bytes(bytes)))
    }

    fn push_blob_from(
        &self,
        dst: &Reference,
        src: Option<&Reference>,
        digest: &Digest,
        upload: Option<Body<'_>>,
    ) -> Result<Pushed, RegistryError> {
        if self.has_blob(dst, digest)? {
            return Ok(Pushed::Present);
        }
        let written = format!("{}@{digest}", dst.name());
        let ctx = self.ctx_for(dst, &written, BLOB_DEADLINE);
        let host = self.opts.host_settings(&dst.domain);
        let base = self.base_url(dst, &host, &ctx)?;
        let mut url = format!("{base}/v2/{}/blobs/uploads/", dst.path);
        if let Some(s) = src.filter(|s| s.domain == dst.domain && s.path != dst.path) {
            url.push_str(&format!("?mount={digest}&from={}", s.path));
        }
        let resp = self.send_with(
            "POST",
            &url,
            dst,
            &host,
            &ctx,
            "pull,push",
            &Extra {
                body: Some(("application/octet-stream", Body::Bytes(&[]))),
                timeout: None,
            },
        )?;
        if resp.status() == 201 {
            return Ok(Pushed::Mounted);
        }
        let Some(location) = resp.header("Location").map(str::to_string) else {
            return Err(ctx.bad("the upload answer names no Location"));
        };
        let Some(upload) = upload else {
            return Err(ctx.bad(format!(
                "blob {digest} must be uploaded but was not fetched"
            )));
        };
        let mut put = if location.starts_with('/') {
            format!("{base}{location}")
        } else {
            location
        };
        put.push(if put.contains('?') { '&' } else { '?' });
        put.push_str(&format!("digest={digest}"));
        self.send_with(
            "PUT",
            &put,
            dst,
            &host,
            &ctx,
            "pull,push",
            &Extra {
                body: Some(("application/octet-stream", upload)),
                timeout: Some(BLOB_DEADLINE),
            },
        )?;
        Ok(Pushed::Uploaded)
    }

    /// Puts a manifest into `dst`'s repository under `reference` (a digest or a tag).
    pub fn put_manifest(
        &self,
        dst: &Reference,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Result<(), RegistryError> {
        self.put_manifest_answer(dst, reference, media_type, body)
            .map(|_| ())
    }

    /// [`Self::put_manifest`], returning what the registry answered: the digest it stored and
    /// its `OCI-Subject` header (an OCI 1.1 registry that indexed the manifest's `subject`).
    /// A refusal keeps the registry's error text (`MANIFEST_INVALID …`) in the error.
    pub fn put_manifest_answer(
        &self,
        dst: &Reference,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Result<ManifestPut, RegistryError> {
        let written = format!("{}:{reference}", dst.name());
        let ctx = self.ctx_for(dst, &written, self.opts.deadline);
        let host = self.opts.host_settings(&dst.domain);
        let base = self.base_url(dst, &host, &ctx)?;
        let url = format!("{base}/v2/{}/manifests/{reference}", dst.path);
        let resp = self.send_with(
            "PUT",
            &url,
            dst,
            &host,
            &ctx,
            "pull,push",
            &Extra {
                body: Some((media_type, Body::Bytes(body))),
                timeout: None,
            },
        )?;
        let digest = resp
            .header("Docker-Content-Digest")
            .and_then(|h| Digest::parse(h.trim()).ok());
        let subject = resp.header("OCI-Subject").map(|h| h.trim().to_string());
        Ok(ManifestPut { digest, subject })
    }

    /// The manifest `tag` of `r`'s repository points at (its body hash checked against the
    /// `Docker-Content-Digest` header); `None` when the tag does not exist.
    pub fn manifest_by_tag(
        &self,
        r: &Reference,
        tag: &str,
    ) -> Result<Option<RawManifest>, RegistryError> {
        let written = format!("{}:{tag}", r.name());
        let ctx = self.ctx_for(r, &written, self.opts.deadline);
        let host = self.opts.host_settings(&r.domain);
        let base = self.base_url(r, &host, &ctx)?;
        let fetched = match self.get_manifest(r, &host, &base, tag, &ctx) {
            Ok(f) => f,
            Err(RegistryError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let d = verified_digest(&fetched, None, &ctx)?;
        let doc: ManifestDoc =
            serde_json::from_slice(&fetched.body).map_err(|e| ctx.bad(format!("not JSON: {e}")))?;
        Ok(Some(RawManifest {
            digest: d,
            media_type: doc.media_type(fetched.content_type.as_deref()),
            body: fetched.body,
        }))
    }

    /// `GET /v2/NAME/referrers/DIGEST[?artifactType=…]` (OCI distribution 1.1): the status and
    /// the body (at most [`super::MAX_MANIFEST_BYTES`], not parsed). A 404 is an answer, not an
    /// error: it is how a registry without the API (distribution 2.8) says so.
    pub fn referrers(
        &self,
        r: &Reference,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<ReferrersAnswer, RegistryError> {
        let written = format!("{}@{subject}", r.name());
        let ctx = self.ctx_for(r, &written, self.opts.deadline);
        let host = self.opts.host_settings(&r.domain);
        let base = self.base_url(r, &host, &ctx)?;
        let mut url = format!("{base}/v2/{}/referrers/{subject}", r.path);
        if let Some(t) = artifact_type {
            url.push_str("?artifactType=");
            url.push_str(&query_escape(t));
        }
        let resp = match self.send("GET", &url, r, &host, &ctx) {
            Ok(resp) => resp,
            Err(RegistryError::NotFound { .. }) => {
                return Ok(ReferrersAnswer {
                    status: 404,
                    body: Vec::new(),
                    filters_applied: None,
                })
            }
            Err(e) => return Err(e),
        };
        let status = resp.status();
        let filters_applied = resp.header("OCI-Filters-Applied").map(str::to_string);
        let body = super::transport::read_limited(resp, &ctx, "referrers index")?;
        Ok(ReferrersAnswer {
            status,
            body,
            filters_applied,
        })
    }
}

/// What a manifest PUT answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestPut {
    /// `Docker-Content-Digest`, when sent and well-formed.
    pub digest: Option<Digest>,
    /// `OCI-Subject`: the registry indexed the manifest's subject for the referrers API.
    pub subject: Option<String>,
}

/// What the referrers endpoint answered: 200 with an image index, or 404 (not served).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferrersAnswer {
    pub status: u16,
    /// The body (empty for a 404).
    pub body: Vec<u8>,
    /// `OCI-Filters-Applied` (`artifactType` when the registry filtered).
    pub filters_applied: Option<String>,
}

/// Percent-encodes a query value (media types hold `+` and `/`).
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The target of `Link: <URL>; rel="next"`, when there is one.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let rel_next = params.split(';').any(|p| {
            let p = p.trim().to_ascii_lowercase();
            p == "rel=\"next\"" || p == "rel=next"
        });
        let t = target.trim();
        (rel_next && t.starts_with('<') && t.ends_with('>')).then(|| t[1..t.len() - 1].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(
            query_escape("application/vnd.dev.repro.attestation.v1+json"),
            "application%2Fvnd.dev.repro.attestation.v1%2Bjson"
        );
    }

    #[test]
    fn link_header_next_page() {
        assert_eq!(
            next_link("</v2/a/tags/list?last=x&n=2>; rel=\"next\"").as_deref(),
            Some("/v2/a/tags/list?last=x&n=2")
        );
        assert_eq!(
            next_link("<https://r/a>; rel=\"prev\", <https://r/b>; rel=next").as_deref(),
            Some("https://r/b")
        );
        assert_eq!(next_link("<https://r/a>; rel=\"prev\""), None);
        assert_eq!(next_link("garbage"), None);
    }
}
