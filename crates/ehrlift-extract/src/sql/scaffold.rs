//! Turns an introspected [`Schema`] into a plan (`ehrlift.toml`) and one mapping per table,
//! with PHI tags and privacy rules guessed from column names, types, keys and sampled values.
//!
//! The scaffold fails closed: under profile `safe_harbor` every column it cannot place gets
//! `rule = "drop"` and a `REVIEW` comment, so a run before a person has looked at it can lose
//! data but never leak it. Pure: no I/O, and no sampled value is ever written out.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::LazyLock;

use regex_automata::meta::Regex;

use ehrlift_fixed::import::toml_str as q;
use ehrlift_mapping::{ColumnType, ListOf};

use super::introspect::{ColumnInfo, Dialect, ForeignKey, Schema, TableInfo, redact_url};

/// The generated files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scaffold {
    /// The plan, `ehrlift.toml`.
    pub plan: String,
    /// One mapping per table: file name under `tables/` (`patients.toml`) and its text, sorted.
    pub mappings: Vec<(String, String)>,
    /// `table.column` (output names) of every column marked REVIEW, for the CLI's summary.
    pub review: Vec<String>,
}

/// [`scaffold_on`] dated today (local time).
pub fn scaffold(schema: &Schema, project: &str, source_name: &str, url_hint: &str) -> Scaffold {
    scaffold_on(schema, project, source_name, url_hint, chrono::Local::now().date_naive())
}

/// The plan and mappings for `schema`, dated `date` in the header. `url_hint` is only shown
/// in a comment, redacted again here in case the caller forgot; for SQLite its path becomes
/// the source's `path`. The same inputs always give the same text.
pub fn scaffold_on(schema: &Schema, project: &str, source_name: &str, url_hint: &str, date: chrono::NaiveDate) -> Scaffold {
    let cx = Cx::new(schema);
    let mut mappings = Vec::new();
    let mut review = Vec::new();
    let mut order: Vec<&TableInfo> = schema.tables.iter().collect();
    order.sort_by(|a, b| cx.stem(a).cmp(cx.stem(b)).then(a.name.cmp(&b.name)));
    for t in order {
        let text = cx.mapping(t, source_name, &mut review);
        mappings.push((format!("{}.toml", cx.stem(t)), text));
    }
    let plan = plan(schema, project, source_name, url_hint, date, review.len());
    Scaffold { plan, mappings, review }
}

/// The ehrlift type a column of `db_type` (as the catalog spells it) is read as: integers by
/// width and sign, `decimal(P,S)` up to 76 digits, MySQL `tinyint(1)` as bool, PostgreSQL
/// arrays as `list<T>`, SQLite by declared-type affinity. Anything else (unbounded NUMERIC,
/// intervals, user types) reads as `utf8`: text is never guessed into numbers.
pub fn map_db_type(dialect: Dialect, db_type: &str) -> ColumnType {
    classify(dialect, db_type).0
}

/// Why a type mapping deserves a comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Note {
    None,
    Unbounded,
    AsText,
    SqliteAffinity,
}

fn classify(dialect: Dialect, db_type: &str) -> (ColumnType, Note) {
    use ColumnType::*;
    let t = db_type.trim().to_ascii_lowercase();
    if dialect == Dialect::Sqlite {
        // SQLite's affinity rules, in SQLite's own order (https://sqlite.org/datatype3.html).
        let has = |ks: &str| ks.split_whitespace().any(|k| t.contains(k));
        return if has("int") {
            (Int64, Note::None)
        } else if has("char clob text") {
            (Utf8, Note::None)
        } else if t.is_empty() || has("blob") {
            (Binary, Note::None)
        } else if has("real floa doub") {
            (Float64, Note::None)
        } else {
            (Utf8, Note::SqliteAffinity)
        };
    }
    if let Some(elem) = t.strip_suffix("[]") {
        // The element types a `list<T>` may hold; any other array reads as its text form.
        return match classify(dialect, elem) {
            (e, Note::None) => ListOf::of(e).map_or((Utf8, Note::AsText), |l| (List(l), Note::None)),
            _ => (Utf8, Note::AsText),
        };
    }
    let unsigned = t.contains(" unsigned");
    let with_tz = t.contains("with time zone") && !t.contains("without time zone");
    let (head, args) = match t.split_once('(') {
        Some((h, rest)) => (h, rest.split(')').next().unwrap_or("")),
        None => (t.as_str(), ""),
    };
    let mut base = head.trim();
    for suffix in [" unsigned", " zerofill", " without time zone", " with time zone"] {
        base = base.strip_suffix(suffix).unwrap_or(base).trim();
    }
    let int = |signed, unsigned_ty| if unsigned { unsigned_ty } else { signed };
    let mysql = dialect == Dialect::Mysql;
    let m = match base {
        "tinyint" if mysql && args == "1" && !unsigned => Bool,
        "tinyint" => int(Int8, UInt8),
        "smallint" | "int2" => int(Int16, UInt16),
        "mediumint" | "integer" | "int" | "int4" => int(Int32, UInt32),
        "bigint" | "int8" => int(Int64, UInt64),
        "boolean" | "bool" => Bool,
        "bit" if args == "1" => Bool,
        "real" if mysql => Float64,
        "real" | "float4" => Float32,
        "float" if mysql => Float32,
        "float" | "float8" | "double" | "double precision" => Float64,
        "numeric" | "decimal" | "dec" | "fixed" => return decimal(args),
        "char" | "character" | "varchar" | "character varying" | "bpchar" | "nchar" | "nvarchar" | "text" | "tinytext" | "mediumtext"
        | "longtext" | "citext" | "name" | "\"char\"" | "xml" | "enum" | "set" => Utf8,
        "json" | "jsonb" => Json,
        "bytea" | "blob" | "tinyblob" | "mediumblob" | "longblob" | "binary" | "varbinary" => Binary,
        // Spatial values are binary (WKB); cast to text they are noise.
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring" | "multipolygon" | "geometrycollection"
            if mysql =>
        {
            Binary
        }
        "uuid" => Uuid,
        "date" => Date32,
        "time" if !with_tz => Time,
        "timestamp" if mysql || with_tz => TimestampTz,
        "timestamp" | "datetime" => Timestamp,
        "timestamptz" => TimestampTz,
        "year" => Int16,
        _ => return (Utf8, Note::AsText),
    };
    (m, Note::None)
}

