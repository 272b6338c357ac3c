//! Renderers: run tables (comfy-table), JSON documents, and the human text of `show`.

pub mod attest;
pub mod audit;
pub mod diff;
pub mod doctor;
pub mod du;
pub mod environment;
pub mod follow;
pub mod formats;
pub mod gc;
pub mod get;
pub mod image;
pub mod metrics;
pub mod mlflow;
pub mod outputs;
pub mod plot;
pub mod promote;
pub mod repeat;
pub mod rerun;
pub mod sparkline;
pub mod store_verify;
pub mod sweep;
pub mod which;

use chrono::{DateTime, Local, Utc};
use comfy_table::{presets, ContentArrangement, Table};

use crate::record::text::{command_line, human_duration};
use crate::record::Run;

/// A stored RFC 3339 time shown in local time (or UTC with `utc`).
pub fn show_time(rfc3339: &str, utc: bool) -> String {
    match DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) if utc => t
            .with_timezone(&Utc)
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
        Ok(t) => t
            .with_timezone(&Local)
            .format("%Y-%m-%d %H:%M:%S %z")
            .to_string(),
        Err(_) => rfc3339.to_string(),
    }
}

/// The status shown for a run, `lost` / `running?` applied.
pub fn status_text(run: &Run) -> String {
    match crate::store::liveness::undecided(run) {
        None => run.status.to_string(),
        Some(why) => format!("running? ({why})"),
    }
}

/// Short image text for tables: `repo:tag@sha256:0123456789ab`.
pub fn image_short(run: &Run) -> String {
    match &run.image {
        None => "-".into(),
        Some(i) => {
            let base = i.reference.split('@').next().unwrap_or(&i.reference);
            match &i.digest {
                Some(d) => {
                    let hex = d.split(':').nth(1).unwrap_or(d);
                    format!("{base}@{}", &hex[..hex.len().min(12)])
                }
                None => format!("{base} (unpinned)"),
            }
        }
    }
}

/// Short commit for tables, `+` when dirty.
pub fn code_short(run: &Run) -> String {
    match &run.code {
        None => "-".into(),
        Some(c) => {
            let sha = c
                .commit
                .as_deref()
                .map(|s| &s[..s.len().min(10)])
                .unwrap_or("(none)");
            if c.dirty {
                format!("{sha}+")
            } else {
                sha.to_string()
            }
        }
    }
}

/// An empty table: bordered and fitted to the terminal on a TTY, else plain columns.
pub fn new_table(tty: bool) -> Table {
    let mut t = Table::new();
    if tty {
        t.load_preset(presets::UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic);
    } else {
        t.load_preset(presets::NOTHING);
    }
    t
}

/// A table of runs; `tty` picks a bordered table fitted to the terminal, else plain columns.
pub fn runs_table(runs: &[Run], tty: bool, utc: bool) -> String {
    let mut t = new_table(tty);
    t.set_header(vec![
        "ID", "NAME", "STATUS", "STARTED", "DURATION", "IMAGE", "CODE", "COMMAND",
    ]);
    if !tty {
        for col in t.column_iter_mut() {
            col.set_padding((0, 2));
        }
    }
    for r in runs {
        let row = [
            r.short_id().to_string(),
            r.name.clone().unwrap_or_else(|| "-".into()),
            status_text(r),
            show_time(&r.started_at, utc),
            r.duration_ms
                .map(human_duration)
                .unwrap_or_else(|| "-".into()),
            image_short(r),
            code_short(r),
            command_line(r),
        ];
        t.add_row(
            row.iter()
                .map(|c| crate::sanitize::escape(c).into_owned())
                .collect::<Vec<_>>(),
        );
    }
    let mut s = t.to_string();
    if !tty {
        // Plain output: no trailing padding.
        s = s.lines().map(str::trim_end).collect::<Vec<_>>().join("\n");
    }
    s.push('\n');
    s
}

/// `key value` lines of `repro show`; every value is escaped (labels, imported fields and notes
/// may hold terminal controls).
struct ShowLines(String);

impl ShowLines {
    fn line(&mut self, k: &str, v: String) {
        self.0
            .push_str(&format!("{k:<12} {}\n", crate::sanitize::escape(&v)));
    }
}

/// The human text of `repro show`.
pub fn show_text(run: &Run, utc: bool) -> String {
    let mut o = ShowLines(String::new());
    show_outcome(&mut o, run, utc);
    show_exec(&mut o, run);
    show_image(&mut o, run);
    show_code(&mut o, run);
    show_inputs_and_annotations(&mut o, run);
    o.line(
        "host",
        format!("{} ({}, user {})", run.host, run.platform, run.user),
    );
    if let Some(r) = &run.rerun_of {
        o.line("rerun of", r.clone());
    }
    if let Some(ctx) = &run.scheduler {
        for (k, v) in crate::record::scheduler::describe(ctx) {
            o.line(k, v);
        }
    }
    o.0
}

