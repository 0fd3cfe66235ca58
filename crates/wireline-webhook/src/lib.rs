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

/// Where subjects are in events' data (`[events] subjects`), by type pattern.
#[derive(Debug, Clone, Default)]
pub struct Subjects(Vec<(wireline_core::TypeGlob, String)>);

impl Subjects {
    /// From a valid config (patterns that do not parse are skipped; `check` refuses them).
    pub fn new(config: &wireline_config::model::Config) -> Self {
        Self(
            config
                .events
                .subjects
                .iter()
                .filter_map(|(pattern, path)| Some((pattern.parse().ok()?, path.clone())))
                .collect(),
        )
    }

    /// The subject of an event of type `event_type` with `data`, if a pattern covers it and
    /// its path holds a string or a number.
    pub fn subject(&self, event_type: &str, data: Option<&serde_json::Value>) -> Option<String> {
        let (_, path) = self.0.iter().find(|(glob, _)| glob.matches(event_type))?;
        wireline_core::json::at(data?, path).and_then(wireline_core::json::text)
    }
}
