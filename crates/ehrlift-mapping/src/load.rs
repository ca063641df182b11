//! Loading a plan and its mappings into the validated [`Plan`](crate::Plan).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use toml::{Spanned, Value};

use crate::diag::{Diagnostics, Lines};
use crate::fields::{Fields, FileCx, parse_document, sub_table};
use crate::interpolate::Env;
use crate::model::*;

/// Most connections one PostgreSQL table may be read over (`read_connections`).
const MAX_READ_CONNECTIONS: i64 = 8;

const PLAN_KEYS: &[&str] = &["project", "include", "destination", "privacy", "keys", "run", "validate", "sources"];
const DESTINATION_KEYS: &[&str] = &[
    "url",
    "kms_key",
    "region",
    "endpoint_url",
    "path_style",
    "allow_insecure_endpoint",
    "allow_non_kms_bucket",
    "multipart_part_mib",
    "upload_concurrency",
];
const MAPPING_KEYS: &[&str] = &[
    "table",
    "description",
    "source",
    "files",
    "exclude",
    "hl7",
    "fixed",
    "source_table",
    "query",
    "chunk_rows",
    "resume",
    "key",
    "drop",
    "csv",
    "columns",
    "encrypt",
];
const COLUMN_KEYS: &[&str] = &[
    "name",
    "dictionary",
    "from",
    "type",
    "description",
    "format",
    "timezone",
    "trim",
    "null",
    "recode",
    "recode_file",
    "recode_unmapped",
    "nullable",
    "true_values",
    "false_values",
    "rule",
    "namespace",
    "shift_by",
    "to",
    "bounds",
    "keep_last",
    "phi",
    "references",
];

/// Loads and validates a plan file and every mapping it includes.
///
/// Returns every problem at once, each with its file and line.
pub fn load_plan(path: &Path, env: &dyn Env) -> Result<Plan, Diagnostics> {
    let mut diags = Diagnostics::default();
    let plan = load_plan_inner(path, env, &mut diags);
    match plan {
        Some(p) if diags.is_empty() => Ok(p),
        _ => {
            if diags.is_empty() {
                diags.push(path, None, "plan could not be loaded");
            }
            Err(diags)
        }
    }
}

fn read(path: &Path, diags: &mut Diagnostics) -> Option<(String, String)> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let sha = hex::encode(Sha256::digest(&bytes));
            match String::from_utf8(bytes) {
                Ok(text) => Some((text, sha)),
                Err(_) => {
                    diags.push(path, None, "file is not valid UTF-8");
                    None
                }
            }
        }
        Err(e) => {
            diags.push(path, None, format!("cannot read file: {e}"));
            None
        }
    }
}

