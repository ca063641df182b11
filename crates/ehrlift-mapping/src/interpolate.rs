//! `${VAR}` and `${VAR:-default}` in plan and mapping strings.
//!
//! Interpolation happens on parsed string values, never on the raw TOML text, so
//! a variable can't change the document's structure and line numbers stay true.

/// Looks variables up; the CLI passes the process environment, tests a map.
pub trait Env {
    /// The variable's value, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for std::collections::HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Expands `${NAME}`, `${NAME:-default}` (default when unset or empty) and `$$` (a `$`).
///
/// An unset variable without a default is an error naming the variable.
pub fn interpolate(s: &str, env: &dyn Env) -> Result<String, String> {
    if !s.contains('$') {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = closing_brace(body).ok_or_else(|| "unclosed `${` in string".to_owned())?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`${{{expr}}}` is not a variable reference; expected ${{NAME}} or ${{NAME:-default}}"));
            }
            match (env.var(name).filter(|v| !(default.is_some() && v.is_empty())), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(&interpolate(d, env)?),
                (None, None) => {
                    return Err(format!("environment variable `{name}` is not set (write ${{{name}:-default}} to give a default)"));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Index of the `}` closing a `${`, skipping nested `${...}` in defaults.
fn closing_brace(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    let b = body.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'{' if i > 0 && b[i - 1] == b'$' => depth += 1,
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env() -> HashMap<String, String> {
        HashMap::from([("A".to_owned(), "x".to_owned()), ("EMPTY".to_owned(), String::new())])
    }

    #[test]
    fn expands_set_unset_and_defaults() {
        let e = env();
        assert_eq!(interpolate("p/${A}/q", &e).unwrap(), "p/x/q");
        assert_eq!(interpolate("${B:-def}", &e).unwrap(), "def");
        assert_eq!(interpolate("${EMPTY:-def}", &e).unwrap(), "def");
        assert_eq!(interpolate("${B:-${A}}", &e).unwrap(), "x");
        assert_eq!(interpolate("cost $5 $$", &e).unwrap(), "cost $5 $");
    }

    #[test]
    fn unset_without_default_names_the_variable() {
        let err = interpolate("${NOPE}", &env()).unwrap_err();
        assert!(err.contains("`NOPE`"), "{err}");
        assert!(interpolate("${A", &env()).is_err());
        assert!(interpolate("${A B}", &env()).is_err());
    }
}
