//! Rendering of `repro promote`, `repro channels` and `repro notes` (markdown or JSON).

use crate::ops::promote::{ChannelState, Moved, NoteEntry};
use crate::output::new_table;
use crate::record::promotion::Promotion;
use crate::sanitize::escape;

fn promotion_json(p: &Promotion) -> serde_json::Value {
    serde_json::json!({
        "id": p.id,
        "run_id": p.run_id,
        "repository": p.repository,
        "channel": p.channel,
        "digest": p.digest,
        "previous": p.previous,
        "kind": p.kind,
        "promoted_at": p.promoted_at,
        "user": p.user,
        "note": p.note,
    })
}

/// `repro promote --json`: the recorded moves.
pub fn moved_json(moves: &[Moved]) -> String {
    let v = serde_json::json!({
        "schema_version": 1,
        "promotions": moves.iter().map(|m| {
            let mut j = promotion_json(&m.promotion);
            j["unchanged"] = m.unchanged.into();
            j
        }).collect::<Vec<_>>(),
    });
    format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
}

fn short(d: &str) -> String {
    let hex = d.strip_prefix("sha256:").unwrap_or(d);
    format!("sha256:{}", &hex[..12.min(hex.len())])
}

/// `repro channels`: a row per repository and channel.
pub fn channels_table(states: &[ChannelState], tty: bool) -> String {
    let mut t = new_table(tty);
    t.set_header(vec![
        "REPOSITORY",
        "CHANNEL",
        "NOW",
        "RUN",
        "LAST PROMOTED",
        "BY",
        "STATE",
    ]);
    for s in states {
        let state = match (&s.error, s.drifted(), &s.now) {
            (Some(e), _, _) => format!("unknown: {}", escape(e)),
            (None, true, None) => "DRIFT: the tag is gone".into(),
            (None, true, Some(_)) => format!(
                "DRIFT: moved outside repro (recorded {})",
                short(&s.last.digest)
            ),
            (None, false, _) => "as recorded".into(),
        };
        t.add_row(vec![
            escape(&s.repository).into_owned(),
            escape(&s.channel).into_owned(),
            s.now.as_deref().map(short).unwrap_or_else(|| "-".into()),
            s.run_now
                .as_deref()
                .map(|r| r[..12.min(r.len())].to_string())
                .unwrap_or_else(|| "-".into()),
            s.last.promoted_at.clone(),
            escape(&s.last.user).into_owned(),
            state,
        ]);
    }
    format!("{t}\n")
}

/// `repro channels --json`.
pub fn channels_json(states: &[ChannelState]) -> String {
    let v = serde_json::json!({
        "schema_version": 1,
        "channels": states.iter().map(|s| serde_json::json!({
            "repository": s.repository,
            "channel": s.channel,
            "digest_now": s.now,
            "run_now": s.run_now,
            "drift": s.drifted(),
            "error": s.error,
            "last_promotion": promotion_json(&s.last),
        })).collect::<Vec<_>>(),
    });
    format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
}