fn load_plan_inner(path: &Path, env: &dyn Env, diags: &mut Diagnostics) -> Option<Plan> {
    let (text, sha256) = read(path, diags)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut cx = FileCx { file: path, text: &text, lines: Lines::new(&text), env, diags };
    let mut doc = parse_document(&mut cx, &text, "plan")?;

    let project: Option<String> = doc.req(&mut cx, "project", "a project name, e.g. project = \"clinic-migration\"");
    if let Some(p) = &project {
        check_name(&mut cx, doc.line, "project", p);
    }
    let includes: Vec<String> =
        doc.req(&mut cx, "include", "a list of mapping file globs, e.g. include = [\"tables/*.toml\"]").unwrap_or_default();

    let mut cloud = CloudSettings::default();
    let destination = doc.take_raw("destination").and_then(|v| sub_table(&mut cx, v, "[destination]".into())).and_then(|mut t| {
        let url: Option<String> = t.req(&mut cx, "url", "a destination URL, e.g. url = \"file://out\" or \"s3://bucket/prefix\"");
        let line = t.line_of(&cx, "url");
        cloud.kms_key = t.opt(&mut cx, "kms_key");
        cloud.region = t.opt(&mut cx, "region");
        cloud.endpoint_url = t.opt(&mut cx, "endpoint_url");
        cloud.path_style = t.opt(&mut cx, "path_style").unwrap_or(false);
        cloud.allow_insecure_endpoint = t.opt(&mut cx, "allow_insecure_endpoint").unwrap_or(false);
        cloud.allow_non_kms_bucket = t.opt(&mut cx, "allow_non_kms_bucket").unwrap_or(false);
        for (key, lo, hi, slot) in
            [("multipart_part_mib", 5, 5120, &mut cloud.multipart_part_mib), ("upload_concurrency", 1, 64, &mut cloud.upload_concurrency)]
        {
            let line = t.line_of(&cx, key);
            if let Some(v) = t.opt::<i64>(&mut cx, key) {
                match u32::try_from(v) {
                    Ok(v) if (lo..=hi).contains(&v) => *slot = v,
                    _ => cx.error(Some(line), format!("[destination]: `{key}` must be {lo} to {hi}")),
                }
            }
        }
        t.finish(&mut cx, DESTINATION_KEYS);
        url.and_then(|u| match resolve_dest(&u, &dir) {
            Ok(u) => Some(u),
            Err(e) => {
                cx.error(Some(line), format!("[destination]: `url`: {e}"));
                None
            }
        })
    });

    let mut privacy = PrivacySettings::default();
    let profile = match doc.take_raw("privacy").and_then(|v| sub_table(&mut cx, v, "[privacy]".into())) {
        Some(mut t) => {
            let p = t.req(&mut cx, "profile", "a privacy profile: \"safe_harbor\", \"limited_data_set\" or \"custom\"");
            let shift_line = t.line_of(&cx, "shift_days");
            if let Some([lo, hi]) = t.opt::<[i32; 2]>(&mut cx, "shift_days") {
                if lo >= hi || lo < -36_500 || hi > 36_500 {
                    cx.error(Some(shift_line), "[privacy]: `shift_days` must be [MIN, MAX] with MIN < MAX, within ±36500 days");
                }
                privacy.shift_days = (lo, hi);
            }
            let ref_line = t.line_of(&cx, "reference_date");
            if let Some(d) = t.opt::<String>(&mut cx, "reference_date") {
                match chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d") {
                    Ok(d) => privacy.reference_date = Some(d),
                    Err(_) => cx.error(Some(ref_line), "[privacy]: `reference_date` must be a date like \"2026-01-01\""),
                }
            }
            t.finish(&mut cx, &["profile", "shift_days", "reference_date"]);
            p
        }
        None => {
            cx.error(Some(1), "plan: missing [privacy] with `profile` (every plan states its privacy profile explicitly)");
            None
        }
    };

    let keys = match doc.take_raw("keys").and_then(|v| sub_table(&mut cx, v, "[keys]".into())) {
        Some(mut t) => {
            let provider: Option<String> = t.req(&mut cx, "provider", "\"local\" or \"aws-kms\"");
            let line = t.line_of(&cx, "provider");
            match provider.as_deref() {
                Some("local") => {
                    let kpath: Option<String> = t.req(&mut cx, "path", "the keyring directory");
                    t.finish(&mut cx, &["provider", "path"]);
                    kpath.map(|p| KeysConfig::Local { path: resolve(&dir, &p) })
                }
                Some("aws-kms") => {
                    let key_id: Option<String> = t.req(&mut cx, "key_id", "a KMS key id, alias/NAME or ARN");
                    t.finish(&mut cx, &["provider", "key_id"]);
                    key_id.map(|key_id| KeysConfig::AwsKms { key_id })
                }
                Some(other) => {
                    cx.error(Some(line), format!("[keys]: unknown provider `{other}`; expected \"local\" or \"aws-kms\""));
                    None
                }
                None => None,
            }
        }
        None => Some(KeysConfig::Local { path: dir.join(".ehrlift-keyring") }),
    };

    let run = doc.opt::<RunSettings>(&mut cx, "run").unwrap_or_default();
    check_run(&mut cx, &doc, &run);
    let validate_line = doc.line_of(&cx, "validate");
    let validate = doc.opt::<ValidateSettings>(&mut cx, "validate").unwrap_or_default();
    if validate.max_quarantine_ratio.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
        cx.error(Some(validate_line), "[validate]: `max_quarantine_ratio` must be from 0.0 to 1.0");
    }
    if validate.min_k == Some(0) {
        cx.error(Some(validate_line), "[validate]: `min_k` must be at least 1");
    }

    let mut sources = BTreeMap::new();
    if let Some(v) = doc.take_raw("sources") {
        let line = cx.line(v.span());
        match v.into_inner() {
            Value::Table(t) => {
                for (name, value) in t {
                    let at = find_line(&text, &format!("[sources.{name}]")).unwrap_or(line);
                    if let Some(src) = load_source(&mut cx, &dir, &name, Spanned::new(span_of(&text, at), value)) {
                        sources.insert(name, src);
                    }
                }
            }
            _ => cx.error(Some(line), "plan: `sources` must be a table of named sources, e.g. [sources.legacy]"),
        }
    } else {
        cx.error(Some(1), "plan: missing `sources` (at least one [sources.NAME])");
    }
    doc.finish(&mut cx, PLAN_KEYS);

    // Mappings.
    let mut tables: Vec<Mapping> = Vec::new();
    let mut seen_files = HashSet::new();
    for pattern in &includes {
        let full = resolve(&dir, pattern);
        let mut files: Vec<PathBuf> = match glob::glob(&full.to_string_lossy()) {
            Ok(paths) => paths.filter_map(Result::ok).collect(),
            Err(e) => {
                diags.push(path, find_line(&text, pattern), format!("include `{pattern}`: bad glob: {e}"));
                continue;
            }
        };
        files.sort();
        if files.is_empty() {
            diags.push(path, find_line(&text, pattern), format!("include `{pattern}` matches no mapping file"));
        }
        for f in files {
            if seen_files.insert(f.clone())
                && let Some(m) = load_mapping(&f, env, &sources, diags)
            {
                if tables.iter().any(|t| t.table == m.table) {
                    diags.push(&f, None, format!("table `{}` is mapped twice", m.table));
                } else {
                    tables.push(m);
                }
            }
        }
    }
    if includes.is_empty() {
        diags.push(path, None, "plan includes no mapping files");
    }
    // A reference must name a written column of a mapped table.
    for m in &tables {
        for c in &m.columns {
            let Some((t, col)) = c.references.as_deref().and_then(|r| r.split_once('.')) else { continue };
            let target = tables.iter().find(|x| x.table == t);
            let problem = match target {
                None => Some(format!("the plan maps no table `{t}`")),
                Some(x) if !x.columns.iter().any(|k| k.name == col && k.rule.outputs()) => {
                    Some(format!("table `{t}` writes no column `{col}`"))
                }
                Some(_) => None,
            };
            if let Some(p) = problem {
                diags.push(&m.path, Some(c.line), format!("column `{}`: `references = \"{t}.{col}\"`: {p}", c.name));
            }
        }
    }

    Some(Plan {
        path: path.to_path_buf(),
        sha256,
        project: project?,
        destination,
        cloud,
        profile: profile?,
        privacy,
        keys: keys?,
        run,
        validate,
        sources,
        tables,
    })
}

fn check_run(cx: &mut FileCx<'_>, doc: &Fields, run: &RunSettings) {
    let line = Some(doc.line_of(cx, "run"));
    if run.batch_rows == 0 || run.batch_rows > 1 << 20 {
        cx.error(line, "[run]: `batch_rows` must be from 1 to 1048576");
    }
    if run.part_rows == 0 {
        cx.error(line, "[run]: `part_rows` must be at least 1");
    }
    if run.row_group_rows == 0 {
        cx.error(line, "[run]: `row_group_rows` must be at least 1");
    }
    if !(1..=22).contains(&run.zstd_level) {
        cx.error(line, "[run]: `zstd_level` must be from 1 to 22");
    }
    if run.jobs == 0 || run.jobs > 64 {
        cx.error(line, "[run]: `jobs` must be from 1 to 64");
    }
    if run.shard_unit_mib == 0 {
        cx.error(line, "[run]: `shard_unit_mib` must be at least 1");
    }
    if run.encode_threads > 256 {
        cx.error(line, "[run]: `encode_threads` must be from 0 (one per core) to 256");
    }
    if !(0.0..=1.0).contains(&run.max_quarantine_ratio) {
        cx.error(line, "[run]: `max_quarantine_ratio` must be from 0.0 to 1.0");
    }
}

