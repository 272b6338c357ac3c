//! `repro audit`: can the selected runs still be re-run? For each distinct image (by repository
//! and digest) it asks the registry whether the digest (index and platform manifest) is still
//! there, where the recorded tag points now, which tags point at the digest now, and checks the
//! archived copies. Requests run in parallel within a bound; tag listings are read once per
//! repository and bounded. Each registry gets one deadline for the whole audit (the registry
//! deadline, `REPRO_REGISTRY_TIMEOUT`, 60 s by default), counted from its first request: a
//! registry that hangs costs that long, however many images it holds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::capture::image::digest::Digest;
use crate::capture::image::reference::{self, Reference};
use crate::capture::image::registry::{RegistryClient, RegistryError};
use crate::ops::archive::{self, ArchiveHealth};
use crate::ops::pool::parallel;
use crate::record::Run;
use crate::store::archive::{ArchiveKind, ArchiveRecord};

/// `--jobs`'s default: parallel registry requests.
pub const DEFAULT_JOBS: usize = 8;
/// `--max-tag-pages`'s default.
pub const DEFAULT_MAX_TAG_PAGES: usize = 5;
/// `--tag-page-size`'s default.
pub const DEFAULT_TAG_PAGE_SIZE: usize = 1000;
/// `--max-tags`'s default.
pub const DEFAULT_MAX_TAGS: usize = 1000;

/// What to audit.
#[derive(Debug, Clone)]
pub struct AuditRequest {
    pub runs: Vec<Run>,
    /// Archives recorded for the runs (any order).
    pub archives: Vec<ArchiveRecord>,
    /// Re-hash archived blobs (else size checks only).
    pub deep: bool,
    /// Parallel registry requests.
    pub jobs: usize,
    /// Tags asked for per `tags/list` page.
    pub tag_page_size: usize,
    /// Pages of `tags/list` read per repository.
    pub max_tag_pages: usize,
    /// Tags whose digest is looked up per repository, at most.
    pub max_tags: usize,
}

/// Whether an image can still be pulled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    /// The registry still has every digest the runs need.
    Present,
    /// Gone from the registry, and an intact archive holds it.
    Archived,
    /// Gone from the registry and no intact archive: the runs cannot be re-run as recorded.
    Missing,
    /// The registry could not be asked (see `error`).
    Unknown,
}

impl Availability {
    /// The table word.
    pub fn word(self) -> &'static str {
        match self {
            Availability::Present => "present",
            Availability::Archived => "archived",
            Availability::Missing => "MISSING",
            Availability::Unknown => "UNKNOWN",
        }
    }
}

/// Where the recorded tag points now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagNow {
    pub tag: String,
    /// `None`: the tag is gone.
    pub digest: Option<String>,
    pub moved: bool,
    /// A run recorded here that used the digest the tag points at now.
    pub used_by: Option<String>,
}

/// One audited image.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    pub runs: Vec<String>,
    pub reference: String,
    /// The digest that ran (platform manifest).
    pub digest: String,
    /// The index the tag pointed at, for a multi-arch image.
    pub index_digest: Option<String>,
    pub status: Availability,
    pub manifest_present: Option<bool>,
    pub index_present: Option<bool>,
    pub tag: Option<TagNow>,
    /// Tags of the repository pointing at the digest (or index) now.
    pub tags_now: Vec<String>,
    /// The tag listing was cut short (more tags than the bound).
    pub tags_truncated: bool,
    pub archives: Vec<ArchiveHealth>,
    pub error: Option<String>,
}

/// The audit result.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub rows: Vec<AuditRow>,
    /// Runs without a pinned digest (nothing to check).
    pub unpinned: Vec<String>,
}

impl AuditReport {
    /// Whether some run that is not archived needs a digest the registry no longer has (or
    /// whose presence could not be established).
    pub fn at_risk(&self) -> bool {
        self.rows
            .iter()
            .any(|r| matches!(r.status, Availability::Missing | Availability::Unknown))
    }
}

struct Group {
    repo: Reference,
    reference: String,
    tag: Option<String>,
    digest: String,
    index_digest: Option<String>,
    runs: Vec<String>,
}

/// tag → digest of one repository, as far as read.
#[derive(Default, Clone)]
struct RepoTags {
    by_digest: BTreeMap<String, Vec<String>>,
    by_tag: BTreeMap<String, String>,
    /// Every tag was listed and looked up (so a tag not in `by_tag` is gone).
    complete: bool,
    truncated: bool,
    error: Option<String>,
}

