//! The validated plan: what `ehrlift run` executes. Built only by [`crate::load_plan`].

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A validated plan with its mappings, paths resolved and variables expanded.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The plan file.
    pub path: PathBuf,
    /// SHA-256 (hex) of the plan file's bytes.
    pub sha256: String,
    /// Project name, used in manifests and KMS encryption contexts.
    pub project: String,
    /// Destination URL from the plan (`file://PATH` or `s3://BUCKET/PREFIX`), if any;
    /// `--dest` overrides it.
    pub destination: Option<String>,
    /// How an `s3://` destination is written (`[destination]` settings besides `url`).
    pub cloud: CloudSettings,
    /// Privacy profile.
    pub profile: Profile,
    /// Settings of keyed privacy rules.
    pub privacy: PrivacySettings,
    /// Where keys come from.
    pub keys: KeysConfig,
    /// Run settings.
    pub run: RunSettings,
    /// Gates of `validate --sample/--full`.
    pub validate: ValidateSettings,
    /// Named sources.
    pub sources: BTreeMap<String, Source>,
    /// One mapping per output table, in plan order.
    pub tables: Vec<Mapping>,
}

impl Plan {
    /// The mapping of `table`.
    pub fn table(&self, name: &str) -> Option<&Mapping> {
        self.tables.iter().find(|t| t.table == name)
    }

    /// The rule of every column of every table.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.tables.iter().flat_map(|m| m.columns.iter().map(|c| &c.rule))
    }
}

/// Privacy profile of a plan: which rules each PHI tag allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// HIPAA Safe Harbor (§164.514(b)(2)): the 18 identifier categories removed or
    /// replaced by codes not derived from them; every column classified.
    SafeHarbor,
    /// Limited data set (§164.514(e)): dates, city, state, ZIP and ages may stay;
    /// direct identifiers go. Every column classified.
    LimitedDataSet,
    /// Any rule (expert determination work, e.g. date shifting); tags are optional.
    Custom,
}

impl Profile {
    /// Name as written in a plan.
    pub fn name(self) -> &'static str {
        match self {
            Profile::SafeHarbor => "safe_harbor",
            Profile::LimitedDataSet => "limited_data_set",
            Profile::Custom => "custom",
        }
    }
}

/// Plan-wide settings of keyed privacy rules.
#[derive(Debug, Clone, PartialEq)]
pub struct PrivacySettings {
    /// Range of `shift_date` offsets in days, inclusive; 0 is never drawn.
    pub shift_days: (i32, i32),
    /// Date ages and birth years are computed at; `None` means the day the run started
    /// (recorded in the run, so a resumed run uses the same).
    pub reference_date: Option<chrono::NaiveDate>,
}

impl Default for PrivacySettings {
    fn default() -> Self {
        PrivacySettings { shift_days: (-365, 365), reference_date: None }
    }
}

/// Key provider settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysConfig {
    /// A local keyring directory (the embedded default).
    Local {
        /// Directory of the keyring.
        path: PathBuf,
    },
    /// AWS KMS: the project key is a KMS data key, kept wrapped at the destination under
    /// `_ehrlift/keys/` and unwrapped with `Decrypt` at the start of every run.
    AwsKms {
        /// KMS key id, alias (`alias/NAME`) or ARN.
        key_id: String,
    },
}

impl KeysConfig {
    /// Provider name as written in a plan.
    pub fn provider(&self) -> &'static str {
        match self {
            KeysConfig::Local { .. } => "local",
            KeysConfig::AwsKms { .. } => "aws-kms",
        }
    }
}

/// `[destination]` settings of a cloud destination. Ignored for `file://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudSettings {
    /// KMS key (id, alias or ARN) every object is encrypted with (SSE-KMS); `--kms-key`
    /// overrides it. Required for `s3://`.
    pub kms_key: Option<String>,
    /// AWS region; default: the standard chain (`AWS_REGION`, profile).
    pub region: Option<String>,
    /// S3 endpoint for S3-compatible stores; default: `AWS_ENDPOINT_URL`, else AWS.
    pub endpoint_url: Option<String>,
    /// Path-style addressing (`https://host/bucket/key`), for S3-compatible stores.
    pub path_style: bool,
    /// Allow an `http://` endpoint (a local test server); refused otherwise.
    pub allow_insecure_endpoint: bool,
    /// Write to a bucket whose default encryption is not `aws:kms` (every object ehrlift
    /// writes is still SSE-KMS); recorded in the manifest.
    pub allow_non_kms_bucket: bool,
    /// Size of a multipart upload's parts in MiB (5 to 5120); smaller objects are one PUT.
    pub multipart_part_mib: u32,
    /// Parts of one object uploaded at the same time (1 to 64).
    pub upload_concurrency: u32,
}

