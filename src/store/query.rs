//! Run filters for `ls` (and `export`, `gc`), compiled to one indexed SQL query.

use rusqlite::types::Value;

use crate::record::Status;

/// Which runs to list; all set filters combine with AND.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Substring of the image reference.
    pub image: Option<String>,
    /// Prefix of the platform or index digest (`sha256:` optional).
    pub digest: Option<String>,
    /// Prefix of the commit SHA.
    pub code: Option<String>,
    /// Exact branch name.
    pub branch: Option<String>,
    /// Dataset name and optional version.
    pub dataset: Option<(String, Option<String>)>,
    /// Stored statuses to include (lost runs are stored as `running`; the caller post-filters).
    pub statuses: Vec<Status>,
    /// Only runs started at or after this RFC 3339 time.
    pub since: Option<String>,
    /// Only runs started before this RFC 3339 time.
    pub until: Option<String>,
    /// Annotation params that must match exactly.
    pub params: Vec<(String, String)>,
    /// Tags that must all be present.
    pub tags: Vec<String>,
    /// Only re-runs of this id.
    pub rerun_of: Option<String>,
    /// Host name, exact.
    pub host: Option<String>,
    /// Oldest first instead of newest first.
    pub oldest_first: bool,
    /// At most this many runs.
    pub limit: Option<u64>,
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

impl RunFilter {
    /// Builds `SELECT <columns> FROM runs WHERE … ORDER BY … LIMIT …` and its bound values.
    pub fn to_sql(&self, columns: &str) -> (String, Vec<Value>) {
        let mut wh: Vec<String> = Vec::new();
        let mut args: Vec<Value> = Vec::new();
        let bind = |v: Value, args: &mut Vec<Value>| {
            args.push(v);
            format!("?{}", args.len())
        };
        if let Some(img) = &self.image {
            let p = bind(Value::Text(format!("%{}%", like_escape(img))), &mut args);
            wh.push(format!("image_ref LIKE {p} ESCAPE '\\'"));
        }
        if let Some(d) = &self.digest {
            let d = d.to_ascii_lowercase();
            let d = if d.contains(':') {
                d
            } else {
                format!("sha256:{d}")
            };
            let lo = bind(Value::Text(d.clone()), &mut args);
            let hi = bind(Value::Text(format!("{d}\u{7f}")), &mut args);
            wh.push(format!(
                "((image_digest >= {lo} AND image_digest < {hi}) OR (image_index_digest >= {lo} AND image_index_digest < {hi}))"
            ));
        }
        if let Some(c) = &self.code {
            let c = c.to_ascii_lowercase();
            let lo = bind(Value::Text(c.clone()), &mut args);
            let hi = bind(Value::Text(format!("{c}\u{7f}")), &mut args);
            wh.push(format!("code_commit >= {lo} AND code_commit < {hi}"));
        }
        if let Some(b) = &self.branch {
            let p = bind(Value::Text(b.clone()), &mut args);
            wh.push(format!("code_branch = {p}"));
        }
        if let Some((name, version)) = &self.dataset {
            let n = bind(Value::Text(name.clone()), &mut args);
            match version {
                Some(v) => {
                    let v = bind(Value::Text(v.clone()), &mut args);
                    wh.push(format!(
                        "id IN (SELECT run_id FROM run_datasets WHERE name = {n} AND (version = {v} OR digest = {v}))"
                    ));
                }
                None => wh.push(format!(
                    "id IN (SELECT run_id FROM run_datasets WHERE name = {n})"
                )),
            }
        }
        if !self.statuses.is_empty() {
            let list: Vec<String> = self
                .statuses
                .iter()
                .map(|s| bind(Value::Text(s.as_str().into()), &mut args))
                .collect();
            wh.push(format!("status IN ({})", list.join(", ")));
        }
        if let Some(s) = &self.since {
            let p = bind(Value::Text(s.clone()), &mut args);
            wh.push(format!("started_at >= {p}"));
        }
        if let Some(u) = &self.until {
            let p = bind(Value::Text(u.clone()), &mut args);
            wh.push(format!("started_at < {p}"));
        }
        for (k, v) in &self.params {
            let k = bind(Value::Text(k.clone()), &mut args);
            let v = bind(Value::Text(v.clone()), &mut args);
            wh.push(format!(
                "id IN (SELECT run_id FROM run_params WHERE key = {k} AND value = {v})"
            ));
        }
        for t in &self.tags {
            let t = bind(Value::Text(t.clone()), &mut args);
            wh.push(format!(
                "id IN (SELECT run_id FROM run_tags WHERE tag = {t})"
            ));
        }
        if let Some(r) = &self.rerun_of {
            let p = bind(Value::Text(r.clone()), &mut args);
            wh.push(format!("rerun_of = {p}"));
        }
        if let Some(h) = &self.host {
            let p = bind(Value::Text(h.clone()), &mut args);
            wh.push(format!("host = {p}"));
        }
        let mut sql = format!("SELECT {columns} FROM runs");
        if !wh.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&wh.join(" AND "));
        }
        // ULIDs sort by time, so ordering by id is ordering by start.
        sql.push_str(if self.oldest_first {
            " ORDER BY id ASC"
        } else {
            " ORDER BY id DESC"
        });
        if let Some(l) = self.limit {
            let p = bind(Value::Integer(l.min(i64::MAX as u64) as i64), &mut args);
            sql.push_str(&format!(" LIMIT {p}"));
        }
        (sql, args)
    }
}