/// One deadline per registry (`host[:port]`) for the whole audit, started by its first
/// request. A request still unanswered at the deadline is given up (its thread is left to end
/// on its own), so no registry holds the audit longer than `limit`.
struct Deadlines {
    client: Arc<RegistryClient>,
    limit: Duration,
    by_registry: Mutex<BTreeMap<String, Instant>>,
}

impl Deadlines {
    fn new(client: &Arc<RegistryClient>) -> Deadlines {
        Deadlines {
            client: client.clone(),
            limit: client.options().deadline,
            by_registry: Mutex::new(BTreeMap::new()),
        }
    }

    fn gave_up(&self, registry: &str) -> String {
        format!(
            "registry {registry} did not answer within {} s (the audit's deadline per registry, REPRO_REGISTRY_TIMEOUT)",
            self.limit.as_secs()
        )
    }

    /// `f` on the client, within what is left of `registry`'s deadline.
    fn call<T: Send + 'static>(
        &self,
        registry: &str,
        f: impl FnOnce(&RegistryClient) -> Result<T, RegistryError> + Send + 'static,
    ) -> Result<T, String> {
        let deadline = match self.by_registry.lock() {
            Ok(mut m) => *m
                .entry(registry.to_string())
                .or_insert_with(|| Instant::now() + self.limit),
            Err(_) => Instant::now() + self.limit,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.gave_up(registry));
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let client = self.client.clone();
        std::thread::spawn(move || {
            let _ = tx.send(f(&client));
        });
        match rx.recv_timeout(left) {
            Ok(r) => r.map_err(message),
            Err(_) => Err(self.gave_up(registry)),
        }
    }
}

impl AuditRequest {
    /// The runs with the archives recorded for them, and the default bounds (`repro audit`'s).
    pub fn of(
        store: &crate::store::Store,
        runs: Vec<Run>,
    ) -> Result<AuditRequest, crate::store::StoreError> {
        let mut archives = Vec::new();
        for r in &runs {
            archives.extend(store.archives(&r.id)?);
        }
        Ok(AuditRequest {
            runs,
            archives,
            deep: false,
            jobs: DEFAULT_JOBS,
            tag_page_size: DEFAULT_TAG_PAGE_SIZE,
            max_tag_pages: DEFAULT_MAX_TAG_PAGES,
            max_tags: DEFAULT_MAX_TAGS,
        })
    }
}

/// [`audit`], naming from `store` the run recorded with the digest a moved tag points at now.
pub fn audit_in(
    client: &Arc<RegistryClient>,
    store: &crate::store::Store,
    req: &AuditRequest,
) -> AuditReport {
    let mut used_by = |d: &str, except: &[String]| -> Option<String> {
        store.run_using_digest(d, except).ok().flatten()
    };
    audit(client, req, &mut used_by)
}

/// Audits the runs. `used_by(digest, except)` names another run recorded with that digest.
pub fn audit(
    client: &Arc<RegistryClient>,
    req: &AuditRequest,
    used_by: &mut dyn FnMut(&str, &[String]) -> Option<String>,
) -> AuditReport {
    let client = &Deadlines::new(client);
    let (groups, unpinned) = group_runs(&req.runs);
    let tags = Listings::read(client, req, &groups);
    let mut archives_by_run: BTreeMap<&str, Vec<&ArchiveRecord>> = BTreeMap::new();
    for a in &req.archives {
        archives_by_run
            .entry(a.run_id.as_str())
            .or_default()
            .push(a);
    }
    let mut rows = parallel(&groups, req.jobs, |g| {
        audit_group(client, req, g, tags.of(&g.repo), &archives_by_run)
    });
    // The store is not shared between threads: who uses the new digest is asked afterwards.
    for row in &mut rows {
        if let Some(t) = row.tag.as_mut().filter(|t| t.moved) {
            if let Some(d) = &t.digest {
                t.used_by = used_by(d, &row.runs);
            }
        }
    }
    AuditReport { rows, unpinned }
}