impl Default for CloudSettings {
    fn default() -> Self {
        CloudSettings {
            kms_key: None,
            region: None,
            endpoint_url: None,
            path_style: false,
            allow_insecure_endpoint: false,
            allow_non_kms_bucket: false,
            multipart_part_mib: 8,
            upload_concurrency: 4,
        }
    }
}

/// `[validate]`: the gates that decide `validate --sample/--full`'s exit status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidateSettings {
    /// Largest share of quarantined rows per table (default: `[run] max_quarantine_ratio`).
    pub max_quarantine_ratio: Option<f64>,
    /// Smallest equivalence class allowed over a table's quasi-identifiers.
    pub min_k: Option<u64>,
    /// Problem codes that fail validation when found at all.
    pub fail_on: Vec<FailOn>,
}

/// Problems `[validate] fail_on` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailOn {
    /// A source column without a PHI tag, or not accounted for.
    Unclassified,
    /// An identifier found in a text column written as it is.
    ResidualPhi,
    /// A value missing from the table its column references.
    FkOrphans,
    /// A repeated or null key.
    DuplicateKey,
    /// A source column the mapping does not mention.
    NewColumn,
}

impl FailOn {
    /// The code as written.
    pub fn code(self) -> &'static str {
        match self {
            FailOn::Unclassified => "unclassified",
            FailOn::ResidualPhi => "residual_phi",
            FailOn::FkOrphans => "fk_orphans",
            FailOn::DuplicateKey => "duplicate_key",
            FailOn::NewColumn => "new_column",
        }
    }
}

/// Run settings: defaults for the knobs the CLI can override.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSettings {
    /// Source rows per batch.
    pub batch_rows: usize,
    /// Source rows per Parquet part (an object); the unit of commit and resume.
    pub part_rows: u64,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// zstd level for Parquet pages.
    pub zstd_level: i32,
    /// Fraction of rows a table may quarantine before it stops (exit status 1).
    pub max_quarantine_ratio: f64,
    /// Threads encoding Parquet column chunks; 0 means one per available core.
    pub encode_threads: usize,
    /// Tables extracted at the same time (each with its own reader, converters and
    /// encoders; for databases, its own connection).
    pub jobs: usize,
    /// Sharded runs: the least work (MiB of files, or of estimated rows at 256 bytes
    /// each) worth a unit of its own; a table larger than this and than its share of
    /// the run is split into slices (file lists, or key ranges).
    pub shard_unit_mib: u64,
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            batch_rows: 8 * 1024,
            part_rows: 4 * 1024 * 1024,
            row_group_rows: 512 * 1024,
            zstd_level: 1,
            max_quarantine_ratio: 0.0,
            encode_threads: 0,
            jobs: 1,
            shard_unit_mib: 64,
        }
    }
}

/// A named source.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// Name mappings refer to.
    pub name: String,
    /// What it is.
    pub kind: SourceKind,
}

/// Kinds of source.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    /// Delimited text files under a directory.
    Csv {
        /// Directory the mappings' globs are relative to.
        dir: PathBuf,
        /// Dialect defaults for every table of this source.
        options: CsvOptions,
    },
    /// A relational database read through sqlx.
    Database(DatabaseSource),
    /// HL7 v2 message files (single messages, archives, batches, MLLP dumps) under a directory.
    Hl7 {
        /// Directory the mappings' globs are relative to.
        dir: PathBuf,
    },
    /// Fixed-width record files under a directory, cut and decoded by a layout.
    FixedWidth {
        /// Directory the mappings' globs are relative to.
        dir: PathBuf,
        /// The layout file every table of the source uses unless its mapping names one.
        layout: Option<PathBuf>,
    },
}

impl SourceKind {
    /// The directory of a file source (CSV, HL7); `None` for a database.
    pub fn dir(&self) -> Option<&std::path::Path> {
        match self {
            SourceKind::Csv { dir, .. } | SourceKind::Hl7 { dir } | SourceKind::FixedWidth { dir, .. } => Some(dir),
            SourceKind::Database(_) => None,
        }
    }
}

/// A database source: which engine, how to connect, and its type policies.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseSource {
    /// PostgreSQL, MySQL/MariaDB or SQLite.
    pub engine: Engine,
    /// Connection URL (credentials inside); `Debug` and messages show it redacted.
    pub url: SecretUrl,
    /// What to do with MySQL's zero dates (`0000-00-00`).
    pub zero_dates: ZeroDates,
    /// PostgreSQL: connections that stream a keyset table's chunks side by side (1: the
    /// reader's own connection alone). Always 1 for the other engines.
    pub read_connections: u8,
}

