//! Text from the server made safe to show on the operator's terminal: STATUS messages and
//! what the server (or ssh) writes on its stderr are the peer's bytes, and a terminal acts
//! on control characters (an escape sequence can clear the screen, retitle the window,
//! rewrite the line that says what failed). Pure: bytes in, a `String` out.

use std::fmt::Write;

/// `text` as one line of printable text, at most about `max` bytes: valid UTF-8 as it is,
/// except control characters (C0, DEL, C1, the line and paragraph separators) and the
/// invisible marks that reorder text (bidirectional overrides), which are written as
/// `\x1b` or `\u{202e}`; bytes that are not UTF-8 as `\xff`. What goes over `max` is cut
/// and the cut said.
pub fn printable(text: &[u8], max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max) + 32);
    let mut used = 0;
    for chunk in text.utf8_chunks() {
        for c in chunk.valid().chars() {
            if out.len() >= max {
                return cut(out, text.len() - used);
            }
            used += c.len_utf8();
            if !is_trick(c) {
                out.push(c);
            } else if c.is_ascii() {
                let _ = write!(out, "\\x{:02x}", c as u32);
            } else {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
        for b in chunk.invalid() {
            if out.len() >= max {
                return cut(out, text.len() - used);
            }
            used += 1;
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Whether `text` holds anything [`printable`] would escape other than bytes that are not
/// UTF-8 and read as no control character either (bytes 0x80 to 0x9f are C1 controls to a
/// terminal that is not in UTF-8).
pub fn has_controls(text: &[u8]) -> bool {
    text.utf8_chunks().any(|chunk| {
        chunk.valid().chars().any(is_trick)
            || chunk.invalid().iter().any(|b| (0x80..0xa0).contains(b))
    })
}

fn cut(mut out: String, left: usize) -> String {
    let _ = write!(out, "... ({left} more bytes)");
    out
}

/// A character a terminal acts on, or that makes the text read otherwise than it is.
fn is_trick(c: char) -> bool {
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
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_and_unicode_stay_as_they_are() {
        assert_eq!(printable(b"No such file", 100), "No such file");
        assert_eq!(
            printable("Datei nicht gefunden: \u{e4}".as_bytes(), 100),
            "Datei nicht gefunden: \u{e4}"
        );
        assert_eq!(printable(b"", 100), "");
    }

    #[test]
    fn control_characters_and_invalid_bytes_are_escaped() {
        assert_eq!(
            printable(b"\x1b[2J\x1b]0;owned\x07red\rfake\nline\ttab\x7f", 100),
            "\\x1b[2J\\x1b]0;owned\\x07red\\x0dfake\\x0aline\\x09tab\\x7f"
        );
        // C1 controls, whether as UTF-8 or as the lone bytes an 8-bit terminal reads.
        assert_eq!(printable("\u{9b}31m".as_bytes(), 100), "\\u{9b}31m");
        assert_eq!(printable(b"\x9b31m \xff\xfe", 100), "\\x9b31m \\xff\\xfe");
        // Text that would read backwards on the screen.
        assert_eq!(
            printable("ok\u{202e}gpj.exe".as_bytes(), 100),
            "ok\\u{202e}gpj.exe"
        );
        assert!(
            printable(&(0u8..=255).collect::<Vec<u8>>(), 10_000)
                .chars()
                .all(|c| !is_trick(c))
        );
    }

    #[test]
    fn controls_are_found_wherever_they_are() {
        assert!(!has_controls(b"foo_1.0_amd64.deb"));
        assert!(!has_controls("\u{e4}".as_bytes()));
        assert!(!has_controls(b"latin1 \xe4"));
        for bad in [
            &b"a\x1bb"[..],
            b"\n",
            b"a\x7f",
            b"\x9b",
            "\u{9b}".as_bytes(),
        ] {
            assert!(has_controls(bad), "{bad:?}");
        }
        assert!(has_controls("x\u{202e}y".as_bytes()));
    }

    #[test]
    fn long_text_is_cut_and_says_so() {
        let long = vec![b'x'; 100_000];
        let shown = printable(&long, 1000);
        assert!(shown.starts_with(&"x".repeat(1000)), "{shown}");
        assert!(shown.ends_with("... (99000 more bytes)"), "{shown}");
        // Escapes count as what they take on the screen.
        let shown = printable(&[0x1b; 1000], 40);
        assert!(shown.len() < 80, "{shown}");
        assert!(shown.ends_with("more bytes)"), "{shown}");
        let shown = printable(&[0xff; 1000], 40);
        assert!(shown.ends_with("(990 more bytes)"), "{shown}");
    }
}
