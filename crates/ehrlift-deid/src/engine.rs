//! A table's privacy rules compiled against the run's keys: from the typed column
//! arrays (the mapping kernels' output) and the raw source batch (patient keys and
//! identifiers for the scrubber) to the arrays that are written.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, new_null_array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use ehrlift_core::{ProjectKey, Reason};
use ehrlift_mapping::kernel::{TableKernels, data_type};
use ehrlift_mapping::{Generalize, Mapping, Phi, Plan, PrivacySettings, Rule};

use crate::generalize::{ages, bucket_labels, buckets, mask, oldest_birth_year, years, zip3};
use crate::keyed::{DateShifter, Pseudonymizer, Tokenizer, for_each_text, shift};
use crate::scrub::{Scrubber, Tag};
use crate::vault::{Vault, VaultKeys};

/// Everything keyed that a run's tables share: the project key, the plan's privacy
/// settings, the vault (when a rule needs it) and the scrubber's compiled patterns.
pub struct PrivacyContext {
    key: Option<ProjectKey>,
    shift_days: (i32, i32),
    reference_date: NaiveDate,
    vault: Option<Arc<Vault>>,
    scrubber: std::sync::OnceLock<Arc<Scrubber>>,
}

impl std::fmt::Debug for PrivacyContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivacyContext").field("key", &self.key_id()).field("reference_date", &self.reference_date).finish_non_exhaustive()
    }
}

impl PrivacyContext {
    /// A context for one run. `reference_date` is the plan's, or the run's start date;
    /// `key` may be `None` only when no rule is keyed.
    pub fn new(key: Option<ProjectKey>, settings: &PrivacySettings, reference_date: NaiveDate, vault: Option<Arc<Vault>>) -> Self {
        PrivacyContext { key, shift_days: settings.shift_days, reference_date, vault, scrubber: Default::default() }
    }

    /// The project key's public id.
    pub fn key_id(&self) -> Option<&str> {
        self.key.as_ref().map(ProjectKey::id)
    }

    fn key(&self) -> &ProjectKey {
        self.key.as_ref().expect("a plan with keyed rules opens the project key")
    }

    /// The vault, if the plan uses surrogates.
    pub fn vault(&self) -> Option<&Arc<Vault>> {
        self.vault.as_ref()
    }

    /// The date ages and birth years are computed at.
    pub fn reference_date(&self) -> NaiveDate {
        self.reference_date
    }

    fn scrubber(&self) -> Arc<Scrubber> {
        self.scrubber.get_or_init(|| Arc::new(Scrubber::new())).clone()
    }
}

/// The keys of the vault, derived from the project key.
pub fn vault_keys(key: &ProjectKey) -> VaultKeys {
    VaultKeys { lookup: key.derive("ehrlift/vault/lookup/v1"), seal: key.derive("ehrlift/vault/seal/v1") }
}

/// Whether any column of `plan` takes a surrogate (and so needs the vault).
pub fn needs_vault(plan: &Plan) -> bool {
    plan.rules().any(|r| matches!(r, Rule::Surrogate { .. }))
}

/// The tokenizer of `table.column` in `plan`, for `ehrlift reidentify`.
pub fn tokenizer_for(plan: &Plan, key: &ProjectKey, table: &str, column: &str) -> Result<Tokenizer, String> {
    let m = plan.table(table).ok_or_else(|| format!("the plan has no table `{table}`"))?;
    let c = m.column(column).ok_or_else(|| format!("table `{table}` has no column `{column}`"))?;
    match &c.rule {
        Rule::Tokenize { namespace } => Ok(Tokenizer::new(key, namespace)),
        other => Err(format!("column `{table}.{column}` has rule {}, not tokenize: only tokens can be reversed", other.name())),
    }
}

/// The scrubber's tag for an identifier PHI tag.
fn tag_of(phi: Phi) -> Option<Tag> {
    Some(match phi {
        Phi::Name => Tag::Name,
        Phi::Geo => Tag::Location,
        Phi::Phone => Tag::Phone,
        Phi::Fax => Tag::Fax,
        Phi::Email => Tag::Email,
        Phi::Ssn => Tag::Ssn,
        Phi::Mrn => Tag::Mrn,
        Phi::HealthPlan => Tag::HealthPlan,
        Phi::Account => Tag::Account,
        Phi::License => Tag::License,
        Phi::Vehicle => Tag::Vehicle,
        Phi::Device => Tag::Device,
        Phi::Url => Tag::Url,
        Phi::Ip => Tag::Ip,
        Phi::OtherId => Tag::Id,
        _ => return None,
    })
}