fn load_source(cx: &mut FileCx<'_>, dir: &Path, name: &str, value: Spanned<Value>) -> Option<Source> {
    let mut t = sub_table(cx, value, format!("[sources.{name}]"))?;
    check_name(cx, t.line, "source", name);
    let kind: Option<String> =
        t.req(cx, "kind", "the source kind: \"csv\", \"hl7\", \"fixed_width\", \"postgres\", \"mysql\" or \"sqlite\"");
    let line = t.line;
    let what = format!("[sources.{name}]");
    match kind.as_deref() {
        Some("csv") => {
            let sdir: Option<String> = t.req(cx, "dir", "the directory the tables' file globs are relative to");
            let options = t.opt::<CsvOptions>(cx, "csv").unwrap_or_default();
            t.finish(cx, &["kind", "dir", "csv"]);
            Some(Source { name: name.to_owned(), kind: SourceKind::Csv { dir: resolve(dir, &sdir?), options } })
        }
        Some("hl7") => {
            let sdir: Option<String> = t.req(cx, "dir", "the directory the tables' file globs are relative to");
            t.finish(cx, &["kind", "dir"]);
            Some(Source { name: name.to_owned(), kind: SourceKind::Hl7 { dir: resolve(dir, &sdir?) } })
        }
        Some("fixed_width") => {
            let sdir: Option<String> = t.req(cx, "dir", "the directory the tables' file globs are relative to");
            let layout: Option<String> = t.opt(cx, "layout");
            t.finish(cx, &["kind", "dir", "layout"]);
            let layout = layout.map(|l| resolve(dir, &l));
            Some(Source { name: name.to_owned(), kind: SourceKind::FixedWidth { dir: resolve(dir, &sdir?), layout } })
        }
        Some(k @ ("postgres" | "mysql" | "sqlite")) => {
            let engine = match k {
                "postgres" => Engine::Postgres,
                "mysql" => Engine::Mysql,
                _ => Engine::Sqlite,
            };
            let url_line = t.line_of(cx, "url");
            let url: Option<String> = t.opt(cx, "url");
            let url_env: Option<String> = t.opt(cx, "url_env");
            let url_file: Option<String> = t.opt(cx, "url_file");
            let path: Option<String> = t.opt(cx, "path");
            let pw_line = t.line_of(cx, "password_file");
            let password_file: Option<String> = t.opt(cx, "password_file");
            let zero_line = t.line_of(cx, "zero_dates");
            let zero_dates: Option<ZeroDates> = t.opt(cx, "zero_dates");
            let conn_line = t.line_of(cx, "read_connections");
            let read_connections: Option<i64> = t.opt(cx, "read_connections");
            t.finish(cx, &["kind", "url", "url_env", "url_file", "path", "password_file", "zero_dates", "read_connections"]);
            if zero_dates.is_some() && engine != Engine::Mysql {
                cx.error(Some(zero_line), format!("{what}: `zero_dates` applies only to mysql sources"));
            }
            if read_connections.is_some() && engine != Engine::Postgres {
                cx.error(Some(conn_line), format!("{what}: `read_connections` applies only to postgres sources"));
            }
            let read_connections = match read_connections {
                None => DatabaseSource::DEFAULT_READ_CONNECTIONS,
                Some(n @ 1..=MAX_READ_CONNECTIONS) => n as u8,
                Some(n) => {
                    cx.error(Some(conn_line), format!("{what}: `read_connections` must be 1 to {MAX_READ_CONNECTIONS}, got {n}"));
                    DatabaseSource::DEFAULT_READ_CONNECTIONS
                }
            };
            let given = [url.is_some(), url_env.is_some(), url_file.is_some(), path.is_some()].iter().filter(|b| **b).count();
            let expected = if engine == Engine::Sqlite {
                "`path` (the database file, relative to the plan) or one of `url`, `url_env`, `url_file`"
            } else {
                "one of `url`, `url_env` (an environment variable holding the URL) or `url_file` (a file holding it)"
            };
            if given != 1 {
                cx.error(Some(url_line), format!("{what}: give exactly {expected}"));
                return None;
            }
            if path.is_some() && engine != Engine::Sqlite {
                cx.error(Some(url_line), format!("{what}: `path` is for sqlite; give {expected}"));
                return None;
            }
            let raw = if let Some(u) = url {
                u
            } else if let Some(var) = url_env {
                match cx.env.var(&var) {
                    Some(v) if !v.is_empty() => v,
                    _ => {
                        cx.error(Some(url_line), format!("{what}: `url_env`: environment variable {var} is not set"));
                        return None;
                    }
                }
            } else if let Some(f) = url_file {
                let p = resolve(dir, &f);
                match std::fs::read_to_string(&p) {
                    Ok(v) => v.trim().to_owned(),
                    Err(e) => {
                        cx.error(Some(url_line), format!("{what}: `url_file`: cannot read {}: {e}", p.display()));
                        return None;
                    }
                }
            } else {
                let p = resolve(dir, path.as_deref().unwrap_or_default());
                format!("sqlite://{}", p.display())
            };
            let mut url = raw;
            let scheme_ok = match engine {
                Engine::Postgres => url.starts_with("postgres://") || url.starts_with("postgresql://"),
                Engine::Mysql => url.starts_with("mysql://") || url.starts_with("mariadb://"),
                Engine::Sqlite => url.starts_with("sqlite:"),
            };
            if !scheme_ok {
                cx.error(Some(url_line), format!("{what}: the URL `{}` does not fit kind = \"{k}\"", redact_url(&url)));
                return None;
            }
            if let Some(rest) = url.strip_prefix("mariadb://") {
                url = format!("mysql://{rest}");
            }
            if let Some(f) = password_file {
                let p = resolve(dir, &f);
                match std::fs::read_to_string(&p) {
                    Ok(pw) => match with_password(&url, pw.trim_end_matches(['\r', '\n'])) {
                        Some(u) => url = u,
                        None => cx.error(Some(pw_line), format!("{what}: `password_file`: the URL has no user to give the password to")),
                    },
                    Err(e) => cx.error(Some(pw_line), format!("{what}: `password_file`: cannot read {}: {e}", p.display())),
                }
            }
            Some(Source {
                name: name.to_owned(),
                kind: SourceKind::Database(DatabaseSource {
                    engine,
                    url: SecretUrl::new(url),
                    zero_dates: zero_dates.unwrap_or_default(),
                    read_connections: if engine == Engine::Postgres { read_connections } else { 1 },
                }),
            })
        }
        Some(other) => {
            cx.error(
                Some(line),
                format!(
                    "{what}: unknown kind `{other}`; expected \"csv\", \"hl7\", \"fixed_width\", \"postgres\", \"mysql\" or \"sqlite\""
                ),
            );
            None
        }
        None => None,
    }
}

