//! Reading a column's privacy rule and its parameters.

use crate::fields::{Fields, FileCx};
use crate::model::{ColumnType, Generalize, Phi, Rule};

const RULES: &str = "keep, drop, null, pseudonym, surrogate, tokenize, shift_date, generalize, mask, scrub_text or encrypt";

/// Takes `rule` and its parameters from a column's fields. `ty` and `phi` are the
/// column's (when valid), to check that the rule applies to the type.
pub(crate) fn load_rule(cx: &mut FileCx<'_>, f: &mut Fields, ty: Option<ColumnType>, phi: Option<Phi>) -> Option<Rule> {
    let what = f.what.clone();
    let rule_line = f.line_of(cx, "rule");
    let name: Option<String> = f.req(cx, "rule", &format!("a privacy rule: {RULES}"));
    let ns_line = f.line_of(cx, "namespace");
    let namespace: Option<String> = f.opt(cx, "namespace");
    let by_line = f.line_of(cx, "shift_by");
    let shift_by: Option<String> = f.opt(cx, "shift_by");
    let to_line = f.line_of(cx, "to");
    let to: Option<String> = f.opt(cx, "to");
    let bounds_line = f.line_of(cx, "bounds");
    let bounds: Option<Vec<f64>> = f.opt(cx, "bounds");
    let keep_line = f.line_of(cx, "keep_last");
    let keep_last: Option<usize> = f.opt(cx, "keep_last");
    let name = name?;

    let used = |cx: &mut FileCx<'_>, key: &str, present: bool, line: usize, allowed: bool| {
        if present && !allowed {
            cx.error(Some(line), format!("{what}: `{key}` does not apply to rule = \"{name}\""));
        }
    };
    let keyed = matches!(name.as_str(), "pseudonym" | "surrogate" | "tokenize");
    used(cx, "namespace", namespace.is_some(), ns_line, keyed);
    used(cx, "shift_by", shift_by.is_some(), by_line, name == "shift_date");
    used(cx, "to", to.is_some(), to_line, name == "generalize");
    used(cx, "bounds", bounds.is_some(), bounds_line, to.as_deref() == Some("bucket"));
    used(cx, "keep_last", keep_last.is_some(), keep_line, name == "mask");

    let need_type = |cx: &mut FileCx<'_>, ok: &[ColumnType], desc: &str| {
        if let Some(t) = ty
            && !ok.contains(&t)
        {
            cx.error(Some(rule_line), format!("{what}: rule = \"{name}\" needs type {desc}"));
        }
    };
    use ColumnType::*;
    const TEMPORAL: [ColumnType; 3] = [Date32, Timestamp, TimestampTz];
    let rule = match name.as_str() {
        "keep" => Rule::Keep,
        "encrypt" => Rule::Encrypt,
        "drop" => Rule::Drop,
        "null" => Rule::Null,
        "pseudonym" | "surrogate" | "tokenize" => {
            need_type(
                cx,
                &[Utf8, Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32, UInt64, Uuid],
                "utf8, an integer type or uuid (the value's text is what is keyed)",
            );
            let namespace = match namespace {
                Some(n) => {
                    if n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                        cx.error(Some(ns_line), format!("{what}: `namespace` must be letters, digits, `_` or `-`"));
                    }
                    n
                }
                None => match phi {
                    Some(p) if p.is_safe_harbor_category() => p.code().to_owned(),
                    _ => {
                        cx.error(
                            Some(rule_line),
                            format!("{what}: rule = \"{name}\" needs `namespace` (the identifier kind, e.g. \"patient\") or an identifier `phi` tag to name it"),
                        );
                        return None;
                    }
                },
            };
            match name.as_str() {
                "pseudonym" => Rule::Pseudonym { namespace },
                "surrogate" => Rule::Surrogate { namespace },
                _ => Rule::Tokenize { namespace },
            }
        }
        "shift_date" => {
            need_type(cx, &TEMPORAL, "date32, timestamp or timestamptz");
            match shift_by {
                Some(by) => Rule::ShiftDate { by },
                None => {
                    cx.error(
                        Some(rule_line),
                        format!("{what}: rule = \"shift_date\" needs `shift_by`, the column holding the patient key"),
                    );
                    return None;
                }
            }
        }
        "generalize" => {
            let g = match to.as_deref() {
                Some("year") => {
                    need_type(cx, &TEMPORAL, "date32, timestamp or timestamptz");
                    Generalize::Year
                }
                Some("birth_year") => {
                    need_type(cx, &TEMPORAL, "date32, timestamp or timestamptz");
                    Generalize::BirthYear
                }
                Some("zip3") => {
                    need_type(cx, &[Utf8], "utf8 (ZIP codes keep their leading zeros)");
                    Generalize::Zip3
                }
                Some("age") => {
                    need_type(cx, &[Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32, UInt64], "an integer type (an age in years)");
                    Generalize::Age
                }
                Some("bucket") => {
                    need_type(
                        cx,
                        &[Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32, UInt64, Float32, Float64],
                        "an integer or float type",
                    );
                    let b = bounds.unwrap_or_default();
                    if b.is_empty() || b.windows(2).any(|w| w[0] >= w[1]) || b.iter().any(|x| !x.is_finite()) {
                        cx.error(
                            Some(bounds_line),
                            format!("{what}: `bounds` must be a non-empty list of increasing numbers, e.g. [0, 18, 45, 65, 90]"),
                        );
                    }
                    Generalize::Bucket(b)
                }
                Some(other) => {
                    cx.error(
                        Some(to_line),
                        format!("{what}: `to`: unknown generalization `{other}`; expected year, birth_year, zip3, age or bucket"),
                    );
                    return None;
                }
                None => {
                    cx.error(Some(rule_line), format!("{what}: rule = \"generalize\" needs `to` (year, birth_year, zip3, age or bucket)"));
                    return None;
                }
            };
            Rule::Generalize(g)
        }
        "mask" => {
            need_type(cx, &[Utf8], "utf8");
            Rule::Mask { keep_last: keep_last.unwrap_or(4) }
        }
        "scrub_text" => {
            need_type(cx, &[Utf8], "utf8");
            Rule::ScrubText
        }
        other => {
            cx.error(Some(rule_line), format!("{what}: `rule`: unknown rule `{other}`; expected {RULES}"));
            return None;
        }
    };
    Some(rule)
}