fn decimal(args: &str) -> (ColumnType, Note) {
    if args.trim().is_empty() {
        return (ColumnType::Utf8, Note::Unbounded);
    }
    let mut it = args.split(',').map(|s| s.trim().parse::<i64>());
    let (p, s) = match (it.next(), it.next()) {
        (Some(Ok(p)), None) => (p, 0),
        (Some(Ok(p)), Some(Ok(s))) => (p, s),
        _ => return (ColumnType::Utf8, Note::AsText),
    };
    // Negative scales and scales past the precision (PostgreSQL 15 allows both) have no
    // decimal type to go to.
    if (1..=76).contains(&p) && (0..=p).contains(&s) {
        (ColumnType::Decimal { precision: p as u8, scale: s as i8 }, Note::None)
    } else {
        (ColumnType::Utf8, Note::AsText)
    }
}

/// The comment explaining a lossy-looking type choice, if any.
fn type_note(dialect: Dialect, c: &ColumnInfo) -> Option<String> {
    let (mapped, note) = classify(dialect, &c.db_type);
    if mapped != c.mapped {
        return Some(format!("{} is read as {} (its underlying type)", c.db_type, c.mapped));
    }
    match note {
        Note::None if c.mapped == ColumnType::Binary => Some("binary: not sampled; may hold documents or images".into()),
        Note::None => None,
        Note::Unbounded => Some(
            "unbounded NUMERIC: exact text; declare decimal(P,S) to get numbers (values that do not fit are quarantined, never rounded)"
                .into(),
        ),
        Note::AsText => Some(format!("{} read as text", c.db_type)),
        Note::SqliteAffinity => Some(format!(
            "SQLite declared type `{}`: stored as text or numbers, so read as text; declare the real type to convert",
            c.db_type
        )),
    }
}

/// Output name: snake_case words of the source name (`PatientID` → `patient_id`).
pub fn snake_case(name: &str) -> String {
    let words = words(name);
    if words.is_empty() { "column".into() } else { words.join("_") }
}

/// Table name and file stem: lowercased, anything but `[a-z0-9_]` as `_`, without the
/// leading `_` and past the 128 characters the plan loader refuses.
pub fn table_stem(name: &str) -> String {
    let stem: String = name
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' { c } else { '_' })
        .collect();
    let stem: String = stem.trim_start_matches('_').chars().take(120).collect();
    if stem.is_empty() { "table".into() } else { stem }
}

/// Lowercase words of an identifier, split on non-alphanumerics and camelCase humps.
fn words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            out.extend((!cur.is_empty()).then(|| std::mem::take(&mut cur)));
            continue;
        }
        let prev = i.checked_sub(1).map(|p| chars[p]);
        let next = chars.get(i + 1);
        // `patientId` → patient|Id; `HTTPServer` → HTTP|Server.
        let hump = c.is_uppercase()
            && prev.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit() || (p.is_uppercase() && next.is_some_and(|n| n.is_lowercase())));
        if hump && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        cur.extend(c.to_lowercase());
    }
    out.extend((!cur.is_empty()).then_some(cur));
    out
}

/// A column name prepared for matching: words, the words split again at letter/digit
/// boundaries (`line1` → line, 1), and everything run together (`dateofbirth`).
struct Name {
    parts: Vec<String>,
    words: Vec<String>,
    joined: String,
}

impl Name {
    fn new(name: &str) -> Name {
        let words = words(name);
        let mut parts = Vec::new();
        for w in &words {
            let mut cur = String::new();
            for c in w.chars() {
                if cur.chars().last().is_some_and(|l| l.is_ascii_digit() != c.is_ascii_digit()) {
                    parts.push(std::mem::take(&mut cur));
                }
                cur.push(c);
            }
            parts.push(cur);
        }
        Name { joined: words.concat(), parts, words }
    }
    // Word lists are space-separated strings: long lists stay readable and short.
    /// A whole word or part is one of `ks`: `ip` matches `ip_address`, not `recipient`.
    fn has(&self, ks: &str) -> bool {
        self.words.iter().chain(&self.parts).any(|w| one_of(w, ks))
    }
    /// The run-together name contains one of `ks`: only for long, unambiguous words.
    fn contains(&self, ks: &str) -> bool {
        ks.split_whitespace().any(|k| self.joined.contains(k))
    }
    /// Two consecutive parts, one of `a` then one of `b`: `birth date`, `member id`.
    fn seq(&self, a: &str, b: &str) -> bool {
        self.parts.windows(2).any(|w| one_of(&w[0], a) && one_of(&w[1], b))
    }
}

fn one_of(word: &str, ks: &str) -> bool {
    ks.split_whitespace().any(|k| k == word)
}