impl DatabaseSource {
    /// PostgreSQL's default `read_connections`: the next chunk streams while this one is
    /// decoded, so the server's side of a table is two backends' work, not one's.
    pub const DEFAULT_READ_CONNECTIONS: u8 = 2;
}

/// Database engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// PostgreSQL (9.6 or later).
    Postgres,
    /// MySQL 5.7+ or MariaDB 10.3+.
    Mysql,
    /// SQLite 3, opened read-only.
    Sqlite,
}

impl Engine {
    /// Name as written in a plan's `kind`.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mysql => "mysql",
            Engine::Sqlite => "sqlite",
        }
    }
}

/// MySQL zero dates (`0000-00-00`, `2020-00-15`): not dates, so an explicit choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZeroDates {
    /// Quarantine the row with reason `zero_date` (the default: nothing is guessed).
    #[default]
    Quarantine,
    /// Read them as null.
    Null,
}

/// A connection URL that never prints its credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        SecretUrl(url.into())
    }

    /// The URL with its credentials, for the driver only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password (and `password=` parameters) replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretUrl({})", self.redacted())
    }
}

/// `scheme://user:PASSWORD@host/db?password=X` → `scheme://user:***@host/db?password=***`.
pub fn redact_url(url: &str) -> String {
    redact_url_secrets(url).0
}

/// The redacted URL and the secrets it held, so driver messages that echo them can be
/// cleaned. Errs towards hiding: a malformed URL (an unencoded `/` or `?` in the
/// password) is exactly when an error message shows it.
pub fn redact_url_secrets(url: &str) -> (String, Vec<String>) {
    let (mut out, mut rest, mut secrets) = (String::new(), url, Vec::new());
    if let Some((scheme, after)) = url.split_once("://") {
        out = format!("{scheme}://");
        rest = after;
        // The user-info ends at the last '@', unless that '@' is inside a query parameter.
        let at = after.rfind('@').and_then(|at| match after.find('?') {
            Some(q) if q < at && after[q..at].contains('=') => after[..q].rfind('@'),
            _ => Some(at),
        });
        if let Some(at) = at {
            match after[..at].split_once(':') {
                Some((user, password)) => {
                    secrets.push(password.to_owned());
                    out += &format!("{user}:***@");
                }
                None => out += &after[..=at],
            }
            rest = &after[at + 1..];
        }
    }
    match rest.split_once('?') {
        None => out += rest,
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, v))
                        if ["password", "passwd", "pwd", "secret", "token", "sslkey"]
                            .iter()
                            .any(|s| k.to_ascii_lowercase().contains(s)) =>
                    {
                        secrets.push(v.to_owned());
                        format!("{k}=***")
                    }
                    _ => p.to_owned(),
                })
                .collect();
            out += &format!("{path}?{}", params.join("&"));
        }
    }
    secrets.retain(|s| !s.is_empty() && s != "***");
    (out, secrets)
}

/// What a database mapping reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relation {
    /// A table or view, optionally schema-qualified (`emr.patients`).
    Table(String),
    /// A `SELECT` query; keyset paging wraps it as a subquery.
    Query(String),
}

/// How an interrupted table resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// After the last committed key (the declared `key`), in key order.
    Keyset,
    /// From the start, after deleting the table's committed parts (tables with no key).
    RestartTable,
}

/// The database side of a mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbTable {
    /// Table or query.
    pub relation: Relation,
    /// Resume strategy.
    pub resume: Resume,
    /// Source key columns in key order (empty with `restart_table`).
    pub key: Vec<String>,
    /// Rows per keyset query.
    pub chunk_rows: u64,
}

/// The HL7 side of a mapping: which messages it reads and what one row is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hl7Table {
    /// Message types read (`ADT` for every ADT event, `ORU^R01` for one); empty: all.
    /// Messages of other types are skipped, not quarantined.
    pub message_types: Vec<String>,
    /// One row per occurrence of this segment (like `OBX`), with the fields of the
    /// segments before it (MSH, PID, PV1, OBR …) carried down; `None`: one row per message.
    pub segment: Option<String>,
    /// Segments a read message must have (like `PID`); a message without one is
    /// quarantined whole (`hl7_missing_segment`).
    pub required_segments: Vec<String>,
}

