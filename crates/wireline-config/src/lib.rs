//! `wireline.toml`: the typed model, secret references, loading with precise errors, and the
//! lints that `wireline check` reports.
//!
//! Loading is one function, [`load`]: parse the TOML, scan every string for things that look
//! like real credentials, deserialize into the strict [`model`], validate cross-references, and
//! resolve every secret reference (`${env:NAME}`, `${file:PATH}`, with a `.env` beside the file).
//! Every problem found comes back as a [`Finding`] naming file, line, column and key path, with
//! the fix; as many as can be found in one pass, not just the first.
//!
//! This crate reads the config file, its `.env` and `${file:...}` secrets; it opens no sockets
//! and starts nothing.
#![warn(missing_docs)]

pub mod keys;
pub mod leaks;
mod load;
pub mod model;
pub mod poll;
mod reference;
mod scan;
pub mod secret;
mod starter;
mod validate;

pub use load::{Finding, Loaded, Severity, load, load_in, load_str, load_str_in};
pub use model::Config;
pub use reference::{json_schema, reference_markdown};
pub use secret::{Env, Secret};
pub use starter::{STARTER_CONFIG, STARTER_ENV_EXAMPLE};
