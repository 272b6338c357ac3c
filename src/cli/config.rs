//! `repro config show`: the effective configuration and where each value came from.

use clap::{Args, Subcommand};
use comfy_table::{presets, Table};
use serde_json::json;

use crate::cli::{print_out, Ctx};
use crate::error::CliResult;

/// `repro config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print every setting, its value and its source (default, user file, repo file, env, flag)
    Show(ShowArgs),
}

/// Arguments of `repro config show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Machine-readable output: {"schema_version":1,"settings":{…},"files":[…]}
    #[arg(long)]
    pub json: bool,
}

/// Runs a `repro config` subcommand.
pub fn cmd_config(ctx: &Ctx, cmd: &ConfigCmd) -> CliResult {
    match cmd {
        ConfigCmd::Show(args) => print_out(&if args.json {
            show_json(ctx)
        } else {
            show_text(ctx)
        }),
    }
}

fn show_text(ctx: &Ctx) -> String {
    let cfg = &ctx.config;
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(vec!["KEY", "VALUE", "SOURCE"]);
    for col in t.column_iter_mut() {
        col.set_padding((0, 2));
    }
    for (key, value, source) in cfg.rows() {
        t.add_row(vec![key.to_string(), value, source.to_string()]);
    }
    let mut s: String = t
        .to_string()
        .lines()
        .map(|l| format!("{}\n", l.trim_end()))
        .collect();
    s.push_str("\nfiles:\n");
    for f in &cfg.files {
        s.push_str(&format!(
            "  {:<5} {} ({})\n",
            f.kind,
            f.path.display(),
            if f.found { "read" } else { "not found" }
        ));
    }
    if !cfg.files.iter().any(|f| f.kind == "repo") {
        s.push_str("  repo  (not in a git repository)\n");
    }
    s
}

fn show_json(ctx: &Ctx) -> String {
    let cfg = &ctx.config;
    let mut settings = serde_json::to_value(cfg).expect("config serialises");
    let files = settings
        .as_object_mut()
        .and_then(|o| o.remove("files"))
        .unwrap_or_else(|| json!([]));
    let doc = json!({"schema_version": 1, "settings": settings, "files": files});
    let mut s = serde_json::to_string_pretty(&doc).expect("json");
    s.push('\n');
    s
}
