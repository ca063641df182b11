//! Escape sequences and character sets: applied only when a value is read.

use std::borrow::Cow;

use crate::message::{Charset, Delimiters};

/// Decodes HL7 escape sequences in `raw` to bytes still in the message's charset.
///
/// `\F\ \S\ \T\ \R\ \E\` become the delimiters, `\X..\` the hex bytes, `\.br\` a newline.
/// Anything else (unknown escapes, `\H\`/`\N\` highlighting, an unterminated escape) is
/// kept literally: dropping it would silently change the value.
pub fn unescape<'a>(raw: &'a [u8], d: &Delimiters) -> Cow<'a, [u8]> {
    let esc = d.escape;
    let Some(first) = raw.iter().position(|&b| b == esc) else {
        return Cow::Borrowed(raw);
    };
    let mut out = Vec::with_capacity(raw.len());
    out.extend_from_slice(&raw[..first]);
    let mut i = first;
    while i < raw.len() {
        let b = raw[i];
        if b != esc {
            out.push(b);
            i += 1;
            continue;
        }
        let Some(len) = raw[i + 1..].iter().position(|&c| c == esc) else {
            out.extend_from_slice(&raw[i..]);
            break;
        };
        let body = &raw[i + 1..i + 1 + len];
        if decode_escape(body, d, &mut out) {
            i += len + 2;
        } else {
            // Keep the escape char and rescan from the next byte: the closing escape
            // char may open the next, valid, sequence.
            out.push(b);
            i += 1;
        }
    }
    Cow::Owned(out)
}

fn decode_escape(body: &[u8], d: &Delimiters, out: &mut Vec<u8>) -> bool {
    match body {
        b"F" => out.push(d.field),
        b"S" => out.push(d.component),
        b"T" => out.push(d.subcomponent),
        b"R" => out.push(d.repetition),
        b"E" => out.push(d.escape),
        b".br" => out.push(b'\n'),
        [b'X', hex @ ..] if !hex.is_empty() && hex.len() % 2 == 0 => {
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return false;
            }
            out.extend(hex.chunks(2).map(|p| (hexval(p[0]) << 4) | hexval(p[1])));
        }
        _ => return false,
    }
    true
}

fn hexval(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// Turns bytes in the message's charset into text. `None` when they are not valid in it
/// (possible only for UTF-8 after `\X..\` escapes put raw bytes in).
pub fn decode(bytes: Cow<'_, [u8]>, charset: Charset) -> Option<Cow<'_, str>> {
    match charset {
        Charset::Utf8 => match bytes {
            Cow::Borrowed(b) => std::str::from_utf8(b).ok().map(Cow::Borrowed),
            Cow::Owned(v) => String::from_utf8(v).ok().map(Cow::Owned),
        },
        Charset::Latin1 => Some(latin1(bytes)),
        Charset::Lenient => Some(lenient(bytes)),
    }
}

fn latin1(bytes: Cow<'_, [u8]>) -> Cow<'_, str> {
    if bytes.is_ascii() {
        return match bytes {
            Cow::Borrowed(b) => Cow::Borrowed(std::str::from_utf8(b).unwrap_or_default()),
            Cow::Owned(v) => Cow::Owned(String::from_utf8(v).unwrap_or_default()),
        };
    }
    Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect())
}

/// Undeclared or ASCII-declared text: UTF-8 when it is valid UTF-8, else Windows-1252,
/// the usual reality of senders that declare nothing.
fn lenient(bytes: Cow<'_, [u8]>) -> Cow<'_, str> {
    match bytes {
        Cow::Borrowed(b) => match std::str::from_utf8(b) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => encoding_rs::WINDOWS_1252.decode_without_bom_handling(b).0,
        },
        Cow::Owned(v) => match String::from_utf8(v) {
            Ok(s) => Cow::Owned(s),
            Err(e) => Cow::Owned(encoding_rs::WINDOWS_1252.decode_without_bom_handling(e.as_bytes()).0.into_owned()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Delimiters {
        Delimiters::STANDARD
    }

    fn un(s: &str) -> String {
        String::from_utf8(unescape(s.as_bytes(), &d()).into_owned()).unwrap()
    }

    #[test]
    fn standard_escapes() {
        assert_eq!(un(r"a\F\b\S\c\T\d\R\e\E\f"), r"a|b^c&d~e\f");
        assert_eq!(un(r"line1\.br\line2"), "line1\nline2");
        assert_eq!(un(r"\X4142\"), "AB");
        assert_eq!(un(r"\X0D\\X0A\"), "\r\n");
    }

    #[test]
    fn unknown_and_unterminated_escapes_are_kept() {
        assert_eq!(un(r"a\Q\b"), r"a\Q\b");
        assert_eq!(un(r"a\H\bold\N\"), r"a\H\bold\N\");
        assert_eq!(un(r"C:\path"), r"C:\path");
        assert_eq!(un(r"\XZZ\"), r"\XZZ\");
        assert_eq!(un(r"\r\F\"), r"\r|");
    }

    #[test]
    fn borrowed_when_no_escape() {
        assert!(matches!(unescape(b"plain", &d()), Cow::Borrowed(_)));
    }

    #[test]
    fn charsets() {
        let bytes = Cow::Borrowed(&b"M\xfcller"[..]);
        assert_eq!(decode(bytes.clone(), Charset::Latin1).unwrap(), "Müller");
        assert_eq!(decode(bytes.clone(), Charset::Lenient).unwrap(), "Müller");
        assert!(decode(bytes, Charset::Utf8).is_none());
        let utf8 = Cow::Borrowed("Müller".as_bytes());
        assert_eq!(decode(utf8, Charset::Lenient).unwrap(), "Müller");
    }
}
