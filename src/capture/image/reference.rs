//! Image references: the distribution reference grammar and Docker's normalisation of
//! familiar names, with the semantics of distribution/reference's `ParseNormalizedNamed`.
//!
//! Grammar (from distribution/reference `regexp.go`):
//! ```text
//! reference       := name [ ":" tag ] [ "@" digest ]
//! name            := [domain-and-port "/"] path-component ["/" path-component]*
//! domain-and-port := (domain-name | "[" [a-fA-F0-9:]+ "]") [":" [0-9]+]
//! domain-name     := domain-component ["." domain-component]*
//! domain-component:= [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! path-component  := [a-z0-9]+ (separator [a-z0-9]+)*
//! separator       := "." | "_" | "__" | "-"+
//! tag             := [\w][\w.-]{0,127}
//! digest          := [A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)* ":" [0-9a-fA-F]{32,}
//! ```
//! The path (remote name, without the domain) is at most 255 characters.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use super::digest::{self, Digest, DigestError};
use crate::error::Hinted;

/// Docker Hub's canonical domain.
pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
/// Maximum length of the path (remote name), domain excluded.
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host with optional port (`docker.io`, `127.0.0.1:5000`, `[::1]:5000`); empty only
    /// for names whose first component does not fit the domain grammar.
    pub domain: String,
    /// Repository path (remote name) inside the registry (`library/ubuntu`).
    pub path: String,
    /// Tag as written, if any.
    pub tag: Option<String>,
    /// Digest as written, if any.
    pub digest: Option<Digest>,
}

/// Why a reference is invalid; the variants mirror distribution/reference's errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// `ErrNameEmpty`.
    #[error("invalid image reference: the reference is empty")]
    Empty,
    /// `ErrNameContainsUppercase`.
    #[error("invalid image reference {input:?}: repository name must be lowercase")]
    Uppercase { input: String },
    /// The lowercase check of `ParseNormalizedNamed` on the remote name.
    #[error("invalid image reference {input:?}: repository name {remote:?} must be lowercase")]
    RemoteUppercase { input: String, remote: String },
    /// `ErrReferenceInvalidFormat`.
    #[error("invalid image reference {input:?}: {problem}")]
    InvalidFormat { input: String, problem: String },
    /// `ErrNameTooLong`.
    #[error("invalid image reference {input:?}: repository path is {len} characters, at most 255 allowed")]
    NameTooLong { input: String, len: usize },
    /// A bare 64-hex string, which would be ambiguous with an image ID.
    #[error("invalid image reference {input:?}: cannot specify 64-byte hexadecimal strings (an image ID is not a reference)")]
    HexIdentifier { input: String },
    /// The `@digest` part failed digest validation.
    #[error("invalid image reference {input:?}: {source}")]
    Digest {
        input: String,
        #[source]
        source: DigestError,
    },
}

impl Hinted for ReferenceError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            ReferenceError::HexIdentifier { .. } => {
                "to pin an image write NAME@sha256:<hex>, e.g. ubuntu@sha256:…".to_string()
            }
            ReferenceError::Digest { .. } => {
                "pin with NAME@sha256:<64 lowercase hex> (or sha512:<128 lowercase hex>); `skopeo inspect --format '{{.Digest}}' docker://NAME:TAG` prints it".to_string()
            }
            ReferenceError::Uppercase { .. } | ReferenceError::RemoteUppercase { .. } => {
                "repository names are lowercase; only the registry host and the tag may contain uppercase letters".to_string()
            }
            _ => "write [REGISTRY[:PORT]/]PATH[:TAG][@sha256:HEX], e.g. registry.example.com/team/trainer:2.3.1 or ubuntu@sha256:…".to_string(),
        })
    }
}

impl Reference {
    /// `domain/path` (or `path` when there is no domain).
    pub fn name(&self) -> String {
        if self.domain.is_empty() {
            self.path.clone()
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }

    /// Docker's short form (`FamiliarString`): `ubuntu:22.04`, `user/app`, `localhost:5000/x`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        push_tag_digest(&mut s, self.tag.as_deref(), self.digest.as_ref());
        s
    }