enum Op {
    Keep,
    Null,
    Pseudonym(Pseudonymizer),
    Surrogate(String),
    Tokenize(Tokenizer),
    /// Raw input index of the patient key.
    Shift(usize),
    Years(Option<i32>),
    Zip3,
    Age,
    Bucket(Vec<f64>, Vec<String>),
    Mask(usize),
    Scrub,
}

struct OutColumn {
    name: String,
    /// Index into the typed arrays (none for `null`).
    typed: Option<usize>,
    op: Op,
}

/// A table's compiled privacy rules.
pub struct TablePrivacy {
    columns: Vec<OutColumn>,
    schema: SchemaRef,
    no_dictionary: Vec<String>,
    shifter: Option<DateShifter>,
    /// Raw input index and tag of every identifier column, for the scrubber.
    row_ids: Vec<(usize, Tag)>,
    vault: Option<Arc<Vault>>,
    scrubber: Option<Arc<Scrubber>>,
}

impl TablePrivacy {
    /// Compiles `mapping`'s rules; `kernels` are its compiled column kernels.
    ///
    /// Panics only on a plan that did not pass loading (a surrogate without a vault).
    pub fn compile(mapping: &Mapping, kernels: &TableKernels, ctx: &PrivacyContext) -> Self {
        let inputs = mapping.source_columns();
        let input_of = |from: &str| inputs.iter().position(|s| s == from).expect("source column listed");
        let mut columns = Vec::new();
        let mut fields = Vec::new();
        let mut no_dictionary = Vec::new();
        for (i, c) in mapping.columns.iter().enumerate() {
            if !c.rule.outputs() {
                continue;
            }
            let typed = kernels.position_of(i);
            let kernel_field = typed.map(|t| kernels.columns[t].2.field());
            let utf8 = |nullable: bool| Field::new(&c.name, DataType::Utf8, nullable);
            let nullable = c.nullable;
            let (op, field) = match &c.rule {
                // Encryption happens in the Parquet writer: the value is kept here.
                Rule::Keep | Rule::Encrypt => (Op::Keep, kernel_field.clone().expect("kept columns have kernels")),
                Rule::Null => (Op::Null, Field::new(&c.name, data_type(c.ty), true)),
                Rule::Pseudonym { namespace } => (Op::Pseudonym(Pseudonymizer::new(ctx.key(), namespace)), utf8(nullable)),
                Rule::Surrogate { namespace } => {
                    assert!(ctx.vault.is_some(), "a plan with surrogates opens the vault");
                    (Op::Surrogate(namespace.clone()), utf8(nullable))
                }
                Rule::Tokenize { namespace } => (Op::Tokenize(Tokenizer::new(ctx.key(), namespace)), utf8(nullable)),
                Rule::ShiftDate { by } => {
                    let key = mapping.column(by).expect("shift_by validated");
                    (Op::Shift(input_of(&key.from)), kernel_field.clone().expect("shifted columns have kernels"))
                }
                Rule::Generalize(g) => match g {
                    Generalize::Year => (Op::Years(None), Field::new(&c.name, DataType::Int32, nullable)),
                    Generalize::BirthYear => {
                        (Op::Years(Some(oldest_birth_year(ctx.reference_date))), Field::new(&c.name, DataType::Int32, true))
                    }
                    Generalize::Zip3 => (Op::Zip3, utf8(true)),
                    Generalize::Age => (Op::Age, utf8(true)),
                    Generalize::Bucket(b) => (Op::Bucket(b.clone(), bucket_labels(b)), utf8(true)),
                },
                Rule::Mask { keep_last } => (Op::Mask(*keep_last), utf8(nullable)),
                Rule::ScrubText => (Op::Scrub, utf8(nullable)),
                Rule::Drop => unreachable!("dropped columns are skipped"),
            };
            if !c.dictionary {
                no_dictionary.push(c.name.clone());
            }
            fields.push(field);
            columns.push(OutColumn { name: c.name.clone(), typed, op });
        }
        let scrubs = columns.iter().any(|c| matches!(c.op, Op::Scrub));
        let row_ids = if scrubs {
            mapping.columns.iter().filter_map(|c| tag_of(c.phi?).map(|t| (input_of(&c.from), t))).collect()
        } else {
            Vec::new()
        };
        let shifts = columns.iter().any(|c| matches!(c.op, Op::Shift(_)));
        TablePrivacy {
            columns,
            schema: Arc::new(Schema::new(fields)),
            no_dictionary,
            shifter: shifts.then(|| DateShifter::new(ctx.key(), ctx.shift_days)),
            row_ids,
            vault: ctx.vault.clone(),
            scrubber: scrubs.then(|| ctx.scrubber()),
        }
    }