/// The runs with a pinned image, grouped by repository and digest; the others are unpinned.
fn group_runs(runs: &[Run]) -> (Vec<Group>, Vec<String>) {
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    let mut unpinned = Vec::new();
    // Thousands of runs share a few hundred references: each is parsed once.
    let mut parsed_refs: BTreeMap<&str, Option<(Reference, String)>> = BTreeMap::new();
    for run in runs {
        let Some(image) = &run.image else { continue };
        let Some(digest) = &image.digest else {
            unpinned.push(run.id.clone());
            continue;
        };
        let parsed = parsed_refs
            .entry(image.reference.as_str())
            .or_insert_with(|| {
                reference::parse_normalized(&image.reference).ok().map(|p| {
                    let name = p.name();
                    (p, name)
                })
            });
        let Some((parsed, name)) = parsed else {
            unpinned.push(run.id.clone());
            continue;
        };
        let group = groups
            .entry((name.clone(), digest.clone()))
            .or_insert_with(|| {
                let mut repo = parsed.clone();
                repo.tag = None;
                repo.digest = None;
                Group {
                    repo,
                    reference: image.reference.clone(),
                    tag: parsed.tag.clone(),
                    digest: digest.clone(),
                    index_digest: image.index_digest.clone(),
                    runs: Vec::new(),
                }
            });
        group.runs.push(run.id.clone());
    }
    (groups.into_values().collect(), unpinned)
}

/// The tag listings of every repository the groups use.
struct Listings {
    /// Repository name → its tags.
    by_repo: BTreeMap<String, RepoTags>,
    none: RepoTags,
}

impl Listings {
    /// Lists each repository's tags once, then looks their digests up in parallel.
    fn read(client: &Deadlines, req: &AuditRequest, groups: &[Group]) -> Listings {
        let mut repos: BTreeMap<String, Reference> = BTreeMap::new();
        for g in groups {
            repos.entry(g.repo.name()).or_insert_with(|| g.repo.clone());
        }
        let repo_list: Vec<Reference> = repos.into_values().collect();
        let listings = parallel(&repo_list, req.jobs, |r| {
            let (repo, size, pages) = (r.clone(), req.tag_page_size, req.max_tag_pages);
            client.call(&r.domain, move |c| c.tags(&repo, size, pages))
        });
        let mut tag_jobs: Vec<(usize, String)> = Vec::new();
        let mut repo_tags: Vec<RepoTags> = Vec::new();
        for (i, l) in listings.into_iter().enumerate() {
            let mut t = RepoTags::default();
            match l {
                Ok(list) => {
                    t.truncated = list.truncated || list.tags.len() > req.max_tags;
                    t.complete = !t.truncated;
                    for tag in list.tags.into_iter().take(req.max_tags) {
                        tag_jobs.push((i, tag));
                    }
                }
                Err(e) => t.error = Some(e),
            }
            repo_tags.push(t);
        }
        let tag_digests = parallel(&tag_jobs, req.jobs, |(i, tag)| {
            let (repo, tag) = (repo_list[*i].clone(), tag.clone());
            client.call(&repo.domain.clone(), move |c| c.tag_digest(&repo, &tag))
        });
        for ((i, tag), d) in tag_jobs.iter().zip(tag_digests) {
            match d {
                Ok(Some(d)) => {
                    let t = &mut repo_tags[*i];
                    t.by_tag.insert(tag.clone(), d.to_string());
                    t.by_digest
                        .entry(d.to_string())
                        .or_default()
                        .push(tag.clone());
                }
                Ok(None) => {}
                Err(e) => {
                    repo_tags[*i].complete = false;
                    repo_tags[*i].error.get_or_insert(e);
                }
            }
        }
        Listings {
            by_repo: repo_list.iter().map(|r| r.name()).zip(repo_tags).collect(),
            none: RepoTags::default(),
        }
    }

    fn of(&self, repo: &Reference) -> &RepoTags {
        self.by_repo.get(&repo.name()).unwrap_or(&self.none)
    }
}