    /// Docker's short repository name (`FamiliarName`).
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            if let Some(rest) = self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
                if !rest.contains('/') {
                    return rest.to_string();
                }
            }
            return self.path.clone();
        }
        self.name()
    }

    /// The normalized form with `:latest` implied when neither tag nor digest is given
    /// (`TagNameOnly`).
    pub fn with_default_tag(&self) -> String {
        if self.tag.is_none() && self.digest.is_none() {
            format!("{}:latest", self.name())
        } else {
            self.to_string()
        }
    }

    /// Whether the tag is `latest`, written or implied by the absence of tag and digest.
    pub fn is_latest(&self) -> bool {
        match (&self.tag, &self.digest) {
            (Some(t), _) => t == "latest",
            (None, None) => true,
            (None, Some(_)) => false,
        }
    }

    /// The tag or, failing that, the digest — what to ask the registry for (`latest` implied).
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The host part of the domain without the port (`[::1]` keeps its brackets).
    pub fn host(&self) -> &str {
        split_host_port(&self.domain).0
    }

    /// Whether the registry is on this machine: `localhost`, `127.0.0.0/8` or `[::1]`.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(self.host())
    }
}

/// Splits `host[:port]` (IPv6 in brackets) into host and optional port.
pub fn split_host_port(domain: &str) -> (&str, Option<&str>) {
    if domain.starts_with('[') {
        if let Some(end) = domain.find(']') {
            let rest = &domain[end + 1..];
            return (&domain[..=end], rest.strip_prefix(':'));
        }
    }
    match domain.rfind(':') {
        Some(i) => (&domain[..i], Some(&domain[i + 1..])),
        None => (domain, None),
    }
}

/// Whether a host (no port) is `localhost`, in `127.0.0.0/8`, or `[::1]`/`::1`.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Ok(v4) = h.parse::<Ipv4Addr>() {
        return v4.is_loopback();
    }
    if let Ok(v6) = h.parse::<std::net::Ipv6Addr>() {
        return v6.is_loopback();
    }
    false
}

fn push_tag_digest(s: &mut String, tag: Option<&str>, digest: Option<&Digest>) {
    if let Some(t) = tag {
        s.push(':');
        s.push_str(t);
    }
    if let Some(d) = digest {
        s.push('@');
        s.push_str(&d.to_string());
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        push_tag_digest(&mut s, self.tag.as_deref(), self.digest.as_ref());
        f.write_str(&s)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_normalized(s)
    }
}

// ---- grammar pieces -------------------------------------------------------------------------

/// `[a-z0-9]+ (separator [a-z0-9]+)*` with separator `.` | `_` | `__` | `-`+.
fn is_path_component(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() {
        return false;
    }
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut i = 0;
    loop {
        // one run of [a-z0-9]+
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        // one separator
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// `path-component ("/" path-component)*`.
fn is_remote_name(s: &str) -> bool {
    s.split('/').all(is_path_component)
}

fn is_domain_component(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// `host [":" [0-9]+]` where host is a domain name or a bracketed IPv6 address.
fn is_domain_and_port(s: &str) -> bool {
    let (host, port) = if s.starts_with('[') {
        let Some(end) = s.find(']') else {
            return false;
        };
        (&s[..=end], &s[end + 1..])
    } else {
        match s.find(':') {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, ""),
        }
    };
    let host_ok = match host.strip_prefix('[') {
        Some(inner) => {
            let inner = &inner[..inner.len() - 1];
            !inner.is_empty() && inner.bytes().all(|c| c.is_ascii_hexdigit() || c == b':')
        }
        None => host.split('.').all(is_domain_component),
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()));
    host_ok && port_ok
}

/// A tag: `[\w][\w.-]{0,127}`.
pub fn is_tag(s: &str) -> bool {
    let b = s.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b[1..].iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

/// The reference grammar's digest pattern (looser than go-digest; validated after).
fn is_digest_pattern(s: &str) -> bool {
    let Some((alg, hex)) = s.split_once(':') else {
        return false;
    };
    if hex.len() < 32 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return false;
    }
    // [A-Za-z][A-Za-z0-9]* ([-_+.] [A-Za-z][A-Za-z0-9]*)*
    let b = alg.as_bytes();
    let mut need_letter = true;
    for &c in b {
        if need_letter {
            if !c.is_ascii_alphabetic() {
                return false;
            }
            need_letter = false;
        } else if c.is_ascii_alphanumeric() {
        } else if matches!(c, b'-' | b'_' | b'+' | b'.') {
            need_letter = true;
        } else {
            return false;
        }
    }
    !need_letter
}

/// The parts matched by the anchored reference pattern.
struct Matched<'a> {
    name: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

fn is_name(s: &str) -> bool {
    split_name(s).is_some()
}

/// Anchored name pattern: `Some((domain, path))`, preferring a domain like the regexp's greedy
/// optional group does.
fn split_name(s: &str) -> Option<(&str, &str)> {
    if let Some((first, rest)) = s.split_once('/') {
        if is_domain_and_port(first) && is_remote_name(rest) {
            return Some((first, rest));
        }
    }
    is_remote_name(s).then_some(("", s))
}

/// Matches `name [":" tag] ["@" digest]`. The split is unambiguous: neither name nor tag may
/// contain `@`, and a `:` with no `/` after it can only start the tag (a port or an IPv6 colon
/// is always followed by the `/` that ends the domain).
fn match_reference(s: &str) -> Option<Matched<'_>> {
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => {
            if !is_digest_pattern(d) {
                return None;
            }
            (r, Some(d))
        }
        None => (s, None),
    };
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i + 1..].contains('/') => {
            let t = &rest[i + 1..];
            if !is_tag(t) {
                return None;
            }
            (&rest[..i], Some(t))
        }
        _ => (rest, None),
    };
    if !is_name(name) {
        return None;
    }
    Some(Matched { name, tag, digest })
}