impl Hl7Table {
    /// Whether a message whose MSH-9.1 and MSH-9.2 are `code` and `event` is read.
    pub fn reads(&self, code: &str, event: &str) -> bool {
        self.message_types.is_empty()
            || self.message_types.iter().any(|t| match t.split_once('^') {
                Some((c, e)) => c.eq_ignore_ascii_case(code) && e.eq_ignore_ascii_case(event),
                None => t.eq_ignore_ascii_case(code),
            })
    }
}

/// The fixed-width side of a mapping: its layout and which record type it reads.
#[derive(Debug, Clone)]
pub struct FixedTable {
    /// The layout file.
    pub layout_path: PathBuf,
    /// The validated layout.
    pub layout: std::sync::Arc<ehrlift_fixed::Layout>,
    /// Index of the record type read, in the layout's record types. Records of other
    /// types are passed over.
    pub record_type: usize,
}

/// A CSV dialect. Every field is explicit; nothing is sniffed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CsvOptions {
    /// Field delimiter (one byte), `"\t"` for tabs.
    pub delimiter: Byte,
    /// Quote character.
    pub quote: Byte,
    /// Escape character inside quotes (e.g. `\`), when quotes are not doubled.
    pub escape: Option<Byte>,
    /// Whether `""` inside quotes is a literal quote.
    pub double_quote: bool,
    /// Whether the first record of each file is a header.
    pub header: bool,
    /// Lines starting with this character are skipped.
    pub comment: Option<Byte>,
    /// Text encoding of the files.
    pub encoding: TextEncoding,
    /// Compression of the files; `auto` decides by extension (`.gz`, `.zst`).
    pub compression: Compression,
    /// Column names for files without a header, in order.
    pub columns: Vec<String>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: Byte(b','),
            quote: Byte(b'"'),
            escape: None,
            double_quote: true,
            header: true,
            comment: None,
            encoding: TextEncoding::Utf8,
            compression: Compression::Auto,
            columns: Vec::new(),
        }
    }
}

/// One ASCII byte written as a one-character TOML string (`","`, `"\t"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Byte(pub u8);

impl TryFrom<String> for Byte {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_bytes() {
            [b] if b.is_ascii() => Ok(Byte(*b)),
            _ => Err(format!("expected a single ASCII character, found {} characters", s.chars().count())),
        }
    }
}

impl From<Byte> for String {
    fn from(b: Byte) -> String {
        (b.0 as char).to_string()
    }
}

/// Text encodings of file sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TextEncoding {
    /// UTF-8, with or without a byte-order mark.
    #[serde(rename = "utf-8", alias = "utf8")]
    Utf8,
    /// ISO-8859-1.
    #[serde(rename = "latin1", alias = "iso-8859-1")]
    Latin1,
    /// Windows-1252 (a superset of latin1's printable range).
    #[serde(rename = "windows-1252", alias = "cp1252")]
    Windows1252,
}

/// Compression of file sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// By extension: `.gz` is gzip, `.zst` is zstd, anything else is plain.
    Auto,
    /// Plain.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

/// One output table.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// The mapping file.
    pub path: PathBuf,
    /// SHA-256 (hex) of the mapping file's bytes (and its codebooks).
    pub sha256: String,
    /// Output table name: the object prefix `<dest>/<table>/`.
    pub table: String,
    /// Name of the plan source.
    pub source: String,
    /// File globs, relative to the source's directory.
    pub files: Vec<String>,
    /// Globs of files the `files` globs match but the table must not read (relative to
    /// the source's directory, like `LICENSES/**`).
    pub exclude: Vec<String>,
    /// Resolved CSV dialect (source defaults, then the mapping's overrides).
    pub csv: CsvOptions,
    /// Declared key columns (documentation and, for databases, keyset resume).
    pub key: Vec<String>,
    /// For database sources: what to read and how to resume.
    pub db: Option<DbTable>,
    /// For HL7 sources: which messages, and what one row is.
    pub hl7: Option<Hl7Table>,
    /// For fixed-width sources: the layout and record type.
    pub fixed: Option<FixedTable>,
    /// Source columns deliberately not carried over.
    pub drop: Vec<String>,
    /// Output columns in order.
    pub columns: Vec<Column>,
    /// Parquet modular encryption of the table's objects.
    pub encrypt: TableEncrypt,
}

/// Parquet modular encryption of a table's objects (`encrypt` in a mapping).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableEncrypt {
    /// Encrypted only if a column has `rule = "encrypt"` (`encrypt = "columns"`, the default).
    #[default]
    Columns,
    /// Every column and the footer encrypted (`encrypt = "all"`).
    All,
}

impl Mapping {
    /// Whether the table's objects are written with Parquet modular encryption: the
    /// table says `encrypt = "all"`, or a column has `rule = "encrypt"`.
    pub fn encrypted(&self) -> bool {
        self.encrypt == TableEncrypt::All || self.columns.iter().any(|c| c.rule == Rule::Encrypt)
    }

