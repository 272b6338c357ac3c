//! Rendering of `repro which`: per path, a heading line and one line per run that produced or
//! read the content (untrusted text escaped), or the JSON document.

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::ops::which::{Producer, Reader, WhichFile};
use crate::record::Arg;
use crate::sanitize::escape;
use crate::store::kept::human_bytes;

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn inside_text(a: &Arg) -> String {
    escape(&String::from_utf8_lossy(a.as_bytes())).into_owned()
}

/// One run line: `  produced  ID  WHEN  STATUS  NAME  what`.
fn line(
    verb: &str,
    id: &str,
    started: &str,
    status: &str,
    name: Option<&str>,
    what: &str,
    utc: bool,
) -> String {
    format!(
        "  {verb:<8}  {}  {}  {:<9}  {}  {what}\n",
        escape(short(id)),
        super::show_time(started, utc),
        escape(status),
        name.map(escape).unwrap_or("-".into()),
    )
}

fn produced_text(p: &Producer) -> String {
    let mut what = format!("output {}", escape(&p.output));
    if let Some(i) = &p.inside {
        what.push_str(&format!(" → {}", inside_text(i)));
    }
    what.push_str(match p.kept {
        Some(true) => "  (kept)",
        Some(false) => "  (not kept)",
        None => "",
    });
    what
}

fn read_text(r: &Reader) -> String {
    let mut what = format!("dataset {}", escape(&r.dataset));
    if let Some(i) = &r.inside {
        what.push_str(&format!(" → {}", inside_text(i)));
    }
    what
}

/// The text report; `failed` paths are reported by the caller on stderr.
pub fn text(files: &[WhichFile], utc: bool) -> String {
    let mut s = String::new();
    for f in files {
        s.push_str(&format!(
            "{}  ({}, {})\n",
            escape(&f.path.to_string_lossy()),
            f.sha256,
            human_bytes(f.bytes)
        ));
        if !f.known() {
            s.push_str("  no recorded run produced or read this content\n");
        }
        for p in &f.produced_by {
            s.push_str(&line(
                "produced",
                &p.run_id,
                &p.started_at,
                &p.status,
                p.name.as_deref(),
                &produced_text(p),
                utc,
            ));
        }
        for r in &f.read_by {
            s.push_str(&line(
                "read",
                &r.run_id,
                &r.started_at,
                &r.status,
                r.name.as_deref(),
                &read_text(r),
                utc,
            ));
        }
    }
    s
}

/// `{"schema_version":1,"files":[{"path","sha256","bytes","produced_by":[…],"read_by":[…],
/// "error"}]}`: a path that could not be looked up has null digest and size, empty lists and
/// its error; every other has `"error": null`.
pub fn json(files: &[(PathBuf, Result<WhichFile, String>)]) -> String {
    let files: Vec<serde_json::Value> = files
        .iter()
        .map(|(path, r)| {
            let path =
                Arg::from(std::ffi::OsStr::from_bytes(path.as_os_str().as_bytes()).to_os_string());
            match r {
                Ok(f) => serde_json::json!({
                    "path": path,
                    "sha256": f.sha256,
                    "bytes": f.bytes,
                    "produced_by": f.produced_by,
                    "read_by": f.read_by,
                    "error": null,
                }),
                Err(e) => serde_json::json!({
                    "path": path,
                    "sha256": null,
                    "bytes": null,
                    "produced_by": [],
                    "read_by": [],
                    "error": e,
                }),
            }
        })
        .collect();
    let doc = serde_json::json!({"schema_version": 1, "files": files});
    format!("{doc}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> WhichFile {
        WhichFile {
            path: PathBuf::from("m\x1b[2J.pt"),
            sha256: "a".repeat(64),
            bytes: 2048,
            produced_by: vec![Producer {
                run_id: "01jd3k9x4m2pqrstuvwxyz0123".into(),
                name: Some("evil\x07".into()),
                status: "succeeded".into(),
                started_at: "2026-11-26T14:00:00Z".into(),
                ended_at: None,
                output: "ckpt".into(),
                inside: Some(Arg::from("sub/m\n.pt")),
                kept: Some(true),
            }],
            read_by: vec![Reader {
                run_id: "01jd4aaaaaaaaaaaaaaaaaaaaa".into(),
                name: None,
                status: "failed".into(),
                started_at: "2026-11-27T09:30:00Z".into(),
                ended_at: None,
                dataset: "train".into(),
                digest: format!("sha256:{}", "b".repeat(64)),
                inside: Some(Arg::from("x.pt")),
            }],
        }
    }

    #[test]
    fn text_names_each_run_and_escapes_untrusted_text() {
        let t = text(&[file()], true);
        assert_eq!(
            t,
            format!(
                "m\\x1b[2J.pt  ({}, 2.0 KiB)\n  produced  01jd3k9x4m2p  2026-11-26 14:00:00 UTC  succeeded  evil\\x07  output ckpt → sub/m\\n.pt  (kept)\n  read      01jd4aaaaaaa  2026-11-27 09:30:00 UTC  failed     -  dataset train → x.pt\n",
                "a".repeat(64)
            )
        );
        let unknown = WhichFile {
            produced_by: vec![],
            read_by: vec![],
            ..file()
        };
        assert!(text(&[unknown], true).contains("no recorded run produced or read this content"));
    }

    #[test]
    fn json_has_every_field_and_errors_as_null_facts() {
        let doc = json(&[
            (PathBuf::from("m.pt"), Ok(file())),
            (PathBuf::from("gone"), Err("gone does not exist".into())),
        ]);
        let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(v["schema_version"], 1);
        let f = &v["files"][0];
        assert_eq!(f["bytes"], 2048);
        assert_eq!(f["error"], serde_json::Value::Null);
        assert_eq!(f["produced_by"][0]["inside"], "sub/m\n.pt");
        assert_eq!(f["produced_by"][0]["kept"], true);
        assert_eq!(f["read_by"][0]["dataset"], "train");
        assert_eq!(f["read_by"][0]["ended_at"], serde_json::Value::Null);
        let g = &v["files"][1];
        assert_eq!(g["sha256"], serde_json::Value::Null);
        assert_eq!(g["error"], "gone does not exist");
    }
}