/// A rule as written in a mapping.
#[derive(Debug, Clone, PartialEq)]
enum Rule {
    Keep,
    Drop,
    Null,
    Surrogate(String),
    Generalize(&'static str),
    ScrubText,
}

/// A guessed classification and why.
struct Guess {
    phi: &'static str,
    rule: Rule,
    why: String,
    /// A person has to look: the guess is a default, not a finding.
    review: bool,
}

fn g(phi: &'static str, rule: Rule, why: impl Into<String>) -> Guess {
    Guess { phi, rule, why: why.into(), review: false }
}

fn review(phi: &'static str, rule: Rule, why: impl Into<String>) -> Guess {
    Guess { phi, rule, why: why.into(), review: true }
}

fn drop(phi: &'static str, what: &str) -> Guess {
    g(phi, Rule::Drop, format!("{what}: dropped (Safe Harbor identifier)"))
}

static SSN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[0-9]{3}-[0-9]{2}-[0-9]{4}$").expect("valid"));
static EMAIL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$").expect("valid"));
static PHONE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(\+?1[ .-]?)?(\([0-9]{3}\) ?|[0-9]{3}[ .-]?)[0-9]{3}[ .-]?[0-9]{4}$").expect("valid"));
static ZIP: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[0-9]{5}(-?[0-9]{4})?$").expect("valid"));

/// Words that make a number or flag safe to keep: measurements, codes, counts, flags.
const MEASURES: &str = "code cd flag flags ind indicator is has status type kind category class count cnt qty quantity amount amt weight wt \
    height ht value val result units unit score level dose rate bmi temp temperature pulse systolic diastolic bp \
    glucose cost price charge total length duration days minutes hours seq sequence version priority rank percent \
    pct ratio volume size min max mean avg active enabled deleted valid verified";
/// Words that name free text.
const FREE_TEXT: &str = "note notes comment comments msg narrative text description desc descr remark remarks memo summary history \
    impression findings instructions reason message body details";
/// Words before `name` that make it a person's.
const PERSON: &str = "patient pt pat person member guarantor contact emergency spouse mother father parent guardian kin nok \
    subscriber insured user provider doctor physician staff employee relative";

/// What the column name says, if anything. Order matters: `email_address` is an e-mail
/// before it is an address, `license_plate` a vehicle before a license.
fn by_name(n: &Name, ty: &ColumnType) -> Option<Guess> {
    use ColumnType as T;
    let text = *ty == T::Utf8;
    if n.has("ssn ssn4") || n.contains("socialsecurity socsec") {
        return Some(drop("ssn", "Social Security number"));
    }
    if is_mrn(n) {
        return Some(g("mrn", Rule::Surrogate("mrn".into()), "medical record number: a random surrogate, so records still join"));
    }
    if n.contains("email") || n.seq("e", "mail") {
        return Some(drop("email", "e-mail address"));
    }
    if n.has("ip ipaddr ipaddress ipv4 ipv6") {
        return Some(drop("ip", "IP address"));
    }
    if n.has("url uri website homepage web") || n.contains("website homepage") {
        return Some(drop("url", "web address"));
    }
    if n.contains("fax") {
        return Some(drop("fax", "fax number"));
    }
    if n.has("tel telephone mobile cell cellphone pager") || n.contains("phone") {
        return Some(drop("phone", "phone number"));
    }
    if n.has("vin plate vehicle") || n.contains("vehicle licenseplate") {
        return Some(drop("vehicle", "vehicle identifier"));
    }
    if n.has("license licence lic driver drivers npi dea") || n.contains("license licence") {
        return Some(drop("license", "license or certificate number"));
    }
    if n.contains("passport") {
        return Some(drop("other_id", "passport number"));
    }
    if n.has("insurance policy beneficiary subscriber medicare medicaid")
        || n.seq("member health", "id no num number plan")
        || n.contains("insurance healthplan memberid beneficiary")
    {
        return Some(drop("health_plan", "health plan or beneficiary number"));
    }
    if n.has("account acct accountno") || n.contains("account") {
        return Some(drop("account", "account number"));
    }
    if n.has("device serial udi imei mac") || n.contains("serialn device") {
        return Some(drop("device", "device identifier or serial number"));
    }
    if n.has("photo image picture pic avatar portrait headshot img") || n.contains("photo picture") {
        return Some(drop("photo", "photograph"));
    }
    if n.contains("fingerprint biometric retina voiceprint faceprint thumbprint") {
        return Some(drop("biometric", "biometric identifier"));
    }
    if is_person_name(n) {
        return Some(drop("name", "a person's name"));
    }
    if n.has("name") {
        let why = "a name: dropped until a person says whose (people's names stay dropped; a drug or place name can be kept as quasi)";
        return Some(review("name", Rule::Drop, why));
    }
    if n.has("dob birthdate birthday dateofbirth") || n.seq("birth", "date dt") || n.contains("dateofbirth birthdate") {
        return Some(if ty.is_datelike() {
            g("date", Rule::Generalize("birth_year"), "birth date: kept as a year, null past age 89")
        } else {
            drop("date", "birth date not held as a date (declare date32 with a format to keep its year)")
        });
    }
    if n.has("yob") || n.seq("birth", "year yr") {
        return Some(drop("date", "birth year (identifies ages over 89)"));
    }
    if n.has("death deceased dod died") {
        return Some(if ty.is_datelike() {
            g("date", Rule::Generalize("year"), "date of death: kept as a year")
        } else if *ty == T::Bool {
            g("quasi", Rule::Keep, "deceased flag")
        } else {
            drop("date", "date of death not held as a date")
        });
    }
    if n.has("address addr street address1 address2 addr1 addr2 line1 line2 apt suite")
        || n.seq("line", "1 2 3")
        || n.contains("address street")
    {
        return Some(drop("geo", "street address"));
    }
    if n.has("city county town borough township neighborhood neighbourhood lat latitude lon lng geo coords coordinates")
        || n.contains("latitude longitude geoloc")
    {
        return Some(drop("geo", "place smaller than a state"));
    }
    if n.has("zip zipcode postal postcode") || n.contains("zipcode postal postcode") {
        return Some(if text {
            g("geo", Rule::Generalize("zip3"), "ZIP code: first three digits kept (000 for small populations)")
        } else {
            drop("geo", "ZIP code held as a number (leading zeros already lost, so it cannot be cut to three digits)")
        });
    }
    if n.has("state country province nation") {
        return Some(g("quasi", Rule::Keep, "state or country: allowed by Safe Harbor"));
    }
    if text && n.has(FREE_TEXT) {
        return Some(g("free_text", Rule::ScrubText, "free text: identifiers scrubbed"));
    }
    if n.has("sex gender race ethnicity ethnic marital language lang") {
        return Some(g("quasi", Rule::Keep, "demographic: identifying only in combination"));
    }
    if n.has("age") {
        return Some(if ty.is_integer() {
            g("quasi", Rule::Generalize("age"), "age: ages over 89 become 90+")
        } else {
            drop("date", "age not held as an integer (ages over 89 identify; declare an integer type to generalize it)")
        });
    }
    None
}

fn is_mrn(n: &Name) -> bool {
    n.has("mrn mrno") || n.seq("med", "rec") || n.contains("medicalrecord medrec")
}

fn is_person_name(n: &Name) -> bool {
    n.has("fname lname mname surname maiden forename firstname lastname middlename fullname")
        || n.seq("first last middle given family full maiden nick sur fore", "name nm")
        || n.contains("firstname lastname middlename givenname familyname maidenname surname")
        || (n.words.last().is_some_and(|w| w == "name") && n.words.iter().any(|w| one_of(w, PERSON)))
}

/// What sampled values look like, when at least 80% of them have one shape.
fn by_values(samples: &[String]) -> Option<Guess> {
    let vals: Vec<&str> = samples.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
    let most = |re: &Regex| !vals.is_empty() && vals.iter().filter(|v| re.is_match(v)).count() * 5 >= vals.len() * 4;
    for (re, phi, what) in
        [(&*SSN, "ssn", "Social Security numbers"), (&*EMAIL, "email", "e-mail addresses"), (&*PHONE, "phone", "US phone numbers")]
    {
        if most(re) {
            return Some(review(phi, Rule::Drop, format!("sampled values look like {what}: dropped")));
        }
    }
    most(&ZIP).then(|| review("geo", Rule::Generalize("zip3"), "sampled values look like ZIP codes: first three digits kept"))
}

/// What the scaffold knows about the whole schema while writing one table.
struct Cx<'a> {
    schema: &'a Schema,
    /// Table name → unique file stem.
    stems: HashMap<&'a str, String>,
    /// Stem → table, for guessing undeclared references from names.
    by_stem: HashMap<String, &'a TableInfo>,
}

