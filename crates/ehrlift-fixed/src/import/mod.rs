//! Layout import: other tools' layout descriptions turned into layout TOML text, for
//! `ehrlift layout import` to write and a person to review.
//!
//! Every import is checked by loading its own output with [`Layout::from_toml`], so what
//! is returned always loads.

mod csvkit;
mod naaccr;

use std::fmt::Write as _;

pub use csvkit::csvkit_schema;
pub use naaccr::naaccr_xml;

use crate::error::ImportError;
use crate::layout::Layout;

/// A TOML basic string (quotes, backslashes and control characters escaped): for files
/// written as text, here and by `ehrlift init`'s scaffold.
pub fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text made safe for a one-line TOML comment.
pub(crate) fn comment(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// Loads the generated TOML, so an import never hands back a layout that does not load.
pub(crate) fn check(toml: String) -> Result<String, ImportError> {
    match Layout::from_toml(&toml) {
        Ok(_) => Ok(toml),
        Err(errors) => {
            let first = &errors[0];
            Err(ImportError::new(None, format!("the imported layout does not load ({} problems), first: {first}", errors.len())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_comments_are_escaped() {
        assert_eq!(toml_str("a\"b\\c\n\u{1}é"), r#""a\"b\\c\n\u0001é""#);
        assert_eq!(comment("two\nlines"), "two lines");
    }
}
