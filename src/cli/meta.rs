//! `repro completions`, `repro man` and the hidden `repro __complete-ids` behind run-id completion.

use std::path::PathBuf;

use clap::{Args, CommandFactory, ValueEnum};
use clap_complete::Shell as GenShell;

use crate::cli::{print_out, Cli, Ctx};
use crate::error::{CliError, CliResult};
use crate::store::Store;

/// Shells with a completion script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Arguments of `repro completions`.
#[derive(Debug, Args)]
#[command(after_help = "Install, e.g.:\n  \
    repro completions bash > ~/.local/share/bash-completion/completions/repro\n  \
    repro completions zsh > \"${fpath[1]}/_repro\"\n  \
    repro completions fish > ~/.config/fish/completions/repro.fish")]
pub struct CompletionsArgs {
    /// The shell to generate for
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Arguments of `repro man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write repro.1 and one page per subcommand (repro-run.1, …) into DIR instead of printing repro(1)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Arguments of `repro __complete-ids`.
#[derive(Debug, Args)]
pub struct CompleteIdsArgs {
    /// Id prefix typed so far
    #[arg(default_value = "")]
    pub prefix: String,
}

/// Arguments of `repro __complete-sort`.
#[derive(Debug, Args)]
pub struct CompleteSortArgs {
    /// What was typed after `--sort` so far
    #[arg(default_value = "")]
    pub prefix: String,
}

const BIN: &str = "repro";

/// Subcommands whose positional arguments are run ids (named `id`/`ids`/`run`, value name `ID`,
/// or help text saying "run id" / "(id or …").
pub fn id_subcommands() -> Vec<String> {
    let cmd = Cli::command();
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set())
        .filter(|s| {
            s.get_positionals().any(|a| {
                let id = a.get_id().as_str();
                let names: Vec<String> = a
                    .get_value_names()
                    .map(|v| v.iter().map(|n| n.to_ascii_uppercase()).collect())
                    .unwrap_or_default();
                let help = a
                    .get_help()
                    .map(|h| h.to_string().to_ascii_lowercase())
                    .unwrap_or_default();
                matches!(id, "id" | "ids" | "run" | "runs")
                    || help.contains("run id")
                    || help.contains("(id or")
                    || names
                        .iter()
                        .any(|n| n == "ID" || n == "IDS" || n.ends_with("_ID") || n == "RUN")
            })
        })
        .map(|s| s.get_name().to_string())
        .collect()
}

/// The completion script for `shell`, with run ids completed from the database where possible.
pub fn completion_script(shell: Shell) -> String {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    let gen = match shell {
        Shell::Bash => GenShell::Bash,
        Shell::Zsh => GenShell::Zsh,
        Shell::Fish => GenShell::Fish,
    };
    clap_complete::generate(gen, &mut cmd, BIN, &mut buf);
    let mut s = String::from_utf8_lossy(&buf).into_owned();
    let subs = id_subcommands();
    match shell {
        Shell::Bash => s.push_str(&bash_ids(&subs)),
        Shell::Fish => s.push_str(&format!(
            "\n# Run ids complete from the database.\n\
             complete -c {BIN} -n \"__fish_seen_subcommand_from {}\" -f -a \"({BIN} __complete-ids (commandline -ct) 2>/dev/null)\"\n\
             # --sort values: field names and metric:KEY for the recorded keys.\n\
             complete -c {BIN} -l sort -x -a \"({BIN} __complete-sort (commandline -ct) 2>/dev/null)\"\n",
            subs.join(" ")
        )),
        Shell::Zsh => s = zsh_ids(s),
    }
    s
}

fn bash_ids(subs: &[String]) -> String {
    format!(
        r#"
# Run ids complete from the database (`{BIN} __complete-ids PREFIX`); everything else as above.
_{BIN}_run_ids() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="" sub="" w i
    local -a db=()
    if ((COMP_CWORD > 0)); then
        prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    fi
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${{COMP_WORDS[i]}}"
        case "$w" in
            --db)
                db=(--db "${{COMP_WORDS[i+1]}}")
                i=$((i + 1))
                ;;
            --db=*) db=(--db "${{w#--db=}}") ;;
            --color) i=$((i + 1)) ;;
            -*) ;;
            *) if [[ -z "$sub" ]]; then sub="$w"; fi ;;
        esac
    done
    # `--sort` values (field names, metric:KEY): the word as typed, colons included (bash
    # splits words at ':'), and the replies trimmed to what follows the last colon typed.
    local line="${{COMP_LINE:0:COMP_POINT}}" word before
    word="${{line##* }}"
    before="${{line% *}}"
    if [[ "${{before##* }}" == --sort ]]; then
        mapfile -t COMPREPLY < <({BIN} "${{db[@]}}" __complete-sort "$word" 2>/dev/null)
        if [[ "$word" == *:* ]]; then
            local colon="${{word%"${{word##*:}}"}}" i
            for i in "${{!COMPREPLY[@]}}"; do COMPREPLY[i]="${{COMPREPLY[i]#"$colon"}}"; done
        fi
        return 0
    fi
    if [[ "$cur" != -* && "$prev" != -* ]]; then
        case "$sub" in
            {pattern})
                mapfile -t COMPREPLY < <({BIN} "${{db[@]}}" __complete-ids "$cur" 2>/dev/null)
                return 0
                ;;
        esac
    fi
    _{BIN} "$@"
}}
complete -F _{BIN}_run_ids -o bashdefault -o default {BIN}
"#,
        pattern = if subs.is_empty() {
            "__none__".to_string()
        } else {
            subs.join("|")
        }
    )
}

/// zsh: the positional `ID` arguments call a helper that asks the database.
fn zsh_ids(script: String) -> String {
    let helper = format!(
        "\n_{BIN}_run_ids() {{\n    local -a ids\n    ids=(${{(f)\"$({BIN} __complete-ids \"$PREFIX\" 2>/dev/null)\"}})\n    compadd -a ids\n}}\n\
         \n_{BIN}_sort_values() {{\n    local -a values\n    values=(${{(f)\"$({BIN} __complete-sort \"$PREFIX\" 2>/dev/null)\"}})\n    compadd -a values\n}}\n"
    );
    // clap writes a positional as ':id -- HELP:_default'; point the id ones at the helper.
    let mut out = String::new();
    for line in script.lines() {
        let t = line.trim_start();
        let is_id = t.starts_with("':id -- ")
            || (t.starts_with("':") && (t.contains("(id or") || t.contains("Run id")));
        let l = if is_id && line.contains(":_default'") {
            line.replace(":_default'", &format!(":_{BIN}_run_ids'"))
        } else if t.starts_with("'*--sort=[") && line.contains(":FIELD:_default'") {
            line.replace(":FIELD:_default'", &format!(":FIELD:_{BIN}_sort_values'"))
        } else {
            line.to_string()
        };
        out.push_str(&l);
        out.push('\n');
        if line.starts_with("#compdef") {
            out.push_str(&helper);
        }
    }
    out
}

/// Prints a completion script.
pub fn cmd_completions(args: &CompletionsArgs) -> CliResult {
    print_out(&completion_script(args.shell))
}

/// Prints repro(1), or writes every page into `--dir`.
pub fn cmd_man(ctx: &Ctx, args: &ManArgs) -> CliResult {
    let cmd = Cli::command();
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .and_then(|_| clap_mangen::generate_to(cmd, dir))
                .map_err(|e| {
                    CliError::user(format!("cannot write man pages to {}: {e}", dir.display()))
                        .hint("choose a writable directory for --dir")
                })?;
            ctx.status(format!("wrote man pages to {}", dir.display()));
            Ok(())
        }
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut buf)
                .map_err(|e| CliError::user(format!("cannot render the man page: {e}")))?;
            print_out(&String::from_utf8_lossy(&buf))
        }
    }
}

/// Prints the `--sort` values starting with the prefix: the field names, then `metric:KEY` for
/// each recorded metric key. Never creates a database.
pub fn cmd_complete_sort(ctx: &Ctx, args: &CompleteSortArgs) -> CliResult {
    let mut values: Vec<String> = crate::store::SortKey::NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let path = ctx.db_path();
    if path.is_file() {
        // A database that cannot be read completes the field names only.
        let keys = Store::complete_metric_keys(&path).unwrap_or_default();
        values.extend(
            keys.into_iter()
                .filter(|k| !k.chars().any(|c| c.is_control() || c.is_whitespace()))
                .map(|k| format!("metric:{k}")),
        );
    }
    let text: String = values
        .into_iter()
        .filter(|v| v.starts_with(args.prefix.trim()))
        .map(|v| v + "\n")
        .collect();
    print_out(&text)
}

/// Prints up to 50 run ids starting with the prefix, newest first. Never creates a database.
pub fn cmd_complete_ids(ctx: &Ctx, args: &CompleteIdsArgs) -> CliResult {
    let path = ctx.db_path();
    if !path.is_file() {
        return Ok(());
    }
    let prefix = args.prefix.trim().to_ascii_lowercase();
    if !prefix.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Ok(());
    }
    let ids = Store::complete_ids(&path, &prefix)
        .map_err(|e| CliError::user(format!("cannot read {}: {e}", path.display())))?;
    let mut text = ids.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    print_out(&text)
}
