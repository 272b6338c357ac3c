//! `repro attest`: SLSA provenance (in-toto Statement v1) for a run's outputs, DSSE-signed with
//! Ed25519; `attest verify` checks one; `attest keygen` makes a key pair (docs/attest.md).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::cli::{print_out, Ctx};
use crate::error::{CliError, CliResult};
use crate::ops::attest as op;
use crate::output;

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
    /// Accept a document whose signature is not checked (no --key, or an unsigned statement);
    /// without it such a verify fails (exit 1)
    #[arg(long)]
    pub allow_unsigned: bool,
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
    for w in output::attest::warnings(&a) {
        ctx.warn(w);
    }
    match &args.output {
        None => print_out(&a.document)?,
        Some(path) => {
            op::write_document(path, &a)?;
            ctx.status(output::attest::wrote(path, &a));
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
        (None, true) => Some(op::default_base()?),
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
            allow_unsigned: args.allow_unsigned,
        },
    )?;
    print_out(&if args.json {
        output::attest::verify_json(&report)
    } else {
        output::attest::verify_text(&report)
    })?;
    Ok(report.ok())
}

fn cmd_keygen(ctx: &Ctx, args: &KeygenArgs) -> CliResult {
    let keys = op::write_key_pair(&args.output)?;
    ctx.status(output::attest::wrote_keys(&keys));
    print_out(&format!("{}\n", keys.keyid))
}
