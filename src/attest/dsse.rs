//! DSSE envelopes (Dead Simple Signing Envelope v1) signed with Ed25519 through `ring`, and the
//! PEM/PKCS#8/SPKI handling of Ed25519 keys as `openssl genpkey -algorithm ed25519` writes them.

use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The payload type of an in-toto statement inside a DSSE envelope.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID 1.3.101.112 },
/// BIT STRING (0 unused bits) } followed by the 32-byte key.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// DER prefix of a PKCS#8 v1 Ed25519 private key (RFC 8410), as openssl writes it, followed by
/// the 32-byte seed.
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Errors reading keys and checking envelopes.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{what} is not PEM (no `-----BEGIN {label}-----` block)")]
    NotPem { what: String, label: &'static str },
    #[error("{what} holds a `{found}` PEM block, not `{label}`")]
    WrongLabel {
        what: String,
        found: String,
        label: &'static str,
    },
    #[error("{what}: the PEM body is not valid base64")]
    Base64 {
        what: String,
        #[source]
        source: base64::DecodeError,
    },
    #[error("{what} is not an Ed25519 private key in PKCS#8 ({reason})")]
    BadPrivateKey { what: String, reason: String },
    #[error("{what} is not an Ed25519 public key (SubjectPublicKeyInfo, RFC 8410)")]
    BadPublicKey { what: String },
}

/// A DSSE signature entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// SHA-256 (hex) of the signer's SubjectPublicKeyInfo DER; a hint, not trusted.
    #[serde(default)]
    pub keyid: String,
    /// Base64 of the Ed25519 signature over the PAE.
    pub sig: String,
}

/// A DSSE envelope as JSON: `{"payload", "payloadType", "signatures"}` (payload in standard base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<Signature>,
}

/// The DSSE pre-authentication encoding: `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`,
/// lengths as ASCII decimal.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// An Ed25519 signing key with its public half.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// Reads a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`); `what` names it in errors.
    pub fn from_pem(pem: &str, what: &str) -> Result<SigningKey, KeyError> {
        let der = pem_decode(pem, "PRIVATE KEY", what)?;
        // `maybe_unchecked` accepts PKCS#8 v1 (no embedded public key), which is what openssl writes.
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|e| {
            KeyError::BadPrivateKey {
                what: what.into(),
                reason: e.to_string(),
            }
        })?;
        Ok(SigningKey { pair })
    }

    /// A new random key.
    pub fn generate() -> Result<(SigningKey, String), KeyError> {
        use ring::rand::SecureRandom as _;
        let mut seed = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| KeyError::BadPrivateKey {
                what: "a new key".into(),
                reason: "the system random number generator failed".into(),
            })?;
        let mut der = PKCS8_V1_PREFIX.to_vec();
        der.extend_from_slice(&seed);
        let pem = pem_encode("PRIVATE KEY", &der);
        Ok((SigningKey::from_pem(&pem, "a new key")?, pem))
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        let mut raw = [0u8; 32];
        raw.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey { raw }
    }

    /// Signs `payload` into a one-signature envelope.
    pub fn sign_envelope(&self, payload_type: &str, payload: &[u8]) -> Envelope {
        let sig = self.pair.sign(&pae(payload_type, payload));
        let b64 = base64::engine::general_purpose::STANDARD;
        Envelope {
            payload: b64.encode(payload),
            payload_type: payload_type.into(),
            signatures: vec![Signature {
                keyid: self.public().keyid(),
                sig: b64.encode(sig.as_ref()),
            }],
        }
    }
}

/// An Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    raw: [u8; 32],
}

impl PublicKey {
    /// Reads a public key PEM (`-----BEGIN PUBLIC KEY-----`, as `openssl pkey -pubout` writes) or,
    /// for convenience, derives it from a private key PEM.
    pub fn from_pem(pem: &str, what: &str) -> Result<PublicKey, KeyError> {
        if pem.contains("-----BEGIN PRIVATE KEY-----") {
            return Ok(SigningKey::from_pem(pem, what)?.public());
        }
        let der = pem_decode(pem, "PUBLIC KEY", what)?;
        if der.len() != SPKI_PREFIX.len() + 32 || der[..SPKI_PREFIX.len()] != SPKI_PREFIX {
            return Err(KeyError::BadPublicKey { what: what.into() });
        }
        let mut raw = [0u8; 32];
        raw.copy_from_slice(&der[SPKI_PREFIX.len()..]);
        Ok(PublicKey { raw })
    }

    /// The SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> Vec<u8> {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.raw);
        der
    }

    /// The PEM form (`-----BEGIN PUBLIC KEY-----`).
    pub fn to_pem(&self) -> String {
        pem_encode("PUBLIC KEY", &self.spki_der())
    }

    /// The key id: SHA-256 (hex) of the SPKI DER.
    pub fn keyid(&self) -> String {
        hex::encode(Sha256::digest(self.spki_der()))
    }

    /// Whether `sig` (raw bytes) is a valid signature of `message`.
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.raw)
            .verify(message, sig)
            .is_ok()
    }
}

