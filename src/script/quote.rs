//! The one quoting module every re-run target uses: bash words from arbitrary bytes, YAML
//! strings for Kubernetes manifests, and a display form for comments and messages.
//!
//! # Bash words ([`bash`])
//!
//! A recorded value becomes one bash word that evaluates to exactly its bytes:
//!
//! - a non-empty value made only of `A-Za-z0-9` and `_ @ + : , . / -` is left bare (none of these
//!   is special to bash anywhere in a word: no globbing, expansion, assignment or job spec);
//! - every other run of printable UTF-8 goes inside single quotes, where bash interprets nothing;
//!   a `'` itself is written `\'` between quoted runs (`it's` → `'it'\''s'`);
//! - bytes that are not valid UTF-8, control characters (C0, DEL, C1) and the invisible Unicode
//!   characters that can reorder or break lines in an editor (U+2028/2029, bidi controls, BOM) are
//!   written with bash ANSI-C quoting, `$'\xNN'` per byte. `\xNN` always produces that byte whatever
//!   the locale, so non-UTF-8 arguments are reproduced byte for byte, and the generated script is
//!   pure printable text: a recorded newline can never end a line (or a comment) early.
//!
//! The result needs bash (`$'…'` is not POSIX sh before POSIX.1-2024); every script we write
//! starts with `#!/usr/bin/env bash`. NUL cannot be held by an argument, an environment value or
//! a bash variable, so it is refused with [`QuoteError::Nul`].
//!
//! # YAML strings ([`yaml`])
//!
//! A double-quoted YAML scalar: `"` and `\` escaped, printable ASCII and printable non-ASCII kept,
//! everything else (controls, NEL, U+2028/2029 which YAML 1.1 treats as line breaks, bidi
//! controls, BOM, non-characters) escaped as `\xNN`, `\uNNNN` or `\UNNNNNNNN`. Valid in YAML 1.1
//! and 1.2, so kubectl, PyYAML and serde_yaml all read back the same string.
//!
//! # Display ([`display`], [`display_argv`])
//!
//! The bash form, except that NUL is shown as `$'\x00'` instead of refused: for header comments
//! and status lines, never for anything executed.

use std::fmt::Write as _;

/// A value that cannot be quoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    /// NUL cannot appear in an argument, an environment value or a bash string.
    #[error(
        "contains a NUL byte at offset {offset}, which no argument or environment value can hold"
    )]
    Nul {
        /// Byte offset of the first NUL.
        offset: usize,
    },
}

/// Quotes arbitrary bytes as one bash word that evaluates to exactly those bytes.
pub fn bash(value: &[u8]) -> Result<String, QuoteError> {
    if let Some(offset) = value.iter().position(|&b| b == 0) {
        return Err(QuoteError::Nul { offset });
    }
    Ok(quote_bytes(value))
}

/// Quotes a UTF-8 string as one bash word (see [`bash`]).
pub fn bash_str(value: &str) -> Result<String, QuoteError> {
    bash(value.as_bytes())
}

/// The bash form for display only: like [`bash`], but a NUL is shown as `$'\x00'`.
///
/// The result contains no control character, so it is safe inside a `#` comment line.
pub fn display(value: &[u8]) -> String {
    quote_bytes(value)
}

/// A command line for display: each element quoted with [`display`], joined by spaces.
pub fn display_argv<'a>(argv: impl IntoIterator<Item = &'a [u8]>) -> String {
    argv.into_iter().map(display).collect::<Vec<_>>().join(" ")
}

/// Whether a byte may appear in a bare (unquoted) word.
fn is_bare(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'@' | b'+' | b':' | b',' | b'.' | b'/' | b'-')
}

/// Characters that are valid UTF-8 but must be escaped so the script stays plain, line-safe text.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}' | '\u{feff}'
        )
}

