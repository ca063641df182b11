//! One table's statistics, accumulated batch by batch from what a run would write.
//!
//! Memory per table is bounded (a few KiB per column, 16 KiB per HyperLogLog, at most
//! ten row positions per list) except for the hash sets of the key (8 bytes per distinct
//! key), of referenced columns (8 bytes per distinct value), of k-anonymity classes
//! (16 bytes per class), and of references resolved after the table is read (40 bytes
//! per row: hash and position).

use std::collections::{BTreeMap, HashMap, HashSet};

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef};
use arrow_schema::SortOptions;
use ehrlift_core::RowOrigin;
use ehrlift_deid::scrub::{Scrubber, Tag};
use ehrlift_mapping::kernel::TableKernels;
use ehrlift_mapping::{Mapping, Phi, Rule};

use super::hash::{HyperLogLog, NULL_HASH, combine, for_each_hash, for_each_text_hash};
use crate::convert::{Converted, count_reasons};
use crate::report::RowRef;

/// Row positions kept per list.
pub(crate) const FIRST: usize = 10;
/// Written rows encoded to estimate the Parquet size.
const ENCODE_ROWS: u64 = 64 * 1024;

/// Names a row: the table's input names by file index.
pub(crate) fn row_ref(names: &[String], o: &RowOrigin) -> RowRef {
    RowRef { file: names.get(o.file as usize).cloned().unwrap_or_default(), line: o.line, record: o.record, byte_offset: o.byte }
}

fn push_first(v: &mut Vec<RowOrigin>, o: RowOrigin) {
    if v.len() < FIRST {
        v.push(o);
    }
}

/// One output column.
pub(crate) struct ColStats {
    /// Index in `mapping.columns`.
    pub col: usize,
    /// Index among the written columns.
    written: usize,
    pub failures: u64,
    pub reasons: BTreeMap<String, u64>,
    pub first_failures: Vec<RowOrigin>,
    pub nulls: u64,
    pub hll: HyperLogLog,
    /// Min and max so far, as one-value arrays (`phi = "none"` only).
    minmax: Option<Option<(ArrayRef, ArrayRef)>>,
    /// Residual PHI per detector: values where it fired and the first rows.
    pub residual: Option<BTreeMap<Tag, (u64, Vec<RowOrigin>)>>,
}

impl ColStats {
    /// Min and max as text.
    pub fn min_max(&self) -> (Option<String>, Option<String>) {
        let Some(Some((lo, hi))) = &self.minmax else { return (None, None) };
        let text = |a: &ArrayRef| {
            arrow_cast::display::ArrayFormatter::try_new(a.as_ref(), &Default::default()).ok().map(|f| f.value(0).to_string())
        };
        (text(lo), text(hi))
    }
}

/// The declared key.
pub(crate) struct KeyStats {
    pub columns: Vec<String>,
    /// Per key column: its typed index, else its written index.
    parts: Vec<(Option<usize>, usize)>,
    seen: HashSet<u64>,
    pub duplicates: u64,
    pub nulls: u64,
    pub first: Vec<RowOrigin>,
}

/// A column with `references`: its values' hashes, checked now or later.
pub(crate) struct RefStats {
    pub column: String,
    pub references: String,
    parts: (Option<usize>, usize),
    /// Hashes and positions kept until the referenced table has been read.
    pub pending: Vec<(u64, RowOrigin)>,
    /// Resolved as read (the referenced table was read before this one).
    pub orphans: u64,
    pub first: Vec<RowOrigin>,
    pub exact: bool,
}

/// k-anonymity classes.
pub(crate) struct KStats {
    pub columns: Vec<String>,
    written: Vec<usize>,
    pub classes: HashMap<u64, u64>,
}

/// The set of a referenced column's values (hashes of their text).
pub(crate) type RefSet = HashSet<u64>;

/// Everything one table accumulates.
pub(crate) struct TableStats {
    pub names: Vec<String>,
    /// The first quarantined row.
    pub first_quarantine: Option<RowOrigin>,
    pub rows_read: u64,
    pub rows_written: u64,
    pub rows_quarantined: u64,
    /// HL7 messages or fixed-width records of other types passed over.
    pub rows_passed_over: u64,
    pub reasons: BTreeMap<String, u64>,
    pub columns: Vec<ColStats>,
    pub key: Option<KeyStats>,
    pub refs: Vec<RefStats>,
    pub k: Option<KStats>,
    /// Values of this table's columns others reference: (column, set).
    pub referenced: Vec<(String, (Option<usize>, usize), RefSet)>,
    encoder: Option<parquet::arrow::ArrowWriter<Vec<u8>>>,
    pub encoded_rows: u64,
    pub encoded_bytes: u64,
}

