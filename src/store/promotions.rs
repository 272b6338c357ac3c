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

/// Adds a move carried by an imported run (`repro import`) unless the trail has it already
/// (the same run, repository, channel, digest, kind and time); `true` when added.
pub(crate) fn import_promotion_in(
    conn: &rusqlite::Connection,
    p: &Promotion,
) -> rusqlite::Result<bool> {
    let has: Option<i64> = conn
        .prepare_cached(
            "SELECT 1 FROM promotions WHERE run_id IS ?1 AND repository = ?2 AND channel = ?3
             AND digest = ?4 AND kind = ?5 AND promoted_at = ?6",
        )?
        .query_row(
            params![
                p.run_id,
                p.repository,
                p.channel,
                p.digest,
                p.kind.as_str(),
                p.promoted_at
            ],
            |r| r.get(0),
        )
        .optional()?;
    if has.is_some() {
        return Ok(false);
    }
    conn.prepare_cached(
        "INSERT INTO promotions (run_id, repository, channel, digest, previous, kind, promoted_at, user, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        p.run_id,
        p.repository,
        p.channel,
        p.digest,
        p.previous,
        p.kind.as_str(),
        p.promoted_at,
        p.user,
        p.note
    ])?;
    Ok(true)
}

impl Store {
    /// The moves that pointed a channel at this run's digest, oldest first (for `repro export`).
    pub fn promotions_of_run(&self, run_id: &str) -> Result<Vec<Promotion>> {
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM promotions WHERE run_id = ?1 ORDER BY promoted_at, id"
            ))
            .map_err(self.sql_err("read the promotions"))?;
        st.query_map([run_id], promotion)
            .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.sql_err("read the promotions"))
    }

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
                     ORDER BY promoted_at DESC, id DESC LIMIT 1"
                ),
                params![repository, channel],
                promotion,
            )
            .optional()
            .map_err(self.sql_err("read the promotions"))
    }

    /// The trail, oldest first (by time, then as recorded: an imported move takes its place in
    /// time), optionally of some repositories, one channel, since a time.
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
                 ORDER BY promoted_at, id"
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

#[cfg(test)]
mod tests {
    use super::*;

    fn moved(digest: char, at: &str) -> Promotion {
        Promotion {
            id: 0,
            run_id: None,
            repository: "r.example/team/app".into(),
            channel: "prod".into(),
            digest: format!("sha256:{}", digest.to_string().repeat(64)),
            previous: None,
            kind: PromotionKind::Promote,
            promoted_at: at.into(),
            user: "u".into(),
            note: None,
        }
    }

    #[test]
    fn an_imported_older_move_takes_its_place_in_time_and_comes_once() {
        let mut s = Store::open_in_memory().unwrap();
        s.record_promotion(&moved('b', "2026-12-02T10:00:00.000Z"))
            .unwrap();
        // Imported afterwards, but made earlier elsewhere: not the channel's last move.
        let older = moved('a', "2026-12-01T10:00:00.000Z");
        assert!(import_promotion_in(s.conn(), &older).unwrap());
        assert!(!import_promotion_in(s.conn(), &older).unwrap(), "once");
        let last = s
            .last_promotion("r.example/team/app", "prod")
            .unwrap()
            .unwrap();
        assert!(last.digest.ends_with('b'), "{last:?}");
        let trail: Vec<String> = s
            .promotions(&[], None, None)
            .unwrap()
            .into_iter()
            .map(|p| p.promoted_at)
            .collect();
        assert_eq!(
            trail,
            ["2026-12-01T10:00:00.000Z", "2026-12-02T10:00:00.000Z"]
        );
    }
}
