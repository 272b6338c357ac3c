//! `attest`: the provenance statement of a stored run, optionally DSSE-signed; `verify`: checks a
//! statement or envelope (signature, shape, a run's record, the subject files); `keygen`;
//! [`registry`]: the envelope pushed next to the run's image, and verified from there.

pub mod registry;

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::attest::statement::{ResourceDescriptor, MANIFEST_DIGEST_NOTE, PREDICATE_TYPE};
use crate::attest::{
    self, Document, Envelope, Extras, KeyError, PublicKey, SignatureCheck, SigningKey, Skipped,
    Statement, StatementError, IN_TOTO_PAYLOAD_TYPE,
};
use crate::error::Hinted;
use crate::record::Run;
use crate::store::attest::AttestationRecord;
use crate::store::kept::ManifestEntry;
use crate::store::objects::{ObjectError, Objects};
use crate::store::{Store, StoreError};

/// Errors of the attest operations.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Statement(#[from] StatementError),
    #[error("cannot read the key {path}")]
    ReadKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A key or document that is not a regular file of a sane size (a FIFO, `/dev/zero`).
    #[error(transparent)]
    Untrusted(#[from] crate::capture::untrusted::UntrustedFileError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot read {path}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is neither a DSSE envelope nor an in-toto statement")]
    Document {
        path: PathBuf,
        #[source]
        source: attest::DocumentError,
    },
    #[error("{} already exists", path.display())]
    Exists { path: PathBuf },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the current directory: {0}")]
    CurrentDir(#[source] std::io::Error),
    #[error(transparent)]
    Artifact(#[from] crate::oci_artifact::ArtifactError),
    #[error(transparent)]
    Registry(#[from] crate::capture::image::registry::RegistryError),
    #[error("only a signed attestation is pushed (--push needs --sign KEY)")]
    PushUnsigned,
    #[error("run {run} has no image: an attestation is pushed next to the image the run used")]
    NoImage { run: String },
    #[error(
        "the image of run {run} ({}) was never resolved to a digest",
        crate::sanitize::escape(reference)
    )]
    Unresolved { run: String, reference: String },
    #[error("{image}, the image of run {run}, is not in its registry")]
    NotInRegistry { run: String, image: String },
    #[error("{}: {problem}", crate::sanitize::escape(reference))]
    ImageReference { reference: String, problem: String },
    #[error("no attestation of {image} was found (looked at {looked})")]
    NoneFound { image: String, looked: String },
}

impl Hinted for AttestError {
    fn hint(&self) -> Option<String> {
        match self {
            AttestError::Store(e) => e.hint(),
            AttestError::Statement(e) => e.hint(),
            AttestError::ReadKey { .. } | AttestError::Key(_) => Some(
                "give an Ed25519 key in PEM: `openssl genpkey -algorithm ed25519 -out key.pem` (private), `openssl pkey -in key.pem -pubout -out key.pub.pem` (public), or `repro attest keygen`"
                    .into(),
            ),
            AttestError::ReadFile { .. } => Some("check the path".into()),
            AttestError::Untrusted(_) => Some(
                "give the key or attestation file itself: a regular file (keys are a few hundred bytes)"
                    .into(),
            ),
            AttestError::Document { .. } => {
                Some("give the file written by `repro attest ID -o FILE`".into())
            }
            AttestError::Exists { .. } => {
                Some("choose another path with -o, or move the old key aside".into())
            }
            AttestError::Write { .. } => Some("choose a writable path for -o".into()),
            AttestError::CurrentDir(_) => None,
            AttestError::Artifact(e) => e.hint(),
            AttestError::Registry(e) => e.hint(),
            AttestError::PushUnsigned => Some("repro attest ID --sign KEY --push".into()),
            AttestError::NoImage { .. } => Some(
                "attest it without --push and keep the envelope with the outputs (-o FILE)".into(),
            ),
            AttestError::Unresolved { .. } => Some(
                "only a digest the registry served can carry an attestation; re-run with a reference the registry resolves (repro rerun ID), or attest without --push".into(),
            ),
            AttestError::NotInRegistry { .. } => Some(
                "push the image to that registry first (skopeo copy … docker://REPO@DIGEST), or attest without --push".into(),
            ),
            AttestError::ImageReference { .. } => Some(
                "give the image as REPOSITORY@sha256:HEX, e.g. registry.example.com/team/trainer@sha256:…".into(),
            ),
            AttestError::NoneFound { .. } => Some(
                "attach one with `repro attest ID --sign KEY --push`; check the digest is the one that ran (`repro show ID`)".into(),
            ),
        }
    }
}

/// What `repro attest ID` is asked for.
#[derive(Debug, Clone)]
pub struct AttestRequest {
    /// Run id or unique prefix.
    pub id: String,
    /// PKCS#8 PEM Ed25519 private key: sign into a DSSE envelope.
    pub sign: Option<PathBuf>,
    /// The envelope will be pushed next to the run's image: refuse a run that has no image
    /// resolved to a digest before anything is written.
    pub push: bool,
}

/// What `repro attest ID` produced.
#[derive(Debug, Clone)]
pub struct Attestation {
    /// The full run id.
    pub run_id: String,
    pub statement: Statement,
    /// The envelope, when signed.
    pub envelope: Option<Envelope>,
    /// The document to write (envelope or statement JSON), newline-terminated.
    pub document: String,
    /// SHA-256 (hex) of `document`.
    pub document_sha256: String,
    /// The signing key's id (SHA-256 of its SPKI DER), when signed.
    pub keyid: Option<String>,
    /// What was left out (missing outputs).
    pub skipped: Skipped,
    /// Warnings: why a byproduct is absent (e.g. the re-run script does not render), a private
    /// key that others can read.
    pub notes: Vec<String>,
}

/// Builds (and optionally signs) the statement of a stored run.
pub fn attest(store: &Store, req: &AttestRequest) -> Result<Attestation, AttestError> {
    let (key, key_warning) = match &req.sign {
        Some(p) => {
            let (k, w) = read_signing_key(p)?;
            (Some(k), w)
        }
        None => (None, None),
    };
    let id = store.resolve_id(&req.id)?;
    let run = store.get_run(&id)?;
    if req.push {
        registry::pushable(&run)?;
    }
    let (extras, mut notes) = extras_for(store, &run)?;
    notes.extend(key_warning);
    let (statement, skipped) = attest::build(&run, &extras)?;
    let payload = serde_json::to_vec(&statement).expect("statement serialises");
    let (envelope, keyid, mut document) = match &key {
        Some(k) => {
            let env = k.sign_envelope(IN_TOTO_PAYLOAD_TYPE, &payload);
            let doc = serde_json::to_string_pretty(&env).expect("envelope serialises");
            (Some(env), Some(k.public().keyid()), doc)
        }
        None => (
            None,
            None,
            serde_json::to_string_pretty(&statement).expect("statement serialises"),
        ),
    };
    document.push('\n');
    let document_sha256 = hex::encode(Sha256::digest(document.as_bytes()));
    Ok(Attestation {
        run_id: id,
        statement,
        envelope,
        document,
        document_sha256,
        keyid,
        skipped,
        notes,
    })
}

/// Records the document's digest for its run (`show --format notes` cites it); `path` when it was
/// written to a file.
pub fn record(store: &mut Store, a: &Attestation, path: Option<&Path>) -> Result<(), AttestError> {
    let path = path.map(|p| {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .to_string_lossy()
            .into_owned()
    });
    store.record_attestation(&AttestationRecord {
        run_id: a.run_id.clone(),
        sha256: a.document_sha256.clone(),
        keyid: a.keyid.clone(),
        path,
        created_at: crate::capture::host::rfc3339(crate::capture::host::now()),
    })?;
    Ok(())
}

/// The release-notes mention of a run's attestation (the newest signed one, else the newest):
/// `attestation sha256:<hex> (signed, keyid <first 16 hex>)`, or `None` when it has none.
pub fn notes_mention(store: &Store, run_id: &str) -> Result<Option<String>, AttestError> {
    Ok(store.attestations(run_id)?.into_iter().next().map(|a| {
        let how = match &a.keyid {
            Some(k) => format!("signed, keyid {}", &k[..k.len().min(16)]),
            None => "unsigned".into(),
        };
        format!("attestation sha256:{} ({how})", a.sha256)
    }))
}

/// The byproduct facts: the bash re-run script's digest (rendered by the same code as
/// `repro script ID`), and the run's metric summary (as `show --json` gives it) when it has one.
fn extras_for(store: &Store, run: &Run) -> Result<(Extras, Vec<String>), AttestError> {
    let mut notes = Vec::new();
    let rerun_script_sha256 =
        match crate::script::render(run, &crate::script::ScriptOptions::default()) {
            Ok(script) => Some(hex::encode(Sha256::digest(script.as_bytes()))),
            Err(e) => {
                notes.push(format!("no re-run script byproduct: {e}"));
                None
            }
        };
    let summaries = store.metric_summaries(&run.id)?;
    let metrics = match crate::record::metrics::summary_json(&summaries) {
        serde_json::Value::Object(m) if !m.is_empty() => Some(m),
        _ => None,
    };
    Ok((
        Extras {
            rerun_script_sha256,
            metrics,
        },
        notes,
    ))
}

/// The most a key file may hold (an Ed25519 PEM is about 120 bytes).
const MAX_KEY_BYTES: u64 = 64 << 10;
/// The most an attestation file may hold (a statement of many subjects with inline metrics).
const MAX_DOCUMENT_BYTES: u64 = 64 << 20;

/// A key file's text: a regular file of at most `MAX_KEY_BYTES` (never a FIFO or `/dev/zero`).
fn read_key_text(path: &Path) -> Result<String, AttestError> {
    let bytes = crate::capture::untrusted::read_regular(path, MAX_KEY_BYTES, "a key file")?;
    String::from_utf8(bytes).map_err(|_| AttestError::ReadKey {
        path: path.into(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text (PEM)"),
    })
}

/// The signing key, and a warning when its file can be read by others (as ssh warns about an
/// unprotected private key: anyone who can read it can sign as you).
fn read_signing_key(path: &Path) -> Result<(SigningKey, Option<String>), AttestError> {
    use std::os::unix::fs::PermissionsExt;
    let pem = read_key_text(path)?;
    let key = SigningKey::from_pem(&pem, &path.display().to_string())?;
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    let warning = (mode & 0o077 != 0).then(|| {
        format!(
            "the private key {} has permissions {mode:04o}: others can read it and sign as you; `chmod 600 {}`",
            path.display(),
            path.display()
        )
    });
    Ok((key, warning))
}

fn read_public_key(path: &Path) -> Result<PublicKey, AttestError> {
    let pem = read_key_text(path)?;
    Ok(PublicKey::from_pem(&pem, &path.display().to_string())?)
}

/// A new key pair as PEM (private PKCS#8 v1 as openssl writes it, public SPKI) and its keyid.
pub fn keygen() -> Result<(String, String, String), AttestError> {
    let (key, private_pem) = SigningKey::generate()?;
    let public = key.public();
    Ok((private_pem, public.to_pem(), public.keyid()))
}

/// A key pair written by `write_key_pair`.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    pub private: PathBuf,
    pub public: PathBuf,
    pub keyid: String,
}

/// Makes a key pair and writes it to `private` (mode 0600) and `private.pub` (0644); neither
/// file may exist already.
pub fn write_key_pair(private: &Path) -> Result<KeyFiles, AttestError> {
    let (private_pem, public_pem, keyid) = keygen()?;
    let mut public = private.to_path_buf().into_os_string();
    public.push(".pub");
    let public = PathBuf::from(public);
    if public.exists() {
        return Err(AttestError::Exists { path: public });
    }
    write_file(private, private_pem.as_bytes(), 0o600, true)?;
    write_file(&public, public_pem.as_bytes(), 0o644, true)?;
    Ok(KeyFiles {
        private: private.to_path_buf(),
        public,
        keyid,
    })
}

/// Writes an attestation document to `path` (mode 0644, replacing a file there).
pub fn write_document(path: &Path, a: &Attestation) -> Result<(), AttestError> {
    write_file(path, a.document.as_bytes(), 0o644, false)
}

/// Writes `bytes` to `path` with `mode`; `create_new` refuses an existing file.
fn write_file(path: &Path, bytes: &[u8], mode: u32, create_new: bool) -> Result<(), AttestError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).mode(mode);
    if create_new {
        opts.create_new(true);
    } else {
        opts.create(true).truncate(true);
    }
    let res = opts.open(path).and_then(|mut f| f.write_all(bytes));
    res.map_err(|e| {
        let path = path.to_path_buf();
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            AttestError::Exists { path }
        } else {
            AttestError::Write { path, source: e }
        }
    })
}

