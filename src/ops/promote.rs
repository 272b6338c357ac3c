//! `repro promote`: build once, tag many. A run's exact manifest (its index when the run resolved
//! a multi-platform index, so every platform moves together) is written under channel tags of the
//! same repository through the registry API — no pull, no rebuild — then the tag is resolved again
//! and must give that digest; each move is recorded in the trail (`promotions`, migration 21).
//! `--rollback` points a channel back at the digest it held before its last move (or at a given
//! run's). `channels` compares each channel tag now with the trail (drift: moved outside repro);
//! `notes` renders the trail with the runs behind it as release notes.

use crate::capture::image::digest::Digest;
use crate::capture::image::reference::{parse_normalized, Reference};
use crate::capture::image::registry::{RegistryClient, RegistryError};
use crate::error::Hinted;
use crate::ops::Events;
use crate::record::promotion::{Promotion, PromotionKind};
use crate::record::{ExecMode, ResolvedBy, Run};
use crate::store::{Store, StoreError};

/// Why a promotion, rollback or channel report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A flag is malformed (a usage error).
    #[error("{message}")]
    Usage { message: String, hint: String },
    /// The run's image cannot be promoted (none, unpinned, only declared).
    #[error("run {id}: {why}")]
    NotPromotable {
        id: String,
        why: String,
        hint: String,
    },
    /// The registry no longer has the run's digest.
    #[error("{repository} no longer has {digest} (the image of run {id})")]
    DigestGone {
        id: String,
        repository: String,
        digest: String,
    },
    /// After the PUT the tag resolves to something else.
    #[error("{repository}:{channel} resolves to {got} after the push, not {want}")]
    NotMoved {
        repository: String,
        channel: String,
        want: String,
        got: String,
    },
    /// Nothing recorded to roll back to.
    #[error("{repository}:{channel} has {why}")]
    NoRollback {
        repository: String,
        channel: String,
        why: String,
    },
}

impl Hinted for PromoteError {
    fn hint(&self) -> Option<String> {
        match self {
            PromoteError::Store(e) => e.hint(),
            PromoteError::Registry(e) => e.hint(),
            PromoteError::Usage { hint, .. } | PromoteError::NotPromotable { hint, .. } => {
                Some(hint.clone())
            }
            PromoteError::DigestGone { id, .. } => Some(format!(
                "push it back from an archive (`repro image archive {id}` made one?) and see `repro audit {id}`"
            )),
            PromoteError::NotMoved { .. } => Some(
                "another client moved the tag at the same time, or the registry rewrote the manifest; run `repro channels` and try again".into(),
            ),
            PromoteError::NoRollback { .. } => Some(
                "name the run whose digest the channel should hold: --to ID".into(),
            ),
        }
    }
    fn is_usage(&self) -> bool {
        matches!(self, PromoteError::Usage { .. })
    }
}

fn usage(message: impl Into<String>, hint: impl Into<String>) -> PromoteError {
    PromoteError::Usage {
        message: message.into(),
        hint: hint.into(),
    }
}

/// Checks a channel tag: the OCI tag grammar, and no `latest` unless allowed.
pub fn check_channel(tag: &str, allow_latest: bool) -> Result<(), PromoteError> {
    if !crate::capture::image::reference::is_tag(tag) {
        return Err(usage(
            format!("'{tag}' is not a tag"),
            "a tag is up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-' (e.g. staging, prod)",
        ));
    }
    if tag == "latest" && !allow_latest {
        return Err(usage(
            "refusing to promote to `latest`: it is the tag every unpinned pull takes",
            "name a channel (staging, prod), or pass --allow-latest",
        ));
    }
    Ok(())
}

/// The repository of a reference as the trail names it (`registry/path`).
fn repository(r: &Reference) -> String {
    format!("{}/{}", r.domain, r.path)
}

/// The repository and digest a run's image can be promoted from, or why not.
pub fn promotable(run: &Run) -> Result<(Reference, Digest), PromoteError> {
    let refuse = |why: &str, hint: &str| PromoteError::NotPromotable {
        id: run.id.clone(),
        why: why.to_string(),
        hint: hint.to_string(),
    };
    let Some(img) = &run.image else {
        return Err(refuse(
            "it recorded no image",
            "promote a run that ran an image (repro run --image …)",
        ));
    };
    let declared = img.resolved_by == ResolvedBy::Pinned && run.exec.mode == ExecMode::Host;
    if img.resolved_by == ResolvedBy::Unpinned || img.digest.is_none() {
        return Err(refuse(
            "its image was never pinned to a digest",
            "promote a run whose image was resolved against its registry",
        ));
    }
    if declared {
        return Err(refuse(
            "its image was only declared (a digest written on a --host run, never resolved against the registry or run)",
            "promote a run that resolved or ran the image",
        ));
    }
    let r = parse_normalized(&img.reference).map_err(|e| {
        refuse(
            &format!("its image reference does not parse: {e}"),
            "promote a run with a valid image reference",
        )
    })?;
    let d = img
        .index_digest
        .as_deref()
        .or(img.digest.as_deref())
        .unwrap_or_default();
    let d = Digest::parse(d).map_err(|e| {
        refuse(
            &format!("its recorded digest does not parse: {e}"),
            "promote another run",
        )
    })?;
    Ok((r, d))
}

