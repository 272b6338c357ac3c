//! The trail of channel-tag moves (`repro promote`, table `promotions`, migration 21).

use rusqlite::{params, OptionalExtension, Row};

use super::{Result, Store};
use crate::record::promotion::{Promotion, PromotionKind};

const COLUMNS: &str =
    "id, run_id, repository, channel, digest, previous, kind, promoted_at, user, note";

fn promotion(r: &Row<'_>) -> rusqlite::Result<Promotion> {
    let kind: String = r.get(6)?;
    Ok(Promotion {
        id: r.get(0)?,
        run_id: r.get(1)?,
        repository: r.get(2)?,
        channel: r.get(3)?,
        digest: r.get(4)?,
        previous: r.get(5)?,
        kind: PromotionKind::parse(&kind).unwrap_or(PromotionKind::Promote),
        promoted_at: r.get(7)?,
        user: r.get(8)?,
        note: r.get(9)?,
    })
}

impl Store {
    /// Appends a move to the trail; returns it with its sequence number.
    pub fn record_promotion(&mut self, p: &Promotion) -> Result<Promotion> {
        self.conn
            .execute(
                "INSERT INTO promotions (run_id, repository, channel, digest, previous, kind, promoted_at, user, note)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    p.run_id,
                    p.repository,
                    p.channel,
                    p.digest,
                    p.previous,
                    p.kind.as_str(),
                    p.promoted_at,
                    p.user,
                    p.note
                ],
            )
            .map_err(self.sql_err("record the promotion"))?;
        Ok(Promotion {
            id: self.conn.last_insert_rowid(),
            ..p.clone()
        })
    }

    /// The last recorded move of `channel` in `repository`.
    pub fn last_promotion(&self, repository: &str, channel: &str) -> Result<Option<Promotion>> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM promotions WHERE repository = ?1 AND channel = ?2
                     ORDER BY id DESC LIMIT 1"
                ),
                params![repository, channel],
                promotion,
            )
            .optional()
            .map_err(self.sql_err("read the promotions"))
    }

    /// The trail, oldest first, optionally of some repositories, one channel, since a time.
    pub fn promotions(
        &self,
        repositories: &[String],
        channel: Option<&str>,
        since: Option<&str>,
    ) -> Result<Vec<Promotion>> {
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM promotions
                 WHERE (?1 IS NULL OR channel = ?1) AND (?2 IS NULL OR promoted_at >= ?2)
                 ORDER BY id"
            ))
            .map_err(self.sql_err("read the promotions"))?;
        let rows = st
            .query_map(params![channel, since], promotion)
            .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.sql_err("read the promotions"))?;
        Ok(rows
            .into_iter()
            .filter(|p| repositories.is_empty() || repositories.contains(&p.repository))
            .collect())
    }
}