/// One piece of a quoted word.
enum Piece<'a> {
    /// Printable text without `'`.
    Text(&'a str),
    /// A single quote.
    Quote,
    /// Bytes written as `$'\xNN…'`.
    Escaped(&'a [u8]),
}

fn quote_bytes(value: &[u8]) -> String {
    if value.is_empty() {
        return "''".to_string();
    }
    if value.iter().all(|&b| is_bare(b)) {
        // Only ASCII bytes, so the lossy conversion is exact.
        return String::from_utf8_lossy(value).into_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    for_each_piece(value, |piece| match piece {
        Piece::Text(t) => {
            out.push('\'');
            out.push_str(t);
            out.push('\'');
        }
        Piece::Quote => out.push_str("\\'"),
        Piece::Escaped(bytes) => {
            out.push_str("$'");
            for b in bytes {
                let _ = write!(out, "\\x{b:02x}");
            }
            out.push('\'');
        }
    });
    out
}

/// Splits `value` into maximal runs of plain text, single quotes and bytes to escape.
fn for_each_piece(value: &[u8], mut f: impl FnMut(Piece<'_>)) {
    let mut rest = value;
    while !rest.is_empty() {
        let (valid, invalid) = match std::str::from_utf8(rest) {
            Ok(s) => (s, &rest[rest.len()..]),
            Err(e) => {
                let (v, i) = rest.split_at(e.valid_up_to());
                // `valid_up_to` marks the longest valid prefix, so this never falls back.
                (std::str::from_utf8(v).unwrap_or_default(), i)
            }
        };
        emit_text(valid, &mut f);
        if invalid.is_empty() {
            break;
        }
        // Escape the invalid bytes up to the next position where decoding may resume.
        let bad_len = match std::str::from_utf8(invalid) {
            Ok(_) => 0,
            Err(e) => e.error_len().unwrap_or(invalid.len()),
        }
        .max(1);
        f(Piece::Escaped(&invalid[..bad_len]));
        rest = &invalid[bad_len..];
    }
}

fn emit_text(text: &str, f: &mut impl FnMut(Piece<'_>)) {
    let mut start = 0;
    let mut iter = text.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if c == '\'' {
            if start < i {
                f(Piece::Text(&text[start..i]));
            }
            f(Piece::Quote);
            start = i + 1;
        } else if needs_escape(c) {
            if start < i {
                f(Piece::Text(&text[start..i]));
            }
            // Group consecutive characters to escape into one `$'…'`.
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = iter.peek() {
                if needs_escape(d) {
                    end = j + d.len_utf8();
                    iter.next();
                } else {
                    break;
                }
            }
            f(Piece::Escaped(&text.as_bytes()[i..end]));
            start = end;
        }
    }
    if start < text.len() {
        f(Piece::Text(&text[start..]));
    }
}

/// Characters a double-quoted YAML scalar may hold raw (printable, not a YAML 1.1 line break).
fn yaml_raw(c: char) -> bool {
    match c {
        '"' | '\\' => false,
        ' '..='~' => true,
        '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..='\u{10ffff}' => {
            !needs_escape(c)
        }
        _ => false,
    }
}

/// A double-quoted YAML scalar that any YAML 1.1/1.2 parser reads back as exactly `value`.
pub fn yaml(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if yaml_raw(c) => out.push(c),
            c if (c as u32) <= 0xff => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) <= 0xffff => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::process::Command;

    /// What bash makes of `words`: `printf '%s\0' WORDS…` run by a real bash.
    fn bash_eval(words: &[String]) -> Vec<Vec<u8>> {
        let script = format!("printf '%s\\0' {}", words.join(" "));
        let out = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .env("HOME", "/home-sentinel")
            .env("X", "x-sentinel")
            .output()
            .expect("bash runs");
        assert!(out.status.success(), "bash failed on {script:?}");
        let mut parts: Vec<Vec<u8>> = out.stdout.split(|&b| b == 0).map(<[u8]>::to_vec).collect();
        // printf '%s\0' terminates every word, so the split leaves one trailing empty piece.
        assert_eq!(parts.pop(), Some(Vec::new()));
        parts
    }

    #[test]
    fn safe_words_stay_bare() {
        assert_eq!(bash_str("train.py").unwrap(), "train.py");
        assert_eq!(bash_str("--lr=0.1").unwrap(), "'--lr=0.1'");
        assert_eq!(bash_str("a/b:c,d@e+f-g_h").unwrap(), "a/b:c,d@e+f-g_h");
        assert_eq!(bash_str("--lr").unwrap(), "--lr");
    }

    #[test]
    fn specials_are_quoted() {
        assert_eq!(bash_str("").unwrap(), "''");
        assert_eq!(bash_str("it's").unwrap(), "'it'\\''s'");
        assert_eq!(bash_str("'").unwrap(), "\\'");
        assert_eq!(bash_str("$(touch x)").unwrap(), "'$(touch x)'");
        assert_eq!(bash_str("a\nb").unwrap(), "'a'$'\\x0a''b'");
        assert_eq!(bash(&[0x61, 0xff, 0x62]).unwrap(), "'a'$'\\xff''b'");
        assert_eq!(bash_str("~").unwrap(), "'~'");
        assert_eq!(bash_str("{a,b}").unwrap(), "'{a,b}'");
        assert_eq!(bash_str("é").unwrap(), "'é'");
        assert_eq!(bash_str("\u{202e}x").unwrap(), "$'\\xe2\\x80\\xae''x'");
    }

    #[test]
    fn nul_is_refused() {
        assert_eq!(bash(b"a\0b"), Err(QuoteError::Nul { offset: 1 }));
        assert_eq!(display(b"a\0b"), "'a'$'\\x00''b'");
    }

    #[test]
    fn quoted_forms_contain_no_control_characters() {
        let all: Vec<u8> = (1..=255).collect();
        let q = bash(&all).unwrap();
        assert!(q.chars().all(|c| !c.is_control()), "{q:?}");
        assert!(!display_argv([&b"a\nb"[..], b"c\rd"]).contains(['\n', '\r']));
    }

    #[test]
    fn every_byte_round_trips_through_bash() {
        let words: Vec<Vec<u8>> = (1u8..=255).map(|b| vec![b]).collect();
        let quoted: Vec<String> = words.iter().map(|w| bash(w).unwrap()).collect();
        assert_eq!(bash_eval(&quoted), words);
    }

    #[test]
    fn yaml_escapes() {
        assert_eq!(yaml("plain"), "\"plain\"");
        assert_eq!(yaml("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(yaml("a\nb\u{85}\u{2028}"), "\"a\\x0ab\\x85\\u2028\"");
        assert_eq!(yaml("\u{1f600}é"), "\"\u{1f600}é\"");
        assert_eq!(yaml("\u{fffe}"), "\"\\ufffe\"");
    }

    /// Bytes that stress the shell: every character with a meaning to bash, plus a few plain ones.
    fn shell_meta() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            proptest::sample::select(b"$`'\"\\!*?[]{}()<>|&;#~=% \t\n^,.:/@+-_aZ9".to_vec()),
            0..24,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn bash_round_trips(words in proptest::collection::vec(
            proptest::collection::vec(1u8..=255, 0..40), 1..8)
        ) {
            let quoted: Vec<String> = words.iter().map(|w| bash(w).unwrap()).collect();
            prop_assert_eq!(bash_eval(&quoted), words);
        }

        #[test]
        fn bash_round_trips_shell_metacharacters(words in proptest::collection::vec(shell_meta(), 1..8)) {
            let quoted: Vec<String> = words.iter().map(|w| bash(w).unwrap()).collect();
            prop_assert_eq!(bash_eval(&quoted), words);
        }

        #[test]
        fn bash_round_trips_unicode(words in proptest::collection::vec("[^\u{0}]{0,30}", 1..8)) {
            let quoted: Vec<String> = words.iter().map(|w| bash_str(w).unwrap()).collect();
            let back = bash_eval(&quoted);
            let expected: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
            prop_assert_eq!(back, expected);
        }

        #[test]
        fn yaml_round_trips(s in "\\PC*|[\u{0}-\u{ff}\u{2028}\u{2029}\u{feff}\u{fffe}\u{ffff}]{0,40}|.*") {
            let doc = format!("k: {}\n", yaml(&s));
            let v: std::collections::BTreeMap<String, String> =
                yaml_serde::from_str(&doc).expect("valid YAML");
            prop_assert_eq!(&v["k"], &s);
        }
    }
}