/// What `promote` did for one channel.
#[derive(Debug, Clone)]
pub struct Moved {
    /// The recorded move.
    pub promotion: Promotion,
    /// Whether the tag already held the digest (the PUT was still made, and recorded).
    pub unchanged: bool,
}

/// Writes `digest`'s manifest of `r`'s repository under `channel`, checks the tag resolves to
/// it, and records the move.
#[allow(clippy::too_many_arguments)]
fn move_tag(
    store: &mut Store,
    client: &RegistryClient,
    r: &Reference,
    digest: &Digest,
    channel: &str,
    run_id: Option<String>,
    kind: PromotionKind,
    note: Option<&str>,
) -> Result<Moved, PromoteError> {
    let repo = repository(r);
    let previous = client.tag_digest(r, channel)?;
    let Some(raw) = client.manifest_by_digest(r, digest)? else {
        return Err(PromoteError::DigestGone {
            id: run_id.clone().unwrap_or_default(),
            repository: repo,
            digest: digest.to_string(),
        });
    };
    client.put_manifest(r, channel, &raw.media_type, &raw.body)?;
    let now = client.tag_digest(r, channel)?;
    if now.as_ref() != Some(digest) {
        return Err(PromoteError::NotMoved {
            repository: repo,
            channel: channel.to_string(),
            want: digest.to_string(),
            got: now.map_or("nothing".into(), |d| d.to_string()),
        });
    }
    let unchanged = previous.as_ref() == Some(digest);
    let p = store.record_promotion(&Promotion {
        id: 0,
        run_id,
        repository: repo,
        channel: channel.to_string(),
        digest: digest.to_string(),
        previous: previous.map(|d| d.to_string()),
        kind,
        promoted_at: crate::capture::host::rfc3339(crate::capture::host::now()),
        user: crate::capture::host::username(),
        note: note.map(str::to_string),
    })?;
    Ok(Moved {
        promotion: p,
        unchanged,
    })
}

/// `repro promote ID --tag CHANNEL…`: every channel checked before the first is moved.
pub fn promote(
    ev: &dyn Events,
    store: &mut Store,
    client: &RegistryClient,
    run_id: &str,
    channels: &[String],
    allow_latest: bool,
    note: Option<&str>,
) -> Result<Vec<Moved>, PromoteError> {
    if channels.is_empty() {
        return Err(usage(
            "name the channel tag to promote to",
            "e.g. repro promote ID --tag staging",
        ));
    }
    for c in channels {
        check_channel(c, allow_latest)?;
    }
    let run = store.get_run(run_id)?;
    let (r, digest) = promotable(&run)?;
    let mut out = Vec::new();
    for c in channels {
        let m = move_tag(
            store,
            client,
            &r,
            &digest,
            c,
            Some(run.id.clone()),
            PromotionKind::Promote,
            note,
        )?;
        ev.status(&format!(
            "{}:{c} → {digest} (run {}{})",
            repository(&r),
            run.id,
            match (&m.promotion.previous, m.unchanged) {
                (_, true) => ", unchanged".to_string(),
                (Some(p), false) => format!(", was {p}"),
                (None, false) => ", a new tag".to_string(),
            }
        ));
        out.push(m);
    }
    Ok(out)
}

/// What `repro promote --rollback CHANNEL --repo REF [--to ID]` asks.
#[derive(Debug, Clone, Default)]
pub struct Rollback<'a> {
    /// The image repository, as in the runs.
    pub repo: &'a str,
    /// The channel tag.
    pub channel: &'a str,
    /// The run whose digest the channel should hold (else: the one before its last move).
    pub to: Option<&'a str>,
    pub allow_latest: bool,
    pub note: Option<&'a str>,
}