/// distribution/reference `Parse`: no normalisation.
pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
    let Some(m) = match_reference(s) else {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if match_reference(&s.to_lowercase()).is_some() {
            return Err(ReferenceError::Uppercase {
                input: s.to_string(),
            });
        }
        return Err(ReferenceError::InvalidFormat {
            input: s.to_string(),
            problem: explain_format(s),
        });
    };
    let (domain, path) = split_name(m.name).unwrap_or(("", m.name));
    if path.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(ReferenceError::NameTooLong {
            input: s.to_string(),
            len: path.len(),
        });
    }
    let digest = match m.digest {
        Some(d) => Some(digest::parse(d).map_err(|source| ReferenceError::Digest {
            input: s.to_string(),
            source,
        })?),
        None => None,
    };
    Ok(Reference {
        domain: domain.to_string(),
        path: path.to_string(),
        tag: m.tag.map(str::to_string),
        digest,
    })
}

/// A best-effort sentence saying which part of an invalid reference is wrong.
fn explain_format(s: &str) -> String {
    if s.matches('@').count() > 1 {
        return "more than one '@'".to_string();
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        if !is_digest_pattern(d) {
            return format!(
                "{d:?} is not a digest (expected ALGORITHM:HEX with at least 32 hex characters)"
            );
        }
    }
    if let Some(i) = rest.rfind(':') {
        if !rest[i + 1..].contains('/') {
            let t = &rest[i + 1..];
            if !is_tag(t) {
                return format!(
                    "tag {t:?} is invalid (1–128 characters of [A-Za-z0-9_.-], not starting with '.' or '-')"
                );
            }
            return explain_name(&rest[..i]);
        }
    }
    explain_name(rest)
}

fn explain_name(name: &str) -> String {
    if name.is_empty() {
        return "the repository name is empty".to_string();
    }
    let (domain, path) = match name.split_once('/') {
        Some((d, p)) if d.contains(['.', ':', '[']) || d == "localhost" => (Some(d), p),
        _ => (None, name),
    };
    if let Some(d) = domain {
        if !is_domain_and_port(d) {
            return format!("registry {d:?} is not a valid host[:port]");
        }
    }
    for comp in path.split('/') {
        if !is_path_component(comp) {
            return format!(
                "path component {comp:?} is invalid (lowercase letters and digits, joined by '.', '_', '__' or dashes)"
            );
        }
    }
    "it does not match [REGISTRY[:PORT]/]PATH[:TAG][@DIGEST]".to_string()
}

