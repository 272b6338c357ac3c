//! `repro diff A B`: two run ids → [`crate::ops::diff`] → only what differs (image, code, datasets,
//! argv element by element, params, env, host, outcome, duration), side by side or as JSON.

use clap::Args;
use serde_json::{json, Value};

use crate::cli::{print_out, stdout_is_tty, Ctx};
use crate::error::{CliError, CliResult};
pub use crate::ops::diff::{diff_runs, revision_warnings, Change};
use crate::output::human_duration;
use crate::output::sanitize::escape;
use crate::record::SCHEMA_VERSION;

/// Arguments of `repro diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// First run (id or unique prefix)
    pub a: String,
    /// Second run (id or unique prefix)
    pub b: String,
    /// Machine-readable output: {"schema_version":1,"a":…,"b":…,"differences":[…],"warnings":[…]}
    #[arg(long)]
    pub json: bool,
}

fn cell(field: &str, v: &Value) -> String {
    match v {
        Value::Null => "(none)".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) if field == "duration_ms" => n
            .as_i64()
            .map(|ms| format!("{} ({ms} ms)", human_duration(ms)))
            .unwrap_or_else(|| n.to_string()),
        other => other.to_string(),
    }
}

/// Compares two runs.
pub fn cmd_diff(ctx: &Ctx, args: &DiffArgs) -> CliResult {
    let store = ctx.open_store()?;
    let ia = store.resolve_id(&args.a)?;
    let ib = store.resolve_id(&args.b)?;
    if ia == ib {
        return Err(CliError::user(format!(
            "'{}' and '{}' are the same run {ia}",
            args.a, args.b
        ))
        .hint("give two different runs; list them with `repro ls`"));
    }
    let a = store.get_run(&ia)?;
    let b = store.get_run(&ib)?;
    let changes = diff_runs(&a, &b);
    let warnings = revision_warnings([("A", &a), ("B", &b)]);
    let text = if args.json {
        let list: Vec<Value> = changes
            .iter()
            .map(|c| json!({"field": c.field, "a": c.a, "b": c.b}))
            .collect();
        let doc = json!({
            "schema_version": SCHEMA_VERSION,
            "a": a.id,
            "b": b.id,
            "differences": list,
            "warnings": warnings,
        });
        let mut s = serde_json::to_string_pretty(&doc).expect("json");
        s.push('\n');
        s
    } else {
        let mut s = String::new();
        if changes.is_empty() {
            s.push_str(&format!(
                "no differences between {} and {} (annotations aside)\n",
                a.id, b.id
            ));
        } else {
            let tty = stdout_is_tty();
            let mut t = crate::output::new_table(tty);
            t.set_header(vec![
                "FIELD".to_string(),
                format!("A {}", a.short_id()),
                format!("B {}", b.short_id()),
            ]);
            if !tty {
                for col in t.column_iter_mut() {
                    col.set_padding((0, 2));
                }
            }
            for c in &changes {
                t.add_row(vec![
                    escape(&c.field).into_owned(),
                    escape(&cell(&c.field, &c.a)).into_owned(),
                    escape(&cell(&c.field, &c.b)).into_owned(),
                ]);
            }
            let table = t.to_string();
            if tty {
                s.push_str(&table);
            } else {
                s.push_str(
                    &table
                        .lines()
                        .map(str::trim_end)
                        .collect::<Vec<_>>()
                        .join("\n"),
                );
            }
            s.push('\n');
        }
        for w in &warnings {
            s.push_str(&format!("warning: {}\n", escape(w)));
        }
        s
    };
    print_out(&text)
}