    /// Distinct source columns a run reads, in first-use order: those of written columns,
    /// then the patient keys of `shift_date` columns, then (when a column is scrubbed)
    /// every column tagged as an identifier, whose values the scrubber looks for.
    pub fn source_columns(&self) -> Vec<String> {
        let mut seen = Vec::<String>::new();
        let mut add = |s: &str| {
            if !seen.iter().any(|x| x == s) {
                seen.push(s.to_owned());
            }
        };
        for c in self.columns.iter().filter(|c| c.rule.outputs()) {
            add(&c.from);
        }
        for c in &self.columns {
            if let Rule::ShiftDate { by } = &c.rule
                && let Some(k) = self.column(by)
            {
                add(&k.from);
            }
        }
        if self.columns.iter().any(|c| c.rule == Rule::ScrubText) {
            for c in self.columns.iter().filter(|c| c.phi.is_some_and(Phi::is_identifier)) {
                add(&c.from);
            }
        }
        seen
    }

    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Source columns that are accounted for: read by a column (any rule) or listed in `drop`.
    pub fn classified_source_columns(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.from.as_str()).chain(self.drop.iter().map(String::as_str)).collect()
    }
}

/// One output column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Output name.
    pub name: String,
    /// Source column it reads.
    pub from: String,
    /// 1-based line of its `[[columns]]` entry, for messages.
    pub line: usize,
    /// Output type.
    pub ty: ColumnType,
    /// Parse formats for dates and timestamps (chrono syntax), tried in order.
    pub formats: Vec<String>,
    /// Zone of naive `timestamptz` inputs.
    pub timezone: Option<chrono_tz::Tz>,
    /// Trim ASCII and Unicode whitespace before anything else.
    pub trim: bool,
    /// Tokens read as null (after trimming).
    pub null: Vec<String>,
    /// Code translation, applied after null tokens and before parsing.
    pub recode: Option<Recode>,
    /// Whether a null quarantines the row.
    pub nullable: bool,
    /// Tokens read as true for `bool` (case-insensitive).
    pub true_values: Vec<String>,
    /// Tokens read as false for `bool` (case-insensitive).
    pub false_values: Vec<String>,
    /// Privacy rule.
    pub rule: Rule,
    /// PHI tag.
    pub phi: Option<Phi>,
    /// Whether Parquet may dictionary-encode the column (`true`, the default, lets
    /// Parquet try and fall back to plain); `false` for unique identifiers saves the try.
    pub dictionary: bool,
    /// `table.column` of another mapped table whose values this column's must be among
    /// (checked by `validate --sample/--full`, never enforced by a run).
    pub references: Option<String>,
}

/// Output column types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// Text.
    Utf8,
    /// Signed integers of 8, 16, 32 and 64 bits.
    Int8,
    /// 16-bit signed integer.
    Int16,
    /// 32-bit signed integer.
    Int32,
    /// 64-bit signed integer.
    Int64,
    /// Unsigned integers of 8, 16, 32 and 64 bits (MySQL `UNSIGNED`).
    UInt8,
    /// 16-bit unsigned integer.
    UInt16,
    /// 32-bit unsigned integer.
    UInt32,
    /// 64-bit unsigned integer.
    UInt64,
    /// 32-bit float.
    Float32,
    /// 64-bit float.
    Float64,
    /// Exact decimal with precision and scale (precision 1..=76; above 38 it is a
    /// 256-bit decimal).
    Decimal {
        /// Total digits.
        precision: u8,
        /// Digits after the point.
        scale: i8,
    },
    /// true/false from configured tokens.
    Bool,
    /// Calendar date (days since the epoch).
    Date32,
    /// Time of day, microseconds.
    Time,
    /// Wall-clock timestamp without zone, microseconds.
    Timestamp,
    /// An instant, normalized to UTC, microseconds; the zone is recorded in the schema.
    TimestampTz,
    /// Bytes (`BYTEA`, `BLOB`): databases only.
    Binary,
    /// A UUID, 16 bytes (Arrow's `arrow.uuid` extension type).
    Uuid,
    /// JSON text (Arrow's `arrow.json` extension type); text sources are checked to parse.
    Json,
    /// A list (PostgreSQL arrays): databases only.
    List(ListOf),
}

