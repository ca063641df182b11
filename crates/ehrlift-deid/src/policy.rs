//! Privacy profiles: which rules each PHI tag allows, checked before anything is read.
//!
//! | tag | `safe_harbor` | `limited_data_set` | `custom` |
//! |---|---|---|---|
//! | none, quasi | any rule | any rule | any rule |
//! | direct identifiers (name, phone, ssn, mrn, ... other_id) | drop, null, surrogate; pseudonym unless a join key | same | any |
//! | date | drop, null, generalize year / birth_year / age, bucket topped at 90 | also keep, shift_date | any |
//! | geo | drop, null, generalize zip3 | also keep | any |
//! | free_text | drop, null, scrub_text | same | any |
//!
//! A *join key* is a column in its table's `key`, or any column whose pseudonym or
//! surrogate namespace is that of such a column: HIPAA §164.514(c) lets a retained
//! re-identification code stand only if it is not derived from the identifier, so
//! join keys take random surrogates. Pseudonyms (keyed hashes) are allowed for other
//! identifiers, whose output is then an opaque code with a key that never leaves the
//! keyring; a privacy officer who reads §164.514(c) more strictly uses surrogates.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use ehrlift_mapping::{Column, Generalize, Mapping, Phi, Plan, Profile, Rule};
use serde::Serialize;

/// A column whose rule its profile does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Mapping file.
    pub file: PathBuf,
    /// Line of the column.
    pub line: usize,
    /// What is wrong and what would be allowed.
    pub message: String,
}

impl std::fmt::Display for Violation {
    /// `file:line: message`, like the plan loader's diagnostics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// Checks every column of `plan` against its profile. Empty means allowed.
pub fn check(plan: &Plan) -> Vec<Violation> {
    let mut out = Vec::new();
    let join_namespaces = join_namespaces(plan);
    let mut namespace_rules: BTreeMap<&str, (&str, &Mapping, &Column)> = BTreeMap::new();
    for m in &plan.tables {
        for c in &m.columns {
            let mut fail = |message: String| out.push(Violation { file: m.path.clone(), line: c.line, message });
            if let Some(ns) = namespace_of(&c.rule) {
                match namespace_rules.get(ns) {
                    Some((rule, om, oc)) if *rule != c.rule.name() => fail(format!(
                        "column `{}`: namespace `{ns}` is used by rule {} here and by rule {rule} in column `{}` of table `{}`; one namespace takes one rule, so its values join",
                        c.name,
                        c.rule.name(),
                        oc.name,
                        om.table
                    )),
                    Some(_) => {}
                    None => {
                        namespace_rules.insert(ns, (c.rule.name(), m, c));
                    }
                }
            }
            if plan.profile == Profile::Custom {
                continue;
            }
            let Some(phi) = c.phi else {
                fail(format!(
                    "column `{}` has no `phi` tag; under {} every column must be classified (phi = \"none\" when it holds no identifier)",
                    c.name,
                    plan.profile.name()
                ));
                continue;
            };
            let join_key = m.key.contains(&c.name) || namespace_of(&c.rule).is_some_and(|ns| join_namespaces.contains(ns));
            if let Err(allowed) = allowed(plan.profile, phi, &c.rule, join_key) {
                fail(format!(
                    "column `{}` (phi = \"{}\"): rule {} is not allowed under {}; allowed: {allowed}",
                    c.name,
                    phi.code(),
                    c.rule.describe(),
                    plan.profile.name()
                ));
            }
        }
    }
    out
}

/// Namespaces of pseudonym, surrogate and tokenize rules.
fn namespace_of(rule: &Rule) -> Option<&str> {
    match rule {
        Rule::Pseudonym { namespace } | Rule::Surrogate { namespace } | Rule::Tokenize { namespace } => Some(namespace),
        _ => None,
    }
}

/// Namespaces of columns that are in their table's `key`.
fn join_namespaces(plan: &Plan) -> HashSet<&str> {
    plan.tables.iter().flat_map(|m| m.columns.iter().filter(|c| m.key.contains(&c.name)).filter_map(|c| namespace_of(&c.rule))).collect()
}

/// `Ok` when `rule` is allowed for `phi` under `profile`, else the allowed rules.
fn allowed(profile: Profile, phi: Phi, rule: &Rule, join_key: bool) -> Result<(), &'static str> {
    // An encrypted column is kept for whoever holds its key: allowed where keep is.
    let rule = if *rule == Rule::Encrypt { &Rule::Keep } else { rule };
    if matches!(rule, Rule::Drop | Rule::Null) || matches!(phi, Phi::None | Phi::Quasi) || profile == Profile::Custom {
        return Ok(());
    }
    let lds = profile == Profile::LimitedDataSet;
    let ok = match phi {
        Phi::Date => match rule {
            Rule::Generalize(Generalize::Year | Generalize::BirthYear | Generalize::Age) => true,
            Rule::Generalize(Generalize::Bucket(b)) => b.last().is_some_and(|top| *top <= 90.0),
            Rule::Keep | Rule::ShiftDate { .. } | Rule::Generalize(_) => lds,
            _ => false,
        },
        Phi::Geo => match rule {
            Rule::Generalize(Generalize::Zip3) => true,
            Rule::Keep | Rule::Generalize(_) => lds,
            _ => false,
        },
        Phi::FreeText => matches!(rule, Rule::ScrubText),
        _ => match rule {
            Rule::Surrogate { .. } => true,
            Rule::Pseudonym { .. } => !join_key,
            _ => false,
        },
    };
    if ok {
        return Ok(());
    }
    Err(match (phi, lds) {
        (Phi::Date, false) => {
            "drop, null, generalize to year, birth_year (birth dates: suppresses ages over 89), age, or a bucket whose top bound is at most 90"
        }
        (Phi::Date, true) => "keep, shift_date, generalize, drop or null",
        (Phi::Geo, false) => "generalize to zip3 (ZIP codes), drop or null; a state is not PHI (tag it \"none\" or \"quasi\")",
        (Phi::Geo, true) => "keep, generalize, drop or null (street addresses must be dropped)",
        (Phi::FreeText, _) => "scrub_text, drop or null",
        _ if join_key => "surrogate (a retained join key must be a random code not derived from the identifier, §164.514(c)), drop or null",
        _ => "surrogate, pseudonym, drop or null",
    })
}