impl<'a> Cx<'a> {
    fn new(schema: &'a Schema) -> Self {
        let mut names: Vec<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
        names.sort();
        let mut used = HashSet::new();
        let mut stems = HashMap::new();
        for name in names {
            stems.insert(name, unique(table_stem(name), &mut used));
        }
        let by_stem = schema.tables.iter().map(|t| (stems[t.name.as_str()].clone(), t)).collect();
        Cx { schema, stems, by_stem }
    }

    fn stem(&self, t: &TableInfo) -> &str {
        &self.stems[t.name.as_str()]
    }

    fn table(&self, name: &str) -> Option<&'a TableInfo> {
        self.schema.tables.iter().find(|t| t.name == name)
    }

    /// Surrogate namespace of a key column: values that join must share it, so a foreign
    /// key takes the namespace of the column it references (followed through chains).
    fn namespace(&self, t: &TableInfo, col: &str, depth: u8) -> String {
        if is_mrn(&Name::new(col)) {
            return "mrn".into();
        }
        if let Some((fk, i)) = fk_of(t, col) {
            return match (self.table(&fk.ref_table), fk.ref_columns.get(i)) {
                (Some(rt), Some(rc)) if depth < 8 => self.namespace(rt, rc, depth + 1),
                _ => table_stem(&fk.ref_table),
            };
        }
        // The members of a composite key are different identifiers: one namespace each, or
        // visit 1 and line 1 would share a surrogate.
        match t.primary_key.as_slice() {
            [_, _, ..] => table_stem(&format!("{}_{col}", self.stem(t))),
            _ => self.stem(t).to_owned(),
        }
    }

    /// `patient_id` with no declared key but a `patients` table with a one-column key.
    fn guessed_ref(&self, n: &Name) -> Option<(&'a TableInfo, &'a str)> {
        let (last, prefix) = n.words.split_last()?;
        if last != "id" || prefix.is_empty() {
            return None;
        }
        let p = prefix.join("_");
        let plural_y = p.strip_suffix('y').map(|s| format!("{s}ies"));
        [Some(p.clone()), Some(format!("{p}s")), Some(format!("{p}es")), plural_y].into_iter().flatten().find_map(|s| {
            let t = *self.by_stem.get(&s)?;
            match t.primary_key.as_slice() {
                [pk] => Some((t, pk.as_str())),
                _ => None,
            }
        })
    }

    fn guess(&self, t: &TableInfo, c: &ColumnInfo) -> Guess {
        use ColumnType as T;
        let n = Name::new(&c.name);
        let ty = &c.mapped;
        let named = by_name(&n, ty);
        let keyish = ty.is_integer() || matches!(ty, T::Uuid | T::Utf8 | T::Decimal { scale: 0, .. });
        if keyish && (t.primary_key.contains(&c.name) || fk_of(t, &c.name).is_some()) {
            let phi = match &named {
                // A key keeps a tag that names an identifier; geo and dates have their own rules.
                Some(g) if !["none", "quasi", "free_text", "date", "geo"].contains(&g.phi) => g.phi,
                _ => "other_id",
            };
            // Surrogates, not pseudonyms: Safe Harbor (§164.514(c)) lets a join key stand only as
            // a random code, and one namespace takes one rule, so every keyed rule here is one.
            return g(phi, Rule::Surrogate(self.namespace(t, &c.name, 0)), "key: a random surrogate, so it still joins across tables");
        }
        if let Some(g) = named {
            return g;
        }
        if ty.is_datelike() {
            return g("date", Rule::Generalize("year"), "a date about a person, as far as we know: kept as a year");
        }
        if keyish && let Some((rt, pk)) = self.guessed_ref(&n) {
            let why = format!("no declared foreign key, but the name suggests {}.{pk}: a surrogate joins it", rt.name);
            return review("other_id", Rule::Surrogate(self.namespace(rt, pk, 0)), why);
        }
        if *ty == T::Utf8
            && let Some(g) = by_values(&c.samples)
        {
            return g;
        }
        if (ty.is_numeric() || *ty == T::Bool) && n.has(MEASURES) && !n.has("id no num nbr number key") {
            return g("none", Rule::Keep, "a measurement, code or flag");
        }
        if *ty != T::Time && (n.has("date dt datetime timestamp time") || n.words.last().is_some_and(|w| w == "at")) {
            let why = format!("a date held as {}: dropped; declare date32 or timestamp (with a format) to keep its year", c.mapped);
            return review("date", Rule::Drop, why);
        }
        let mut why = "not sure what this holds; dropped until a person classifies it".to_owned();
        if *ty == T::Utf8 && looks_free_text(&c.samples) {
            why.push_str(" (sampled values read like free text: phi free_text with scrub_text would keep them scrubbed)");
        }
        review("other_id", Rule::Drop, why)
    }

    fn mapping(&self, t: &TableInfo, source_name: &str, reviewed: &mut Vec<String>) -> String {
        let stem = self.stem(t);
        let mut out = String::new();
        let rows = t.row_estimate.map(|r| format!(", about {r} rows at init")).unwrap_or_default();
        let _ = writeln!(out, "# {}: {} columns{rows}", comment(&qualified(t)), t.columns.len());
        let mut body = String::new();
        let mut used = HashSet::new();
        let mut n_review = 0;
        let mut guesses: Vec<Guess> = t.columns.iter().map(|c| self.guess(t, c)).collect();
        // The loader refuses a table with no output column; one column of nulls loads, and
        // shows nothing but the row count until a person classifies the rest.
        let all_dropped = guesses.iter().all(|g| g.rule == Rule::Drop);
        if let Some(first) = guesses.first_mut().filter(|_| all_dropped) {
            first.rule = Rule::Null;
            first.review = true;
            first.why.push_str("; every column of this table is dropped, so this one is written as nulls to keep the table loadable");
        }
        for (c, guess) in t.columns.iter().zip(guesses) {
            let name = unique(snake_case(&c.name), &mut used);
            let _ = writeln!(body, "\n[[columns]]");
            let nn = if c.nullable { "" } else { " NOT NULL" };
            let pk = if t.primary_key.contains(&c.name) { ", primary key" } else { "" };
            let _ = writeln!(body, "# db: {}{nn}{pk}", comment(&c.db_type));
            if let Some((fk, i)) = fk_of(t, &c.name) {
                let rc = fk.ref_columns.get(i).map(String::as_str).unwrap_or("?");
                let _ = writeln!(body, "# references {}.{}", comment(&fk.ref_table), comment(rc));
            }
            if let Some(note) = type_note(self.schema.dialect, c) {
                let _ = writeln!(body, "# {}", comment(&note));
            }
            let flag = if guess.review { "REVIEW: " } else { "" };
            let _ = writeln!(body, "# {flag}{}", comment(&guess.why));
            if guess.review {
                n_review += 1;
                reviewed.push(format!("{stem}.{name}"));
            }
            // Surrogates key text, integers and uuids: a whole-number decimal key reads as one.
            let ty = match (&guess.rule, &c.mapped) {
                (Rule::Surrogate(_), ColumnType::Decimal { precision, .. }) => {
                    let ty = if *precision <= 18 { ColumnType::Int64 } else { ColumnType::Utf8 };
                    let _ = writeln!(body, "# read as {ty}: surrogates key integers, text or uuids");
                    ty
                }
                (_, ty) => *ty,
            };
            let _ = writeln!(body, "name = {}\nfrom = {}\ntype = {}", q(&name), q(&c.name), q(&ty.to_string()));
            if !c.nullable {
                let _ = writeln!(body, "nullable = false");
            }
            let _ = match &guess.rule {
                Rule::Keep => writeln!(body, "rule = \"keep\""),
                Rule::Drop => writeln!(body, "rule = \"drop\""),
                Rule::Null => writeln!(body, "rule = \"null\""),
                Rule::ScrubText => writeln!(body, "rule = \"scrub_text\""),
                Rule::Surrogate(ns) => writeln!(body, "rule = \"surrogate\"\nnamespace = {}", q(ns)),
                Rule::Generalize(to) => writeln!(body, "rule = \"generalize\"\nto = {}", q(to)),
            };
            let _ = writeln!(body, "phi = {}", q(guess.phi));
        }
        if n_review > 0 {
            let _ = writeln!(out, "# REVIEW: {n_review} column(s) below are marked REVIEW; the guesses are defaults, not findings");
        }
        let _ = writeln!(out, "table = {}\nsource = {}\nsource_table = {}", q(stem), q(source_name), q(&qualified(t)));
        if t.primary_key.is_empty() {
            let _ = writeln!(out, "# The table has no primary key to resume from: an interrupted run re-reads it from the start.");
            let _ = writeln!(out, "resume = \"restart_table\"");
        } else {
            let keys: Vec<String> = t.primary_key.iter().map(|k| q(k)).collect();
            let _ = writeln!(out, "key = [{}]", keys.join(", "));
        }
        out + &body
    }
}