/// Element types of `list<T>` columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListOf {
    /// `list<utf8>`.
    Utf8,
    /// `list<int16>`.
    Int16,
    /// `list<int32>`.
    Int32,
    /// `list<int64>`.
    Int64,
    /// `list<float32>`.
    Float32,
    /// `list<float64>`.
    Float64,
    /// `list<bool>`.
    Bool,
    /// `list<date32>`.
    Date32,
    /// `list<timestamp>`.
    Timestamp,
    /// `list<timestamptz>`.
    TimestampTz,
    /// `list<uuid>`.
    Uuid,
}

impl ListOf {
    /// The element as a scalar column type.
    pub fn scalar(self) -> ColumnType {
        match self {
            ListOf::Utf8 => ColumnType::Utf8,
            ListOf::Int16 => ColumnType::Int16,
            ListOf::Int32 => ColumnType::Int32,
            ListOf::Int64 => ColumnType::Int64,
            ListOf::Float32 => ColumnType::Float32,
            ListOf::Float64 => ColumnType::Float64,
            ListOf::Bool => ColumnType::Bool,
            ListOf::Date32 => ColumnType::Date32,
            ListOf::Timestamp => ColumnType::Timestamp,
            ListOf::TimestampTz => ColumnType::TimestampTz,
            ListOf::Uuid => ColumnType::Uuid,
        }
    }

    /// The element type for scalar `t`, if lists may hold it.
    pub fn of(t: ColumnType) -> Option<ListOf> {
        Some(match t {
            ColumnType::Utf8 => ListOf::Utf8,
            ColumnType::Int16 => ListOf::Int16,
            ColumnType::Int32 => ListOf::Int32,
            ColumnType::Int64 => ListOf::Int64,
            ColumnType::Float32 => ListOf::Float32,
            ColumnType::Float64 => ListOf::Float64,
            ColumnType::Bool => ListOf::Bool,
            ColumnType::Date32 => ListOf::Date32,
            ColumnType::Timestamp => ListOf::Timestamp,
            ColumnType::TimestampTz => ListOf::TimestampTz,
            ColumnType::Uuid => ListOf::Uuid,
            _ => return None,
        })
    }
}

impl ColumnType {
    /// Any of the integer types.
    pub fn is_integer(self) -> bool {
        use ColumnType::*;
        matches!(self, Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64)
    }

    /// Integers, floats and decimals.
    pub fn is_numeric(self) -> bool {
        self.is_integer() || matches!(self, ColumnType::Float32 | ColumnType::Float64 | ColumnType::Decimal { .. })
    }

    /// Date, timestamp or instant (the types `generalize` to a year applies to).
    pub fn is_datelike(self) -> bool {
        matches!(self, ColumnType::Date32 | ColumnType::Timestamp | ColumnType::TimestampTz)
    }

    /// Whether a text (file) source can produce this type.
    pub fn parses_from_text(self) -> bool {
        !matches!(self, ColumnType::Binary | ColumnType::List(_))
    }

    /// The type as written in a mapping.
    pub fn name(self) -> String {
        use ColumnType::*;
        match self {
            Utf8 => "utf8".into(),
            Int8 => "int8".into(),
            Int16 => "int16".into(),
            Int32 => "int32".into(),
            Int64 => "int64".into(),
            UInt8 => "uint8".into(),
            UInt16 => "uint16".into(),
            UInt32 => "uint32".into(),
            UInt64 => "uint64".into(),
            Float32 => "float32".into(),
            Float64 => "float64".into(),
            Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            Bool => "bool".into(),
            Date32 => "date32".into(),
            Time => "time".into(),
            Timestamp => "timestamp".into(),
            TimestampTz => "timestamptz".into(),
            Binary => "binary".into(),
            Uuid => "uuid".into(),
            Json => "json".into(),
            List(e) => format!("list<{}>", e.scalar().name()),
        }
    }
}

impl std::fmt::Display for ColumnType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// Every type name a mapping may use, for messages.
pub const TYPE_NAMES: &str = "utf8, int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, float64, decimal(P,S), bool, date32, time, timestamp, timestamptz, binary, uuid, json or list<T>";