/// The directory subject names are relative to by default: the git work tree containing the
/// current directory, else the current directory.
pub fn default_base() -> Result<PathBuf, AttestError> {
    let cwd = std::env::current_dir().map_err(AttestError::CurrentDir)?;
    if let Ok(repo) = git2::Repository::discover(&cwd) {
        if let Some(w) = repo.workdir() {
            return Ok(w.to_path_buf());
        }
    }
    Ok(cwd)
}

/// What `repro attest verify FILE` is asked for.
#[derive(Debug, Clone, Default)]
pub struct VerifyRequest {
    pub file: PathBuf,
    pub checks: Checks,
}

/// What a document is checked against (`attest verify`, from a file or from a registry).
#[derive(Debug, Clone, Default)]
pub struct Checks {
    /// Public key (or private key) PEM to check the signature with.
    pub key: Option<PathBuf>,
    /// Run id: the statement must match what this run's record gives now.
    pub run: Option<String>,
    /// Re-hash the subject files under `base`.
    pub check_files: bool,
    /// Directory subject names are relative to (the repository root).
    pub base: Option<PathBuf>,
    /// The object store (its `objects` directory): a subject whose working copy changed is
    /// checked against its kept copy there.
    pub objects: Option<PathBuf>,
    /// Accept a document whose signature is not checked (no `key`, or an unsigned statement):
    /// the signature check is then `skipped`; without it, `fail`.
    pub allow_unsigned: bool,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    Fail,
    /// Not checked (no key given with `--allow-unsigned`, an algorithm repro cannot
    /// recompute, …); does not fail.
    Skipped,
}

