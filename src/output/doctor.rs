//! The report of `repro doctor`: one line per check (and a `hint:` line under a problem), or
//! `{"schema_version":1,"ok":…,"checks":[{"check","status","detail","hint"}]}` for scripts.

use serde_json::json;

use crate::ops::doctor::{Report, Status};
use crate::sanitize::escape;

/// Version of the `--json` document.
pub const SCHEMA_VERSION: u32 = 1;

fn label(status: Status) -> &'static str {
    match status {
        Status::Ok => "ok",
        Status::Warn => "warn",
        Status::Fail => "FAIL",
        Status::Skipped => "skipped",
    }
}

/// Text for people: `STATUS  CHECK  DETAIL`, aligned, coloured when `color`. Details and hints
/// carry engine output and file contents, so they are escaped.
pub fn text(report: &Report, color: bool) -> String {
    let width = report
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    let lw = report
        .checks
        .iter()
        .map(|c| label(c.status).len())
        .max()
        .unwrap_or(4);
    let mut s = String::new();
    for c in &report.checks {
        let padded = format!("{:<lw$}", label(c.status));
        let shown = match (color, c.status) {
            (false, _) => padded,
            (true, Status::Ok) => format!("\x1b[32m{padded}\x1b[0m"),
            (true, Status::Warn) => format!("\x1b[33m{padded}\x1b[0m"),
            (true, Status::Fail) => format!("\x1b[1;31m{padded}\x1b[0m"),
            (true, Status::Skipped) => format!("\x1b[2m{padded}\x1b[0m"),
        };
        let name = escape(&c.name);
        s.push_str(&format!("{shown}  {name:<width$}  {}\n", escape(&c.detail)));
        if let Some(h) = &c.hint {
            s.push_str(&format!(
                "{:lw$}  {:<width$}  hint: {}\n",
                "",
                "",
                escape(h)
            ));
        }
    }
    s
}

/// The `--json` document (exact text: JSON escapes its own way).
pub fn json(report: &Report) -> String {
    let checks: Vec<_> = report
        .checks
        .iter()
        .map(|c| {
            json!({
                "check": c.name,
                "status": c.status.as_str(),
                "detail": c.detail,
                "hint": c.hint,
            })
        })
        .collect();
    let doc = json!({"schema_version": SCHEMA_VERSION, "ok": report.ok(), "checks": checks});
    let mut s = serde_json::to_string_pretty(&doc).expect("json");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::doctor::Check;

    fn report() -> Report {
        let c = |name: &str, status, detail: &str, hint: Option<&str>| Check {
            name: name.into(),
            status,
            detail: detail.into(),
            hint: hint.map(str::to_string),
        };
        Report {
            checks: vec![
                c("git", Status::Ok, "git version 2.39.5", None),
                c(
                    "container podman",
                    Status::Fail,
                    "running x failed: Error: \x1b[2Jsetrlimit",
                    Some("give the engine limits\nit may set"),
                ),
                c("container docker", Status::Skipped, "no small image", None),
            ],
        }
    }

    #[test]
    fn text_aligns_escapes_and_hints() {
        let t = text(&report(), false);
        assert_eq!(
            t,
            "ok       git               git version 2.39.5\n\
             FAIL     container podman  running x failed: Error: \\x1b[2Jsetrlimit\n\
             \x20                          hint: give the engine limits\\nit may set\n\
             skipped  container docker  no small image\n"
        );
    }

    #[test]
    fn json_has_schema_version_and_every_status() {
        let v: serde_json::Value = serde_json::from_str(&json(&report())).unwrap();
        assert_eq!(v["schema_version"], 1);
        assert_eq!(v["ok"], false);
        let st: Vec<_> = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["status"].clone())
            .collect();
        assert_eq!(st, ["ok", "fail", "skipped"]);
        assert_eq!(
            v["checks"][1]["detail"],
            "running x failed: Error: \x1b[2Jsetrlimit"
        );
        assert!(v["checks"][0]["hint"].is_null());
    }
}
