//! The ranked problem list, type lossiness notes and the plan's gates. Messages name
//! tables, columns, counts and positions, never a value.

use ehrlift_mapping::{Column, ColumnType, FailOn, Plan, Profile};

use crate::report::{GateResult, Problem, RowRef, Severity, TableReport};

/// What the declared type may lose, from the type alone (and decimal overflows seen).
pub(crate) fn lossiness(c: &Column, decimal_overflows: u64) -> Vec<String> {
    let mut out = Vec::new();
    match c.ty {
        ColumnType::Float32 | ColumnType::Float64 => {
            out.push("binary floating point: decimal values are not stored exactly".to_owned());
        }
        ColumnType::Timestamp => out.push("time zone dropped: wall-clock values".to_owned()),
        ColumnType::TimestampTz => match c.timezone {
            Some(tz) => out.push(format!("local times converted to UTC (from {tz}); the source offset is not kept")),
            None => out.push("instants normalized to UTC; the source offset is not kept".to_owned()),
        },
        ColumnType::Decimal { precision, scale } if decimal_overflows > 0 => {
            out.push(format!("{decimal_overflows} values exceed decimal({precision},{scale})"));
        }
        _ => {}
    }
    out
}

fn at(r: Option<&RowRef>) -> String {
    match r {
        Some(r) if r.line > 0 => format!("; first at {}:{}", r.file, r.line),
        Some(r) => format!("; first at {} record {}", r.file, r.record),
        None => String::new(),
    }
}

fn problem(severity: Severity, code: &str, t: &TableReport, column: Option<&str>, count: u64, message: String) -> Problem {
    Problem { severity, code: code.into(), table: t.table.clone(), column: column.map(str::to_owned), count, message }
}

/// The quarantine ratio gate of `plan`.
pub(crate) fn max_ratio(plan: &Plan) -> f64 {
    plan.validate.max_quarantine_ratio.unwrap_or(plan.run.max_quarantine_ratio)
}

fn ratio(t: &TableReport) -> f64 {
    if t.rows_read == 0 { 0.0 } else { t.rows_quarantined as f64 / t.rows_read as f64 }
}

