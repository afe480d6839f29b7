//! Text a server chose (its `grpc-message`, its reflection errors), made safe for the text outputs a person or a
//! parser reads: every control character is written as an escape, so a server cannot clear the terminal, set its
//! title, move the cursor, or forge lines in the error distribution, a CSV row or an Influx point. The bidi
//! overrides that reorder what a terminal shows, and Unicode's own line separators, are escaped too.
//!
//! The JSON formats need none of this (JSON escapes control characters itself) and keep the text exactly; the
//! HTML page escapes it as HTML.

use std::{borrow::Cow, fmt::Write};

/// Whether `c` must not reach a text output raw.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every control character escaped (`\n`, `\r`, `\t`, else `\u{1b}`): one line, shown as sent.
pub fn escaped(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) => {
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
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert!(matches!(escaped("plain text, ünïcode"), Cow::Borrowed(_)));
        assert_eq!(escaped("a\x1b]0;title\x07b\r\nforged"), "a\\u{1b}]0;title\\u{7}b\\r\\nforged");
        assert_eq!(escaped("tab\there \u{7f} \u{9b}"), "tab\\there \\u{7f} \\u{9b}");
        assert_eq!(escaped("\u{202e}txt.exe"), "\\u{202e}txt.exe");
        assert!(!escaped("\x00\x01\x1f\u{85}\u{2028}").chars().any(|c| c.is_control()));
    }
}
