//! What `repro mlflow push` shows: a line per run sent, a progress bar on a terminal, the
//! summary line and the param-conflict warnings.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::ops::mlflow::{Action, PushSummary, RunOutcome};
use crate::store::kept::human_bytes;

/// `RUN_ID<TAB>MLFLOW_RUN_ID<TAB>what was done`: created, re-linked, updated …, unchanged, or
/// `failed: REASON` (with what had been done before it failed).
pub fn describe(o: &RunOutcome) -> String {
    let mlflow = o.mlflow_run_id.as_deref().unwrap_or("-");
    if let Some(e) = &o.error {
        let before = match &o.action {
            // The MLflow run exists but is not complete: the next push re-links and finishes it.
            Action::Create | Action::Recreated { .. } if o.mlflow_run_id.is_some() => {
                " (after creating the MLflow run)"
            }
            Action::Relinked { .. } => " (after re-linking the MLflow run)",
            _ => "",
        };
        return format!("{}\t{}\tfailed{before}: {e}\n", o.run_id, mlflow);
    }
    let what = match &o.action {
        Action::Unchanged => "unchanged".to_string(),
        Action::Create => "created".to_string(),
        Action::CreateOrRelink => "would create (or re-link by repro.run_id)".to_string(),
        Action::Relinked { parts } if parts.is_empty() => "re-linked".to_string(),
        Action::Relinked { parts } => format!("re-linked, sent {}", parts.join(", ")),
        Action::Update { parts } if parts.is_empty() => "no change sent".to_string(),
        Action::Update { parts } => format!("updated {}", parts.join(", ")),
        Action::Deleted { .. } => "deleted in MLflow".to_string(),
        Action::Recreated { deleted } => {
            format!("re-created (the MLflow run {deleted} was deleted)")
        }
        Action::LeftDeleted => "deleted in MLflow, left out (--forget-deleted)".to_string(),
    };
    format!("{}\t{}\t{what}{}\n", o.run_id, mlflow, outputs_sent(o))
}

/// ` (outputs: 3 files, 1.2 MiB, 1 in parts)` when kept outputs were uploaded.
fn outputs_sent(o: &RunOutcome) -> String {
    let s = &o.outputs;
    if s.files == 0 {
        return String::new();
    }
    let parts = if s.multipart > 0 {
        format!(", {} in parts", s.multipart)
    } else {
        String::new()
    };
    format!(
        " (outputs: {} file{}, {}{parts})",
        s.files,
        if s.files == 1 { "" } else { "s" },
        human_bytes(s.bytes)
    )
}

/// One warning per kept output (or file of one) a push left out of `outputs/`, with why.
pub fn skipped_outputs(summary: &PushSummary) -> Vec<String> {
    summary
        .outcomes
        .iter()
        .flat_map(|o| {
            o.skipped.iter().map(move |line| {
                format!(
                    "run {}: output not uploaded to MLflow: {}",
                    o.run_id,
                    crate::sanitize::escape(line)
                )
            })
        })
        .collect()
}

/// Run ids for a message: all of them up to 20, then how many more.
pub fn id_list(ids: &[&str]) -> String {
    const SHOWN: usize = 20;
    let mut s = ids
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > SHOWN {
        s.push_str(&format!(
            " and {} more (see the lines above)",
            ids.len() - SHOWN
        ));
    }
    s
}

/// A progress bar on stderr for `to_send` runs.
pub fn progress(to_send: usize) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(to_send as u64), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} runs {per_sec} ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

/// The summary line: counts by what was done (or would be, with `dry_run`).
pub fn summary(summary: &PushSummary, uri: &str, dry_run: bool) -> String {
    let count = |f: &dyn Fn(&RunOutcome) -> bool| summary.outcomes.iter().filter(|o| f(o)).count();
    let ok = |o: &RunOutcome| o.error.is_none();
    let created =
        count(&|o| ok(o) && matches!(o.action, Action::Create | Action::Recreated { .. }));
    let left_out = count(&|o| o.action == Action::LeftDeleted);
    let relinked = count(&|o| ok(o) && matches!(o.action, Action::Relinked { .. }));
    let updated =
        count(&|o| ok(o) && matches!(o.action, Action::Update { ref parts } if !parts.is_empty()));
    let unchanged = count(&|o| {
        ok(o)
            && (o.action == Action::Unchanged
                || matches!(o.action, Action::Update { ref parts } if parts.is_empty()))
    });
    let planned = count(&|o| o.action == Action::CreateOrRelink);
    let requests = summary.requests();
    let exp = match &summary.experiment_id {
        Some(id) => format!("experiment '{}' (id {id})", summary.experiment),
        None => format!("experiment '{}'", summary.experiment),
    };
    if dry_run {
        format!(
            "dry run against {uri}, {exp}: {planned} to create or re-link, {updated} to update, {unchanged} unchanged; nothing sent"
        )
    } else {
        format!(
            "{uri}, {exp}: {created} created, {relinked} re-linked, {updated} updated, {unchanged} unchanged, {}{} failed ({requests} request{})",
            if left_out > 0 {
                format!("{left_out} left out (deleted in MLflow), ")
            } else {
                String::new()
            },
            summary.failed(),
            if requests == 1 { "" } else { "s" }
        )
    }
}

/// One warning per param whose pushed value differs from the local one.
pub fn conflicts(summary: &PushSummary) -> Vec<String> {
    let mut w = Vec::new();
    for o in &summary.outcomes {
        for c in &o.conflicts {
            w.push(format!(
                "run {}: param '{}' is '{}' locally but '{}' on the server (MLflow params cannot change); the server keeps '{}'",
                o.run_id,
                c.key,
                c.local.as_deref().unwrap_or("(removed)"),
                c.pushed,
                c.pushed
            ));
        }
    }
    w
}
