//! OCI content digests (`algorithm:encoded`) with go-digest's validation order; sha256 and sha512.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

use crate::error::Hinted;

/// A digest algorithm this tool can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// `sha256`: 64 lowercase hex characters (OCI: MUST).
    Sha256,
    /// `sha512`: 128 lowercase hex characters (OCI: MAY).
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as written in a digest.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex-encoded part.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// Looks up a supported algorithm by its exact (lowercase) name.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    /// Digest of `bytes` with this algorithm.
    pub fn digest(self, bytes: &[u8]) -> Digest {
        let hex = match self {
            Algorithm::Sha256 => hex::encode(Sha256::digest(bytes)),
            Algorithm::Sha512 => hex::encode(Sha512::digest(bytes)),
        };
        Digest {
            algorithm: self,
            hex,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated digest such as `sha256:e3b0…`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Parses and validates a digest string (go-digest `Parse` semantics).
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        parse(s)
    }

    /// The SHA-256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        Algorithm::Sha256.digest(bytes)
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex part.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Whether `bytes` hash to this digest.
    pub fn verify(&self, bytes: &[u8]) -> bool {
        self.algorithm.digest(bytes) == *self
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why a digest's format is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatProblem {
    /// No `:` separating algorithm and encoded part.
    MissingColon,
    /// Nothing before the `:`.
    EmptyAlgorithm,
    /// Nothing after the `:`.
    EmptyEncoded,
    /// The algorithm name or encoded part breaks the OCI digest grammar.
    Grammar,
    /// Hex of the right length, but with uppercase letters.
    UppercaseHex,
    /// Characters other than lowercase hex in the encoded part.
    NotHex,
}

impl fmt::Display for FormatProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FormatProblem::MissingColon => "expected ALGORITHM:HEX, found no ':'",
            FormatProblem::EmptyAlgorithm => "the algorithm before ':' is empty",
            FormatProblem::EmptyEncoded => "the hex part after ':' is empty",
            FormatProblem::Grammar => {
                "it does not match the OCI digest grammar [a-z0-9]+([+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+"
            }
            FormatProblem::UppercaseHex => "the hex must be lowercase",
            FormatProblem::NotHex => "the encoded part must be lowercase hex [a-f0-9]",
        })
    }
}

/// A digest that failed validation; variants follow go-digest's error values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// go-digest `ErrDigestInvalidFormat`.
    #[error("invalid digest {input:?}: {problem}")]
    InvalidFormat {
        input: String,
        problem: FormatProblem,
    },
    /// go-digest `ErrDigestInvalidLength`.
    #[error(
        "invalid digest {input:?}: {algorithm} takes {expected} hex characters, found {found}"
    )]
    InvalidLength {
        input: String,
        algorithm: Algorithm,
        expected: usize,
        found: usize,
    },
    /// go-digest `ErrDigestUnsupported`.
    #[error("unsupported digest algorithm {algorithm:?} in {input:?} (supported: sha256, sha512)")]
    Unsupported { input: String, algorithm: String },
}

impl Hinted for DigestError {
    fn hint(&self) -> Option<String> {
        Some(
            "write a digest as sha256:<64 lowercase hex> (or sha512:<128 lowercase hex>), e.g. the output of `skopeo inspect --format '{{.Digest}}' docker://IMAGE`"
                .to_string(),
        )
    }
}

/// `[a-z0-9]+(?:[.+_-][a-z0-9]+)*` — the OCI algorithm-name grammar.
pub(crate) fn is_oci_algorithm_name(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() {
        return false;
    }
    let mut prev_sep = true; // start behaves like "after a separator": a component must follow
    for &c in b {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            prev_sep = false;
        } else if matches!(c, b'.' | b'+' | b'_' | b'-') {
            if prev_sep {
                return false;
            }
            prev_sep = true;
        } else {
            return false;
        }
    }
    !prev_sep
}

/// `[a-zA-Z0-9=_-]+` — the OCI encoded-part grammar.
fn is_oci_encoded(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'=' | b'_' | b'-'))
}

