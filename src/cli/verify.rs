//! `repro verify ID`: flags → [`ops::verify`] → a text or JSON report; exit 1 on any mismatch.
//! `repro verify --store`: [`ops::store_verify`](crate::ops::store_verify) over the object store.

use std::path::PathBuf;

pub use crate::ops::verify::{verify_run, verify_run_with, VerifyItem, VerifyStatus};

/// The report as text: one line per item, `STATUS  what name  detail`.
pub fn render(items: &[VerifyItem]) -> String {
    let mut s = String::new();
    for i in items {
        let status = match i.status {
            VerifyStatus::Match => "match",
            VerifyStatus::Mismatch => "MISMATCH",
            VerifyStatus::Missing => "MISSING",
            VerifyStatus::Error => "ERROR",
            VerifyStatus::Unchecked => "unchecked",
        };
        s.push_str(&format!("{status:<9}  {:<7} {}", i.what, i.name));
        if i.status == VerifyStatus::Mismatch {
            s.push_str(&format!(
                "\n           expected {}\n           found    {}",
                i.expected.as_deref().unwrap_or("(missing)"),
                i.actual.as_deref().unwrap_or("(missing)")
            ));
        }
        if let Some(d) = &i.detail {
            s.push_str(&format!("  ({})", d.replace('\n', "; ")));
        }
        s.push('\n');
    }
    s
}

/// The report as JSON: `{"schema_version":1,"ok":bool,"items":[…]}`.
pub fn render_json(items: &[VerifyItem]) -> String {
    let v = serde_json::json!({
        "schema_version": crate::record::SCHEMA_VERSION,
        "ok": !items.iter().any(VerifyItem::failed),
        "items": items,
    });
    format!("{v}\n")
}

/// Arguments of `repro verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Run id or any unique prefix
    #[arg(required_unless_present = "store")]
    pub id: Option<String>,
    /// Check the object store of kept outputs instead of a run: rehash every object and look
    /// for every object a kept output needs; exit 1 when any is damaged or missing
    #[arg(long, conflicts_with_all = ["id", "base", "no_cache"])]
    pub store: bool,
    /// With --store: hash on N threads [default: the number of CPUs]
    #[arg(long, value_name = "N", requires = "store")]
    pub jobs: Option<usize>,
    /// Directory the run's relative paths are resolved against [default: the git work tree
    /// containing the current directory, else the run's recorded repository root]
    #[arg(long, value_name = "DIR")]
    pub base: Option<PathBuf>,
    /// Read every file; do not use the hash cache
    #[arg(long)]
    pub no_cache: bool,
    /// Machine-readable report: {"schema_version":1,"ok":bool,"items":[…]}
    #[arg(long)]
    pub json: bool,
}

/// `repro verify ID`: prints the report; exit 1 when anything does not match.
pub fn cmd_verify(ctx: &crate::cli::Ctx, args: &VerifyArgs) -> i32 {
    if args.store {
        return crate::cli::exit_with(verify_store(ctx, args));
    }
    let res = (|| -> crate::error::CliResult<bool> {
        let store = ctx.open_store()?;
        let id = store.resolve_id(args.id.as_deref().unwrap_or_default())?;
        let run = store.get_run(&id)?;
        let base = match &args.base {
            Some(b) => b.clone(),
            None => {
                let cwd = std::env::current_dir().map_err(|e| {
                    crate::error::CliError::user(format!("cannot read the current directory: {e}"))
                })?;
                crate::ops::verify::default_base(&run, &cwd)
            }
        };
        let cache = (!args.no_cache).then(|| store.conn());
        let objects = crate::store::objects::Objects::beside(store.path());
        let items = crate::ops::verify::verify_run_kept(&run, &base, cache, &objects);
        let text = if args.json {
            render_json(&items)
        } else if items.is_empty() {
            "nothing to verify: the run recorded no datasets or outputs\n".into()
        } else {
            format!(
                "relative paths resolved against {} (--base DIR to change)\n{}",
                base.display(),
                render(&items)
            )
        };
        crate::cli::print_out(&text)?;
        Ok(!items.iter().any(VerifyItem::failed))
    })();
    crate::cli::exit_with(res.map(|ok| if ok { 0 } else { 1 }))
}

/// `repro verify --store`: the report on stdout, how to recover as a hint; exit 1 when any
/// object is damaged or missing.
fn verify_store(ctx: &crate::cli::Ctx, args: &VerifyArgs) -> crate::error::CliResult<i32> {
    let store = ctx.open_store()?;
    let objects = crate::store::objects::Objects::beside(store.path());
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let check = crate::ops::store_verify::verify_store(ctx, &store, &objects, jobs.clamp(1, 256))?;
    crate::cli::print_out(&if args.json {
        crate::output::store_verify::json(&check)
    } else {
        crate::output::store_verify::text(&check)
    })?;
    if let Some(h) = crate::output::store_verify::hint(&check) {
        eprintln!("hint: {h}");
    }
    Ok(if check.ok() { 0 } else { 1 })
}