/// Markdown text: `|`, backticks, `<`, `>`, `&` and newlines of untrusted values cannot break
/// the table or inject HTML into a rendered page.
fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in escape(s).chars() {
        match c {
            '|' => out.push_str("\\|"),
            '`' => out.push_str("\\`"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '*' | '_' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// `repro notes` as markdown: one section per move, newest first.
pub fn notes_markdown(entries: &[NoteEntry], channel: Option<&str>) -> String {
    let mut s = String::from("# Release notes");
    if let Some(c) = channel {
        s.push_str(&format!(" — `{}`", md(c)));
    }
    s.push_str("\n\n");
    if entries.is_empty() {
        s.push_str("No promotions recorded.\n");
        return s;
    }
    for e in entries {
        let p = &e.promotion;
        let verb = match p.kind {
            crate::record::promotion::PromotionKind::Promote => "promoted",
            crate::record::promotion::PromotionKind::Rollback => "rolled back",
        };
        s.push_str(&format!(
            "## {} — `{}:{}` {verb}\n\n",
            md(&p.promoted_at),
            md(&p.repository),
            md(&p.channel)
        ));
        s.push_str(&format!("- digest: `{}`\n", md(&p.digest)));
        s.push_str(&format!(
            "- before: {}\n",
            p.previous
                .as_deref()
                .map(|d| format!("`{}`", md(d)))
                .unwrap_or_else(|| "(a new tag)".into())
        ));
        s.push_str(&format!("- by: {}\n", md(&p.user)));
        if let Some(n) = &p.note {
            s.push_str(&format!("- note: {}\n", md(n)));
        }
        match (&p.run_id, &e.run) {
            (Some(_), Some(run)) => {
                s.push_str(&format!(
                    "- run: `{}`{}\n",
                    md(&run.id),
                    run.name
                        .as_deref()
                        .map(|n| format!(" ({})", md(n)))
                        .unwrap_or_default()
                ));
                if let Some(img) = &run.image {
                    s.push_str(&format!("- image: `{}`\n", md(&img.reference)));
                }
                if let Some(c) = &run.code {
                    s.push_str(&format!(
                        "- code: `{}`{}{}\n",
                        md(c.commit.as_deref().unwrap_or("(no commit)")),
                        c.branch
                            .as_deref()
                            .map(|b| format!(" on {}", md(b)))
                            .unwrap_or_default(),
                        if c.dirty {
                            " (uncommitted changes)"
                        } else {
                            ""
                        }
                    ));
                }
                for d in &run.datasets {
                    s.push_str(&format!(
                        "- dataset: {} {}\n",
                        md(&d.name),
                        d.digest
                            .as_deref()
                            .or(d.version.as_deref())
                            .map(|v| format!("`{}`", md(v)))
                            .unwrap_or_default()
                    ));
                }
                if !e.metrics.is_empty() {
                    let m: Vec<String> = e
                        .metrics
                        .iter()
                        .map(|m| {
                            format!(
                                "{} {}",
                                md(&m.key),
                                crate::output::metrics::value_text(m.last)
                            )
                        })
                        .collect();
                    s.push_str(&format!("- metrics (last): {}\n", m.join(", ")));
                }
            }
            (Some(id), None) => s.push_str(&format!("- run: `{}` (deleted)\n", md(id))),
            (None, _) => s.push_str("- run: none recorded with this digest\n"),
        }
        s.push('\n');
    }
    s
}

/// `repro notes --format json`.
pub fn notes_json(entries: &[NoteEntry]) -> String {
    let v = serde_json::json!({
        "schema_version": 1,
        "promotions": entries.iter().map(|e| {
            let mut j = promotion_json(&e.promotion);
            j["run"] = match &e.run {
                Some(r) => serde_json::json!({
                    "id": r.id,
                    "name": r.name,
                    "image": r.image.as_ref().map(|i| &i.reference),
                    "commit": r.code.as_ref().and_then(|c| c.commit.clone()),
                    "dirty": r.code.as_ref().map(|c| c.dirty),
                    "datasets": r.datasets.iter().map(|d| serde_json::json!({
                        "name": d.name, "version": d.version, "digest": d.digest,
                    })).collect::<Vec<_>>(),
                    "metrics": e.metrics.iter().map(|m| (m.key.clone(), m.last)).collect::<std::collections::BTreeMap<_, _>>(),
                }),
                None => serde_json::Value::Null,
            };
            j
        }).collect::<Vec<_>>(),
    });
    format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #[test]
    fn markdown_text_cannot_break_out() {
        let s = super::md("a|b`<script>x</script>\n[l](u)");
        assert!(!s.contains('<') && !s.contains('\n'), "{s}");
        assert!(
            s.contains("\\|") && s.contains("\\`") && s.contains("\\["),
            "{s}"
        );
    }
}
