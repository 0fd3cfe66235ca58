//! The starter files `wireline init` writes; tests load them exactly as written.

/// A commented `wireline.toml` that passes `wireline check` with the `.env` that init writes.
pub const STARTER_CONFIG: &str = include_str!("starter.toml");

/// `.env.example`: every variable the starter config refers to, with a placeholder.
pub const STARTER_ENV_EXAMPLE: &str = include_str!("starter.env.example");
