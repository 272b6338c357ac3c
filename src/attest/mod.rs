//! Provenance for runs: the in-toto Statement v1 / SLSA Provenance v1 built from a record, and the
//! DSSE envelope that signs it with Ed25519 (docs/attest.md). Pure: no store, no printing.

pub mod dsse;
pub mod statement;

pub use dsse::{Envelope, KeyError, PublicKey, SignatureCheck, SigningKey, IN_TOTO_PAYLOAD_TYPE};
pub use statement::{build, Extras, Skipped, Statement, StatementError};

/// What a file given to `repro attest verify` holds.
#[derive(Debug, Clone)]
pub enum Document {
    /// A DSSE envelope and its decoded payload bytes.
    Envelope(Envelope, Vec<u8>),
    /// A bare (unsigned) statement's bytes.
    Statement(Vec<u8>),
}

/// Why a file is neither an envelope nor a statement.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("it is not JSON")]
    NotJson(#[source] serde_json::Error),
    #[error("it is not a DSSE envelope (payload, payloadType, signatures)")]
    BadEnvelope(#[source] serde_json::Error),
    #[error("the envelope's payload is not base64")]
    Payload(#[source] base64::DecodeError),
}

/// Reads an envelope (an object with `payloadType`) or a bare statement.
pub fn parse_document(bytes: &[u8]) -> Result<Document, DocumentError> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(DocumentError::NotJson)?;
    if v.get("payloadType").is_some() || v.get("signatures").is_some() {
        let env: Envelope = serde_json::from_value(v).map_err(DocumentError::BadEnvelope)?;
        let payload = env.payload_bytes().map_err(DocumentError::Payload)?;
        Ok(Document::Envelope(env, payload))
    } else {
        Ok(Document::Statement(bytes.to_vec()))
    }
}
