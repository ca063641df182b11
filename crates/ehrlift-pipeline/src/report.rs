//! The validation report of `ehrlift validate --sample N | --full`: what a run of the plan
//! would do, measured on the real sources, with nothing written. Format version
//! [`REPORT_FORMAT`]; the JSON schema is `docs/report-schema.json`.
//!
//! Never a value: positions (file or relation, line, record, byte offset), counts, rates,
//! reason codes and detector names only. Min/max appear only for columns tagged
//! `phi = "none"`.

use std::collections::BTreeMap;

use ehrlift_deid::policy::Coverage;
use serde::Serialize;

use crate::run::Preflight;

/// Version of the report format; bumped on any incompatible change.
pub const REPORT_FORMAT: u32 = 1;

/// How much of each table was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// The first N source rows of each table.
    Sample(u64),
    /// Every row.
    Full,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`REPORT_FORMAT`].
    pub format: u32,
    /// ehrlift version.
    pub tool_version: String,
    /// RFC 3339 time the report was made.
    pub generated_at: String,
    /// The plan file.
    pub plan: String,
    /// Project name.
    pub project: String,
    /// Privacy profile.
    pub profile: String,
    /// How much was read.
    pub sampling: Sampling,
    /// The destination's preflight, when a destination was known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<Preflight>,
    /// The KMS key's preflight, when the project key is KMS-wrapped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<Preflight>,
    /// Per table, in plan order.
    pub tables: Vec<TableReport>,
    /// Every problem of every table, most severe first.
    pub problems: Vec<Problem>,
    /// The plan's gates and whether each passed.
    pub gates: Vec<GateResult>,
    /// True when every gate passed and no table failed to be read.
    pub ok: bool,
}

/// Where a row came from: a file (or `source:relation`) and its position. Never the row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowRef {
    /// File (relative to the source directory) or `source:relation`.
    pub file: String,
    /// 1-based physical line (files); 0 for databases.
    pub line: u64,
    /// 1-based record number within the file or relation.
    pub record: u64,
    /// Byte offset of the record (files); 0 for databases.
    pub byte_offset: u64,
}

/// One table.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    /// Output table.
    pub table: String,
    /// Inputs: file names, or `source:relation`.
    pub inputs: Vec<String>,
    /// Why the table could not be read at all (then the counts are zero).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Whether every source row was read (false when the sample stopped first).
    pub complete: bool,
    /// Source rows read.
    pub rows_read: u64,
    /// Rows a run would write.
    pub rows_written: u64,
    /// Rows a run would quarantine.
    pub rows_quarantined: u64,
    /// Quarantine entries by reason code.
    pub quarantine_reasons: BTreeMap<String, u64>,
    /// HL7 messages or fixed-width records of types the mapping does not read (absent: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rows_passed_over: u64,
    /// Output columns.
    pub columns: Vec<ColumnReport>,
    /// The declared key's uniqueness, when the mapping declares one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<KeyCheck>,
    /// Declared `references` to other mapped tables.
    pub foreign_keys: Vec<ForeignKeyCheck>,
    /// Source columns not accounted for, not classified, or new.
    pub source_columns: SourceColumns,
    /// Identifiers the scrubber's detectors find in text columns written as they are.
    pub residual_phi: Vec<ResidualPhi>,
    /// The 18 Safe Harbor categories and the columns and rules covering each.
    pub safe_harbor: Vec<Coverage>,
    /// Re-identification risk over the columns tagged `quasi`, as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k_anonymity: Option<KAnonymity>,
    /// What a full run of the table would write and take, from what was read.
    pub estimate: Estimate,
}

/// One output column.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnReport {
    /// Output name.
    pub name: String,
    /// Source column.
    pub from: String,
    /// Declared type.
    pub r#type: String,
    /// Privacy rule with parameters.
    pub rule: String,
    /// PHI tag, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phi: Option<String>,
    /// Values that failed to convert (their rows are quarantined).
    pub failures: u64,
    /// Failures by reason code.
    pub failure_reasons: BTreeMap<String, u64>,
    /// The first failing rows (at most 10).
    pub first_failures: Vec<RowRef>,
    /// Nulls among the rows a run would write.
    pub nulls: u64,
    /// `nulls / rows_written` (0 when nothing would be written).
    pub null_rate: f64,
    /// Approximate distinct count of the written values (HyperLogLog, about 1% error).
    pub distinct_approx: u64,
    /// Smallest written value as text; only for `phi = "none"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<String>,
    /// Largest written value as text; only for `phi = "none"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
    /// Type lossiness: what the declared type may lose (precision, time zone, truncation).
    pub lossiness: Vec<String>,
}