/// `scheme://user@host/…` with `password` put in (percent-encoded); `None` without a user.
fn with_password(url: &str, password: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find('/').unwrap_or(rest.len());
    let (auth_host, path) = rest.split_at(end);
    let (auth, host) = auth_host.rsplit_once('@')?;
    let user = auth.split_once(':').map_or(auth, |(u, _)| u);
    let mut enc = String::new();
    for b in password.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    Some(format!("{scheme}://{user}:{enc}@{host}{path}"))
}

fn load_mapping(path: &Path, env: &dyn Env, sources: &BTreeMap<String, Source>, diags: &mut Diagnostics) -> Option<Mapping> {
    let (text, file_sha) = read(path, diags)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut cx = FileCx { file: path, text: &text, lines: Lines::new(&text), env, diags };
    let mut doc = parse_document(&mut cx, &text, "mapping")?;
    let mut hasher = Sha256::new();
    hasher.update(file_sha.as_bytes());

    let table: Option<String> = doc.req(&mut cx, "table", "the output table name");
    if let Some(t) = &table {
        let line = doc.line_of(&cx, "table");
        check_name(&mut cx, line, "table", t);
    }
    let _description: Option<String> = doc.opt(&mut cx, "description");
    let source_line = doc.line_of(&cx, "source");
    let source_name: Option<String> = doc.req(&mut cx, "source", "the name of a plan source");
    let source = source_name.as_ref().and_then(|s| {
        let found = sources.get(s);
        if found.is_none() {
            let known: Vec<_> = sources.keys().map(String::as_str).collect();
            cx.error(Some(source_line), format!("source `{s}` is not defined in the plan; defined: {}", known.join(", ")));
        }
        found
    });
    let is_db = matches!(source.map(|s| &s.kind), Some(SourceKind::Database(_)));
    let is_hl7 = matches!(source.map(|s| &s.kind), Some(SourceKind::Hl7 { .. }));
    let exclude_line = doc.line_of(&cx, "exclude");
    let exclude: Vec<String> = doc.opt(&mut cx, "exclude").unwrap_or_default();
    if is_db && !exclude.is_empty() {
        cx.error(Some(exclude_line), "`exclude` is for file sources");
    }
    for g in &exclude {
        if let Err(e) = glob::Pattern::new(g) {
            cx.error(Some(exclude_line), format!("`exclude`: `{g}` is not a glob: {e}"));
        }
    }
    let hl7_line = doc.line_of(&cx, "hl7");
    let hl7_section = doc.take_raw("hl7");
    let hl7 = match (hl7_section, is_hl7) {
        (Some(_), false) => {
            if source.is_some() {
                cx.error(Some(hl7_line), "[hl7] is for sources of kind = \"hl7\"");
            }
            None
        }
        (section, true) => Some(load_hl7_table(&mut cx, section)),
        (None, false) => None,
    };
    let fixed_line = doc.line_of(&cx, "fixed");
    let fixed_section = doc.take_raw("fixed");
    let fixed = match source.map(|s| &s.kind) {
        Some(SourceKind::FixedWidth { layout, .. }) => load_fixed_table(&mut cx, &dir, layout.as_deref(), fixed_section, &mut hasher),
        Some(_) => {
            if fixed_section.is_some() {
                cx.error(Some(fixed_line), "[fixed] is for sources of kind = \"fixed_width\"");
            }
            None
        }
        None => None,
    };
    let is_fixed = matches!(source.map(|s| &s.kind), Some(SourceKind::FixedWidth { .. }));
    let files_line = doc.line_of(&cx, "files");
    let files: Vec<String> = match doc.take_raw("files") {
        Some(_) if is_db => {
            cx.error(Some(files_line), "`files` is for file sources; a database mapping names `source_table` or `query`");
            Vec::new()
        }
        Some(v) => {
            let mut v = v.into_inner();
            match cx.expand(&mut v).map(|_| v) {
                Ok(Value::String(s)) => vec![s],
                Ok(Value::Array(a)) if a.iter().all(Value::is_str) && !a.is_empty() => {
                    a.into_iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
                }
                Ok(_) => {
                    cx.error(Some(files_line), "`files`: expected a glob or a non-empty list of globs");
                    Vec::new()
                }
                Err(e) => {
                    cx.error(Some(files_line), format!("`files`: {e}"));
                    Vec::new()
                }
            }
        }
        None if is_db || source.is_none() => Vec::new(),
        None => {
            cx.error(Some(1), "mapping: missing `files` (a glob relative to the source's dir)");
            Vec::new()
        }
    };
    let rel_line = doc.line_of(&cx, "source_table");
    let source_table: Option<String> = doc.opt(&mut cx, "source_table");
    let query_line = doc.line_of(&cx, "query");
    let query: Option<String> = doc.opt(&mut cx, "query");
    let chunk_line = doc.line_of(&cx, "chunk_rows");
    let chunk_rows: Option<u64> = doc.opt(&mut cx, "chunk_rows");
    let resume_line = doc.line_of(&cx, "resume");
    let resume_raw: Option<String> = doc.opt(&mut cx, "resume");
    if !is_db {
        for (present, key, line) in [
            (source_table.is_some(), "source_table", rel_line),
            (query.is_some(), "query", query_line),
            (chunk_rows.is_some(), "chunk_rows", chunk_line),
        ] {
            if present && source.is_some() {
                cx.error(Some(line), format!("`{key}` is for database sources"));
            }
        }
        if let Some(r) = &resume_raw
            && r != "position"
        {
            cx.error(
                Some(resume_line),
                format!("`resume`: unknown `{r}`; file sources resume by \"position\" (file, byte offset, record)"),
            );
        }
    }
    let encrypt_line = doc.line_of(&cx, "encrypt");
    let encrypt = match doc.opt::<String>(&mut cx, "encrypt").as_deref() {
        None | Some("columns") => TableEncrypt::Columns,
        Some("all") => TableEncrypt::All,
        Some(other) => {
            cx.error(
                Some(encrypt_line),
                format!("`encrypt`: unknown `{other}`; expected \"all\" or \"columns\" (only columns with rule = \"encrypt\")"),
            );
            TableEncrypt::Columns
        }
    };
    let key: Vec<String> = doc.opt(&mut cx, "key").unwrap_or_default();
    let key_line = doc.line_of(&cx, "key");
    let drop: Vec<String> = doc.opt(&mut cx, "drop").unwrap_or_default();
    let drop_line = doc.line_of(&cx, "drop");

    let csv_line = doc.line_of(&cx, "csv");
    let csv_override = doc.take_raw("csv");
    let csv = match source.map(|s| &s.kind) {
        Some(SourceKind::Csv { options, .. }) => merge_csv(&mut cx, options, csv_override, csv_line),
        Some(SourceKind::Database(_) | SourceKind::Hl7 { .. } | SourceKind::FixedWidth { .. }) => {
            if csv_override.is_some() {
                cx.error(Some(csv_line), "`csv` is for CSV sources");
            }
            CsvOptions::default()
        }
        None => CsvOptions::default(),
    };
    if (is_hl7 || is_fixed) && !drop.is_empty() {
        cx.error(
            Some(drop_line),
            "`drop` is for CSV and database sources: an HL7 or fixed-width mapping reads only the paths or fields its columns name (give a column rule = \"drop\" to document one)",
        );
    }

    let mut columns = Vec::new();
    match doc.take_raw("columns") {
        Some(_) => match toml::from_str::<ColumnsDoc>(&text) {
            Ok(c) => {
                for (i, col) in c.columns.into_iter().enumerate() {
                    let line = cx.line(col.span());
                    let span = col.span();
                    let mut fields = Fields::new(col.into_inner(), line, format!("column #{}", i + 1));
                    if let Some(f) = &fixed {
                        inherit_from_layout(&mut fields, f, span);
                    }
                    if let Some(c) = load_column(&mut cx, &dir, fields, &mut hasher, is_db) {
                        columns.push(c);
                    }
                }
            }
            Err(e) => cx.error(e.span().map(|s| cx.lines.line_of(s.start)), "`columns` must be an array of tables: [[columns]]"),
        },
        None => cx.error(Some(1), "mapping: no [[columns]]; a table needs at least one output column"),
    }
    doc.finish(&mut cx, MAPPING_KEYS);

    // Cross-field checks.
    let mut names = HashSet::new();
    for c in &columns {
        if !names.insert(c.name.as_str()) {
            cx.error(Some(c.line), format!("column `{}` is defined twice", c.name));
        }
        if drop.contains(&c.from) {
            cx.error(Some(drop_line), format!("source column `{}` is both read by column `{}` and listed in `drop`", c.from, c.name));
        }
    }
    for c in &columns {
        if let Rule::ShiftDate { by } = &c.rule {
            match columns.iter().find(|k| &k.name == by) {
                None => cx.error(Some(c.line), format!("column `{}`: `shift_by = \"{by}\"` is not a column of this mapping", c.name)),
                Some(k) if k.name == c.name => {
                    cx.error(Some(c.line), format!("column `{}`: `shift_by` names the column itself; name the patient key column", c.name))
                }
                Some(_) => {}
            }
        }
    }
    if !columns.is_empty() && columns.iter().all(|c| c.rule == Rule::Drop) {
        cx.error(Some(1), "every column has rule = \"drop\": the table would have no columns");
    }
    for k in &key {
        match columns.iter().find(|c| &c.name == k) {
            // A database key only orders and resumes the reading: it may be any source column.
            None if is_db && (columns.iter().any(|c| &c.from == k) || drop.contains(k)) => {}
            None => cx.error(Some(key_line), format!("`key`: `{k}` is not an output column")),
            Some(c) if c.rule == Rule::Drop && !is_db => cx.error(Some(key_line), format!("`key`: column `{k}` is dropped")),
            Some(_) => {}
        }
    }
    if let Some(f) = &fixed {
        let rt = &f.layout.record_types()[f.record_type];
        for c in &columns {
            if rt.field(&c.from).is_none() {
                cx.error(
                    Some(c.line),
                    format!(
                        "column `{}`: `from = \"{}\"` is not a field of record type `{}` in {}",
                        c.name,
                        c.from,
                        rt.name(),
                        f.layout_path.display()
                    ),
                );
            }
        }
    } else if is_hl7 {
        for c in &columns {
            if let Err(e) = ehrlift_hl7::Path::parse(&c.from) {
                cx.error(Some(c.line), format!("column `{}`: `from`: {e} (HL7 paths look like PID-3[1].1, PID-5.1, OBX-5, MSH-7)", c.name));
            }
        }
    } else if !csv.header && !csv.columns.is_empty() {
        let known: HashSet<&str> = csv.columns.iter().map(String::as_str).collect();
        for c in &columns {
            if !known.contains(c.from.as_str()) {
                cx.error(Some(c.line), format!("column `{}`: `from = \"{}\"` is not in the csv `columns` list", c.name, c.from));
            }
        }
    } else if !csv.header && !is_db {
        cx.error(Some(csv_line), "[csv]: header = false needs `columns = [...]` naming the file's columns in order");
    }

    let db = if is_db {
        let relation = match (source_table, query) {
            (Some(t), None) => {
                if t.is_empty() || t.split('.').count() > 2 || t.split('.').any(str::is_empty) {
                    cx.error(Some(rel_line), "`source_table`: expected a table name, optionally schema-qualified (`emr.patients`)");
                }
                Some(Relation::Table(t))
            }
            (None, Some(q)) => {
                let head = q.trim_start().get(..6).unwrap_or_default().to_ascii_lowercase();
                if head != "select" && !q.trim_start().to_ascii_lowercase().starts_with("with") {
                    cx.error(Some(query_line), "`query`: expected a SELECT (or WITH … SELECT) statement");
                }
                if q.contains(';') {
                    cx.error(Some(query_line), "`query`: one statement without `;` (it is wrapped as a subquery)");
                }
                Some(Relation::Query(q))
            }
            (Some(_), Some(_)) => {
                cx.error(Some(query_line), "give `source_table` or `query`, not both");
                None
            }
            (None, None) => {
                cx.error(Some(1), "mapping: a database mapping needs `source_table` (a table or view) or `query` (a SELECT)");
                None
            }
        };
        let resume = match resume_raw.as_deref() {
            None | Some("keyset") => Resume::Keyset,
            Some("restart_table") => Resume::RestartTable,
            Some(other) => {
                cx.error(
                    Some(resume_line),
                    format!("`resume`: unknown `{other}`; database tables resume by \"keyset\" (after the last committed key) or \"restart_table\""),
                );
                Resume::Keyset
            }
        };
        // `key` names output columns or source columns; keyset paging needs the source names.
        let mut source_key = Vec::new();
        for k in &key {
            if let Some(c) = columns.iter().find(|c| &c.name == k) {
                source_key.push(c.from.clone());
            } else if columns.iter().any(|c| &c.from == k) || drop.contains(k) {
                source_key.push(k.clone());
            }
        }
        match resume {
            Resume::Keyset if key.is_empty() => cx.error(
                Some(resume_line),
                "a database table needs `key` (its primary key or another unique, non-null column list) to resume mid-table; a table with no usable key must say resume = \"restart_table\"",
            ),
            Resume::RestartTable if !key.is_empty() => {
                cx.error(Some(resume_line), "resume = \"restart_table\" ignores `key`; remove one of them")
            }
            _ => {}
        }
        if chunk_rows == Some(0) {
            cx.error(Some(chunk_line), "`chunk_rows` must be at least 1");
        }
        relation.map(|relation| DbTable { relation, resume, key: source_key, chunk_rows: chunk_rows.unwrap_or(100_000) })
    } else {
        for c in &columns {
            if !c.ty.parses_from_text() {
                cx.error(Some(c.line), format!("column `{}`: type {} needs a database source", c.name, c.ty.name()));
            }
        }
        None
    };

    Some(Mapping {
        path: path.to_path_buf(),
        sha256: hex::encode(hasher.finalize()),
        table: table?,
        source: source_name?,
        files,
        exclude,
        csv,
        key,
        db,
        hl7,
        fixed,
        drop,
        columns,
        encrypt,
    })
}