/// What checking an envelope's signatures against one key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheck {
    /// A signature verified; its keyid field.
    Valid { keyid: String },
    /// No signature verified with the key.
    Invalid { signatures: usize },
}

impl Envelope {
    /// The decoded payload.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        decode_b64(&self.payload)
    }

    /// Checks every signature over the PAE of the decoded payload with `key`. The keyid is a hint
    /// only (DSSE): a signature whose keyid differs but verifies still counts.
    pub fn check(&self, key: &PublicKey) -> Result<SignatureCheck, base64::DecodeError> {
        let payload = self.payload_bytes()?;
        let message = pae(&self.payload_type, &payload);
        for s in &self.signatures {
            let Ok(sig) = decode_b64(&s.sig) else {
                continue;
            };
            if key.verify(&message, &sig) {
                return Ok(SignatureCheck::Valid {
                    keyid: s.keyid.clone(),
                });
            }
        }
        Ok(SignatureCheck::Invalid {
            signatures: self.signatures.len(),
        })
    }
}

/// Decodes standard or URL-safe base64 (DSSE allows either), padded or not.
fn decode_b64(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    let no_pad = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone),
    );
    STANDARD
        .decode(s)
        .or_else(|_| no_pad.decode(s))
        .or_else(|_| URL_SAFE.decode(s))
        .or_else(|_| URL_SAFE_NO_PAD.decode(s))
}

/// The DER inside the first `label` PEM block of `pem`.
fn pem_decode(pem: &str, label: &'static str, what: &str) -> Result<Vec<u8>, KeyError> {
    let Some(begin) = pem.find("-----BEGIN ") else {
        return Err(KeyError::NotPem {
            what: what.into(),
            label,
        });
    };
    let rest = &pem[begin + "-----BEGIN ".len()..];
    let Some(end_label) = rest.find("-----") else {
        return Err(KeyError::NotPem {
            what: what.into(),
            label,
        });
    };
    let found = &rest[..end_label];
    if found != label {
        return Err(KeyError::WrongLabel {
            what: what.into(),
            found: found.into(),
            label,
        });
    }
    let body = &rest[end_label + 5..];
    let footer = format!("-----END {label}-----");
    let Some(stop) = body.find(&footer) else {
        return Err(KeyError::NotPem {
            what: what.into(),
            label,
        });
    };
    let b64: String = body[..stop]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|source| KeyError::Base64 {
            what: what.into(),
            source,
        })
}

/// A PEM block with 64-character lines.
fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8032 test vector 1 wrapped as openssl writes it.
    const RFC8032_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const RFC8032_PUB: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const RFC8032_SIG_EMPTY: &str =
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

    fn rfc_key() -> SigningKey {
        let mut der = PKCS8_V1_PREFIX.to_vec();
        der.extend_from_slice(&hex::decode(RFC8032_SEED).unwrap());
        SigningKey::from_pem(&pem_encode("PRIVATE KEY", &der), "test key").unwrap()
    }

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // The DSSE protocol document's example.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn openssl_style_pkcs8_gives_the_rfc8032_key_and_signature() {
        let key = rfc_key();
        assert_eq!(hex::encode(key.public().raw), RFC8032_PUB);
        let sig = key.pair.sign(b"");
        assert_eq!(hex::encode(sig.as_ref()), RFC8032_SIG_EMPTY);
        let pem = key.public().to_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA"));
        assert_eq!(PublicKey::from_pem(&pem, "p").unwrap(), key.public());
        assert_eq!(
            key.public().keyid(),
            hex::encode(Sha256::digest(key.public().spki_der()))
        );
    }

    #[test]
    fn envelope_round_trip_and_tampering() {
        let key = rfc_key();
        let env = key.sign_envelope(IN_TOTO_PAYLOAD_TYPE, b"{\"a\":1}");
        assert!(matches!(
            env.check(&key.public()).unwrap(),
            SignatureCheck::Valid { .. }
        ));
        let mut bad = env.clone();
        bad.payload = base64::engine::general_purpose::STANDARD.encode(b"{\"a\":2}");
        assert!(matches!(
            bad.check(&key.public()).unwrap(),
            SignatureCheck::Invalid { .. }
        ));
        let mut bad = env.clone();
        bad.payload_type = "application/json".into();
        assert!(matches!(
            bad.check(&key.public()).unwrap(),
            SignatureCheck::Invalid { .. }
        ));
        let (other, _) = SigningKey::generate().unwrap();
        assert!(matches!(
            env.check(&other.public()).unwrap(),
            SignatureCheck::Invalid { .. }
        ));
    }

    #[test]
    fn bad_keys_are_named() {
        assert!(matches!(
            SigningKey::from_pem("hello", "k.pem"),
            Err(KeyError::NotPem { .. })
        ));
        let pub_pem = rfc_key().public().to_pem();
        assert!(matches!(
            SigningKey::from_pem(&pub_pem, "k.pem"),
            Err(KeyError::WrongLabel { .. })
        ));
        let junk = pem_encode("PRIVATE KEY", b"not a key");
        assert!(matches!(
            SigningKey::from_pem(&junk, "k.pem"),
            Err(KeyError::BadPrivateKey { .. })
        ));
    }
}