impl TableStats {
    /// `referenced` names this table's columns that other columns reference; `parents`
    /// holds the sets of referenced columns of tables already read (then checked now).
    pub fn new(
        m: &Mapping,
        kernels: &TableKernels,
        names: Vec<String>,
        referenced: &[String],
        scrubber: bool,
        encoder: Option<parquet::arrow::ArrowWriter<Vec<u8>>>,
    ) -> Self {
        let written: Vec<usize> = m.columns.iter().enumerate().filter(|(_, c)| c.rule.outputs()).map(|(i, _)| i).collect();
        let parts_of = |name: &str| -> Option<(Option<usize>, usize)> {
            let ci = m.columns.iter().position(|c| c.name == name)?;
            let wi = written.iter().position(|&w| w == ci)?;
            Some((kernels.position_of(ci), wi))
        };
        let columns = written
            .iter()
            .enumerate()
            .map(|(wi, &ci)| {
                let c = &m.columns[ci];
                let kept_text = matches!(c.rule, Rule::Keep | Rule::Encrypt)
                    && matches!(c.ty, ehrlift_mapping::ColumnType::Utf8)
                    && matches!(c.phi, None | Some(Phi::None | Phi::Quasi));
                ColStats {
                    col: ci,
                    written: wi,
                    failures: 0,
                    reasons: BTreeMap::new(),
                    first_failures: Vec::new(),
                    nulls: 0,
                    hll: HyperLogLog::new(),
                    minmax: (c.phi == Some(Phi::None)).then_some(None),
                    residual: (kept_text && scrubber).then(BTreeMap::new),
                }
            })
            .collect();
        let key = (!m.key.is_empty()).then(|| KeyStats {
            columns: m.key.clone(),
            parts: m.key.iter().filter_map(|k| parts_of(k)).collect(),
            seen: HashSet::new(),
            duplicates: 0,
            nulls: 0,
            first: Vec::new(),
        });
        let refs = m
            .columns
            .iter()
            .filter_map(|c| {
                let r = c.references.as_ref()?;
                Some(RefStats {
                    column: c.name.clone(),
                    references: r.clone(),
                    parts: parts_of(&c.name)?,
                    pending: Vec::new(),
                    orphans: 0,
                    first: Vec::new(),
                    exact: false,
                })
            })
            .collect();
        let qi: Vec<&ehrlift_mapping::Column> =
            m.columns.iter().filter(|c| c.rule.outputs() && (c.phi == Some(Phi::Quasi) || matches!(c.rule, Rule::Generalize(_)))).collect();
        let k = (!qi.is_empty()).then(|| KStats {
            columns: qi.iter().map(|c| c.name.clone()).collect(),
            written: qi.iter().filter_map(|c| parts_of(&c.name).map(|p| p.1)).collect(),
            classes: HashMap::new(),
        });
        let referenced = referenced.iter().filter_map(|c| Some((c.clone(), parts_of(c)?, RefSet::new()))).collect();
        TableStats {
            names,
            first_quarantine: None,
            rows_read: 0,
            rows_written: 0,
            rows_quarantined: 0,
            rows_passed_over: 0,
            reasons: BTreeMap::new(),
            columns,
            key,
            refs,
            k,
            referenced,
            encoder,
            encoded_rows: 0,
            encoded_bytes: 0,
        }
    }

