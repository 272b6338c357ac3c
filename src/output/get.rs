//! Rendering of `repro get`: one line per file, or the JSON document.

use crate::ops::get::{GetResult, Placed};

/// `written   PATH` lines (`unchanged`, `replaced`), paths escaped for the terminal.
pub fn text(res: &GetResult) -> String {
    let mut s = String::new();
    for f in &res.files {
        let how = match f.placed {
            Placed::Written => "written",
            Placed::Unchanged => "unchanged",
            Placed::Replaced => "replaced",
        };
        s.push_str(&format!(
            "{how:<9}  {}\n",
            crate::sanitize::escape(&f.path.display().to_string())
        ));
    }
    s
}

/// `{"schema_version":1,"files":[{"path","output","sha256","bytes","placed","symlink"}],
/// "skipped":[{"output","why"}]}`.
pub fn json(res: &GetResult) -> String {
    let skipped: Vec<serde_json::Value> = res
        .skipped
        .iter()
        .map(|(o, why)| serde_json::json!({"output": o, "why": why}))
        .collect();
    let doc = serde_json::json!({
        "schema_version": 1,
        "files": res.files,
        "skipped": skipped,
    });
    format!("{doc}\n")
}
