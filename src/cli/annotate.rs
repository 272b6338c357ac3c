//! `repro tag`, `repro note`, `repro param`: annotations added after a run. They are stored apart
//! from the run's provenance and never change it.

use clap::Args;

use crate::cli::{print_out, Ctx};
use crate::error::{CliError, CliResult};

/// Arguments of `repro tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// Run id or any unique prefix
    pub id: String,
    /// +TAG adds (a bare TAG too), -TAG removes; with none, prints the tags
    #[arg(allow_hyphen_values = true, value_name = "+TAG|-TAG")]
    pub changes: Vec<String>,
}

/// Arguments of `repro note`.
#[derive(Debug, Args)]
pub struct NoteArgs {
    /// Run id or any unique prefix
    pub id: String,
    /// The note (several words are joined with spaces)
    #[arg(required = true, allow_hyphen_values = true, value_name = "TEXT")]
    pub text: Vec<String>,
}

/// Arguments of `repro param`.
#[derive(Debug, Args)]
pub struct ParamArgs {
    /// Run id or any unique prefix
    pub id: String,
    /// KEY=VALUE to set (replacing an existing value)
    #[arg(value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Remove this param (repeatable)
    #[arg(long, value_name = "KEY")]
    pub unset: Vec<String>,
}

fn check_tag(t: &str) -> CliResult<String> {
    if t.is_empty()
        || t.chars()
            .any(|c| c.is_whitespace() || c == ',' || c.is_control())
    {
        return Err(CliError::usage(format!("'{t}' is not a tag"))
            .hint("a tag is a non-empty word without spaces or commas, e.g. +best"));
    }
    Ok(t.to_string())
}

/// Adds and removes tags.
pub fn cmd_tag(ctx: &Ctx, args: &TagArgs) -> CliResult {
    let (mut add, mut remove) = (Vec::new(), Vec::new());
    for c in &args.changes {
        if let Some(t) = c.strip_prefix('-') {
            remove.push(check_tag(t)?);
        } else {
            add.push(check_tag(c.strip_prefix('+').unwrap_or(c))?);
        }
    }
    let mut store = ctx.open_store()?;
    let id = store.resolve_id(&args.id)?;
    let tags = store.change_tags(&id, &add, &remove)?;
    let mut out = tags.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    print_out(&out)
}

/// Appends a note.
pub fn cmd_note(ctx: &Ctx, args: &NoteArgs) -> CliResult {
    let text = args.text.join(" ");
    if text.trim().is_empty() {
        return Err(CliError::usage("the note is empty").hint("repro note ID 'what you noticed'"));
    }
    let mut store = ctx.open_store()?;
    let id = store.resolve_id(&args.id)?;
    store.add_note(&id, &text)?;
    ctx.status(format!("noted on {id}"));
    Ok(())
}

/// Sets or removes params.
pub fn cmd_param(ctx: &Ctx, args: &ParamArgs) -> CliResult {
    if args.set.is_empty() && args.unset.is_empty() {
        return Err(
            CliError::usage("nothing to change").hint("repro param ID lr=0.1 [--unset KEY]")
        );
    }
    let mut set = Vec::new();
    for kv in &args.set {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => set.push((k.to_string(), v.to_string())),
            _ => {
                return Err(CliError::usage(format!("'{kv}' is not KEY=VALUE"))
                    .hint("repro param ID lr=0.1"))
            }
        }
    }
    let mut store = ctx.open_store()?;
    let id = store.resolve_id(&args.id)?;
    store.set_params(&id, &set, &args.unset)?;
    ctx.status(format!("params of {id} updated"));
    Ok(())
}
