//! The webhook-driven pattern: services push events to `POST /hooks/{service}`; Wireline
//! verifies them ([`schemes`]), stores each once ([`ingest`]), and delivers them to agents by
//! signed push, pull or stream ([`delivery`]).
//!
//! Returns problems and replies as data; the binary renders them.

pub mod delivery;
pub mod ingest;
pub mod schemes;

pub use ingest::{Ingest, Received};