impl std::str::FromStr for ColumnType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        Ok(match t {
            "utf8" | "string" => ColumnType::Utf8,
            "int8" => ColumnType::Int8,
            "int16" => ColumnType::Int16,
            "int32" => ColumnType::Int32,
            "int64" => ColumnType::Int64,
            "uint8" => ColumnType::UInt8,
            "uint16" => ColumnType::UInt16,
            "uint32" => ColumnType::UInt32,
            "uint64" => ColumnType::UInt64,
            "float32" => ColumnType::Float32,
            "float64" => ColumnType::Float64,
            "bool" => ColumnType::Bool,
            "date32" | "date" => ColumnType::Date32,
            "time" => ColumnType::Time,
            "timestamp" => ColumnType::Timestamp,
            "timestamptz" => ColumnType::TimestampTz,
            "binary" => ColumnType::Binary,
            "uuid" => ColumnType::Uuid,
            "json" => ColumnType::Json,
            _ if t.starts_with("list<") => {
                let inner = t.strip_prefix("list<").and_then(|r| r.strip_suffix('>')).ok_or_else(|| format!("`{t}`: expected list<T>"))?;
                let e: ColumnType = inner.parse()?;
                ColumnType::List(ListOf::of(e).ok_or_else(|| {
                    format!("list<{inner}> is not supported; elements may be utf8, int16, int32, int64, float32, float64, bool, date32, timestamp, timestamptz or uuid")
                })?)
            }
            _ => {
                let inner = t
                    .strip_prefix("decimal(")
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| format!("unknown type `{t}`; expected one of {TYPE_NAMES}"))?;
                let (p, s) = inner.split_once(',').ok_or_else(|| "decimal needs a precision and a scale: decimal(P,S)".to_owned())?;
                let precision: u8 = p.trim().parse().map_err(|_| "decimal precision must be a number from 1 to 76".to_owned())?;
                let scale: i8 = s.trim().parse().map_err(|_| "decimal scale must be a number from 0 to the precision".to_owned())?;
                if !(1..=76).contains(&precision) || scale < 0 || scale as u8 > precision {
                    return Err(format!("decimal({precision},{scale}) is out of range: precision 1 to 76, scale 0 to the precision"));
                }
                ColumnType::Decimal { precision, scale }
            }
        })
    }
}

/// A code translation table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recode {
    /// From code to replacement; an empty replacement means null.
    pub map: HashMap<String, String>,
    /// What happens to a code missing from the table.
    pub unmapped: Unmapped,
}

/// Policy for codes missing from a recode table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Unmapped {
    /// Quarantine the row (`unmapped_code`): the safe default.
    #[default]
    Quarantine,
    /// Keep the code as it is.
    Keep,
    /// Make it null.
    Null,
}

/// Privacy rule of a column: what is written in place of the source value.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// Carry the value as it is.
    Keep,
    /// Do not output the column.
    Drop,
    /// Output the column with every value null (keeps a schema stable).
    Null,
    /// Keyed HMAC-SHA256 of the value in a namespace: 32 hex digits, the same in every
    /// table, source and run under the same project key.
    Pseudonym {
        /// Identifier kind: values of one namespace join, namespaces never collide.
        namespace: String,
    },
    /// A random UUID per distinct value, kept in the encrypted vault at the destination.
    Surrogate {
        /// Identifier kind, as for pseudonyms.
        namespace: String,
    },
    /// Deterministic AES-SIV encryption: `ehrlift reidentify` reverses it with the key.
    Tokenize {
        /// Identifier kind; part of the associated data.
        namespace: String,
    },
    /// Move the date by the patient's own offset (days), from a keyed hash of `by`.
    ShiftDate {
        /// Output column (of this mapping) whose *source* value is the patient key.
        by: String,
    },
    /// Coarsen the value.
    Generalize(Generalize),
    /// Replace all but the last `keep_last` characters with `*`.
    Mask {
        /// Characters kept at the end.
        keep_last: usize,
    },
    /// Replace identifiers found in free text (and the row's own identifiers) by tags.
    ScrubText,
    /// Carry the value, encrypted in the Parquet object under a key of its own (Parquet
    /// modular encryption): readable only with that column's key. Allowed wherever
    /// `keep` is: whoever holds the key reads the value.
    Encrypt,
}

impl Rule {
    /// The rule's name as written in a mapping (`generalize`, not its parameters).
    pub fn name(&self) -> &'static str {
        match self {
            Rule::Keep => "keep",
            Rule::Drop => "drop",
            Rule::Null => "null",
            Rule::Pseudonym { .. } => "pseudonym",
            Rule::Surrogate { .. } => "surrogate",
            Rule::Tokenize { .. } => "tokenize",
            Rule::ShiftDate { .. } => "shift_date",
            Rule::Generalize(_) => "generalize",
            Rule::Mask { .. } => "mask",
            Rule::ScrubText => "scrub_text",
            Rule::Encrypt => "encrypt",
        }
    }

    /// The rule with its parameters, for reports: `generalize(zip3)`, `pseudonym(mrn)`.
    pub fn describe(&self) -> String {
        match self {
            Rule::Pseudonym { namespace } | Rule::Surrogate { namespace } | Rule::Tokenize { namespace } => {
                format!("{}({namespace})", self.name())
            }
            Rule::ShiftDate { by } => format!("shift_date(by {by})"),
            Rule::Generalize(g) => format!("generalize({})", g.name()),
            Rule::Mask { keep_last } => format!("mask(keep_last {keep_last})"),
            _ => self.name().to_owned(),
        }
    }

    /// Whether the column is written.
    pub fn outputs(&self) -> bool {
        *self != Rule::Drop
    }
}