/// One line of the verification report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// `signature`, `payloadType`, `statement`, `run`, `subject NAME`.
    pub check: String,
    pub status: CheckStatus,
    pub detail: String,
}

/// The verification report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub checks: Vec<Check>,
}

impl VerifyReport {
    /// Whether every check passed or was skipped.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.status != CheckStatus::Fail)
    }

    fn push(&mut self, check: impl Into<String>, status: CheckStatus, detail: impl Into<String>) {
        self.checks.push(Check {
            check: check.into(),
            status,
            detail: detail.into(),
        });
    }
}

/// Verifies a statement or envelope. `store` is needed only for `req.checks.run`.
pub fn verify(store: Option<&Store>, req: &VerifyRequest) -> Result<VerifyReport, AttestError> {
    let key = read_check_key(&req.checks)?;
    let bytes = crate::capture::untrusted::read_regular(
        &req.file,
        MAX_DOCUMENT_BYTES,
        "an attestation file",
    )?;
    let doc = attest::parse_document(&bytes).map_err(|source| AttestError::Document {
        path: req.file.clone(),
        source,
    })?;
    check_document(store, &doc, key.as_ref(), &req.checks)
}

/// The public key of `--key`, when given.
fn read_check_key(checks: &Checks) -> Result<Option<PublicKey>, AttestError> {
    checks.key.as_deref().map(read_public_key).transpose()
}