/// Reads a mapping's `[hl7]` section (absent: every message, one row per message).
fn load_hl7_table(cx: &mut FileCx<'_>, section: Option<Spanned<Value>>) -> Hl7Table {
    let all = Hl7Table { message_types: Vec::new(), segment: None, required_segments: Vec::new() };
    let Some(section) = section else { return all };
    let Some(mut t) = sub_table(cx, section, "[hl7]".to_owned()) else { return all };
    let types_line = t.line_of(cx, "message_types");
    let message_types: Vec<String> = t.opt(cx, "message_types").unwrap_or_default();
    for m in &message_types {
        let ok = |p: &str| (2..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric());
        let valid = match m.split_once('^') {
            Some((code, event)) => ok(code) && ok(event),
            None => ok(m),
        };
        if !valid {
            cx.error(Some(types_line), format!("[hl7] `message_types`: `{m}` is not a message type like \"ADT\" or \"ORU^R01\""));
        }
    }
    let seg_line = t.line_of(cx, "segment");
    let segment: Option<String> = t.opt(cx, "segment");
    if let Some(s) = &segment
        && (s.len() != 3 || !s.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        cx.error(Some(seg_line), format!("[hl7] `segment`: `{s}` is not a segment id (three letters or digits, like OBX)"));
    }
    let req_line = t.line_of(cx, "required_segments");
    let required: Vec<String> = t.opt(cx, "required_segments").unwrap_or_default();
    for s in &required {
        if s.len() != 3 || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            cx.error(Some(req_line), format!("[hl7] `required_segments`: `{s}` is not a segment id (three letters or digits, like PID)"));
        }
    }
    t.finish(cx, &["message_types", "segment", "required_segments"]);
    Hl7Table {
        message_types,
        segment: segment.map(|s| s.to_ascii_uppercase()),
        required_segments: required.iter().map(|s| s.to_ascii_uppercase()).collect(),
    }
}