/// Parses `s` exactly as go-digest's `Parse` (with sha256 and sha512 available) does.
pub fn parse(s: &str) -> Result<Digest, DigestError> {
    let fmt_err = |problem| DigestError::InvalidFormat {
        input: s.to_string(),
        problem,
    };
    let Some(i) = s.find(':') else {
        return Err(fmt_err(FormatProblem::MissingColon));
    };
    if i == 0 {
        return Err(fmt_err(FormatProblem::EmptyAlgorithm));
    }
    if i + 1 == s.len() {
        return Err(fmt_err(FormatProblem::EmptyEncoded));
    }
    let (alg, encoded) = (&s[..i], &s[i + 1..]);
    let Some(algorithm) = Algorithm::from_name(alg) else {
        // go-digest: the generic grammar decides between a malformed and an unknown algorithm.
        if !(is_oci_algorithm_name(alg) && is_oci_encoded(encoded)) {
            return Err(fmt_err(FormatProblem::Grammar));
        }
        return Err(DigestError::Unsupported {
            input: s.to_string(),
            algorithm: alg.to_string(),
        });
    };
    // Length before content, as go-digest does (a 32-char non-hex sha256 is a length error).
    if encoded.len() != algorithm.hex_len() {
        return Err(DigestError::InvalidLength {
            input: s.to_string(),
            algorithm,
            expected: algorithm.hex_len(),
            found: encoded.len(),
        });
    }
    if !encoded
        .bytes()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        let problem = if encoded.bytes().all(|c| c.is_ascii_hexdigit()) {
            FormatProblem::UppercaseHex
        } else {
            FormatProblem::NotHex
        };
        return Err(fmt_err(problem));
    }
    Ok(Digest {
        algorithm,
        hex: encoded.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const E: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn valid_sha256_and_sha512() {
        let d = parse(&format!("sha256:{E}")).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string(), format!("sha256:{E}"));
        assert!(d.verify(b""));
        let long = "f".repeat(128);
        assert_eq!(
            parse(&format!("sha512:{long}")).unwrap().algorithm(),
            Algorithm::Sha512
        );
    }

    #[test]
    fn errors_follow_go_digest_order() {
        let cases: &[(&str, &str)] = &[
            ("", "format"),
            (":", "format"),
            ("sha256:", "format"),
            ("nocolon", "format"),
            ("sha256:d41d8cd98f00b204e9800m98ecf8427e", "length"),
            ("sha512:abcdef", "length"),
            ("foo:d41d8cd98f00b204e9800998ecf8427e", "unsupported"),
            ("sha384__foo+bar:abc", "format"),
            ("Sha256:abc", "format"),
            ("sha384:abc", "unsupported"),
            ("blake3:abc", "unsupported"),
        ];
        for (input, want) in cases {
            let got = match parse(input) {
                Err(DigestError::InvalidFormat { .. }) => "format",
                Err(DigestError::InvalidLength { .. }) => "length",
                Err(DigestError::Unsupported { .. }) => "unsupported",
                Ok(_) => "ok",
            };
            assert_eq!(got, *want, "{input:?}");
        }
    }

    #[test]
    fn messages_name_the_problem() {
        let up = parse(&format!("sha256:{}", E.to_uppercase())).unwrap_err();
        assert!(up.to_string().contains("lowercase"), "{up}");
        let len = parse("sha256:abcd").unwrap_err();
        assert!(
            len.to_string().contains("64 hex characters, found 4"),
            "{len}"
        );
        let alg = parse("md5:d41d8cd98f00b204e9800998ecf8427e").unwrap_err();
        assert!(
            alg.to_string()
                .contains("unsupported digest algorithm \"md5\""),
            "{alg}"
        );
        let spaces = parse(&format!("sha256:{}", " ".repeat(64))).unwrap_err();
        assert!(matches!(
            spaces,
            DigestError::InvalidFormat {
                problem: FormatProblem::NotHex,
                ..
            }
        ));
    }

    proptest! {
        #[test]
        fn any_lowercase_hex_of_right_length_round_trips(hex in "[a-f0-9]{64}", hex512 in "[a-f0-9]{128}") {
            let s = format!("sha256:{hex}");
            prop_assert_eq!(parse(&s).unwrap().to_string(), s);
            let s = format!("sha512:{hex512}");
            prop_assert_eq!(parse(&s).unwrap().to_string(), s);
        }

        #[test]
        fn wrong_length_is_a_length_error(hex in "[a-zA-Z0-9]{1,200}") {
            prop_assume!(hex.len() != 64);
            let is_length_error = matches!(parse(&format!("sha256:{hex}")), Err(DigestError::InvalidLength { .. }));
            prop_assert!(is_length_error);
        }

        #[test]
        fn parse_never_panics_and_accepts_only_canonical(s in "\\PC{0,140}") {
            if let Ok(d) = parse(&s) {
                prop_assert_eq!(d.to_string(), s);
            }
        }
    }
}
