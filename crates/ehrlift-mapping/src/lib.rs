//! Plans and mappings: the TOML a migration engineer writes, checked all at once,
//! and compiled into column kernels over Arrow arrays.
//!
//! A *plan* (`ehrlift.toml`) names the sources, the destination, the keys, the
//! privacy profile and the run settings, and includes *mapping* files, one per
//! output table. Every string may use `${VAR}` and `${VAR:-default}`; relative
//! paths are relative to the file that holds them. Unknown keys are errors, and
//! all errors are reported together with their file and line.

mod diag;
mod fields;
mod interpolate;
pub mod kernel;
mod load;
mod model;
mod rules;
mod temporal;

pub use diag::{Diagnostic, Diagnostics};
pub use interpolate::{Env, ProcessEnv, interpolate};
pub use load::{check_s3_url, load_plan};
pub use model::*;
