//! Repeat groups: the re-runs one `repro rerun ID --repeat N` made, so later commands (`repro
//! diff`) find the repeats of a run and the spread of its metrics.

use rusqlite::params;

use super::{Result, Store};

impl Store {
    /// Records `run_id` as repeat number `seq` (from 1) of `original` in `group`.
    pub fn add_repeat(&self, group: &str, original: &str, run_id: &str, seq: u32) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO run_repeats (run_id, group_id, original, seq) VALUES (?1, ?2, ?3, ?4)",
                params![run_id, group, original, seq],
            )
            .map_err(self.sql_err("record a repeat"))?;
        Ok(())
    }

    /// The latest repeat group of `original` (the one whose first repeat is newest) as
    /// `(group id, run ids in order)`; `None` when the run was never repeated.
    pub fn latest_repeats(&self, original: &str) -> Result<Option<(String, Vec<String>)>> {
        let fail = self.sql_err("read repeats");
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT group_id, run_id FROM run_repeats WHERE original = ?1 AND group_id =
                   (SELECT group_id FROM run_repeats WHERE original = ?1
                    ORDER BY group_id DESC LIMIT 1)
                 ORDER BY seq",
            )
            .map_err(&fail)?;
        let rows = stmt
            .query_map(params![original], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(&fail)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(&fail)?;
        Ok(rows
            .first()
            .map(|(g, _)| g.clone())
            .map(|g| (g, rows.into_iter().map(|(_, id)| id).collect())))
    }
}

#[cfg(test)]
mod tests {
    use crate::store::tests::sample_run;
    use crate::store::Store;

    #[test]
    fn the_latest_group_of_a_run_is_found_in_order() {
        let mut s = Store::open_in_memory().unwrap();
        for id in ["orig", "r1", "r2", "r3", "r4"] {
            s.insert_run(&sample_run(id)).unwrap();
        }
        assert_eq!(s.latest_repeats("orig").unwrap(), None);
        s.add_repeat("g1", "orig", "r1", 1).unwrap();
        s.add_repeat("g2", "orig", "r4", 2).unwrap();
        s.add_repeat("g2", "orig", "r3", 1).unwrap();
        let (g, ids) = s.latest_repeats("orig").unwrap().unwrap();
        assert_eq!(g, "g2");
        assert_eq!(ids, vec!["r3", "r4"]);
        assert_eq!(s.latest_repeats("r1").unwrap(), None);
        // A run is a repeat of one group only.
        assert!(s.add_repeat("g3", "orig", "r1", 1).is_err());
    }
}
