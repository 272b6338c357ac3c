//! The summary `repro sweep` prints when its runs have ended.

use crate::ops::sweep::SweepOutcome;
use crate::sanitize::escape;

/// One row per run (run id, each parameter, status, objective), in the outcome's order (best
/// first when the sweep had an objective); `objective` names the objective column.
pub fn summary(out: &SweepOutcome, objective: Option<&str>, tty: bool) -> String {
    let mut t = super::new_table(tty);
    let keys: Vec<&String> = out
        .runs
        .first()
        .map(|r| r.params.keys().collect())
        .unwrap_or_default();
    let mut header: Vec<String> = vec!["RUN".into()];
    header.extend(keys.iter().map(|k| escape(k).into_owned()));
    header.push("STATUS".into());
    if let Some(o) = objective {
        header.push(escape(o).to_uppercase());
    }
    t.set_header(header);
    if !tty {
        for col in t.column_iter_mut() {
            col.set_padding((0, 2));
        }
    }
    for r in &out.runs {
        let mut row: Vec<String> = vec![r.id.clone().unwrap_or_else(|| "-".into())];
        for k in &keys {
            row.push(escape(r.params.get(*k).map_or("", String::as_str)).into_owned());
        }
        row.push(r.status.clone());
        if objective.is_some() {
            row.push(r.objective.map_or("-".into(), |v| format!("{v}")));
        }
        t.add_row(row);
    }
    let mut s = t.to_string();
    s.push('\n');
    s
}

/// The status line after a sweep: its id, how many runs, failed and not started, and the `ls`
/// that lists them.
pub fn status_line(out: &SweepOutcome) -> String {
    let not_started = if out.not_started > 0 {
        format!(", {} not started", out.not_started)
    } else {
        String::new()
    };
    format!(
        "sweep {}: {} run(s), {} failed{not_started} (repro ls --sweep {})",
        out.id,
        out.runs.len(),
        out.failed(),
        out.id
    )
}

/// One line of a `--jobs` member's output with its combination in front (`[lr=0.1 wd=0] …`);
/// the label is already escaped, the line is the job's own output and passes unchanged, ended by a
/// newline when the stream ended without one.
pub fn member_line(label: &str, line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(label.len() + line.len() + 4);
    out.push(b'[');
    out.extend_from_slice(label.as_bytes());
    out.extend_from_slice(b"] ");
    out.extend_from_slice(line);
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn member_lines_are_labelled_and_end_with_a_newline() {
        assert_eq!(
            super::member_line("lr=0.1", b"loss 1\n"),
            b"[lr=0.1] loss 1\n"
        );
        assert_eq!(super::member_line("n=2", b"partial"), b"[n=2] partial\n");
    }
}