    /// The schema of what is written.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Output columns Parquet must not dictionary-encode.
    pub fn no_dictionary(&self) -> &[String] {
        &self.no_dictionary
    }

    /// Name of output column `i`.
    pub fn column_name(&self, i: usize) -> &str {
        &self.columns[i].name
    }

    /// Applies every rule. `typed` are the kernels' outputs for the whole batch,
    /// `raw` the source batch. Rows a rule cannot serve (a date with no patient key)
    /// are listed in `errors` as (row, output column, reason); their cells are null.
    pub fn apply(&self, typed: &[ArrayRef], raw: &RecordBatch, errors: &mut Vec<(u32, usize, Reason)>) -> Vec<ArrayRef> {
        let n = raw.num_rows();
        let mut offsets: HashMap<usize, Vec<Option<i32>>> = HashMap::new();
        let mut missing = Vec::new();
        let mut out = Vec::with_capacity(self.columns.len());
        for (ci, col) in self.columns.iter().enumerate() {
            let input = col.typed.map(|t| typed[t].as_ref());
            let field = self.schema.field(ci);
            let array: ArrayRef = match &col.op {
                Op::Keep => typed[col.typed.expect("kernel")].clone(),
                Op::Null => new_null_array(field.data_type(), n),
                Op::Pseudonym(p) => p.apply(input.expect("kernel")),
                Op::Tokenize(t) => t.apply(input.expect("kernel")),
                Op::Surrogate(ns) => {
                    let vault = self.vault.as_ref().expect("vault opened for surrogates");
                    let mut b = StringBuilder::with_capacity(n, n * 36);
                    let input = input.expect("kernel");
                    if let Some(s) = input.as_string_opt::<i32>() {
                        vault.surrogates(ns, s.iter(), &mut b);
                    } else {
                        let mut texts = Vec::with_capacity(n);
                        for_each_text(input, |v| texts.push(v.map(str::to_owned)));
                        vault.surrogates(ns, texts.iter().map(Option::as_deref), &mut b);
                    }
                    Arc::new(b.finish())
                }
                Op::Shift(key_input) => {
                    let shifter = self.shifter.as_ref().expect("shifter compiled");
                    let offs = offsets.entry(*key_input).or_insert_with(|| shifter.offsets(raw.column(*key_input).as_ref()));
                    missing.clear();
                    let a = shift(input.expect("kernel"), offs, &mut missing);
                    errors.extend(missing.iter().map(|&r| (r, ci, Reason::MissingShiftKey)));
                    a
                }
                Op::Years(oldest) => years(input.expect("kernel"), *oldest),
                Op::Zip3 => zip3(input.expect("kernel")),
                Op::Age => ages(input.expect("kernel")),
                Op::Bucket(bounds, labels) => buckets(input.expect("kernel"), bounds, labels),
                Op::Mask(k) => mask(input.expect("kernel"), *k),
                Op::Scrub => self.scrub(input.expect("kernel").as_string::<i32>(), raw),
            };
            out.push(array);
        }
        out
    }

    fn scrub(&self, text: &StringArray, raw: &RecordBatch) -> ArrayRef {
        let scrubber = self.scrubber.as_ref().expect("scrubber compiled");
        // Identifiers from databases may be typed (an MRN as bigint): the scrubber looks for their text.
        let owned: Vec<(ArrayRef, Tag)> = self
            .row_ids
            .iter()
            .map(|(i, t)| {
                let c = raw.column(*i);
                let c = if c.data_type() == &DataType::Utf8 {
                    c.clone()
                } else {
                    arrow_cast::cast(c, &DataType::Utf8).unwrap_or_else(|_| new_null_array(&DataType::Utf8, c.len()))
                };
                (c, *t)
            })
            .collect();
        let ids: Vec<(&StringArray, Tag)> = owned.iter().map(|(a, t)| (a.as_string::<i32>(), *t)).collect();
        let mut b = StringBuilder::with_capacity(text.len(), text.value_data().len() + text.len() * 4);
        let mut row_ids: Vec<(&str, Tag)> = Vec::with_capacity(ids.len());
        let mut s = String::new();
        for (i, v) in text.iter().enumerate() {
            let Some(v) = v else {
                b.append_null();
                continue;
            };
            row_ids.clear();
            for (a, tag) in &ids {
                if a.is_valid(i) {
                    let id = a.value(i).trim();
                    if !id.is_empty() {
                        row_ids.push((id, *tag));
                    }
                }
            }
            s.clear();
            scrubber.scrub_into(v, &row_ids, &mut s);
            b.append_value(&s);
        }
        Arc::new(b.finish())
    }
}