/// A column's privacy rule and the rule's parameters: what a layout field may give the
/// columns that read it, with its `phi` tag (and a `description` for people).
const RULE_KEYS: &[&str] = &["rule", "namespace", "shift_by", "to", "bounds", "keep_last"];

/// Whether a layout field may carry `key` for the mappings that read it.
fn layout_column_key(key: &str) -> bool {
    key == "phi" || key == "description" || RULE_KEYS.contains(&key)
}

/// Reads a mapping's `[fixed]` section: the layout (the mapping's, else the source's)
/// and the record type. The layout's bytes go into the mapping's hash.
fn load_fixed_table(
    cx: &mut FileCx<'_>,
    dir: &Path,
    source_layout: Option<&Path>,
    section: Option<Spanned<Value>>,
    hasher: &mut Sha256,
) -> Option<FixedTable> {
    let mut t = match section {
        Some(v) => sub_table(cx, v, "[fixed]".to_owned())?,
        None => Fields::new(Default::default(), 1, "[fixed]"),
    };
    let layout_line = t.line_of(cx, "layout");
    let own: Option<String> = t.opt(cx, "layout");
    let type_line = t.line_of(cx, "record_type");
    let wanted: Option<String> = t.opt(cx, "record_type");
    t.finish(cx, &["layout", "record_type"]);
    let Some(layout_path) = own.map(|l| resolve(dir, &l)).or_else(|| source_layout.map(Path::to_path_buf)) else {
        cx.error(Some(layout_line), "[fixed]: no `layout`: name the layout file here or in the source");
        return None;
    };
    let (text, sha) = read(&layout_path, cx.diags)?;
    hasher.update(sha.as_bytes());
    let file = match ehrlift_fixed::Layout::from_toml(&text) {
        Ok(f) => f,
        Err(errors) => {
            for e in errors {
                cx.diags.push(&layout_path, Some(e.line), e.message);
            }
            return None;
        }
    };
    let lines = Lines::new(&text);
    for (key, v) in &file.other {
        let line = lines.line_of(v.span().start);
        cx.diags.push(&layout_path, Some(line), format!("unknown key `{key}`"));
    }
    let layout = file.layout;
    for rt in layout.record_types() {
        for key in rt.extra().keys().filter(|k| k.as_str() != "description") {
            cx.diags.push(&layout_path, Some(rt.line()), format!("record type `{}`: unknown key `{key}`", rt.name()));
        }
        for f in rt.fields() {
            for key in f.extra().keys().filter(|k| !layout_column_key(k)) {
                cx.diags.push(
                    &layout_path,
                    Some(f.line()),
                    format!("field `{}`: unknown key `{key}`; a field may carry phi, {}, description", f.name(), RULE_KEYS.join(", ")),
                );
            }
        }
    }
    let types = layout.record_types();
    let record_type = match &wanted {
        Some(w) => match types.iter().position(|rt| rt.name() == w || rt.code() == Some(w.as_str())) {
            Some(i) => i,
            None => {
                let known: Vec<&str> = types.iter().map(|rt| rt.name()).collect();
                cx.error(
                    Some(type_line),
                    format!("[fixed] `record_type`: `{w}` is not a record type of the layout; it has {}", known.join(", ")),
                );
                return None;
            }
        },
        None if types.len() == 1 => 0,
        None => {
            let known: Vec<&str> = types.iter().map(|rt| rt.name()).collect();
            cx.error(
                Some(type_line),
                format!("[fixed]: the layout has several record types ({}); say which with `record_type`", known.join(", ")),
            );
            return None;
        }
    };
    Some(FixedTable { layout_path, layout: std::sync::Arc::new(layout), record_type })
}

