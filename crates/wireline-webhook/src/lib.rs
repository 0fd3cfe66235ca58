//! The webhook-driven pattern: services push events to `POST /hooks/{service}`; Wireline
//! verifies them ([`schemes`]), stores each once ([`ingest`]), and delivers them to agents by
//! signed push, pull or stream ([`delivery`]).
//!
//! Returns problems and replies as data; the binary renders them.

pub mod delivery;
pub mod ingest;
pub mod schemes;
pub mod sightings;

pub use ingest::{Ingest, Received};

/// The dedupe id of a service's event with the provider's id `id`. Webhooks and polls of the
/// same service use it alike, so an event seen by both paths is stored once.
pub fn dedupe_id(service: &str, id: &str) -> String {
    format!("event:{service}:{id}")
}