/// Runs the checks on a parsed document: payload type, signature, statement shape, inline
/// byproducts, then the run's record and the subject files when asked.
fn check_document(
    store: Option<&Store>,
    doc: &Document,
    key: Option<&PublicKey>,
    req: &Checks,
) -> Result<VerifyReport, AttestError> {
    // Without a key nothing vouches for the document: a gate that forgot --key must not pass.
    let unchecked = if req.allow_unsigned {
        CheckStatus::Skipped
    } else {
        CheckStatus::Fail
    };
    let unless_allowed = if req.allow_unsigned {
        ""
    } else {
        "; pass --allow-unsigned to accept a document whose signature is not checked"
    };
    let mut report = VerifyReport { checks: Vec::new() };
    let payload = match doc {
        Document::Envelope(env, payload) => {
            if env.payload_type == IN_TOTO_PAYLOAD_TYPE {
                report.push("payloadType", CheckStatus::Ok, IN_TOTO_PAYLOAD_TYPE);
            } else {
                report.push(
                    "payloadType",
                    CheckStatus::Fail,
                    format!("{:?}, expected {IN_TOTO_PAYLOAD_TYPE}", env.payload_type),
                );
            }
            check_signature(env, key, unchecked, unless_allowed, &mut report);
            payload.clone()
        }
        Document::Statement(bytes) => {
            if key.is_some() {
                report.push(
                    "signature",
                    CheckStatus::Fail,
                    "the file is an unsigned statement, not a DSSE envelope",
                );
            } else {
                report.push(
                    "signature",
                    unchecked,
                    format!("unsigned statement{unless_allowed}"),
                );
            }
            bytes.clone()
        }
    };
    let statement = match parse_statement(&payload) {
        Ok(s) => {
            report.push(
                "statement",
                CheckStatus::Ok,
                format!(
                    "in-toto Statement v1, SLSA Provenance v1, run {}, {} subject(s)",
                    s.predicate.run_details.metadata.invocation_id,
                    s.subject.len()
                ),
            );
            Some(s)
        }
        Err(e) => {
            report.push("statement", CheckStatus::Fail, e);
            None
        }
    };
    let Some(statement) = statement else {
        return Ok(report);
    };
    for b in &statement.predicate.run_details.byproducts {
        check_inline_content(b, &mut report);
    }
    if let (Some(id), Some(store)) = (&req.run, store) {
        check_run(store, id, &statement, &mut report)?;
    }
    if req.check_files {
        let base = req.base.clone().unwrap_or_else(|| PathBuf::from("."));
        let objects = req.objects.clone().map(Objects::at);
        for s in &statement.subject {
            check_subject(&base, objects.as_ref(), s, &mut report);
        }
    }
    Ok(report)
}