fn fk_of<'t>(t: &'t TableInfo, col: &str) -> Option<(&'t ForeignKey, usize)> {
    t.foreign_keys.iter().find_map(|fk| fk.columns.iter().position(|c| c == col).map(|i| (fk, i)))
}

fn qualified(t: &TableInfo) -> String {
    match &t.schema {
        Some(s) => format!("{s}.{}", t.name),
        None => t.name.clone(),
    }
}

fn looks_free_text(samples: &[String]) -> bool {
    let wordy = samples.iter().filter(|s| s.split_whitespace().count() >= 4).count();
    !samples.is_empty() && wordy * 2 >= samples.len()
}

/// `base`, or `base_2`, `base_3`… whichever is not taken yet.
fn unique(base: String, used: &mut HashSet<String>) -> String {
    let mut name = base.clone();
    let mut i = 2;
    while !used.insert(name.clone()) {
        name = format!("{base}_{i}");
        i += 1;
    }
    name
}

/// Text safe inside a `#` comment: a line break in a column name must not end the comment.
fn comment(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

fn plan(schema: &Schema, project: &str, source: &str, url_hint: &str, date: chrono::NaiveDate, reviews: usize) -> String {
    let (tables, columns) = (schema.tables.len(), schema.tables.iter().map(|t| t.columns.len()).sum::<usize>());
    let keyless = schema.tables.iter().filter(|t| t.primary_key.is_empty()).count();
    let redacted = redact_url(url_hint);
    let hint = comment(&redacted);
    let bare = !source.is_empty() && source.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let source_key = if bare { source.to_owned() } else { q(source) };
    let connection = if schema.dialect == Dialect::Sqlite {
        let path = redacted.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
        let path = q(path.split('?').next().unwrap_or(path));
        format!("# The database file; a relative path is relative to this file (check it if init was given one).\npath = {path}")
    } else {
        format!(
            "# Made from {hint}.\n# The URL (it may hold a password) is read from this variable, never from a file.\nurl_env = \"EHRLIFT_SOURCE_URL\""
        )
    };
    let (project_q, dest, kind) = (q(project), q(&format!("file://${{EHRLIFT_DEST:-../../out/{project}}}")), q(schema.dialect.kind()));
    format!(
        r#"# Generated by `ehrlift init` on {date} from {hint}
# ({tables} tables, {columns} columns; tables without a primary key: {keyless}).
# Review every column marked REVIEW in tables/*.toml before running: {reviews} are dropped or
# generalized by default until a person classifies them. Every other PHI tag is a guess from
# column names and sampled values (which are never written here): check them too.
project = {project_q}
include = ["tables/*.toml"]

[destination]
# Relative paths are relative to this file.
url = {dest}

[privacy]
# Safe Harbor fails closed: a column whose rule does not cover its tag stops the run.
profile = "safe_harbor"

# The project key that surrogates and pseudonyms derive from; created on first use (mode 0600). Back it up.
[keys]
provider = "local"
path = "${{EHRLIFT_KEYRING:-../../out/keyring}}"

[run]
max_quarantine_ratio = 0.0

[sources.{source_key}]
kind = {kind}
{connection}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::introspect::ColumnInfo;

    const SENTINEL: &str = "ZZSENTINELZZ";

    #[test]
    fn db_types_map_as_documented() {
        use Dialect::*;
        for (d, db, want) in [
            (Postgres, "smallint", "int16"),
            (Postgres, "integer", "int32"),
            (Postgres, "bigint", "int64"),
            (Postgres, "numeric(10,2)", "decimal(10,2)"),
            (Postgres, "numeric", "utf8"),
            (Postgres, "numeric(80,2)", "utf8"),
            (Postgres, "real", "float32"),
            (Postgres, "double precision", "float64"),
            (Postgres, "character varying(40)", "utf8"),
            (Postgres, "jsonb", "json"),
            (Postgres, "bytea", "binary"),
            (Postgres, "uuid", "uuid"),
            (Postgres, "time(3) without time zone", "time"),
            (Postgres, "time with time zone", "utf8"),
            (Postgres, "timestamp(6) without time zone", "timestamp"),
            (Postgres, "timestamp with time zone", "timestamptz"),
            (Postgres, "integer[]", "list<int32>"),
            (Postgres, "numeric(5,1)[]", "utf8"),
            (Postgres, "bigint[]", "list<int64>"),
            (Postgres, "bit(1)", "bool"),
            (Postgres, "interval", "utf8"),
            (Mysql, "tinyint(1)", "bool"),
            (Mysql, "tinyint(4)", "int8"),
            (Mysql, "tinyint(3) unsigned", "uint8"),
            (Mysql, "smallint(5) unsigned", "uint16"),
            (Mysql, "mediumint(8) unsigned", "uint32"),
            (Mysql, "int(10) unsigned", "uint32"),
            (Mysql, "bigint unsigned", "uint64"),
            (Mysql, "float", "float32"),
            (Mysql, "double", "float64"),
            (Mysql, "decimal(65,30)", "decimal(65,30)"),
            (Mysql, "enum('F','M')", "utf8"),
            (Mysql, "set('a','b')", "utf8"),
            (Mysql, "longblob", "binary"),
            (Mysql, "datetime(3)", "timestamp"),
            (Mysql, "timestamp", "timestamptz"),
            (Mysql, "year(4)", "int16"),
            (Sqlite, "INTEGER", "int64"),
            (Sqlite, "VARCHAR(40)", "utf8"),
            (Sqlite, "DOUBLE", "float64"),
            (Sqlite, "", "binary"),
            (Sqlite, "DATETIME", "utf8"),
        ] {
            assert_eq!(map_db_type(d, db).to_string(), want, "{d:?} {db}");
        }
    }

    #[test]
    fn names_become_snake_case() {
        let cases = [("PatientID", "patient_id"), ("firstName", "first_name"), ("DOB", "dob"), ("HTTPServer", "http_server")];
        for (name, want) in cases.into_iter().chain([("Addr Line1", "addr_line1"), ("$$", "column")]) {
            assert_eq!(snake_case(name), want);
        }
        assert_eq!(table_stem("Order-Items"), "order_items");
        assert!(Name::new("ip_address").has("ip") && !Name::new("recipient").has("ip"));
    }

    fn col(dialect: Dialect, name: &str, db_type: &str, nullable: bool, samples: &[&str]) -> ColumnInfo {
        let samples = samples.iter().map(|s| s.to_string()).collect();
        ColumnInfo { name: name.into(), db_type: db_type.into(), nullable, mapped: map_db_type(dialect, db_type), samples }
    }

    fn legacy() -> Schema {
        let d = Dialect::Postgres;
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let patients = TableInfo {
            schema: Some("public".into()),
            name: "Patients".into(),
            columns: vec![
                col(d, "PatientID", "integer", false, &["1"]),
                col(d, "MRN", "character varying(20)", false, &["M1"]),
                col(d, "SSN", "text", true, &["123-45-6789"]),
                col(d, "FirstName", "text", true, &[SENTINEL]),
                col(d, "first_name", "text", true, &[SENTINEL]),
                col(d, "DOB", "date", true, &["1950-01-02"]),
                col(d, "zip_code", "text", true, &["02134"]),
                col(d, "Notes", "text", true, &[SENTINEL]),
                col(d, "weight", "numeric(5,1)", true, &["70.5"]),
                col(d, "mystery", "integer", true, &["7"]),
                // 4 of 5 look like SSNs: the 80% threshold.
                col(d, "contact", "text", true, &["123-45-6789", "987-65-4321", "111-22-3333", "222-33-4444", SENTINEL]),
                col(d, "contact2", "text", true, &["123-45-6789", "987-65-4321", "111-22-3333", SENTINEL, SENTINEL]),
                col(d, "odd\"col\nX", "text", true, &[SENTINEL]),
            ],
            primary_key: s(&["PatientID"]),
            foreign_keys: vec![],
            row_estimate: Some(2),
        };
        let visits = TableInfo {
            schema: Some("public".into()),
            name: "visits".into(),
            columns: vec![
                col(d, "patient_id", "integer", false, &["1"]),
                col(d, "visit_date", "timestamp without time zone", true, &["2020-01-01 10:00:00"]),
                col(d, "amount", "numeric(10,2)", true, &["1.00"]),
                col(d, "ref", "text", true, &["a@b.org", "c@d.com"]),
                col(d, "lab_no", "numeric(12,0)", true, &["5"]),
                col(d, "age", "numeric(5,2)", true, &["45.5"]),
            ],
            primary_key: vec![],
            foreign_keys: vec![
                ForeignKey { columns: s(&["patient_id"]), ref_table: "Patients".into(), ref_columns: s(&["PatientID"]) },
                ForeignKey { columns: s(&["lab_no"]), ref_table: "lab.orders".into(), ref_columns: s(&["no"]) },
            ],
            row_estimate: None,
        };
        let scans = TableInfo {
            schema: Some("public".into()),
            name: "scans".into(),
            columns: vec![col(d, "blob", "bytea", true, &[])],
            primary_key: vec![],
            foreign_keys: vec![],
            row_estimate: None,
        };
        Schema { dialect: d, tables: vec![visits, scans, patients] }
    }

    /// A line-level check that the text is TOML of the shapes we emit (the `toml` crate is
    /// not a dependency of this crate): comments, headers, unique `key = value` lines.
    fn assert_toml_shape(text: &str) {
        let mut keys = HashSet::new();
        for l in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            if l.starts_with('[') && l.ends_with(']') {
                keys.clear();
                continue;
            }
            let (k, v) = l.split_once(" = ").unwrap_or_else(|| panic!("not `key = value`: {l}"));
            assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && keys.insert(k), "bad or repeated key: {l}");
            let inner = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).map(|v| v.replace("\\\\", "").replace("\\\"", ""));
            let ok = inner.is_some_and(|i| !i.contains('"')) || v == "false" || v == "0.0" || (v.starts_with("[\"") && v.ends_with("\"]"));
            assert!(ok, "bad value: {l}");
        }
    }

    fn block<'a>(text: &'a str, from: &str) -> &'a str {
        text.split("[[columns]]").find(|b| b.contains(&format!("from = {}", q(from)))).unwrap_or_else(|| panic!("no {from}"))
    }

    #[test]
    fn scaffold_fails_closed_and_writes_no_sample() {
        let date = chrono::NaiveDate::from_ymd_opt(2025, 3, 4).unwrap();
        let out = scaffold_on(&legacy(), "legacy", "ehr", "postgres://admin:s3cret@db:5432/ehr", date);
        assert_eq!(out, scaffold_on(&legacy(), "legacy", "ehr", "postgres://admin:s3cret@db:5432/ehr", date), "deterministic");
        let files: Vec<&str> = out.mappings.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(files, ["patients.toml", "scans.toml", "visits.toml"]);
        for text in std::iter::once(&out.plan).chain(out.mappings.iter().map(|(_, t)| t)) {
            assert_toml_shape(text);
            for leak in [SENTINEL, "123-45-6789", "a@b.org", "02134", "s3cret"] {
                assert!(!text.contains(leak), "`{leak}` leaked into:\n{text}");
            }
        }
        let plan = &out.plan;
        assert!(plan.starts_with("# Generated by `ehrlift init` on 2025-03-04 from postgres://admin:***@db:5432/ehr"));
        for want in
            ["project = \"legacy\"", "profile = \"safe_harbor\"", "[sources.ehr]\nkind = \"postgres\"", "url_env = \"EHRLIFT_SOURCE_URL\""]
        {
            assert!(plan.contains(want), "{want} missing:\n{plan}");
        }
        let (p, v) = (&out.mappings[0].1, &out.mappings[2].1);
        // Nothing classified: the loader needs one output column, so it is written as nulls.
        assert!(block(&out.mappings[1].1, "blob").contains("rule = \"null\"\nphi = \"other_id\""));
        assert!(p.contains("table = \"patients\"\nsource = \"ehr\"\nsource_table = \"public.Patients\"\nkey = [\"PatientID\"]"));
        let has = |text: &str, from: &str, lines: &str| {
            assert!(block(text, from).contains(lines), "{from}: want {lines:?} in {}", block(text, from))
        };
        has(
            p,
            "PatientID",
            "name = \"patient_id\"\nfrom = \"PatientID\"\ntype = \"int32\"\nnullable = false\nrule = \"surrogate\"\nnamespace = \"patients\"",
        );
        has(p, "MRN", "rule = \"surrogate\"\nnamespace = \"mrn\"\nphi = \"mrn\"");
        has(p, "SSN", "# db: text\n");
        has(p, "SSN", "rule = \"drop\"\nphi = \"ssn\"");
        has(p, "FirstName", "name = \"first_name\"");
        has(p, "first_name", "name = \"first_name_2\"");
        has(p, "DOB", "type = \"date32\"\nrule = \"generalize\"\nto = \"birth_year\"\nphi = \"date\"");
        has(p, "zip_code", "rule = \"generalize\"\nto = \"zip3\"\nphi = \"geo\"");
        has(p, "Notes", "rule = \"scrub_text\"\nphi = \"free_text\"");
        has(p, "weight", "type = \"decimal(5,1)\"\nrule = \"keep\"\nphi = \"none\"");
        has(p, "mystery", "# REVIEW: not sure what this holds; dropped until a person classifies it\n");
        has(p, "mystery", "rule = \"drop\"\nphi = \"other_id\"");
        has(p, "contact", "# REVIEW: sampled values look like Social Security numbers: dropped\n");
        has(p, "contact2", "# REVIEW: not sure what this holds;");
        has(p, "odd\"col\nX", "name = \"odd_col_x\"\nfrom = \"odd\\\"col\\nX\"");
        assert!(p.contains("# db: integer NOT NULL, primary key\n"));
        assert!(v.contains("# The table has no primary key") && v.contains("resume = \"restart_table\"") && !v.contains("key ="));
        has(v, "patient_id", "# references Patients.PatientID\n");
        has(v, "patient_id", "rule = \"surrogate\"\nnamespace = \"patients\"\nphi = \"other_id\"");
        has(v, "visit_date", "rule = \"generalize\"\nto = \"year\"\nphi = \"date\"");
        has(v, "amount", "rule = \"keep\"");
        has(v, "ref", "rule = \"drop\"\nphi = \"email\"");
        has(v, "lab_no", "# read as int64: surrogates key integers, text or uuids\nname = \"lab_no\"\nfrom = \"lab_no\"\ntype = \"int64\"");
        has(v, "lab_no", "rule = \"surrogate\"\nnamespace = \"lab_orders\"");
        has(v, "age", "rule = \"drop\"\nphi = \"date\"");
        assert!(out.review.contains(&"patients.mystery".to_string()) && !out.review.iter().any(|r| r.contains(SENTINEL)));
    }

    #[test]
    fn sqlite_plan_names_the_file() {
        let mut schema = legacy();
        schema.dialect = Dialect::Sqlite;
        let plan = scaffold_on(&schema, "p", "old", "sqlite:///srv/ehr.db?mode=ro", chrono::NaiveDate::MIN).plan;
        assert!(plan.contains("kind = \"sqlite\"") && plan.contains("path = \"/srv/ehr.db\"") && !plan.contains("url_env"), "{plan}");
    }
}
