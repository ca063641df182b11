//! `ehrlift layout import`: another tool's fixed-width layout as ehrlift layout TOML.

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use ehrlift_core::ErrorClass;

use crate::Failure;

/// Layout formats `layout import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ImportFormat {
    /// NAACCR-style XML (`<fixed-column-layout>` of `<field name start end …>`), as
    /// published by the NAACCR layout projects.
    NaaccrXml,
    /// csvkit's `in2csv --schema` CSV: `column,start,length` (start 0-based).
    Csvkit,
}

/// Reads `input`, converts it and writes the layout TOML to `out` (stdout when `None`).
/// The output always loads as a layout; fields carry no `phi` or `rule` until a person
/// adds them.
pub(crate) fn cmd_import(
    format: ImportFormat,
    input: &Path,
    record_length: Option<usize>,
    out: Option<&PathBuf>,
    force: bool,
) -> Result<u8, Failure> {
    let config = |message: String| Failure { class: ErrorClass::Configuration, message };
    let text = std::fs::read_to_string(input).map_err(|e| config(format!("{}: cannot read: {e}", input.display())))?;
    let toml = match format {
        ImportFormat::NaaccrXml => ehrlift_fixed::import::naaccr_xml(&text, record_length),
        ImportFormat::Csvkit => {
            if record_length.is_some() {
                return Err(config("--record-length applies to --format naaccr-xml".into()));
            }
            ehrlift_fixed::import::csvkit_schema(&text)
        }
    }
    .map_err(|e| config(format!("{}{}: {}", input.display(), e.line.map(|l| format!(":{l}")).unwrap_or_default(), e.message)))?;
    match out {
        None => crate::write_stdout(&toml)?,
        Some(path) => {
            if path.exists() && !force {
                return Err(config(format!("{} exists; pass --force to replace it", path.display())));
            }
            std::fs::write(path, toml)
                .map_err(|e| Failure { class: ErrorClass::Transient, message: format!("{}: cannot write: {e}", path.display()) })?;
            tracing::info!(layout = %path.display(), "layout written; review it and add phi and rule to the fields a mapping reads");
        }
    }
    Ok(0)
}