/// `repro promote --rollback CHANNEL --repo REF [--to ID]`.
pub fn rollback(
    ev: &dyn Events,
    store: &mut Store,
    client: &RegistryClient,
    req: &Rollback<'_>,
) -> Result<Moved, PromoteError> {
    let Rollback {
        repo,
        channel,
        to,
        allow_latest,
        note,
    } = *req;
    check_channel(channel, allow_latest)?;
    let r = parse_normalized(repo).map_err(|e| {
        usage(
            format!("--repo '{repo}' is not an image repository: {e}"),
            "name the repository as written in the runs, e.g. --repo registry.example.com/team/trainer",
        )
    })?;
    let name = repository(&r);
    let (digest, run_id) = match to {
        Some(id) => {
            let run = store.get_run(id)?;
            let (rr, d) = promotable(&run)?;
            if repository(&rr) != name {
                return Err(usage(
                    format!("run {} used {}, not {name}", run.id, repository(&rr)),
                    "roll back to a run of the same repository",
                ));
            }
            (d, Some(run.id))
        }
        None => {
            let last =
                store
                    .last_promotion(&name, channel)?
                    .ok_or_else(|| PromoteError::NoRollback {
                        repository: name.clone(),
                        channel: channel.to_string(),
                        why: "no recorded promotion".into(),
                    })?;
            let prev = last.previous.ok_or_else(|| PromoteError::NoRollback {
                repository: name.clone(),
                channel: channel.to_string(),
                why: "no digest before its last promotion (the tag was new)".into(),
            })?;
            let d = Digest::parse(&prev).map_err(|e| usage(e.to_string(), "report a bug"))?;
            let run = store.run_using_digest(&prev, &[])?;
            (d, run)
        }
    };
    let m = move_tag(
        store,
        client,
        &r,
        &digest,
        channel,
        run_id,
        PromotionKind::Rollback,
        note,
    )?;
    ev.status(&format!(
        "{name}:{channel} rolled back → {digest}{}",
        m.promotion
            .previous
            .as_deref()
            .map(|p| format!(" (was {p})"))
            .unwrap_or_default()
    ));
    Ok(m)
}

/// A channel tag now, beside its last recorded move.
#[derive(Debug, Clone)]
pub struct ChannelState {
    pub repository: String,
    pub channel: String,
    /// What the registry says now (`None`: the tag is gone).
    pub now: Option<String>,
    /// The last recorded move.
    pub last: Promotion,
    /// The run whose image is the digest now, if any.
    pub run_now: Option<String>,
    /// Why the registry could not be asked.
    pub error: Option<String>,
}

impl ChannelState {
    /// The tag was moved outside repro (or removed) since its last recorded move.
    pub fn drifted(&self) -> bool {
        self.error.is_none() && self.now.as_deref() != Some(self.last.digest.as_str())
    }
}

/// Every channel of the trail (of `repos` when given), asked of the registry now.
pub fn channels(
    store: &Store,
    client: &RegistryClient,
    repos: &[String],
) -> Result<Vec<ChannelState>, PromoteError> {
    let mut wanted = Vec::new();
    for r in repos {
        let parsed = parse_normalized(r).map_err(|e| {
            usage(
                format!("'{r}' is not an image repository: {e}"),
                "name it as in the runs, e.g. registry.example.com/team/trainer",
            )
        })?;
        wanted.push(repository(&parsed));
    }
    let mut last: std::collections::BTreeMap<(String, String), Promotion> = Default::default();
    for p in store.promotions(&wanted, None, None)? {
        last.insert((p.repository.clone(), p.channel.clone()), p);
    }
    let mut out = Vec::new();
    for ((repo, channel), p) in last {
        let (now, error) = match parse_normalized(&repo) {
            Ok(r) => match client.tag_digest(&r, &channel) {
                Ok(d) => (d.map(|d| d.to_string()), None),
                Err(e) => (None, Some(crate::error::report(e))),
            },
            Err(e) => (None, Some(e.to_string())),
        };
        let run_now = match &now {
            Some(d) => store.run_using_digest(d, &[])?,
            None => None,
        };
        out.push(ChannelState {
            repository: repo,
            channel,
            now,
            last: p,
            run_now,
            error,
        });
    }
    Ok(out)
}

/// One entry of the release notes: a move and the run behind it.
#[derive(Debug, Clone)]
pub struct NoteEntry {
    pub promotion: Promotion,
    /// The run behind the digest (deleted runs: none).
    pub run: Option<Run>,
    /// Its metrics' last values.
    pub metrics: Vec<crate::record::metrics::MetricSummary>,
}

/// The trail (newest first) with the runs behind it, for `repro notes`.
pub fn notes(
    store: &Store,
    channel: Option<&str>,
    since: Option<&str>,
) -> Result<Vec<NoteEntry>, PromoteError> {
    let mut out = Vec::new();
    for p in store.promotions(&[], channel, since)?.into_iter().rev() {
        let run = match &p.run_id {
            Some(id) => match store.get_run(id) {
                Ok(r) => Some(r),
                Err(StoreError::UnknownRun(_)) => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        let metrics = match &run {
            Some(r) => store.metric_summaries(&r.id)?,
            None => Vec::new(),
        };
        out.push(NoteEntry {
            promotion: p,
            run,
            metrics,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_tags_follow_the_grammar_and_latest_needs_allowing() {
        for ok in ["staging", "prod", "v1.2.3", "_x", "rc-1"] {
            assert!(check_channel(ok, false).is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"x".repeat(129)] {
            assert!(check_channel(bad, false).is_err(), "{bad}");
        }
        assert!(check_channel("latest", false).is_err());
        assert!(check_channel("latest", true).is_ok());
    }
}
