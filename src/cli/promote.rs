//! `repro promote`, `repro channels`, `repro notes`: channel tags moved to the digests of runs
//! that proved themselves, the trail compared with the registry, and release notes from it
//! (docs/promote.md). The work is in `ops::promote`.

use clap::Args;

use crate::capture::image::registry::RegistryClient;
use crate::cli::{print_out, stdout_is_tty, Ctx, RegistryArgs};
use crate::error::{CliError, CliResult};
use crate::ops::promote;

/// Arguments of `repro promote`.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The run whose image digest the channel tags should hold
    #[arg(value_name = "ID", required_unless_present = "rollback")]
    pub id: Option<String>,
    /// A channel tag of the run's repository to point at its digest (repeatable)
    #[arg(long = "tag", value_name = "CHANNEL")]
    pub tags: Vec<String>,
    /// Point CHANNEL back at the digest it held before its last promotion (or at --to's)
    #[arg(long, value_name = "CHANNEL", conflicts_with_all = ["id", "tags"], requires = "repo")]
    pub rollback: Option<String>,
    /// With --rollback: the image repository, as in the runs (e.g. registry.example.com/team/app)
    #[arg(long, value_name = "REF")]
    pub repo: Option<String>,
    /// With --rollback: the run whose digest the channel should hold instead
    #[arg(long, value_name = "ID", requires = "rollback")]
    pub to: Option<String>,
    /// Why (recorded with the promotion, shown by `repro notes`)
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
    /// Allow the channel `latest`
    #[arg(long)]
    pub allow_latest: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The recorded promotions as JSON (schema_version 1)
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `repro channels`.
#[derive(Debug, Args)]
pub struct ChannelsArgs {
    /// Only these repositories (as in the runs); default: every one promoted to
    #[arg(value_name = "REPO")]
    pub repos: Vec<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Machine-readable output (schema_version 1)
    #[arg(long)]
    pub json: bool,
}

/// The output format of `repro notes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NotesFormat {
    Markdown,
    Json,
}

/// Arguments of `repro notes`.
#[derive(Debug, Args)]
pub struct NotesArgs {
    /// Only promotions of this channel
    #[arg(long, value_name = "CHANNEL")]
    pub channel: Option<String>,
    /// Only promotions since WHEN (30d, 12h, YYYY-MM-DD, RFC 3339)
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    #[arg(long, value_enum, default_value = "markdown")]
    pub format: NotesFormat,
}

/// Runs `repro promote`.
pub fn cmd_promote(ctx: &Ctx, args: &PromoteArgs) -> CliResult<()> {
    let client = RegistryClient::new(args.registry.options(&ctx.config)?)?;
    let mut store = ctx.open_store()?;
    let note = args.note.as_deref();
    let moves = match &args.rollback {
        Some(channel) => {
            let repo = args.repo.as_deref().unwrap_or_default();
            let to = args
                .to
                .as_deref()
                .map(|t| store.resolve_id(t))
                .transpose()?;
            vec![promote::rollback(
                ctx,
                &mut store,
                &client,
                &promote::Rollback {
                    repo,
                    channel,
                    to: to.as_deref(),
                    allow_latest: args.allow_latest,
                    note,
                },
            )?]
        }
        None => {
            if args.tags.is_empty() {
                return Err(CliError::usage("name the channel tag to promote to")
                    .hint("e.g. repro promote ID --tag staging [--tag prod]"));
            }
            let id = store.resolve_id(args.id.as_deref().unwrap_or_default())?;
            promote::promote(
                ctx,
                &mut store,
                &client,
                &id,
                &args.tags,
                args.allow_latest,
                note,
            )?
        }
    };
    if args.json {
        print_out(&crate::output::promote::moved_json(&moves))?;
    }
    Ok(())
}

/// Runs `repro channels`: exit 1 when a channel drifted.
pub fn cmd_channels(ctx: &Ctx, args: &ChannelsArgs) -> i32 {
    crate::cli::exit_with((|| -> CliResult<i32> {
        let client = RegistryClient::new(args.registry.options(&ctx.config)?)?;
        let store = ctx.open_store()?;
        let states = promote::channels(&store, &client, &args.repos)?;
        if args.json {
            print_out(&crate::output::promote::channels_json(&states))?;
        } else if states.is_empty() {
            ctx.status("no promotions recorded (repro promote ID --tag CHANNEL)");
        } else {
            print_out(&crate::output::promote::channels_table(
                &states,
                stdout_is_tty(),
            ))?;
        }
        let drifted = states.iter().filter(|s| s.drifted()).count();
        if drifted > 0 {
            ctx.warn(format!(
                "{drifted} channel(s) moved outside repro since their last promotion"
            ));
        }
        Ok(i32::from(drifted > 0))
    })())
}

/// Runs `repro notes`.
pub fn cmd_notes(ctx: &Ctx, args: &NotesArgs) -> CliResult<()> {
    let since = args
        .since
        .as_deref()
        .map(|s| {
            crate::cli::filter::parse_when(s, chrono::Utc::now())
                .map_err(|e| CliError::usage(format!("--since: {e}")).hint("e.g. --since 30d"))
        })
        .transpose()?;
    let store = ctx.open_store()?;
    let entries = promote::notes(&store, args.channel.as_deref(), since.as_deref())?;
    print_out(&match args.format {
        NotesFormat::Markdown => {
            crate::output::promote::notes_markdown(&entries, args.channel.as_deref())
        }
        NotesFormat::Json => crate::output::promote::notes_json(&entries),
    })
}
