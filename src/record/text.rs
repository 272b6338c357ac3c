//! Record values as one line of text where that text is itself recorded or sent (MLflow tags,
//! messages): the argv shell-quoted for display, a duration in short form, the datasets and the
//! one-line pin of a run.

use super::Run;

/// One line of argv for display (shell-quoted where needed).
pub fn command_line(run: &Run) -> String {
    run.command
        .iter()
        .map(|a| display_quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn display_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `1.2s`, `3m04s`, `2h05m`: exact values stay in JSON.
pub fn human_duration(ms: i64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    if s < 60 {
        return format!("{}.{}s", s, (ms % 1000) / 100);
    }
    if s < 3600 {
        return format!("{}m{:02}s", s / 60, s % 60);
    }
    format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
}

/// The datasets as `NAME@VERSION` (or `NAME@DIGEST`, or `NAME`), joined by `sep`.
pub fn datasets_text(r: &Run, sep: &str) -> String {
    r.datasets
        .iter()
        .map(|d| match d.version.as_deref().or(d.digest.as_deref()) {
            Some(v) => format!("{}@{v}", d.name),
            None => d.name.clone(),
        })
        .collect::<Vec<_>>()
        .join(sep)
}

/// The line an engineer pastes into release notes: reference, digest, commit, datasets
/// (control characters of imported values escaped: it is printed to a terminal).
pub fn release_line(r: &Run) -> String {
    let line = release_line_raw(r);
    let body = line.strip_suffix('\n').unwrap_or(&line);
    format!("{}\n", crate::sanitize::escape(body))
}

fn release_line_raw(r: &Run) -> String {
    let image = match &r.image {
        None => "image: none".to_string(),
        Some(i) => {
            let digest = i.digest.as_deref().unwrap_or("UNPINNED");
            match &i.index_digest {
                Some(x) if Some(x.as_str()) != i.digest.as_deref() => {
                    format!("{} {digest} (index {x})", i.reference)
                }
                _ => format!("{} {digest}", i.reference),
            }
        }
    };
    let code = match &r.code {
        None => "commit: none".to_string(),
        Some(c) => {
            let mut s = format!("commit {}", c.commit.as_deref().unwrap_or("(none)"));
            if c.dirty {
                s.push_str(&format!(
                    " +patch sha256:{}",
                    c.patch_sha256.as_deref().unwrap_or("-")
                ));
            }
            s
        }
    };
    let data = if r.datasets.is_empty() {
        "datasets: none".to_string()
    } else {
        format!("datasets {}", datasets_text(r, ", "))
    };
    format!("{image} · {code} · {data} · run {}\n", r.id)
}