/// Audits one image: are its digests still served, where its tag points, which tags point at
/// it, and the health of its archived copies.
fn audit_group(
    client: &Deadlines,
    req: &AuditRequest,
    g: &Group,
    t: &RepoTags,
    archives_by_run: &BTreeMap<&str, Vec<&ArchiveRecord>>,
) -> AuditRow {
    let mut row = AuditRow {
        runs: g.runs.clone(),
        reference: g.reference.clone(),
        digest: g.digest.clone(),
        index_digest: g.index_digest.clone(),
        status: Availability::Unknown,
        manifest_present: None,
        index_present: None,
        tag: None,
        tags_now: Vec::new(),
        tags_truncated: t.truncated,
        archives: Vec::new(),
        error: None,
    };
    let present = |d: &str| -> Result<bool, String> {
        // A tag that the listing just looked up points at `d`: the registry serves it, and
        // the `HEAD` by digest would only repeat that answer (half the requests of an
        // audit where every digest is still tagged).
        if t.by_digest.contains_key(d) {
            return Ok(true);
        }
        let digest = Digest::parse(d).map_err(|e| e.to_string())?;
        let repo = g.repo.clone();
        client.call(&g.repo.domain, move |c| c.has_manifest(&repo, &digest))
    };
    let m = present(&g.digest);
    let i = g.index_digest.as_deref().map(present);
    let mut errors: Vec<String> = Vec::new();
    match &m {
        Ok(p) => row.manifest_present = Some(*p),
        Err(e) => errors.push(e.clone()),
    }
    match &i {
        Some(Ok(p)) => row.index_present = Some(*p),
        Some(Err(e)) => errors.push(e.clone()),
        None => {}
    }
    if let Some(tag) = &g.tag {
        match tag_now(client, g, t, tag) {
            Ok(now) => row.tag = Some(now),
            Err(e) => errors.push(e),
        }
    }
    let mut now: BTreeSet<String> = BTreeSet::new();
    for d in std::iter::once(&g.digest).chain(g.index_digest.iter()) {
        now.extend(t.by_digest.get(d).cloned().unwrap_or_default());
    }
    row.tags_now = now.into_iter().collect();
    if let Some(e) = &t.error {
        errors.push(format!("tags: {e}"));
    }

    // Archives of any of the runs, each place once.
    let mut seen: BTreeSet<(ArchiveKind, String)> = BTreeSet::new();
    for run in &g.runs {
        for a in archives_by_run.get(run.as_str()).into_iter().flatten() {
            if seen.insert((a.kind, a.location.clone())) {
                row.archives.push(check_archive(client, a, g, req.deep));
            }
        }
    }
    let known = m.is_ok() && i.as_ref().is_none_or(|r| r.is_ok());
    row.status = availability(&row, known);
    if !errors.is_empty() {
        row.error = Some(errors.join("; "));
    }
    row
}

/// Where the recorded tag points now: from the listing, or asked when it was cut short.
fn tag_now(client: &Deadlines, g: &Group, t: &RepoTags, tag: &str) -> Result<TagNow, String> {
    let want = g.index_digest.as_deref().unwrap_or(&g.digest);
    // The listing already looked every tag up; ask again only when it was cut short.
    let listed = match t.by_tag.get(tag) {
        Some(d) => Some(Ok(Some(d.clone()))),
        None if t.complete => Some(Ok(None)),
        None => None,
    };
    let now = listed.unwrap_or_else(|| {
        let (repo, tag) = (g.repo.clone(), tag.to_string());
        client
            .call(&g.repo.domain, move |c| c.tag_digest(&repo, &tag))
            .map(|d| d.map(|d| d.to_string()))
    })?;
    Ok(TagNow {
        tag: tag.to_string(),
        moved: now.as_deref() != Some(want),
        digest: now,
        used_by: None,
    })
}

/// The row's status from the registry's answers (`known`: every presence question answered)
/// and its archives.
fn availability(row: &AuditRow, known: bool) -> Availability {
    let archived = row.archives.iter().any(|a| a.intact);
    let gone = row.manifest_present == Some(false) || row.index_present == Some(false);
    if gone {
        if archived {
            Availability::Archived
        } else {
            Availability::Missing
        }
    } else if known {
        Availability::Present
    } else if archived {
        Availability::Archived
    } else {
        Availability::Unknown
    }
}

fn check_archive(client: &Deadlines, a: &ArchiveRecord, g: &Group, deep: bool) -> ArchiveHealth {
    let platforms: Vec<String> = if g.index_digest.is_some() {
        vec![g.digest.clone()]
    } else {
        Vec::new()
    };
    let top = g.index_digest.clone().unwrap_or_else(|| g.digest.clone());
    match a.kind {
        ArchiveKind::OciLayout => {
            archive::check_layout(Path::new(&a.location), &top, &platforms, deep)
        }
        ArchiveKind::Registry => {
            let mut problems = Vec::new();
            match reference::parse_normalized(&a.location) {
                Err(e) => problems.push(e.to_string()),
                Ok(dst) => {
                    for d in std::iter::once(&top).chain(platforms.iter()) {
                        let found = Digest::parse(d).map_err(|e| e.to_string()).and_then(|dd| {
                            let repo = dst.clone();
                            client.call(&dst.domain, move |c| c.has_manifest(&repo, &dd))
                        });
                        match found {
                            Ok(true) => {}
                            Ok(false) => problems.push(format!("{d} is not in {}", a.location)),
                            Err(e) => problems.push(e),
                        }
                    }
                }
            }
            ArchiveHealth {
                kind: a.kind.as_str().into(),
                location: a.location.clone(),
                intact: problems.is_empty(),
                problems,
            }
        }
    }
}

fn message(e: RegistryError) -> String {
    e.to_string()
}
