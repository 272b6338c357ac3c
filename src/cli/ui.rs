//! `repro ui`: serve the local, read-only web page over the database (see docs/ui.md).

use std::net::SocketAddr;

use clap::Args;

use crate::cli::{print_out, Ctx};
use crate::error::{CliError, CliResult};
use crate::ui::server::{stop_on_signals, Ui};
use crate::ui::UiConfig;

/// Arguments of `repro ui`.
#[derive(Debug, Args)]
pub struct UiArgs {
    /// Address and port to listen on (port 0: any free port); an address other than loopback
    /// needs a token
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8765")]
    pub listen: SocketAddr,
    /// Require this token on every request (`?token=` in the URL once, then a cookie); at
    /// least 16 letters, digits, '-', '_' or '.'
    #[arg(
        long,
        value_name = "TOKEN",
        env = "REPRO_UI_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Require a random token, generated now and printed in the URL (as Jupyter does)
    #[arg(long, conflicts_with = "token")]
    pub new_token: bool,
    /// Open the page in a browser: $BROWSER (as Python's webbrowser reads it), else xdg-open
    #[arg(long)]
    pub open: bool,
}

/// Serves the page until Ctrl-C or SIGTERM.
pub fn cmd_ui(ctx: &Ctx, args: &UiArgs) -> CliResult {
    let token = match (&args.token, args.new_token) {
        (Some(t), _) => Some(t.clone()),
        (None, true) => Some(crate::ui::new_token()),
        (None, false) => None,
    };
    crate::ui::check_token(args.listen, token.as_deref())?;
    // Created and migrated as any command would; served read-only from here on.
    drop(ctx.open_store()?);
    let script = crate::script::ScriptOptions {
        registry: crate::cli::RegistryArgs::default().options(&ctx.config)?,
        ..Default::default()
    };
    let ui = Ui::bind(UiConfig {
        listen: args.listen,
        token,
        db: ctx.db_path(),
        script,
    })?;
    let stop = stop_on_signals();
    let url = ui.url();
    print_out(&format!("{url}\n"))?;
    ctx.status(format!(
        "serving {} read-only at {}; Ctrl-C stops",
        ctx.db_path().display(),
        ui.bound()
    ));
    if args.open {
        match crate::ui::open_browser(&url) {
            Ok(program) => ctx.status(format!("opened the page with {program}")),
            Err(why) => ctx.warn(
                CliError::user(format!(
                    "cannot open a browser ({why}); open {url} yourself, or set BROWSER"
                ))
                .message,
            ),
        }
    }
    ui.serve(stop);
    ctx.status("stopped");
    Ok(())
}
