//! `ehrlift read`: the rows of Parquet objects on stdout, decrypted for a reader who
//! holds the keys. Rows may be PHI: stdout only, never a log line.

use std::io::Write;

use clap::ValueEnum;
use ehrlift_core::ErrorClass;
use ehrlift_load::ObjectStore;
use ehrlift_mapping::{CloudSettings, KeysConfig, Plan};
use ehrlift_pipeline::DestOverrides;

use crate::{Failure, config};

/// Output format of `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// CSV with a header line.
    Csv,
    /// One JSON object per line.
    Json,
}

/// Splits a URL into the store holding it and the object keys to read: one object, or
/// every `.parquet` under a prefix, in key order.
fn objects(url: &str, project: &str, cloud: &CloudSettings) -> Result<(Box<dyn ObjectStore>, Vec<String>), Failure> {
    let trimmed = url.trim_end_matches('/');
    let (parent, name) = match trimmed.rsplit_once('/') {
        Some((p, n)) if !n.is_empty() && !p.ends_with(':') && !p.ends_with("s3:/") => (p, n),
        _ => return Err(config(format!("`{url}`: expected an object or a table prefix under a destination"))),
    };
    let store = ehrlift_pipeline::open_destination(parent, project, cloud, &DestOverrides::default())?;
    if name.ends_with(".parquet") {
        return Ok((store, vec![name.to_owned()]));
    }
    let keys: Vec<String> = store
        .list(&format!("{name}/"))
        .map_err(|e| Failure { class: e.class(), message: e.to_string() })?
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.ends_with(".parquet"))
        .collect();
    if keys.is_empty() {
        return Err(config(format!("no .parquet object under `{url}`")));
    }
    Ok((store, keys))
}

pub fn cmd_read(
    url: &str,
    columns: &[String],
    format: Format,
    limit: Option<usize>,
    plan: Option<&Plan>,
    cloud: &CloudSettings,
) -> Result<u8, Failure> {
    let (store, keys) = objects(url, plan.map_or("", |p| p.project.as_str()), cloud)?;
    // Local column keys unwrap with the plan's project key, when its keyring holds one. A
    // keyring that cannot be read (permissions, a damaged file) is that error, not "no key".
    let local_key = match plan.map(|p| (&p.keys, p)) {
        Some((KeysConfig::Local { .. }, p)) => {
            let provider = ehrlift_pipeline::key_provider(p, None)?;
            provider.load().map_err(|e| Failure { class: e.class(), message: format!("the plan's keyring: {e}") })?
        }
        _ => None,
    };
    let unwrap = ehrlift_pipeline::key_unwrapper(cloud, local_key);
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    // The CSV writer puts the header before the first batch only.
    let mut sink = match format {
        Format::Csv => Sink::Csv(Box::new(arrow_csv::WriterBuilder::new().with_header(true).build(out))),
        Format::Json => Sink::Json(arrow_json::LineDelimitedWriter::new(out)),
    };
    let stdout_err = |e: &dyn std::fmt::Display| Failure { class: ErrorClass::Transient, message: format!("writing to stdout: {e}") };
    let mut left = limit.unwrap_or(usize::MAX);
    for key in &keys {
        if left == 0 {
            break;
        }
        let bytes = store
            .get(key)
            .map_err(|e| Failure { class: e.class(), message: e.to_string() })?
            .ok_or_else(|| config(format!("`{key}` does not exist at {}", store.url())))?;
        let builder = ehrlift_load::open_parquet(bytes.into(), Some(unwrap.clone())).map_err(|e| config(format!("{key}: {e}")))?;
        let builder = if columns.is_empty() {
            builder
        } else {
            ehrlift_load::project(builder, columns).map_err(|e| config(format!("{key}: {e}")))?
        };
        let reader = builder.build().map_err(|e| config(format!("{key}: {e}")))?;
        for batch in reader {
            let batch = batch.map_err(|e| config(format!("{key}: {e}")))?;
            let batch = batch.slice(0, batch.num_rows().min(left));
            left -= batch.num_rows();
            match &mut sink {
                Sink::Csv(w) => w.write(&batch),
                Sink::Json(w) => w.write(&batch),
            }
            .map_err(|e| stdout_err(&e))?;
            if left == 0 {
                break;
            }
        }
    }
    let mut out = match sink {
        Sink::Csv(w) => w.into_inner(),
        Sink::Json(mut w) => {
            w.finish().map_err(|e| stdout_err(&e))?;
            w.into_inner()
        }
    };
    out.flush().map_err(|e| stdout_err(&e))?;
    Ok(0)
}

type Out = std::io::BufWriter<std::io::StdoutLock<'static>>;

enum Sink {
    Csv(Box<arrow_csv::Writer<Out>>),
    Json(arrow_json::LineDelimitedWriter<Out>),
}
