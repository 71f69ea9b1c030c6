//! Escaping of names, paths and text that came from the network (or from disk) before they
//! are printed or logged, as rsync does: a byte that would control the terminal or the log
//! (ASCII controls, newline and tab included, DEL) and every byte that is not part of valid
//! UTF-8 becomes `\#ooo` (three octal digits), so a member named `a⏎b` cannot forge a log
//! line or cut `members` output short. Unicode's own line separators, C1 controls and the
//! bidirectional overrides are escaped too (byte by byte, as their UTF-8 encoding). A
//! backslash that would read as such an escape (followed by `#` and three digits) becomes
//! `\#134`, so every escaped text decodes back to the original bytes ([`unescape`]).
//!
//! Two forms, one rule:
//! - [`exact`]: for JSON and other machine output. Valid UTF-8 is kept as it is (JSON quotes
//!   control characters itself); only bytes that are not valid UTF-8 (and backslashes that
//!   would read as an escape) are written `\#ooo`. A name that is valid UTF-8 and has no such
//!   backslash is therefore exactly the name.
//! - [`text`]: for terminals and logs: [`exact`] plus every control character escaped.
//!   [`text_str`] applies the second step to a string already in the exact form (or any
//!   string); it never touches backslashes, so it may be applied more than once.
//! - [`word_str`]: for one column of a space-separated line (`members`, a push's table):
//!   [`text_str`] plus white space escaped, so a name cannot fake columns.
//!
//! Pure functions: used by the engine's messages, the daemon and the front end alike.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal or a log as it is.
fn is_control(c: char) -> bool {
    c.is_control() // C0, DEL, C1
        || matches!(c,
            '\u{2028}' | '\u{2029}'                 // line and paragraph separators
            | '\u{200e}' | '\u{200f}'               // left-to-right / right-to-left marks
            | '\u{202a}'..='\u{202e}'               // bidirectional embeddings and overrides
            | '\u{2066}'..='\u{2069}'               // bidirectional isolates
            | '\u{feff}') // byte order mark
}

fn push_octal(out: &mut String, b: u8) {
    out.push_str(&format!("\\#{b:03o}"));
}

/// Whether `rest` (what follows a backslash) would make it read as an escape.
fn looks_escaped(rest: &[u8]) -> bool {
    rest.len() >= 4 && rest[0] == b'#' && rest[1..4].iter().all(u8::is_ascii_digit)
}

fn escape(b: &[u8], controls: bool) -> Cow<'_, str> {
    let clean = |s: &str| !(s.contains('\\') || (controls && s.chars().any(is_control)));
    if let Ok(s) = std::str::from_utf8(b) {
        if clean(s) {
            return Cow::Borrowed(s);
        }
    }
    let mut out = String::with_capacity(b.len() + 8);
    for chunk in b.utf8_chunks() {
        let valid = chunk.valid();
        for (i, c) in valid.char_indices() {
            if c == '\\' && looks_escaped(&valid.as_bytes()[i + 1..]) {
                push_octal(&mut out, b'\\');
            } else if controls && is_control(c) {
                let mut buf = [0u8; 4];
                for &byte in c.encode_utf8(&mut buf).as_bytes() {
                    push_octal(&mut out, byte);
                }
            } else {
                out.push(c);
            }
        }
        for &byte in chunk.invalid() {
            push_octal(&mut out, byte);
        }
    }
    Cow::Owned(out)
}

/// The exact form of a name: valid UTF-8 unchanged, other bytes as `\#ooo` (for JSON).
pub fn exact(b: &[u8]) -> Cow<'_, str> {
    escape(b, false)
}

/// The printable form of a name or message: no control character, no invalid UTF-8.
pub fn text(b: &[u8]) -> Cow<'_, str> {
    escape(b, true)
}