/// One Safe Harbor category of a table and what covers it.
#[derive(Debug, Clone, Serialize)]
pub struct Coverage {
    /// The category's tag.
    pub category: &'static str,
    /// Columns tagged with it and their rules (`drop` included).
    pub columns: Vec<CoveredBy>,
}

/// A column covering a category, and its rule with parameters.
#[derive(Debug, Clone, Serialize)]
pub struct CoveredBy {
    /// Output column.
    pub column: String,
    /// Rule, e.g. `generalize(zip3)`.
    pub rule: String,
}

/// The 18 Safe Harbor categories of `mapping`, each with the columns and rules covering it.
pub fn checklist(mapping: &Mapping) -> Vec<Coverage> {
    Phi::ALL
        .iter()
        .filter(|p| p.is_safe_harbor_category())
        .map(|&p| Coverage {
            category: p.code(),
            columns: mapping
                .columns
                .iter()
                .filter(|c| c.phi == Some(p))
                .map(|c| CoveredBy { column: c.name.clone(), rule: c.rule.describe() })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_harbor_table() {
        use Profile::*;
        let sur = Rule::Surrogate { namespace: "patient".into() };
        let pse = Rule::Pseudonym { namespace: "ssn".into() };
        assert!(allowed(SafeHarbor, Phi::Date, &Rule::Keep, false).is_err());
        assert!(allowed(SafeHarbor, Phi::Date, &Rule::ShiftDate { by: "p".into() }, false).is_err());
        assert!(allowed(LimitedDataSet, Phi::Date, &Rule::ShiftDate { by: "p".into() }, false).is_ok());
        assert!(allowed(SafeHarbor, Phi::Date, &Rule::Generalize(Generalize::BirthYear), false).is_ok());
        assert!(allowed(SafeHarbor, Phi::Date, &Rule::Generalize(Generalize::Bucket(vec![18.0, 90.0])), false).is_ok());
        assert!(allowed(SafeHarbor, Phi::Date, &Rule::Generalize(Generalize::Bucket(vec![18.0, 100.0])), false).is_err());
        assert!(allowed(SafeHarbor, Phi::Geo, &Rule::Generalize(Generalize::Zip3), false).is_ok());
        assert!(allowed(SafeHarbor, Phi::Geo, &Rule::Keep, false).is_err());
        assert!(allowed(LimitedDataSet, Phi::Geo, &Rule::Keep, false).is_ok());
        assert!(allowed(SafeHarbor, Phi::Mrn, &sur, true).is_ok());
        assert!(allowed(SafeHarbor, Phi::Mrn, &pse, true).unwrap_err().contains("join key"));
        assert!(allowed(SafeHarbor, Phi::Ssn, &pse, false).is_ok());
        assert!(allowed(SafeHarbor, Phi::Ssn, &Rule::Mask { keep_last: 4 }, false).is_err());
        assert!(allowed(SafeHarbor, Phi::Ssn, &Rule::Tokenize { namespace: "ssn".into() }, false).is_err());
        assert!(allowed(LimitedDataSet, Phi::Name, &Rule::Keep, false).is_err());
        assert!(allowed(SafeHarbor, Phi::FreeText, &Rule::ScrubText, false).is_ok());
        assert!(allowed(SafeHarbor, Phi::FreeText, &Rule::Keep, false).is_err());
        assert!(allowed(SafeHarbor, Phi::Quasi, &Rule::Keep, false).is_ok());
        assert!(allowed(Custom, Phi::Ssn, &Rule::Keep, false).is_ok());
        assert!(allowed(Custom, Phi::Ssn, &Rule::Encrypt, false).is_ok());
        assert!(allowed(SafeHarbor, Phi::Ssn, &Rule::Encrypt, false).is_err(), "encryption is not de-identification");
        assert!(allowed(LimitedDataSet, Phi::Date, &Rule::Encrypt, false).is_ok());
    }
}
