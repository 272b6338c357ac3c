//! `repro show`: everything recorded about one run, as text, JSON, a release-notes line or
//! Markdown; `--follow` prints its metric points as the job writes them.

use clap::{Args, ValueEnum};

use crate::cli::{print_out, Ctx};
use crate::error::CliResult;
use crate::output;
use crate::output::formats;

/// Output format of `show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShowFormat {
    /// Every recorded fact, for people
    Text,
    /// The DESIGN.md object (schema_version 1)
    Json,
    /// One line for release notes: reference, digest, commit, datasets
    Notes,
    /// A short Markdown block
    Markdown,
}

/// Arguments of `repro show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Run id or any unique prefix
    pub id: String,
    /// Output format
    #[arg(long, value_enum, default_value_t = ShowFormat::Text)]
    pub format: ShowFormat,
    /// Same as --format json
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// With --json: add each metric's history (`"history": {"acc": [[step, value, time], …]}`)
    #[arg(long)]
    pub history: bool,
    /// Print the run's metric points as its job writes them (those so far first), until the run
    /// ends; works on a run started in another process; Ctrl-C stops following (exit 0);
    /// with --json, one object per line: {"key","step","value","time"}
    #[arg(long, conflicts_with_all = ["format", "history"])]
    pub follow: bool,
}

/// Shows one run.
pub fn cmd_show(ctx: &Ctx, args: &ShowArgs) -> CliResult {
    let store = ctx.open_store()?;
    let id = store.resolve_id(&args.id)?;
    if args.follow {
        return follow(ctx, &store, &id, args.json);
    }
    let run = store.get_run(&id)?;
    let format = if args.json {
        ShowFormat::Json
    } else {
        args.format
    };
    let archives = store.archives(&id)?;
    let text = match format {
        // `show --json` is the object `ls --json` lists (DESIGN.md): archives are not in it;
        // `repro audit --json` reports them.
        ShowFormat::Json => {
            let j = crate::ops::show::run_document(&store, &id, args.history)?;
            let mut s = serde_json::to_string_pretty(&j).expect("json");
            s.push('\n');
            s
        }
        ShowFormat::Text => {
            let summaries = store.metric_summaries(&id)?;
            let tty = crate::cli::stdout_is_tty();
            let mut h = Vec::new();
            if tty {
                for m in summaries.iter().filter(|m| m.count > 1) {
                    let values = store.metric_history(&id, &m.key)?;
                    h.push((m.key.clone(), values.iter().map(|p| p.value).collect()));
                }
            }
            let mut s = output::show_text(&run, ctx.utc);
            if let Some(sw) = store.sweep_of(&id)? {
                s.push_str(&format!("{:<12} {sw} (repro ls --sweep {sw})\n", "sweep"));
            }
            if let Some(e) = store.environment_of(&id)? {
                s.push_str(&output::environment::summary_text(&e));
            }
            s.push_str(&output::metrics::metrics_text(&summaries, &h, tty));
            for a in &archives {
                s.push_str(&format!(
                    "{:<12} {} {} ({}, {})\n",
                    "archived",
                    a.kind.as_str(),
                    crate::sanitize::escape(&a.location),
                    a.digest,
                    output::show_time(&a.archived_at, ctx.utc)
                ));
            }
            s
        }
        ShowFormat::Notes => match crate::ops::attest::notes_mention(&store, &id)? {
            Some(a) => format!(
                "{} · {a}\n",
                formats::release_line(&run).trim_end_matches('\n')
            ),
            None => formats::release_line(&run),
        },
        ShowFormat::Markdown => formats::run_markdown(&run, ctx.utc),
    };
    print_out(&text)
}

/// `show --follow`: each point as a line on stdout until the run ends, Ctrl-C, or a closed pipe.
fn follow(ctx: &Ctx, store: &crate::store::Store, id: &str, json: bool) -> CliResult {
    use std::io::Write;
    let stop = crate::ops::follow::stop_on_sigint();
    let mut sink = |s: &crate::ops::follow::Seen| {
        let mut out = std::io::stdout().lock();
        let line = if json {
            output::follow::point_json_line(s)
        } else {
            output::follow::point_line(s, ctx.utc)
        };
        out.write_all(line.as_bytes())
            .and_then(|_| out.flush())
            .is_ok()
    };
    let end = crate::ops::follow::follow(store, id, stop, &mut sink)?;
    ctx.status(output::follow::end_text(id, &end));
    Ok(())
}