/// Generalizations.
#[derive(Debug, Clone, PartialEq)]
pub enum Generalize {
    /// A date or timestamp to its year.
    Year,
    /// A birth date to its year, null when the year implies an age over 89 at the
    /// plan's reference date (Safe Harbor: such years are identifying).
    BirthYear,
    /// A ZIP code to its first three digits; restricted prefixes (populations of
    /// 20,000 or fewer) become `000`.
    Zip3,
    /// An age in years to text, with every age over 89 as `90+`.
    Age,
    /// A number to the label of its range among increasing bounds: `<0`, `[0,18)`, `>=90`.
    Bucket(Vec<f64>),
}

impl Generalize {
    /// Name as written in a mapping's `to`.
    pub fn name(&self) -> &'static str {
        match self {
            Generalize::Year => "year",
            Generalize::BirthYear => "birth_year",
            Generalize::Zip3 => "zip3",
            Generalize::Age => "age",
            Generalize::Bucket(_) => "bucket",
        }
    }
}

/// PHI tags: the 18 HIPAA Safe Harbor identifier categories, plus `quasi` and `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phi {
    /// Names.
    Name,
    /// Geographic subdivisions smaller than a state.
    Geo,
    /// Dates (except year) related to an individual, and ages over 89.
    Date,
    /// Telephone numbers.
    Phone,
    /// Fax numbers.
    Fax,
    /// E-mail addresses.
    Email,
    /// Social Security numbers.
    Ssn,
    /// Medical record numbers.
    Mrn,
    /// Health plan beneficiary numbers.
    HealthPlan,
    /// Account numbers.
    Account,
    /// Certificate/license numbers.
    License,
    /// Vehicle identifiers.
    Vehicle,
    /// Device identifiers and serial numbers.
    Device,
    /// Web URLs.
    Url,
    /// IP addresses.
    Ip,
    /// Biometric identifiers.
    Biometric,
    /// Full-face photographs.
    Photo,
    /// Any other unique identifying number, characteristic or code.
    OtherId,
    /// Free text that may hold any of the above.
    FreeText,
    /// Not an identifier alone, but identifying in combination.
    Quasi,
    /// Not PHI.
    None,
}

impl Phi {
    /// Every tag, in Safe Harbor order (the 18 categories), then `free_text`, `quasi`, `none`.
    pub const ALL: [Phi; 21] = [
        Phi::Name,
        Phi::Geo,
        Phi::Date,
        Phi::Phone,
        Phi::Fax,
        Phi::Email,
        Phi::Ssn,
        Phi::Mrn,
        Phi::HealthPlan,
        Phi::Account,
        Phi::License,
        Phi::Vehicle,
        Phi::Device,
        Phi::Url,
        Phi::Ip,
        Phi::Biometric,
        Phi::Photo,
        Phi::OtherId,
        Phi::FreeText,
        Phi::Quasi,
        Phi::None,
    ];

    /// Tag as written in a mapping.
    pub fn code(self) -> &'static str {
        match self {
            Phi::Name => "name",
            Phi::Geo => "geo",
            Phi::Date => "date",
            Phi::Phone => "phone",
            Phi::Fax => "fax",
            Phi::Email => "email",
            Phi::Ssn => "ssn",
            Phi::Mrn => "mrn",
            Phi::HealthPlan => "health_plan",
            Phi::Account => "account",
            Phi::License => "license",
            Phi::Vehicle => "vehicle",
            Phi::Device => "device",
            Phi::Url => "url",
            Phi::Ip => "ip",
            Phi::Biometric => "biometric",
            Phi::Photo => "photo",
            Phi::OtherId => "other_id",
            Phi::FreeText => "free_text",
            Phi::Quasi => "quasi",
            Phi::None => "none",
        }
    }

    /// One of the 18 Safe Harbor categories.
    pub fn is_safe_harbor_category(self) -> bool {
        !matches!(self, Phi::FreeText | Phi::Quasi | Phi::None)
    }

    /// A tag whose values identify a person by themselves and may be quoted in free
    /// text (names, addresses, numbers): the scrubber looks for the row's own values.
    pub fn is_identifier(self) -> bool {
        self.is_safe_harbor_category() && !matches!(self, Phi::Date | Phi::Biometric | Phi::Photo)
    }
}
