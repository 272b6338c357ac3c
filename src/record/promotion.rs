//! A promotion: a channel tag (`staging`, `prod`) of an image repository pointed at a digest by
//! `repro promote` (or back by `repro promote --rollback`), as the trail records it.

use serde::{Deserialize, Serialize};

/// Whether the tag was moved forward to a run's digest or back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromotionKind {
    /// `repro promote ID --tag CHANNEL`.
    Promote,
    /// `repro promote --rollback CHANNEL`.
    Rollback,
}

impl PromotionKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            PromotionKind::Promote => "promote",
            PromotionKind::Rollback => "rollback",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<PromotionKind> {
        match s {
            "promote" => Some(PromotionKind::Promote),
            "rollback" => Some(PromotionKind::Rollback),
            _ => None,
        }
    }
}

/// One recorded move of a channel tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotion {
    /// The trail's own sequence number.
    pub id: i64,
    /// The run whose digest the tag now holds (none for a rollback to a digest no run used).
    pub run_id: Option<String>,
    /// The repository, normalised (`registry/path`).
    pub repository: String,
    /// The channel tag.
    pub channel: String,
    /// The digest written under the tag (an index's for a multi-platform image).
    pub digest: String,
    /// The digest the tag held before (none: the tag was new).
    pub previous: Option<String>,
    pub kind: PromotionKind,
    /// RFC 3339, UTC.
    pub promoted_at: String,
    /// Who moved it (the user name of the process).
    pub user: String,
    /// `--note`.
    pub note: Option<String>,
}