fn show_outcome(o: &mut ShowLines, run: &Run, utc: bool) {
    o.line("run", run.id.clone());
    if let Some(n) = &run.name {
        o.line("name", n.clone());
    }
    let mut status = status_text(run);
    if let Some(c) = run.exit_code {
        status.push_str(&format!(" (exit {c})"));
    }
    if let Some(s) = run.signal {
        status.push_str(&format!(" ({})", crate::exec::signal_name(s)));
    }
    o.line("status", status);
    o.line("pin grade", run.pin_grade());
    o.line("started", show_time(&run.started_at, utc));
    if let Some(e) = &run.ended_at {
        o.line("ended", show_time(e, utc));
    }
    if let Some(d) = run.duration_ms {
        o.line("duration", format!("{} ({d} ms)", human_duration(d)));
    }
}

fn show_exec(o: &mut ShowLines, run: &Run) {
    o.line("command", command_line(run));
    o.line("cwd", run.cwd.clone());
    let exec = match (&run.exec.engine, run.exec.mode) {
        (Some(e), m) => format!("{} ({e})", m.as_str()),
        (None, m) => m.as_str().to_string(),
    };
    o.line("exec", exec);
    if !run.exec.engine_args.is_empty() {
        o.line("engine args", run.exec.engine_args.join(" "));
    }
    if let Some(g) = &run.exec.gpus {
        o.line("gpus", g.clone());
    }
}

fn show_image(o: &mut ShowLines, run: &Run) {
    let Some(i) = &run.image else {
        o.line(
            "image",
            "none (the command ran on the host without an image)".into(),
        );
        return;
    };
    o.line("image", i.reference.clone());
    o.line(
        "  digest",
        i.digest.clone().unwrap_or_else(|| "none (UNPINNED)".into()),
    );
    if let Some(x) = &i.index_digest {
        o.line("  index", x.clone());
    }
    if let Some(p) = &i.platform {
        o.line("  platform", p.clone());
    }
    o.line("  resolved", i.resolved_by.as_str().to_string());
    for (k, v) in &i.labels {
        o.line("  label", format!("{k}={v}"));
    }
}

fn show_code(o: &mut ShowLines, run: &Run) {
    let Some(c) = &run.code else {
        o.line("code", "none (not in a git repository)".into());
        return;
    };
    o.line("code", c.repo_root.clone());
    o.line(
        "  commit",
        c.commit.clone().unwrap_or_else(|| "(no commits)".into()),
    );
    o.line(
        "  branch",
        c.branch.clone().unwrap_or_else(|| "(detached HEAD)".into()),
    );
    o.line(
        "  remote",
        c.remote.clone().unwrap_or_else(|| "(none)".into()),
    );
    let dirty = if c.dirty {
        format!(
            "yes, patch sha256:{} ({} untracked file(s))",
            c.patch_sha256.as_deref().unwrap_or("-"),
            c.untracked.len()
        )
    } else {
        "no".into()
    };
    o.line("  dirty", dirty);
    if let (Some(img), Some(commit)) = (&run.image, &c.commit) {
        if let Some(rev) = img.labels.get("org.opencontainers.image.revision") {
            if !commit.starts_with(rev.as_str()) && !rev.starts_with(commit.as_str()) {
                o.line(
                    "  note",
                    format!("the image was built from revision {rev}, not this commit"),
                );
            }
        }
    }
}

fn show_inputs_and_annotations(o: &mut ShowLines, run: &Run) {
    for d in &run.datasets {
        let mut v = format!("{} [{}]", d.name, d.kind.as_str());
        if let Some(u) = &d.uri {
            v.push_str(&format!(" {u}"));
        }
        if let Some(ver) = &d.version {
            v.push_str(&format!(" @ {ver}"));
        }
        if let (Some(f), Some(b)) = (d.files, d.bytes) {
            v.push_str(&format!(" ({f} files, {b} bytes)"));
        }
        o.line("dataset", v);
    }
    for out in &run.outputs {
        let kept = match (out.kept, &out.not_kept) {
            (Some(true), _) => " (kept)".to_string(),
            (Some(false), Some(why)) => format!(" (not kept: {why})"),
            (Some(false), None) => " (not kept)".to_string(),
            (None, _) => String::new(),
        };
        o.line(
            "output",
            format!(
                "{} {}{kept}",
                out.path,
                out.sha256.as_deref().unwrap_or("(missing)")
            ),
        );
    }
    for (k, v) in &run.params {
        if run.params_from_argv.contains(k) {
            o.line("param", format!("{k}={v}  (from argv)"));
        } else if run.params_from_job.contains(k) {
            o.line("param", format!("{k}={v}  (logged by the job)"));
        } else {
            o.line("param", format!("{k}={v}"));
        }
    }
    if !run.tags.is_empty() {
        o.line("tags", run.tags.join(", "));
    }
    for (k, v) in &run.env {
        o.line("env", format!("{k}={v}"));
    }
    for n in &run.notes {
        o.line("note", n.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_human() {
        assert_eq!(human_duration(5), "5ms");
        assert_eq!(human_duration(1234), "1.2s");
        assert_eq!(human_duration(184_000), "3m04s");
        assert_eq!(human_duration(7_500_000), "2h05m");
    }
}