/// The declared key: are its values unique?
#[derive(Debug, Clone, Serialize)]
pub struct KeyCheck {
    /// Key columns.
    pub columns: Vec<String>,
    /// Rows whose key was seen before.
    pub duplicates: u64,
    /// The first duplicate rows (at most 10).
    pub first: Vec<RowRef>,
    /// Rows with a null in a key column.
    pub nulls: u64,
}

/// A declared reference to another table's column.
#[derive(Debug, Clone, Serialize)]
pub struct ForeignKeyCheck {
    /// Column of this table.
    pub column: String,
    /// `table.column` it references.
    pub references: String,
    /// Rows whose non-null value is not among the referenced column's values.
    pub orphans: u64,
    /// The first orphan rows (at most 10).
    pub first: Vec<RowRef>,
    /// False when the referenced table was only sampled: orphans may be false alarms.
    pub exact: bool,
}

/// Source columns the mapping does not account for, or does not classify.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceColumns {
    /// In the source, neither read by a column nor in `drop`.
    pub unmapped: Vec<String>,
    /// Read or dropped without a PHI tag (refused by the HIPAA profiles).
    pub unclassified: Vec<String>,
    /// Present in the source now and not mentioned by the mapping at all (a schema change).
    pub new: Vec<String>,
}

/// Identifiers found in a text column that a run would write as it is.
#[derive(Debug, Clone, Serialize)]
pub struct ResidualPhi {
    /// Output column.
    pub column: String,
    /// Scrubber detector (`ssn`, `phone`, `email`, …).
    pub detector: String,
    /// Values in which it fired.
    pub count: u64,
    /// The first rows (at most 10).
    pub first: Vec<RowRef>,
}

/// k-anonymity over the quasi-identifiers as written (after generalization).
#[derive(Debug, Clone, Serialize)]
pub struct KAnonymity {
    /// The columns tagged `quasi` (and generalized dates and ZIPs) that were combined.
    pub columns: Vec<String>,
    /// Equivalence classes.
    pub classes: u64,
    /// Size of the smallest class: the table is k-anonymous for this k.
    pub k: u64,
    /// Records in classes smaller than 5.
    pub records_below_5: u64,
    /// Records in classes smaller than 11.
    pub records_below_11: u64,
    /// Highest prosecutor re-identification risk, 1/k.
    pub prosecutor_risk_max: f64,
    /// Average prosecutor risk over records, classes / records.
    pub prosecutor_risk_avg: f64,
}

/// What a full run would write and take.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Estimate {
    /// Source bytes of the table (files), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_bytes: Option<u64>,
    /// Source rows of the table: counted when complete, else estimated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_rows: Option<u64>,
    /// Parquet bytes a run would write, from the encoded size of what was read.
    pub output_bytes: u64,
    /// Seconds a run would take, from the time this read took.
    pub seconds: f64,
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Stops a run or breaks a gate.
    Error,
    /// Data a run would quarantine, or a risk to look at.
    Warning,
    /// Worth knowing.
    Info,
}

/// One problem, for the ranked list.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// Severity.
    pub severity: Severity,
    /// Stable code: `unreadable`, `quarantine`, `conversion_failures`, `duplicate_key`,
    /// `null_key`, `fk_orphans`, `unmapped_column`, `unclassified_column`, `new_column`,
    /// `residual_phi`, `low_k`, `lossy_type`.
    pub code: String,
    /// Table.
    pub table: String,
    /// Column, when one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// How many rows or values.
    pub count: u64,
    /// One line for people; never a value.
    pub message: String,
}

/// A gate of the plan's `[validate]` section.
#[derive(Debug, Clone, Serialize)]
pub struct GateResult {
    /// `max_quarantine_ratio`, `min_k`, or `fail_on:<code>`.
    pub gate: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was measured against what.
    pub detail: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