    /// Adds one converted batch. `origins` are the raw batch's row origins (before
    /// conversion), `typed` the kernels' outputs of the written rows.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        m: &Mapping,
        origins: &[RowOrigin],
        rows_read: u64,
        c: &Converted,
        typed: &[ArrayRef],
        parents: &ParentSets<'_>,
        scrubber: Option<&Scrubber>,
    ) {
        self.rows_read += rows_read;
        self.rows_quarantined += c.rows_rejected;
        count_reasons(&mut self.reasons, &c.rejections);
        if self.first_quarantine.is_none() {
            self.first_quarantine = c.rejections.first().map(|r| r.origin);
        }
        for r in &c.rejections {
            let Some(name) = r.column.as_deref() else { continue };
            // Output column by name, else the first column reading that source column.
            let target = self
                .columns
                .iter_mut()
                .position(|s| m.columns[s.col].name == name)
                .or_else(|| self.columns.iter().position(|s| m.columns[s.col].from == name));
            if let Some(i) = target {
                let s = &mut self.columns[i];
                s.failures += 1;
                *s.reasons.entry(r.reason.code().to_owned()).or_default() += 1;
                push_first(&mut s.first_failures, r.origin);
            }
        }
        let batch = &c.batch;
        let n = batch.num_rows();
        self.rows_written += n as u64;
        if n == 0 {
            return;
        }
        // Origins of the written rows: the raw rows minus those a rule or kernel rejected.
        let written: Vec<RowOrigin> = if origins.len() == n {
            origins.to_vec()
        } else {
            let bad: HashSet<(u32, u64)> = c.rejections.iter().map(|r| (r.origin.file, r.origin.record)).collect();
            origins.iter().filter(|o| !bad.contains(&(o.file, o.record))).copied().collect()
        };
        let origin = |i: usize| written.get(i).copied().unwrap_or(RowOrigin { file: 0, record: 0, line: 0, byte: 0 });
        for s in &mut self.columns {
            let a = batch.column(s.written);
            s.nulls += a.null_count() as u64;
            let hll = &mut s.hll;
            for_each_hash(a, |_, h| {
                if let Some(h) = h {
                    hll.add(h);
                }
            });
            if let Some(mm) = &mut s.minmax {
                update_min_max(mm, a);
            }
            if let (Some(res), Some(scrubber)) = (&mut s.residual, scrubber)
                && let Some(text) = a.as_string_opt::<i32>()
            {
                let mut tags: Vec<Tag> = Vec::new();
                for (i, v) in text.iter().enumerate() {
                    let Some(v) = v else { continue };
                    tags.clear();
                    for (_, t) in scrubber.detect(v) {
                        if !tags.contains(&t) {
                            tags.push(t);
                        }
                    }
                    for t in &tags {
                        let e = res.entry(*t).or_insert_with(|| (0, Vec::new()));
                        e.0 += 1;
                        push_first(&mut e.1, origin(i));
                    }
                }
            }
        }
        let pick = |p: &(Option<usize>, usize)| -> ArrayRef {
            match p.0 {
                Some(t) => typed[t].clone(),
                None => batch.column(p.1).clone(),
            }
        };
        if let Some(k) = &mut self.key
            && !k.parts.is_empty()
        {
            let mut h = vec![0u64; n];
            let mut null = vec![false; n];
            for p in &k.parts {
                for_each_hash(&pick(p), |i, v| match v {
                    Some(v) => h[i] = combine(h[i], v),
                    None => null[i] = true,
                });
            }
            for i in 0..n {
                if null[i] {
                    k.nulls += 1;
                } else if !k.seen.insert(h[i]) {
                    k.duplicates += 1;
                    push_first(&mut k.first, origin(i));
                }
            }
        }
        for (_, p, set) in &mut self.referenced {
            for_each_text_hash(&pick(p), |_, v| {
                if let Some(v) = v {
                    set.insert(v);
                }
            });
        }
        for r in &mut self.refs {
            let a = pick(&r.parts);
            match parents.get(&r.references) {
                Some((set, complete)) => {
                    r.exact = *complete;
                    for_each_text_hash(&a, |i, v| {
                        if let Some(v) = v
                            && !set.contains(&v)
                        {
                            r.orphans += 1;
                            push_first(&mut r.first, origin(i));
                        }
                    });
                }
                None => for_each_text_hash(&a, |i, v| {
                    if let Some(v) = v {
                        r.pending.push((v, origin(i)));
                    }
                }),
            }
        }
        if let Some(k) = &mut self.k {
            let mut h = vec![NULL_HASH; n];
            for &w in &k.written {
                for_each_hash(batch.column(w), |i, v| h[i] = combine(h[i], v.unwrap_or(NULL_HASH)));
            }
            for v in h {
                *k.classes.entry(v).or_default() += 1;
            }
        }
        if let Some(enc) = &mut self.encoder
            && self.encoded_rows < ENCODE_ROWS
        {
            let take = (ENCODE_ROWS - self.encoded_rows).min(n as u64) as usize;
            if enc.write(&batch.slice(0, take)).is_ok() {
                self.encoded_rows += take as u64;
            } else {
                self.encoder = None;
            }
        }
    }

    /// Finishes the Parquet size sample.
    pub fn finish_encoding(&mut self) {
        if let Some(enc) = self.encoder.take()
            && let Ok(bytes) = enc.into_inner()
        {
            self.encoded_bytes = bytes.len() as u64;
        }
    }
}

/// Sets of referenced columns of tables already read: `table.column` → (set, table complete).
pub(crate) type ParentSets<'a> = HashMap<String, (&'a RefSet, bool)>;

fn update_min_max(mm: &mut Option<(ArrayRef, ArrayRef)>, a: &ArrayRef) {
    if a.null_count() == a.len() {
        return;
    }
    let Ok(cmp) = arrow_ord::ord::make_comparator(a.as_ref(), a.as_ref(), SortOptions::default()) else { return };
    let (mut lo, mut hi) = (None::<usize>, None::<usize>);
    for i in 0..a.len() {
        if a.is_null(i) {
            continue;
        }
        if lo.is_none_or(|l| cmp(i, l).is_lt()) {
            lo = Some(i);
        }
        if hi.is_none_or(|h| cmp(i, h).is_gt()) {
            hi = Some(i);
        }
    }
    let (Some(lo), Some(hi)) = (lo, hi) else { return };
    let (lo, hi) = (a.slice(lo, 1), a.slice(hi, 1));
    *mm = Some(match mm.take() {
        None => (lo, hi),
        Some((plo, phi)) => {
            let better = |new: ArrayRef, old: ArrayRef, want_less: bool| -> ArrayRef {
                match arrow_ord::ord::make_comparator(new.as_ref(), old.as_ref(), SortOptions::default()) {
                    Ok(c) if c(0, 0).is_lt() == want_less && c(0, 0).is_ne() => new,
                    _ => old,
                }
            };
            (better(lo, plo, true), better(hi, phi, false))
        }
    });
}