/// The signature check of an envelope: valid by the given key, none verifies, or not checked
/// without a key (`unchecked`: Fail unless --allow-unsigned).
fn check_signature(
    env: &crate::attest::dsse::Envelope,
    key: Option<&crate::attest::dsse::PublicKey>,
    unchecked: CheckStatus,
    unless_allowed: &str,
    report: &mut VerifyReport,
) {
    let Some(k) = key else {
        report.push(
            "signature",
            unchecked,
            format!(
                "not checked: give --key PUB.pem ({} signature(s), keyid {}){unless_allowed}",
                env.signatures.len(),
                env.signatures
                    .iter()
                    .map(|s| s.keyid.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        return;
    };
    match env.check(k) {
        Ok(SignatureCheck::Valid { keyid }) => {
            let hint = if keyid == k.keyid() {
                String::new()
            } else {
                format!(" (the signature's keyid field says {keyid:?})")
            };
            report.push(
                "signature",
                CheckStatus::Ok,
                format!("valid Ed25519 signature by key {}{hint}", k.keyid()),
            )
        }
        Ok(SignatureCheck::Invalid { signatures }) => report.push(
            "signature",
            CheckStatus::Fail,
            format!(
                "none of the {signatures} signature(s) verifies with key {}",
                k.keyid()
            ),
        ),
        Err(e) => report.push("signature", CheckStatus::Fail, e.to_string()),
    }
}

/// Parses the payload as the documented shape (unknown fields rejected).
fn parse_statement(payload: &[u8]) -> Result<Statement, String> {
    let s: Statement = serde_json::from_slice(payload)
        .map_err(|e| format!("not the shape docs/attest.md documents: {e}"))?;
    if s.type_ != attest::statement::STATEMENT_TYPE {
        return Err(format!(
            "_type is {:?}, expected {}",
            s.type_,
            attest::statement::STATEMENT_TYPE
        ));
    }
    if s.predicate_type != PREDICATE_TYPE {
        return Err(format!(
            "predicateType is {:?}, expected {PREDICATE_TYPE}",
            s.predicate_type
        ));
    }
    let bt = &s.predicate.build_definition.build_type;
    if bt != attest::statement::BUILD_TYPE {
        return Err(format!(
            "buildType is {bt:?}, expected {}",
            attest::statement::BUILD_TYPE
        ));
    }
    if s.subject.is_empty() {
        return Err("no subject".into());
    }
    if let Some(bad) = s
        .subject
        .iter()
        .find(|r| r.name.is_none() || r.digest.is_empty())
    {
        return Err(format!("a subject without a name or digest: {bad:?}"));
    }
    for t in [
        Some(&s.predicate.run_details.metadata.started_on),
        s.predicate.run_details.metadata.finished_on.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        if chrono::DateTime::parse_from_rfc3339(t).is_err() {
            return Err(format!("{t:?} is not an RFC 3339 time with a zone"));
        }
    }
    Ok(s)
}

/// Compares the statement with the one the run's record gives now (byproducts and builder
/// excluded: they depend on the repro version that renders them).
fn check_run(
    store: &Store,
    id: &str,
    statement: &Statement,
    report: &mut VerifyReport,
) -> Result<(), AttestError> {
    let id = store.resolve_id(id)?;
    let run = store.get_run(&id)?;
    let (expected, _) = match attest::build(&run, &Extras::default()) {
        Ok(x) => x,
        Err(e) => {
            report.push("run", CheckStatus::Fail, format!("{id}: {e}"));
            return Ok(());
        }
    };
    let mut diffs = Vec::new();
    if statement.subject != expected.subject {
        diffs.push("subject");
    }
    let (got, want) = (&statement.predicate, &expected.predicate);
    if got.run_details.metadata != want.run_details.metadata {
        diffs.push("runDetails.metadata");
    }
    let (gb, wb) = (&got.build_definition, &want.build_definition);
    if gb.external_parameters != wb.external_parameters {
        diffs.push("externalParameters");
    }
    if gb.internal_parameters != wb.internal_parameters {
        diffs.push("internalParameters");
    }
    if gb.resolved_dependencies != wb.resolved_dependencies {
        diffs.push("resolvedDependencies");
    }
    if diffs.is_empty() {
        report.push(
            "run",
            CheckStatus::Ok,
            format!("matches the record of run {id}"),
        );
    } else {
        report.push(
            "run",
            CheckStatus::Fail,
            format!(
                "differs from the record of run {id} in {}",
                diffs.join(", ")
            ),
        );
    }
    Ok(())
}

/// A byproduct carrying its `content` (the metric summary): the decoded bytes must have the
/// descriptor's `digest.sha256`.
fn check_inline_content(b: &ResourceDescriptor, report: &mut VerifyReport) {
    use base64::Engine as _;
    let Some(content) = &b.content else { return };
    let label = format!("byproduct {}", b.name.clone().unwrap_or_default());
    let Some(want) = b.digest.get("sha256") else {
        report.push(label, CheckStatus::Fail, "content without a sha256 digest");
        return;
    };
    match base64::engine::general_purpose::STANDARD.decode(content) {
        Err(e) => report.push(
            label,
            CheckStatus::Fail,
            format!("content is not base64: {e}"),
        ),
        Ok(bytes) => {
            let got = hex::encode(Sha256::digest(&bytes));
            if got == *want {
                report.push(label, CheckStatus::Ok, format!("content sha256 {want}"));
            } else {
                report.push(
                    label,
                    CheckStatus::Fail,
                    format!("content has sha256 {got}, the digest says {want}"),
                );
            }
        }
    }
}

/// Re-hashes one subject under `base`: a file's SHA-256, or a directory's manifest digest. When
/// the working copy changed or is gone, the kept copy in the object store (`objects`) stands in
/// for it, re-hashed, and the detail says so.
fn check_subject(
    base: &Path,
    objects: Option<&Objects>,
    s: &ResourceDescriptor,
    report: &mut VerifyReport,
) {
    let name = s.name.clone().unwrap_or_default();
    let label = format!("subject {name}");
    let Some(want) = s.digest.get("sha256") else {
        report.push(label, CheckStatus::Skipped, "no sha256 digest to recompute");
        return;
    };
    let manifest =
        s.annotations.get("digestOf").and_then(|v| v.as_str()) == Some(MANIFEST_DIGEST_NOTE);
    let path = base.join(&name);
    let problem = match crate::capture::dataset::hash_output(&path) {
        Ok(o) => match o.sha256 {
            None => format!("{} is missing", path.display()),
            Some(got) => {
                let got_hex = got.strip_prefix("sha256:").unwrap_or(&got);
                let kind_ok = manifest == got.starts_with("sha256:");
                if kind_ok && got_hex == want {
                    report.push(label, CheckStatus::Ok, format!("sha256 {want}"));
                    return;
                }
                format!(
                    "{}: expected sha256 {want}, found {got_hex}",
                    path.display()
                )
            }
        },
        Err(e) => format!("{}: {e}", path.display()),
    };
    match objects.map(|o| kept_copy_intact(o, want, manifest)) {
        Some(Ok(true)) => report.push(
            label,
            CheckStatus::Ok,
            format!("sha256 {want}: the kept copy (`repro get` gives it back); the working copy differs ({problem})"),
        ),
        Some(Ok(false)) => report.push(
            label,
            CheckStatus::Fail,
            format!("{problem}; no intact kept copy either"),
        ),
        Some(Err(e)) => report.push(
            label,
            CheckStatus::Fail,
            format!("{problem}; the kept copy cannot be read: {e}"),
        ),
        None => report.push(label, CheckStatus::Fail, problem),
    }
}

/// Whether the object store holds the subject `want` intact: the file's object re-hashed, or
/// for a directory its manifest and every object the manifest names.
fn kept_copy_intact(objects: &Objects, want: &str, manifest: bool) -> Result<bool, ObjectError> {
    if !manifest {
        return Ok(objects.verify(want)? == Some(true));
    }
    let Some(text) = objects.read(want)? else {
        return Ok(false);
    };
    let Some(entries) = crate::store::kept::parse_manifest(&text) else {
        return Ok(false);
    };
    for e in entries {
        let sha = match &e {
            ManifestEntry::File { sha256, .. } | ManifestEntry::Symlink { sha256, .. } => sha256,
        };
        if objects.verify(sha)? != Some(true) {
            return Ok(false);
        }
    }
    Ok(true)
}
