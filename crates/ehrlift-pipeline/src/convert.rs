//! Raw source batch → typed output batch plus quarantine entries.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{StringBuilder, UInt64Builder};
use arrow_array::{ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use ehrlift_core::{Rejection, SourceBatch};
use ehrlift_deid::TablePrivacy;
use ehrlift_mapping::kernel::TableKernels;

/// A converted batch.
pub(crate) struct Converted {
    /// Good rows, typed.
    pub batch: RecordBatch,
    /// Every rejected cell or row, with provenance and reason.
    pub rejections: Vec<Rejection>,
    /// Distinct source rows rejected (a row with two bad cells counts once).
    pub rows_rejected: u64,
}

/// Runs every kernel and privacy rule on `raw` and keeps only the rows with no failure.
pub(crate) fn convert(kernels: &TableKernels, privacy: &TablePrivacy, raw: SourceBatch) -> Converted {
    convert_keeping(kernels, privacy, raw, false).0
}

/// [`convert`], also returning (when `keep_typed`) the kernels' typed outputs before the
/// privacy rules, filtered to the same rows, in `kernels.columns` order (for reports).
pub(crate) fn convert_keeping(
    kernels: &TableKernels,
    privacy: &TablePrivacy,
    raw: SourceBatch,
    keep_typed: bool,
) -> (Converted, Option<Vec<ArrayRef>>) {
    let n = raw.batch.num_rows();
    let mut errors = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(kernels.columns.len());
    let mut rejections = raw.rejected;
    let mut rows_rejected = rejections.len() as u64;
    let mut bad = vec![false; n];
    let mut any_bad = false;
    let mut reject = |row: u32, column: &str, reason| {
        let row = row as usize;
        if !bad[row] {
            bad[row] = true;
            rows_rejected += 1;
            any_bad = true;
        }
        rejections.push(Rejection { origin: raw.rows[row], column: Some(column.to_owned()), reason });
    };
    for (input, _, kernel) in &kernels.columns {
        errors.clear();
        columns.push(kernel.apply(raw.batch.column(*input).as_ref(), &mut errors));
        for &(row, reason) in &errors {
            reject(row, kernel.name(), reason);
        }
    }
    let mut privacy_errors = Vec::new();
    let mut typed = keep_typed.then(|| columns.clone());
    let mut columns = privacy.apply(&columns, &raw.batch, &mut privacy_errors);
    for (row, column, reason) in privacy_errors {
        reject(row, privacy.column_name(column), reason);
    }
    if any_bad {
        let keep = BooleanArray::from(bad.iter().map(|b| !b).collect::<Vec<_>>());
        let filter = |cols: &[ArrayRef]| -> Vec<ArrayRef> {
            cols.iter().map(|c| arrow_select::filter::filter(c, &keep).expect("filter of same-length arrays")).collect()
        };
        columns = filter(&columns);
        typed = typed.map(|t| filter(&t));
    }
    rejections.sort_by_key(|r| (r.origin.file, r.origin.record));
    let batch = RecordBatch::try_new(privacy.schema().clone(), columns).expect("rules produce their schema; failed rows removed");
    (Converted { batch, rejections, rows_rejected }, typed)
}

/// Schema of quarantine objects: provenance and reason, never the value.
pub(crate) fn quarantine_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("file", DataType::Utf8, false),
        Field::new("record", DataType::UInt64, false),
        Field::new("line", DataType::UInt64, false),
        Field::new("byte_offset", DataType::UInt64, false),
        Field::new("column", DataType::Utf8, true),
        Field::new("reason", DataType::Utf8, false),
    ]))
}

/// Builds a quarantine batch; `files` names the table's files by index.
pub(crate) fn quarantine_batch(rejections: &[Rejection], files: &[String]) -> RecordBatch {
    let n = rejections.len();
    let mut file = StringBuilder::with_capacity(n, n * 16);
    let mut record = UInt64Builder::with_capacity(n);
    let mut line = UInt64Builder::with_capacity(n);
    let mut byte = UInt64Builder::with_capacity(n);
    let mut column = StringBuilder::with_capacity(n, n * 8);
    let mut reason = StringBuilder::with_capacity(n, n * 16);
    for r in rejections {
        file.append_value(&files[r.origin.file as usize]);
        record.append_value(r.origin.record);
        line.append_value(r.origin.line);
        byte.append_value(r.origin.byte);
        column.append_option(r.column.as_deref());
        reason.append_value(r.reason.code());
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(file.finish()),
        Arc::new(record.finish()),
        Arc::new(line.finish()),
        Arc::new(byte.finish()),
        Arc::new(column.finish()),
        Arc::new(reason.finish()),
    ];
    RecordBatch::try_new(quarantine_schema(), cols).expect("quarantine schema")
}

/// Adds rejections to per-reason counts.
pub(crate) fn count_reasons(into: &mut BTreeMap<String, u64>, rejections: &[Rejection]) {
    for r in rejections {
        *into.entry(r.reason.code().to_owned()).or_default() += 1;
    }
}
