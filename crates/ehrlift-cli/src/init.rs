//! `ehrlift init`: a plan and one mapping per table, scaffolded from a database's catalog.
//!
//! The scaffold fails closed: every column init is not sure of is dropped with a REVIEW
//! comment, and the plan is loaded and checked against its Safe Harbor profile before
//! init says it is done. The URL is never written to a file (the plan reads it from
//! `EHRLIFT_SOURCE_URL`), and sampled values stay in memory.

use std::path::Path;

use ehrlift_core::ErrorClass;
use ehrlift_extract::sql::{introspect, scaffold};
use ehrlift_mapping::{Env, load_plan, redact_url};

use crate::{Failure, config};

/// Options of `init`.
pub(crate) struct InitOptions<'a> {
    pub url: &'a str,
    pub schema: Option<&'a str>,
    pub out: &'a Path,
    pub project: Option<&'a str>,
    pub sample_rows: u32,
    pub force: bool,
}

/// The plan's environment while init checks what it wrote: the process's, with the URL
/// the scaffold reads from `EHRLIFT_SOURCE_URL`.
struct CheckEnv<'a>(&'a str);

impl Env for CheckEnv<'_> {
    fn var(&self, name: &str) -> Option<String> {
        if name == "EHRLIFT_SOURCE_URL" { Some(self.0.to_owned()) } else { std::env::var(name).ok() }
    }
}

pub(crate) fn cmd_init(o: &InitOptions<'_>) -> Result<u8, Failure> {
    let plan_path = o.out.join("ehrlift.toml");
    if plan_path.exists() && !o.force {
        return Err(config(format!("{} exists; pass --force to overwrite the scaffold", plan_path.display())));
    }
    let project = match o.project {
        Some(p) => p.to_owned(),
        None => o
            .out
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| config("cannot name the project after --out; pass --project NAME"))?,
    };
    // SQLite paths are written into the plan: make them absolute, so the plan finds the
    // file from its own directory.
    let url = match o.url.strip_prefix("sqlite://").or_else(|| o.url.strip_prefix("sqlite:")) {
        Some(p) if !p.starts_with('/') => {
            let (path, query) = p.split_once('?').map_or((p, None), |(a, b)| (a, Some(b)));
            let abs = std::path::absolute(path).map_err(|e| config(format!("sqlite path: {e}")))?;
            format!("sqlite://{}{}", abs.display(), query.map(|q| format!("?{q}")).unwrap_or_default())
        }
        _ => o.url.to_owned(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure { class: ErrorClass::Internal, message: format!("cannot start a runtime: {e}") })?;
    let schema = rt
        .block_on(introspect::introspect(&url, o.schema, o.sample_rows))
        .map_err(|e| Failure { class: e.class(), message: e.to_string() })?;
    let s = scaffold::scaffold(&schema, &project, "legacy", &redact_url(&url));
    let tables_dir = o.out.join("tables");
    std::fs::create_dir_all(&tables_dir).map_err(|e| config(format!("cannot create {}: {e}", tables_dir.display())))?;
    let write = |p: &Path, text: &str| std::fs::write(p, text).map_err(|e| config(format!("cannot write {}: {e}", p.display())));
    write(&plan_path, &s.plan)?;
    for (name, text) in &s.mappings {
        write(&tables_dir.join(name), text)?;
    }
    // The scaffold must load and satisfy its profile as written; anything else is a bug.
    let plan = load_plan(&plan_path, &CheckEnv(&url))
        .map_err(|d| Failure { class: ErrorClass::Internal, message: format!("the scaffold does not load (a bug in init):\n{d}") })?;
    let violations = ehrlift_deid::policy::check(&plan);
    if !violations.is_empty() {
        let lines: Vec<String> = violations.iter().map(ToString::to_string).collect();
        return Err(Failure {
            class: ErrorClass::Internal,
            message: format!("the scaffold breaks its profile (a bug in init):\n{}", lines.join("\n")),
        });
    }
    let columns: usize = schema.tables.iter().map(|t| t.columns.len()).sum();
    eprintln!(
        "wrote {} and {} mapping(s) under {}: {} table(s), {} column(s), {} marked REVIEW (dropped until a person classifies them)",
        plan_path.display(),
        s.mappings.len(),
        tables_dir.display(),
        schema.tables.len(),
        columns,
        s.review.len()
    );
    for r in &s.review {
        eprintln!("  REVIEW {r}");
    }
    eprintln!("next: export EHRLIFT_SOURCE_URL=...; ehrlift validate {}", plan_path.display());
    Ok(0)
}
