//! The `repro image` operations: inspect a reference (and what the registry resolves it to),
//! archive runs' images and record where, collect an archive layout's garbage.

use std::path::Path;

use crate::capture::image::reference::{self, Reference, ReferenceError};
use crate::capture::image::registry::{
    Platform, PlatformError, RegistryClient, RegistryError, RegistryOptions, RemoteImage,
};
use crate::error::Hinted;
use crate::ops::archive::{self, ArchiveError, ArchiveReport, ArchiveRequest, GcReport};
use crate::store::{Store, StoreError};

/// Errors of the image operations: those of the layers they use, hints kept.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Hinted for ImageError {
    fn hint(&self) -> Option<String> {
        match self {
            ImageError::Reference(e) => e.hint(),
            ImageError::Platform(e) => e.hint(),
            ImageError::Registry(e) => e.hint(),
            ImageError::Archive(e) => e.hint(),
            ImageError::Store(e) => e.hint(),
        }
    }
}

/// What `repro image inspect` is asked for.
#[derive(Debug, Clone)]
pub struct InspectRequest {
    /// The reference as the user typed it.
    pub reference: String,
    /// `OS/ARCH[/VARIANT]` to pick from an index; `None`: this machine's.
    pub platform: Option<String>,
    /// Only parse; do not contact the registry.
    pub offline: bool,
}

/// A parsed reference and, unless offline, what the registry resolved it to.
#[derive(Debug, Clone)]
pub struct Inspection {
    pub reference: Reference,
    pub remote: Option<RemoteImage>,
}

/// Parses and normalises the reference, then (unless offline) resolves it with `opts`.
pub fn inspect(req: &InspectRequest, opts: RegistryOptions) -> Result<Inspection, ImageError> {
    let r = reference::parse_normalized(&req.reference)?;
    let platform = match &req.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let remote = if req.offline {
        None
    } else {
        let client = RegistryClient::new(opts)?;
        Some(client.resolve(&r, &platform)?)
    };
    Ok(Inspection {
        reference: r,
        remote,
    })
}

/// Archives the runs' images and records every archived copy in the store.
pub fn archive(
    store: &mut Store,
    client: &RegistryClient,
    req: &ArchiveRequest,
    now: &str,
) -> Result<ArchiveReport, ImageError> {
    let report = archive::archive(client, req, now)?;
    for rec in &report.records {
        store.record_archive(rec)?;
    }
    Ok(report)
}

/// Removes from the layout `dir` everything no recorded run references.
pub fn gc(store: &Store, dir: &Path) -> Result<GcReport, ImageError> {
    let keep = store.referenced_image_digests()?;
    Ok(archive::gc(dir, &keep)?)
}
