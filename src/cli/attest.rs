//! `repro attest`: SLSA provenance (in-toto Statement v1) for a run's outputs, DSSE-signed with
//! Ed25519; `attest verify` checks one; `attest keygen` makes a key pair (docs/attest.md).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::cli::{print_out, Ctx};
use crate::error::{CliError, CliResult};
use crate::ops::attest::{self as op, CheckStatus};

/// Arguments of `repro attest`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AttestArgs {
    #[command(subcommand)]
    pub cmd: Option<AttestCmd>,
    /// Run id or any unique prefix (the run must be finished and have --output files)
    #[arg(required = true)]
    pub id: Option<String>,
    /// Write the statement (or envelope) to FILE instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Sign with this Ed25519 private key (PKCS#8 PEM, `openssl genpkey -algorithm ed25519`)
    /// and write a DSSE envelope
    #[arg(long, value_name = "KEY")]
    pub sign: Option<PathBuf>,
}

/// Subcommands of `repro attest`.
#[derive(Debug, Subcommand)]
pub enum AttestCmd {
    /// Check an envelope or statement: signature, shape, a run's record, the subject files (exit 1 on any failure)
    Verify(VerifyArgs),
    /// Write a new Ed25519 key pair: FILE (private, PKCS#8 PEM, mode 0600) and FILE.pub (public)
    Keygen(KeygenArgs),
}

/// Arguments of `repro attest verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The envelope (or unsigned statement) written by `repro attest`
    pub file: PathBuf,
    /// Public key PEM (`openssl pkey -in key.pem -pubout`) the signature must verify with
    #[arg(long, value_name = "PUB.pem")]
    pub key: Option<PathBuf>,
    /// Check that the statement matches this run's record
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
    /// Re-hash the subject files and compare with their digests
    #[arg(long)]
    pub check_files: bool,
    /// Directory subject names are relative to [default: the git work tree containing the
    /// current directory, else the current directory]
    #[arg(long, value_name = "DIR", requires = "check_files")]
    pub base: Option<PathBuf>,
    /// Machine-readable report: {"schema_version":1,"ok":bool,"checks":[…]}
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `repro attest keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Private key file to create (the public key goes to FILE.pub); existing files are kept
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

/// Runs `repro attest …`; returns the exit code.
pub fn cmd_attest(ctx: &Ctx, args: &AttestArgs) -> i32 {
    let res = match &args.cmd {
        Some(AttestCmd::Verify(v)) => cmd_verify(ctx, v),
        Some(AttestCmd::Keygen(k)) => cmd_keygen(ctx, k).map(|()| true),
        None => cmd_statement(ctx, args).map(|()| true),
    };
    crate::cli::exit_with(res.map(|ok| if ok { 0 } else { 1 }))
}

fn cmd_statement(ctx: &Ctx, args: &AttestArgs) -> CliResult {
    let id = args
        .id
        .as_deref()
        .ok_or_else(|| CliError::usage("a run id is required").hint("repro attest ID"))?;
    let mut store = ctx.open_store()?;
    let a = op::attest(
        &store,
        &op::AttestRequest {
            id: id.to_string(),
            sign: args.sign.clone(),
        },
    )?;
    for o in &a.skipped.missing_outputs {
        ctx.warn(format!(
            "output {o} was missing when the run ended: it is not a subject"
        ));
    }
    for n in &a.notes {
        ctx.warn(n);
    }
    match &args.output {
        None => print_out(&a.document)?,
        Some(path) => {
            write_file(path, a.document.as_bytes(), 0o644, false)?;
            let signed = match &a.keyid {
                Some(k) => format!("DSSE envelope signed by key {k}"),
                None => "unsigned statement".into(),
            };
            ctx.status(format!(
                "wrote {} ({signed}, sha256 {})",
                path.display(),
                a.document_sha256
            ));
        }
    }
    // The document is out; failing to note its digest must not turn that into an error.
    if let Err(e) = op::record(&mut store, &a, args.output.as_deref()) {
        ctx.warn(format!(
            "the attestation's digest was not recorded: {}",
            CliError::from(e).message
        ));
    }
    Ok(())
}

fn cmd_verify(ctx: &Ctx, args: &VerifyArgs) -> CliResult<bool> {
    let store = match &args.run {
        Some(_) => Some(ctx.open_store()?),
        None => None,
    };
    let base = match (&args.base, args.check_files) {
        (Some(b), _) => Some(b.clone()),
        (None, true) => Some(default_base()?),
        (None, false) => None,
    };
    let report = op::verify(
        store.as_ref(),
        &op::VerifyRequest {
            file: args.file.clone(),
            key: args.key.clone(),
            run: args.run.clone(),
            check_files: args.check_files,
            base,
        },
    )?;
    let text = if args.json {
        let v = serde_json::json!({
            "schema_version": crate::record::SCHEMA_VERSION,
            "ok": report.ok(),
            "checks": report.checks,
        });
        format!("{v}\n")
    } else {
        let mut s = String::new();
        for c in &report.checks {
            let status = match c.status {
                CheckStatus::Ok => "ok",
                CheckStatus::Fail => "FAIL",
                CheckStatus::Skipped => "skipped",
            };
            s.push_str(&format!(
                "{status:<7}  {:<11}  {}\n",
                c.check,
                c.detail.replace('\n', "; ")
            ));
        }
        s
    };
    print_out(&text)?;
    Ok(report.ok())
}

fn cmd_keygen(ctx: &Ctx, args: &KeygenArgs) -> CliResult {
    let (private_pem, public_pem, keyid) = op::keygen()?;
    let mut pub_path = args.output.clone().into_os_string();
    pub_path.push(".pub");
    let pub_path = PathBuf::from(pub_path);
    if pub_path.exists() {
        return Err(already_exists(&pub_path));
    }
    write_file(&args.output, private_pem.as_bytes(), 0o600, true)?;
    write_file(&pub_path, public_pem.as_bytes(), 0o644, true)?;
    ctx.status(format!(
        "wrote {} (private) and {} (public)",
        args.output.display(),
        pub_path.display()
    ));
    print_out(&format!("{keyid}\n"))
}

fn already_exists(path: &Path) -> CliError {
    CliError::user(format!("{} already exists", path.display()))
        .hint("choose another path with -o, or move the old key aside")
}

/// Writes `bytes` to `path` with `mode`; `create_new` refuses an existing file.
fn write_file(path: &Path, bytes: &[u8], mode: u32, create_new: bool) -> CliResult {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).mode(mode);
    if create_new {
        opts.create_new(true);
    } else {
        opts.create(true).truncate(true);
    }
    let res = opts.open(path).and_then(|mut f| f.write_all(bytes));
    res.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            already_exists(path)
        } else {
            CliError::user(format!("cannot write {}: {e}", path.display()))
                .hint("choose a writable path for -o")
        }
    })
}

/// The git work tree containing the current directory, else the current directory.
fn default_base() -> CliResult<PathBuf> {
    let cwd = std::env::current_dir()
        .map_err(|e| CliError::user(format!("cannot read the current directory: {e}")))?;
    if let Ok(repo) = git2::Repository::discover(&cwd) {
        if let Some(w) = repo.workdir() {
            return Ok(w.to_path_buf());
        }
    }
    Ok(cwd)
}