/// Escapes the control characters of a string (already in the exact form, or any text that
/// may hold something from the network). Leaves backslashes alone: idempotent.
pub fn text_str(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_control(c) {
            let mut buf = [0u8; 4];
            for &byte in c.encode_utf8(&mut buf).as_bytes() {
                push_octal(&mut out, byte);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// One word of a line whose columns are separated by spaces (a member's name in `members`,
/// a column of a push's result table): [`text_str`] plus every white space (the ASCII space,
/// no-break and other Unicode spaces) escaped, so that a name cannot fake columns or push the
/// table's other columns aside. Still decodes back with [`unescape`]; JSON keeps the name
/// exact ([`exact`]).
pub fn word_str(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| is_control(c) || c.is_whitespace()) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_control(c) || c.is_whitespace() {
            let mut buf = [0u8; 4];
            for &byte in c.encode_utf8(&mut buf).as_bytes() {
                push_octal(&mut out, byte);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Decodes [`exact`] or [`text`] back to the original bytes.
pub fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && looks_escaped(&b[i + 1..]) {
            let digits = &b[i + 2..i + 5];
            if let Ok(v) = u8::from_str_radix(std::str::from_utf8(digits).unwrap_or("x"), 8) {
                out.push(v);
                i += 5;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_has_no_space_and_decodes_back() {
        assert_eq!(word_str("web1"), "web1");
        assert!(matches!(word_str("web1"), Cow::Borrowed(_)));
        assert_eq!(
            word_str("web1 10.0.0.9 live"),
            "web1\\#04010.0.0.9\\#040live"
        );
        assert_eq!(word_str("a\tb\nc"), "a\\#011b\\#012c");
        // No-break, ideographic and other Unicode spaces look like a column break too.
        assert_eq!(word_str("a\u{a0}b"), "a\\#302\\#240b");
        assert_eq!(word_str("a\u{3000}b"), "a\\#343\\#200\\#200b");
        assert_eq!(word_str("h\u{e9}llo"), "h\u{e9}llo");
        for name in ["web 1", "a\u{2003}b c\n", "x\\#040y", "\u{65e5} \u{672c}"] {
            let shown = word_str(&exact(name.as_bytes())).into_owned();
            assert!(!shown.chars().any(char::is_whitespace), "{shown:?}");
            assert_eq!(unescape(&shown), name.as_bytes(), "{name:?}");
        }
    }

    #[test]
    fn controls_and_invalid_bytes_become_octal_as_rsync_writes_them() {
        assert_eq!(text(b"web1"), "web1");
        assert!(matches!(text(b"web1"), Cow::Borrowed(_)));
        assert_eq!(text(b"a\nb"), "a\\#012b");
        assert_eq!(text(b"tab\there\r"), "tab\\#011here\\#015");
        assert_eq!(text(b"\x1b[31mred"), "\\#033[31mred");
        assert_eq!(text(b"del\x7f"), "del\\#177");
        assert_eq!(text(b"bad\xff\xfe"), "bad\\#377\\#376");
        assert_eq!(
            text("h\u{e9}llo \u{65e5}\u{672c}".as_bytes()),
            "h\u{e9}llo \u{65e5}\u{672c}"
        );
        assert_eq!(text("x\u{202e}y".as_bytes()), "x\\#342\\#200\\#256y");
        assert_eq!(text("nel\u{85}".as_bytes()), "nel\\#302\\#205");
        // A backslash that would read as an escape is one itself; others stay.
        assert_eq!(text(b"a\\#012b"), "a\\#134#012b");
        assert_eq!(text(b"C:\\dir\\#1"), "C:\\dir\\#1");
    }

    #[test]
    fn exact_keeps_valid_utf8_and_both_forms_decode_back() {
        assert_eq!(exact(b"a\nb"), "a\nb");
        assert_eq!(exact(b"caf\xc3\xa9"), "caf\u{e9}");
        assert_eq!(exact(b"bad\xff"), "bad\\#377");
        let samples: [&[u8]; 7] = [
            b"plain",
            b"a\nb\tc",
            b"\xff\xfe\x80",
            b"\\#123 and \\#12 and \\",
            "bidi\u{202e}".as_bytes(),
            b"\\#377\xff",
            b"",
        ];
        for s in samples {
            assert_eq!(unescape(&text(s)), s, "text of {s:?}");
            assert_eq!(unescape(&exact(s)), s, "exact of {s:?}");
            assert_eq!(text_str(&exact(s)), text(s), "text_str of exact of {s:?}");
            assert_eq!(text_str(&text(s)), text(s), "idempotent on {s:?}");
            assert!(!text(s).chars().any(is_control));
        }
    }
}
