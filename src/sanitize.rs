//! Untrusted text made safe to write to a terminal: control characters are shown, never obeyed.
//!
//! Image labels come from whoever published the image, and imported runs from whoever wrote the
//! file; either can carry ESC sequences (clear the screen, move the cursor, set the window title),
//! BEL, a carriage return that overwrites the line, a newline that forges a line such as
//! `repro: verified OK`, or a bidi override that makes text read differently from its bytes.
//! Every such string is passed through [`escape`] before it reaches text meant for people (`show`,
//! `show --format markdown`, `image inspect`, `diff`, table cells, re-run scripts' status lines).
//! JSON, JSONL and CSV stay exact: they are data for programs, which decode the escapes of their
//! own format.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal as itself: every Unicode control character (C0, DEL,
/// C1 — `char::is_control`), the line and paragraph separators, and the bidirectional marks,
/// embeddings, overrides and isolates (the "Trojan Source" set), and the BOM.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// `s` with each unsafe character written visibly: `\n`, `\r`, `\t`, `\xNN` for the other ASCII
/// controls (ESC is `\x1b`, BEL `\x07`), `\u{NNNN}` for the rest. Borrowed when nothing needs
/// escaping, which is the common case.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for s in ["", "team/trainer:2.0", "ünïcödé ✓ 日本", "a\\x1b literal"] {
            assert!(matches!(escape(s), Cow::Borrowed(_)), "{s:?}");
            assert_eq!(escape(s), s);
        }
    }

    #[test]
    fn controls_and_bidi_are_shown_not_obeyed() {
        assert_eq!(
            escape("ok\x1b[2J\x1b[H\x07\nrepro: verified OK\r"),
            "ok\\x1b[2J\\x1b[H\\x07\\nrepro: verified OK\\r"
        );
        assert_eq!(escape("a\tb\0c\x7f"), "a\\tb\\x00c\\x7f");
        assert_eq!(escape("\u{9b}31m"), "\\u{9b}31m", "C1 CSI");
        assert_eq!(escape("abc\u{202e}fdp.exe"), "abc\\u{202e}fdp.exe");
        assert_eq!(escape("x\u{2066}y\u{2069}"), "x\\u{2066}y\\u{2069}");
        assert_eq!(escape("l1\u{2028}l2"), "l1\\u{2028}l2");
    }

    #[test]
    fn output_never_contains_an_unsafe_character() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let e = escape(&all);
        assert!(!e.chars().any(is_unsafe));
    }
}
