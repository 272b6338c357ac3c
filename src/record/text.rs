//! Record values as one line of text where that text is itself recorded or sent (MLflow tags,
//! messages): the argv shell-quoted for display, a duration in short form.

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