/// A column reading a layout field takes the field's PHI tag, and its rule (with the
/// rule's parameters) when the column names no rule of its own.
fn inherit_from_layout(col: &mut Fields, fixed: &FixedTable, span: std::ops::Range<usize>) {
    let Some(from) = col.peek_str("from").or_else(|| col.peek_str("name")) else { return };
    let Some(field) = fixed.layout.record_types()[fixed.record_type].field(&from) else { return };
    let extra = field.extra();
    if let Some(phi) = extra.get("phi")
        && !col.has("phi")
    {
        col.insert_missing("phi", phi.get_ref().clone(), span.clone());
    }
    if !col.has("rule") && extra.contains_key("rule") {
        for &key in RULE_KEYS {
            if let Some(v) = extra.get(key) {
                col.insert_missing(key, v.get_ref().clone(), span.clone());
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct ColumnsDoc {
    #[serde(default)]
    columns: Vec<Spanned<crate::fields::SpannedMap>>,
}

fn merge_csv(cx: &mut FileCx<'_>, base: &CsvOptions, over: Option<Spanned<Value>>, line: usize) -> CsvOptions {
    let Some(over) = over else { return base.clone() };
    let mut over = over.into_inner();
    if let Err(e) = cx.expand(&mut over) {
        cx.error(Some(line), format!("[csv]: {e}"));
        return base.clone();
    }
    let Value::Table(over) = over else {
        cx.error(Some(line), "`csv` must be a table of CSV dialect settings");
        return base.clone();
    };
    let mut merged = match Value::try_from(base) {
        Ok(Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    for (k, v) in over {
        merged.insert(k, v);
    }
    match Value::Table(merged).try_into::<CsvOptions>() {
        Ok(o) => o,
        Err(e) => {
            cx.error(Some(line), format!("[csv]: {}", e.to_string().lines().next().unwrap_or_default()));
            base.clone()
        }
    }
}

fn load_column(cx: &mut FileCx<'_>, dir: &Path, mut f: Fields, hasher: &mut Sha256, db: bool) -> Option<Column> {
    let name: Option<String> = f.req(cx, "name", "the output column name");
    if let Some(n) = &name {
        f.what = format!("column `{n}`");
    }
    let from: Option<String> = f.opt(cx, "from");
    let _description: Option<String> = f.opt(cx, "description");
    let type_line = f.line_of(cx, "type");
    let ty = f
        .req::<String>(cx, "type", TYPE_NAMES)
        .and_then(|t| t.parse::<ColumnType>().map_err(|e| cx.error(Some(type_line), format!("{}: `type`: {e}", f.what))).ok());
    let format_line = f.line_of(cx, "format");
    let formats: Vec<String> = match f.take_raw("format").map(Spanned::into_inner) {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_str) => {
            a.into_iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
        }
        Some(_) => {
            cx.error(Some(format_line), format!("{}: `format`: expected a chrono format string or a list of them", f.what));
            Vec::new()
        }
    };
    let tz_line = f.line_of(cx, "timezone");
    let timezone = f.opt::<String>(cx, "timezone").and_then(|z| {
        z.parse::<chrono_tz::Tz>()
            .map_err(|_| {
                cx.error(
                    Some(tz_line),
                    format!("{}: `timezone`: unknown zone `{z}`; expected an IANA name like \"America/New_York\" or \"UTC\"", f.what),
                )
            })
            .ok()
    });
    let trim = f.opt(cx, "trim").unwrap_or(false);
    // An empty field is how CSV writes null; a database has real NULLs, and its empty
    // strings are values.
    let null: Vec<String> = f.opt(cx, "null").unwrap_or_else(|| if db { Vec::new() } else { vec![String::new()] });
    let inline: Option<HashMap<String, String>> = f.opt(cx, "recode");
    let recode_file_line = f.line_of(cx, "recode_file");
    let recode_file: Option<String> = f.opt(cx, "recode_file");
    let unmapped: Option<Unmapped> = f.opt(cx, "recode_unmapped");
    let nullable = f.opt(cx, "nullable").unwrap_or(true);
    let true_values: Option<Vec<String>> = f.opt(cx, "true_values");
    let false_values: Option<Vec<String>> = f.opt(cx, "false_values");
    let phi: Option<Phi> = f.opt(cx, "phi");
    let rule = crate::rules::load_rule(cx, &mut f, ty, phi);
    let dictionary = f.opt(cx, "dictionary").unwrap_or(true);
    let references_line = f.line_of(cx, "references");
    let references: Option<String> = f.opt(cx, "references");
    if let Some(r) = &references
        && r.split('.').count() != 2
    {
        cx.error(Some(references_line), format!("column: `references = \"{r}\"`: expected TABLE.COLUMN of a mapped table"));
    }
    let line = f.line;
    let what = f.what.clone();
    f.finish(cx, COLUMN_KEYS);

    let recode = match (inline, recode_file) {
        (Some(_), Some(_)) => {
            cx.error(Some(recode_file_line), format!("{what}: use `recode` or `recode_file`, not both"));
            None
        }
        (Some(map), None) => Some(Recode { map, unmapped: unmapped.unwrap_or_default() }),
        (None, Some(file)) => match load_codebook(&resolve(dir, &file), hasher) {
            Ok(map) => Some(Recode { map, unmapped: unmapped.unwrap_or_default() }),
            Err(e) => {
                cx.error(Some(recode_file_line), format!("{what}: `recode_file`: {e}"));
                None
            }
        },
        (None, None) => {
            if unmapped.is_some() {
                cx.error(Some(line), format!("{what}: `recode_unmapped` without `recode` or `recode_file`"));
            }
            None
        }
    };

    if let Some(ty) = ty {
        let temporal = matches!(ty, ColumnType::Date32 | ColumnType::Timestamp | ColumnType::TimestampTz);
        if !formats.is_empty() && !temporal {
            cx.error(Some(format_line), format!("{what}: `format` applies only to date32, timestamp and timestamptz"));
        }
        for fmt in &formats {
            if let Err(e) = crate::temporal::check_format(fmt, ty) {
                cx.error(Some(format_line), format!("{what}: `format`: {e}"));
            }
        }
        if timezone.is_some() && ty != ColumnType::TimestampTz {
            cx.error(Some(tz_line), format!("{what}: `timezone` applies only to timestamptz"));
        }
        if (true_values.is_some() || false_values.is_some()) && ty != ColumnType::Bool {
            cx.error(Some(line), format!("{what}: `true_values`/`false_values` apply only to bool"));
        }
    }

    let name = name?;
    Some(Column {
        from: from.unwrap_or_else(|| name.clone()),
        name,
        line,
        ty: ty?,
        formats,
        timezone,
        trim,
        null,
        recode,
        nullable,
        true_values: true_values.unwrap_or_else(|| ["true", "t", "yes", "y", "1"].map(String::from).to_vec()),
        false_values: false_values.unwrap_or_else(|| ["false", "f", "no", "n", "0"].map(String::from).to_vec()),
        rule: rule?,
        phi,
        dictionary,
        references,
    })
}

/// A codebook CSV: a header, then `code,replacement` rows.
fn load_codebook(path: &Path, hasher: &mut Sha256) -> Result<HashMap<String, String>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    hasher.update(Sha256::digest(&bytes));
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).from_reader(bytes.as_slice());
    let mut map = HashMap::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| format!("{}: record {}: {e}", path.display(), i + 1))?;
        if rec.len() != 2 {
            return Err(format!("{}: record {} has {} fields; expected code,replacement", path.display(), i + 1, rec.len()));
        }
        if map.insert(rec[0].to_owned(), rec[1].to_owned()).is_some() {
            return Err(format!("{}: record {}: code listed twice", path.display(), i + 1));
        }
    }
    Ok(map)
}

fn check_name(cx: &mut FileCx<'_>, line: usize, what: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(['_', '.', '-'])
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        cx.error(
            Some(line),
            format!("{what} name `{name}` is not allowed; use letters, digits, `_` and `-`, not starting with `_`, `.` or `-`"),
        );
    }
}