fn is_identifier(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// Docker's `splitDockerDomain`.
fn split_docker_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.find('/') {
        Some(i)
            if name[..i].contains(['.', ':'])
                || &name[..i] == "localhost"
                || name[..i].to_lowercase() != name[..i] =>
        {
            (name[..i].to_string(), name[i + 1..].to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN.to_string();
    }
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        remainder = format!("{OFFICIAL_REPO_PREFIX}{remainder}");
    }
    (domain, remainder)
}

/// distribution/reference `ParseNormalizedNamed`: parses a reference as a user writes it
/// (`ubuntu`, `user/app:1`, `registry:5000/x@sha256:…`) into its fully-qualified form.
pub fn parse_normalized(s: &str) -> Result<Reference, ReferenceError> {
    if is_identifier(s) {
        return Err(ReferenceError::HexIdentifier {
            input: s.to_string(),
        });
    }
    let (domain, remainder) = split_docker_domain(s);
    let remote = match remainder.find(':') {
        Some(i) => &remainder[..i],
        None => &remainder[..],
    };
    if remote.to_lowercase() != remote {
        return Err(ReferenceError::RemoteUppercase {
            input: s.to_string(),
            remote: remote.to_string(),
        });
    }
    parse(&format!("{domain}/{remainder}")).map_err(|e| with_input(e, s))
}

/// Errors from the inner `Parse` name the string the user wrote, not the normalized one.
fn with_input(e: ReferenceError, s: &str) -> ReferenceError {
    let input = s.to_string();
    match e {
        ReferenceError::Empty => ReferenceError::Empty,
        ReferenceError::Uppercase { .. } => ReferenceError::Uppercase { input },
        ReferenceError::RemoteUppercase { remote, .. } => {
            ReferenceError::RemoteUppercase { input, remote }
        }
        ReferenceError::InvalidFormat { .. } => ReferenceError::InvalidFormat {
            problem: explain_format(s),
            input,
        },
        ReferenceError::NameTooLong { len, .. } => ReferenceError::NameTooLong { input, len },
        ReferenceError::HexIdentifier { .. } => ReferenceError::HexIdentifier { input },
        ReferenceError::Digest { source, .. } => ReferenceError::Digest { input, source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

    fn ok(s: &str) -> Reference {
        parse_normalized(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn familiar_names_normalise_like_docker() {
        let r = ok("ubuntu");
        assert_eq!(
            (r.domain.as_str(), r.path.as_str()),
            ("docker.io", "library/ubuntu")
        );
        assert_eq!(r.to_string(), "docker.io/library/ubuntu");
        assert_eq!(r.with_default_tag(), "docker.io/library/ubuntu:latest");
        assert!(r.is_latest());
        assert_eq!(r.familiar(), "ubuntu");
        assert_eq!(ok("user/app").to_string(), "docker.io/user/app");
        assert_eq!(
            ok("index.docker.io/foo").to_string(),
            "docker.io/library/foo"
        );
        assert_eq!(
            ok("docker.io/library/foo/bar").familiar(),
            "library/foo/bar"
        );
        assert_eq!(
            ok("test.com:5000").to_string(),
            "docker.io/library/test.com:5000"
        );
        assert_eq!(ok("localhost").to_string(), "docker.io/library/localhost");
        let r = ok("localhost:5000/team/app:1.0");
        assert_eq!(
            (r.domain.as_str(), r.path.as_str(), r.tag.as_deref()),
            ("localhost:5000", "team/app", Some("1.0"))
        );
        assert!(r.is_loopback());
        assert!(!r.is_latest());
    }

    #[test]
    fn digests_and_tags() {
        let r = ok(&format!("reg.example.com/a/b:t@sha256:{H}"));
        assert_eq!(r.tag.as_deref(), Some("t"));
        assert_eq!(
            r.digest.as_ref().unwrap().to_string(),
            format!("sha256:{H}")
        );
        assert_eq!(r.manifest_ref(), format!("sha256:{H}"));
        assert!(!r.is_latest());
        assert!(matches!(
            parse_normalized(&format!("repo@sha256:{}", &H[..34])),
            Err(ReferenceError::Digest {
                source: DigestError::InvalidLength { .. },
                ..
            })
        ));
        assert!(parse_normalized("x:.tag").is_err());
        assert!(ok("x:_tag").tag.is_some());
        assert!(parse_normalized(&format!("x:{}", "a".repeat(129))).is_err());
        assert!(parse_normalized(&format!("x:{}", "a".repeat(128))).is_ok());
    }

    #[test]
    fn grammar_edges() {
        for bad in [
            "a..b",
            "a_.b",
            "a-.b",
            "___",
            "-a",
            "a-",
            "aa/asdf$$^/aa",
            "[::1]",
            "[2001:db8::1]:5000",
            "a:b:c",
            "Uppercase:tag",
            "foo@bar@baz",
            "",
        ] {
            assert!(parse_normalized(bad).is_err(), "{bad:?} should be invalid");
        }
        for good in [
            "do__cker",
            "ver---sion",
            "[::1]:5000/a",
            "[2001:db8::1]/a",
            "Asdf.com/x",
            "example.com:75050/x",
            "Uppercase/lowercase:tag",
        ] {
            assert!(parse_normalized(good).is_ok(), "{good:?} should be valid");
        }
        assert!(parse_normalized(H).is_err());
        assert!(parse_normalized(&H[..63]).is_ok());
        assert!(parse_normalized(&format!("docker.io/{H}")).is_ok());
        // the 255 limit counts the path only, library/ included after normalisation
        assert!(parse_normalized(&format!("example.com/{}", "a".repeat(255))).is_ok());
        assert!(matches!(
            parse_normalized(&format!("example.com/{}", "a".repeat(256))),
            Err(ReferenceError::NameTooLong { .. })
        ));
        assert!(parse(&format!("docker.io/{}", "a".repeat(255))).is_ok());
        assert!(parse_normalized(&format!("docker.io/{}", "a".repeat(255))).is_err());
    }

    #[test]
    fn loopback_hosts() {
        for (d, want) in [
            ("localhost:5000/a", true),
            ("127.0.0.1/a", true),
            ("127.8.9.1:80/a", true),
            ("[::1]:5000/a", true),
            ("10.0.0.1/a", false),
            ("example.com/a", false),
            ("ubuntu", false),
        ] {
            assert_eq!(ok(d).is_loopback(), want, "{d}");
        }
    }

    #[test]
    fn errors_carry_hints() {
        let e = parse_normalized(H).unwrap_err();
        assert!(e.hint().unwrap().contains("@sha256:"));
        let e = parse_normalized("Foo:bar").unwrap_err();
        assert!(e.to_string().contains("lowercase"), "{e}");
        let e = parse_normalized("reg.io/a..b").unwrap_err();
        assert!(e.to_string().contains("\"a..b\""), "{e}");
    }

    fn component() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,5}((\\.|_|__|-{1,3})[a-z0-9]{1,5}){0,2}"
    }

    proptest! {
        #[test]
        fn generated_valid_references_round_trip(
            domain in proptest::option::of("[a-z][a-z0-9]{0,6}\\.[a-z]{2,3}(:[0-9]{1,5})?"),
            comps in proptest::collection::vec(component(), 1..4),
            tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
            hex in proptest::option::of("[a-f0-9]{64}"),
        ) {
            let mut s = String::new();
            if let Some(d) = &domain { s.push_str(d); s.push('/'); }
            s.push_str(&comps.join("/"));
            if let Some(t) = &tag { s.push(':'); s.push_str(t); }
            if let Some(h) = &hex { s.push_str("@sha256:"); s.push_str(h); }
            let r = parse_normalized(&s).unwrap();
            prop_assert_eq!(r.tag.clone(), tag);
            prop_assert_eq!(r.digest.as_ref().map(|d| d.hex().to_string()), hex);
            if let Some(d) = domain { prop_assert_eq!(&r.domain, &d); }
            // the normalized form is a fixed point and the familiar form parses back to it
            prop_assert_eq!(parse_normalized(&r.to_string()).unwrap(), r.clone());
            prop_assert_eq!(parse_normalized(&r.familiar()).unwrap(), r);
        }

        #[test]
        fn never_panics_and_display_is_a_fixed_point(s in "[a-zA-Z0-9:/@._\\-\\[\\]]{0,40}") {
            if let Ok(r) = parse_normalized(&s) {
                prop_assert_eq!(parse_normalized(&r.to_string()).unwrap(), r);
            }
        }
    }
}