/// Every problem of one table, unranked.
pub(crate) fn of_table(plan: &Plan, t: &TableReport) -> Vec<Problem> {
    use Severity::*;
    let mut out = Vec::new();
    let name = &t.table;
    if let Some(p) = &t.problem {
        out.push(problem(Error, "unreadable", t, None, 0, format!("table `{name}` cannot be read: {p}")));
    }
    if t.rows_quarantined > 0 {
        let over = ratio(t) > max_ratio(plan);
        let first = t.columns.iter().flat_map(|c| c.first_failures.first()).min_by_key(|r| (r.file.clone(), r.record));
        out.push(problem(
            if over { Error } else { Warning },
            "quarantine",
            t,
            None,
            t.rows_quarantined,
            format!(
                "table `{name}`: {} of {} rows would be quarantined ({:.4}{}){}",
                t.rows_quarantined,
                t.rows_read,
                ratio(t),
                if over { format!(", over max_quarantine_ratio {}", max_ratio(plan)) } else { String::new() },
                at(first)
            ),
        ));
    }
    for c in &t.columns {
        if c.failures > 0 {
            let reasons: Vec<String> = c.failure_reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
            out.push(problem(
                Warning,
                "conversion_failures",
                t,
                Some(&c.name),
                c.failures,
                format!(
                    "`{name}.{}`: {} values fail to convert ({}){}",
                    c.name,
                    c.failures,
                    reasons.join(", "),
                    at(c.first_failures.first())
                ),
            ));
        }
        for l in &c.lossiness {
            out.push(problem(Info, "lossy_type", t, Some(&c.name), 0, format!("`{name}.{}` ({}): {l}", c.name, c.r#type)));
        }
    }
    if let Some(k) = &t.key {
        let cols = k.columns.join(", ");
        if k.duplicates > 0 {
            out.push(problem(
                Error,
                "duplicate_key",
                t,
                None,
                k.duplicates,
                format!("table `{name}`: {} rows repeat a key ({cols}) seen before{}", k.duplicates, at(k.first.first())),
            ));
        }
        if k.nulls > 0 {
            out.push(problem(
                Error,
                "null_key",
                t,
                None,
                k.nulls,
                format!("table `{name}`: {} rows have a null in the key ({cols})", k.nulls),
            ));
        }
    }
    for f in &t.foreign_keys {
        if f.orphans > 0 {
            out.push(problem(
                Warning,
                "fk_orphans",
                t,
                Some(&f.column),
                f.orphans,
                format!(
                    "`{name}.{}`: {} values are not in `{}`{}{}",
                    f.column,
                    f.orphans,
                    f.references,
                    if f.exact { "" } else { " (that table was only sampled: may be false alarms)" },
                    at(f.first.first())
                ),
            ));
        }
    }
    let hipaa = matches!(plan.profile, Profile::SafeHarbor | Profile::LimitedDataSet);
    for s in &t.source_columns.unmapped {
        out.push(problem(
            Error,
            "unmapped_column",
            t,
            Some(s),
            1,
            format!(
                "table `{name}`: source column `{s}` is neither mapped nor in `drop`; a run refuses the table (profiled as if dropped)"
            ),
        ));
    }
    // One problem per table, not per column: a plan written without tags would otherwise
    // fill the ranked list with one line per column.
    let unclassified = &t.source_columns.unclassified;
    if !unclassified.is_empty() {
        let names: Vec<String> = unclassified.iter().map(|s| format!("`{s}`")).collect();
        out.push(problem(
            if hipaa { Error } else { Warning },
            "unclassified_column",
            t,
            None,
            unclassified.len() as u64,
            format!("table `{name}`: {} source column(s) read without a `phi` tag: {}", unclassified.len(), names.join(", ")),
        ));
    }
    for s in &t.source_columns.new {
        out.push(problem(
            Warning,
            "new_column",
            t,
            Some(s),
            1,
            format!("table `{name}`: source column `{s}` is not mentioned by the mapping"),
        ));
    }
    for r in &t.residual_phi {
        out.push(problem(
            Warning,
            "residual_phi",
            t,
            Some(&r.column),
            r.count,
            format!(
                "`{name}.{}`: detector `{}` fires in {} values written as they are{}",
                r.column,
                r.detector,
                r.count,
                at(r.first.first())
            ),
        ));
    }
    if let Some(k) = &t.k_anonymity
        && (k.k < 5 || plan.validate.min_k.is_some_and(|m| k.k < m))
    {
        out.push(problem(
            Warning,
            "low_k",
            t,
            None,
            k.records_below_5,
            format!(
                "table `{name}`: k = {} over ({}); {} records in classes smaller than 5, {} smaller than 11",
                k.k,
                k.columns.join(", "),
                k.records_below_5,
                k.records_below_11
            ),
        ));
    }
    out
}

/// Errors first, then warnings, then info; within a severity by count, largest first.
pub(crate) fn rank(problems: &mut [Problem]) {
    problems.sort_by(|a, b| a.severity.cmp(&b.severity).then(b.count.cmp(&a.count)));
}

/// The plan's `[validate]` gates: one quarantine gate per table, one `min_k` gate per
/// table with quasi-identifiers (when set), one gate per `fail_on` code.
pub(crate) fn gates(plan: &Plan, tables: &[TableReport], problems: &[Problem]) -> Vec<GateResult> {
    let mut out = Vec::new();
    let max = max_ratio(plan);
    for t in tables {
        out.push(GateResult {
            gate: "max_quarantine_ratio".into(),
            passed: ratio(t) <= max,
            detail: format!("table `{}`: {} of {} rows quarantined ({:.4}), max {max}", t.table, t.rows_quarantined, t.rows_read, ratio(t)),
        });
    }
    if let Some(min_k) = plan.validate.min_k {
        for t in tables {
            if let Some(k) = &t.k_anonymity {
                out.push(GateResult {
                    gate: "min_k".into(),
                    passed: k.k >= min_k,
                    detail: format!("table `{}`: k = {} over ({}), min {min_k}", t.table, k.k, k.columns.join(", ")),
                });
            }
        }
    }
    for f in &plan.validate.fail_on {
        let codes: &[&str] = match f {
            FailOn::Unclassified => &["unmapped_column", "unclassified_column"],
            FailOn::DuplicateKey => &["duplicate_key", "null_key"],
            FailOn::ResidualPhi => &["residual_phi"],
            FailOn::FkOrphans => &["fk_orphans"],
            FailOn::NewColumn => &["new_column"],
        };
        let found: Vec<&Problem> = problems.iter().filter(|p| codes.contains(&p.code.as_str())).collect();
        out.push(GateResult {
            gate: format!("fail_on:{}", f.code()),
            passed: found.is_empty(),
            detail: if found.is_empty() {
                format!("no {} problem", codes.join(" or "))
            } else {
                format!("{} {} problem(s), {} rows or values", found.len(), codes.join(" or "), found.iter().map(|p| p.count).sum::<u64>())
            },
        });
    }
    out
}
