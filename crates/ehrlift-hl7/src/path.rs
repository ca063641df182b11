//! Field paths: `SEG[occ]-field[rep].component.subcomponent`, every index 1-based.

use crate::error::PathError;

/// A parsed path such as `PID-3[2].4.2` or `OBX[2]-5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path {
    /// Segment id, three ASCII letters or digits.
    pub segment: [u8; 3],
    /// Which occurrence of the segment in the message (1 = first).
    pub occurrence: usize,
    /// Field number, by the standard numbering (MSH-1 is the field separator).
    pub field: usize,
    /// Repetition of the field (1 = first).
    pub repetition: usize,
    /// Component, if the path goes that deep.
    pub component: Option<usize>,
    /// Subcomponent, if the path goes that deep (needs a component).
    pub subcomponent: Option<usize>,
}

impl Path {
    /// Parses a path; the error names the path (configuration, not data).
    pub fn parse(path: &str) -> Result<Path, PathError> {
        let err = |reason| PathError::Syntax { path: path.to_owned(), reason };
        let b = path.as_bytes();
        if b.len() < 5 || !b[..3].iter().all(u8::is_ascii_alphanumeric) {
            return Err(err("expected a three-character segment id, like PID"));
        }
        let segment = [b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase(), b[2].to_ascii_uppercase()];
        let mut rest = &path[3..];
        let occurrence = match bracket(&mut rest) {
            Ok(o) => o.unwrap_or(1),
            Err(r) => return Err(err(r)),
        };
        rest = rest.strip_prefix('-').ok_or_else(|| err("expected `-` and a field number after the segment id"))?;
        let field = number(&mut rest).map_err(err)?;
        let repetition = bracket(&mut rest).map_err(err)?.unwrap_or(1);
        let mut component = None;
        let mut subcomponent = None;
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
            component = Some(number(&mut rest).map_err(err)?);
            if let Some(r) = rest.strip_prefix('.') {
                rest = r;
                subcomponent = Some(number(&mut rest).map_err(err)?);
            }
        }
        if !rest.is_empty() {
            return Err(err("unexpected text after the path"));
        }
        if field == 0 {
            return Err(err("field numbers start at 1"));
        }
        Ok(Path { segment, occurrence, field, repetition, component, subcomponent })
    }

    /// The segment id as text.
    pub fn segment_id(&self) -> &str {
        std::str::from_utf8(&self.segment).unwrap_or("???")
    }
}

impl std::fmt::Display for Path {
    /// The canonical spelling: `PID-3[2].4.2`, with `[occ]` and `[rep]` only when not 1.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.segment_id())?;
        if self.occurrence != 1 {
            write!(f, "[{}]", self.occurrence)?;
        }
        write!(f, "-{}", self.field)?;
        if self.repetition != 1 {
            write!(f, "[{}]", self.repetition)?;
        }
        if let Some(c) = self.component {
            write!(f, ".{c}")?;
        }
        if let Some(s) = self.subcomponent {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

fn number(rest: &mut &str) -> Result<usize, &'static str> {
    let end = rest.bytes().position(|c| !c.is_ascii_digit()).unwrap_or(rest.len());
    if end == 0 || end > 6 {
        return Err("expected a number of 1 to 6 digits");
    }
    let n: usize = rest[..end].parse().map_err(|_| "expected a number")?;
    *rest = &rest[end..];
    if n == 0 {
        return Err("indexes start at 1");
    }
    Ok(n)
}

fn bracket(rest: &mut &str) -> Result<Option<usize>, &'static str> {
    let Some(r) = rest.strip_prefix('[') else { return Ok(None) };
    *rest = r;
    let n = number(rest)?;
    *rest = rest.strip_prefix(']').ok_or("expected `]`")?;
    Ok(Some(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_shapes() {
        let p = Path::parse("PID-3[2].4.2").unwrap();
        assert_eq!((p.segment_id(), p.occurrence, p.field, p.repetition, p.component, p.subcomponent), ("PID", 1, 3, 2, Some(4), Some(2)));
        let p = Path::parse("OBX[2]-5").unwrap();
        assert_eq!((p.occurrence, p.field, p.component), (2, 5, None));
        assert_eq!(Path::parse("MSH-7").unwrap().field, 7);
        assert_eq!(Path::parse("pid-5.1").unwrap().segment_id(), "PID");
        for text in ["PID-3[2].4.2", "OBX[2]-5", "MSH-7.1", "ZPI-12"] {
            assert_eq!(Path::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn rejects_bad_paths() {
        for bad in ["PID", "PID-", "PID-0", "PID-3[0]", "PID-3.", "PID-3.1.2.3", "PI-3", "PID3", "PID-3[1", "PID-x"] {
            assert!(Path::parse(bad).is_err(), "{bad}");
        }
    }
}
