//! `repro attest`: SLSA provenance (in-toto Statement v1) for a run's outputs, DSSE-signed with
//! Ed25519, optionally pushed next to the run's image; `attest verify` checks one (from a file or
//! from the registry); `attest keygen` makes a key pair (docs/attest.md).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::cli::{print_out, Ctx, RegistryArgs};
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
    /// Attach the signed envelope to the run's image digest in its registry (the referrers API
    /// where served, else the tag sha256-<hex>.att) and print the artifact's REPO@DIGEST
    #[arg(long, requires = "sign")]
    pub push: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Subcommands of `repro attest`.
#[derive(Debug, Subcommand)]
pub enum AttestCmd {
    /// Check an envelope or statement (a file, or those attached to an image in its registry): signature, shape, a run's record, the subject files (exit 1 on any failure)
    Verify(VerifyArgs),
    /// Write a new Ed25519 key pair: FILE (private, PKCS#8 PEM, mode 0600) and FILE.pub (public)
    Keygen(KeygenArgs),
}

/// Arguments of `repro attest verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The envelope (or unsigned statement) written by `repro attest`
    #[arg(
        required_unless_present = "from_registry",
        conflicts_with = "from_registry",
        value_hint = clap::ValueHint::FilePath
    )]
    pub file: Option<PathBuf>,
    /// Check the attestations attached to this image digest in its registry (pushed with
    /// `repro attest ID --sign KEY --push`, or by cosign); passes when one passes every check
    #[arg(long, value_name = "REF@DIGEST")]
    pub from_registry: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
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
            push: args.push,
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
    if args.push {
        let opts = args.registry.options(&ctx.config)?;
        let pushed = op::registry::push(&mut store, opts, &a, ctx)?;
        ctx.status(output::attest::pushed(&pushed));
        // stdout holds the document unless it went to a file.
        if args.output.is_some() {
            print_out(&format!("{}\n", pushed.reference))?;
        }
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
    let checks = op::Checks {
        key: args.key.clone(),
        run: args.run.clone(),
        check_files: args.check_files,
        base,
        objects: args.check_files.then(|| {
            crate::store::objects::Objects::beside(&ctx.db_path())
                .root()
                .to_path_buf()
        }),
        allow_unsigned: args.allow_unsigned,
    };
    if let Some(image) = &args.from_registry {
        let report = op::registry::verify_from_registry(
            store.as_ref(),
            args.registry.options(&ctx.config)?,
            &op::registry::RegistryVerifyRequest {
                image: image.clone(),
                checks,
            },
        )?;
        print_out(&if args.json {
            output::attest::registry_verify_json(&report)
        } else {
            output::attest::registry_verify_text(&report)
        })?;
        return Ok(report.ok());
    }
    let file = args
        .file
        .clone()
        .ok_or_else(|| CliError::usage("give FILE or --from-registry REF@DIGEST"))?;
    let report = op::verify(store.as_ref(), &op::VerifyRequest { file, checks })?;
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
