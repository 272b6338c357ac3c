//! An image's lineage for `repro ui`'s Images page: per repository, the tags the runs named,
//! the digests each resolved to over time (a tag with several moved), and the runs of each.

use std::collections::BTreeMap;

use crate::capture::image::reference;
use crate::store::lineage::ImageUse;
use crate::store::{Store, StoreError};

/// One repository (`REGISTRY/PATH`) and what its runs named.
#[derive(Debug, Clone, PartialEq)]
pub struct Repository {
    pub name: String,
    /// By the name the runs gave (a tag, or `@DIGEST` when pinned by digest), each with its
    /// digests in the order first used.
    pub tags: Vec<(String, Vec<ImageUse>)>,
}

impl Repository {
    /// Whether a tag resolved to more than one digest over time.
    pub fn moved(tag: &[ImageUse]) -> bool {
        tag.iter()
            .filter_map(|u| u.digest.as_ref())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 1
    }
}

/// The repository a reference is listed under on the Images page (`REGISTRY/PATH`, or the
/// reference itself when it does not parse).
pub fn repository_name(reference: &str) -> String {
    split(reference).0
}

/// (repository, the name the run gave: a tag, `@DIGEST`, or `latest`).
fn split(reference_text: &str) -> (String, String) {
    // A reference that does not parse (imported, old) is shown under itself.
    match reference::parse(reference_text) {
        Ok(r) => {
            let name = r.name();
            let tag = match (&r.tag, &r.digest) {
                (Some(t), _) => t.clone(),
                (None, Some(d)) => format!("@{d}"),
                (None, None) => "latest".to_string(),
            };
            (name, tag)
        }
        Err(_) => (reference_text.to_string(), String::new()),
    }
}

/// The lineage of every image the runs used, by repository name.
pub fn lineage(store: &Store) -> Result<Vec<Repository>, StoreError> {
    let mut repos: BTreeMap<String, BTreeMap<String, Vec<ImageUse>>> = BTreeMap::new();
    for u in store.image_uses()? {
        let (repo, tag) = split(&u.reference);
        repos
            .entry(repo)
            .or_default()
            .entry(tag)
            .or_default()
            .push(u);
    }
    Ok(repos
        .into_iter()
        .map(|(name, tags)| {
            let mut tags: Vec<(String, Vec<ImageUse>)> = tags.into_iter().collect();
            for (_, uses) in &mut tags {
                uses.sort_by(|a, b| a.first.cmp(&b.first));
            }
            Repository { name, tags }
        })
        .collect())
}