/// A path relative to `dir` unless absolute (`~/` is the home directory), made absolute
/// and free of `.` and `..` so messages and manifests show where things really are.
pub(crate) fn resolve(dir: &Path, p: &str) -> PathBuf {
    let joined = match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => dir.join(p),
    };
    let abs = std::path::absolute(&joined).unwrap_or(joined);
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Resolves a `file://` destination relative to the plan; checks an `s3://` one.
fn resolve_dest(url: &str, dir: &Path) -> Result<String, String> {
    if let Some(p) = url.strip_prefix("file://")
        && !p.is_empty()
    {
        return Ok(format!("file://{}", resolve(dir, p).display()));
    }
    if url.starts_with("s3://") {
        return check_s3_url(url).map(|()| url.trim_end_matches('/').to_owned());
    }
    Err(format!("unsupported destination `{url}`; expected file://PATH or s3://BUCKET/PREFIX"))
}

/// Checks `s3://BUCKET[/PREFIX]`: a valid bucket name (3 to 63 lowercase letters, digits,
/// `.` and `-`, starting and ending with a letter or digit) and a prefix without empty,
/// `.` or `..` segments.
pub fn check_s3_url(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("s3://").ok_or_else(|| format!("`{url}` is not an s3:// URL"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-';
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !(3..=63).contains(&bucket.len()) || !bucket.chars().all(ok_char) || !edge(bucket.chars().next()) || !edge(bucket.chars().last()) {
        return Err(format!("`{url}`: `{bucket}` is not a valid S3 bucket name (3 to 63 lowercase letters, digits, `.` and `-`)"));
    }
    let prefix = prefix.trim_end_matches('/');
    if !prefix.is_empty() && prefix.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(format!("`{url}`: the key prefix has an empty, `.` or `..` segment"));
    }
    Ok(())
}

fn find_line(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

fn span_of(text: &str, line: usize) -> std::ops::Range<usize> {
    let l = Lines::new(text);
    let s = l.start_of(line);
    s..s
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
