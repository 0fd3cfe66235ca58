//! `wireline schema`: the JSON Schema of wireline.toml, or its Markdown reference.

use crate::cli::SchemaFormat;

pub fn run(format: SchemaFormat) -> anyhow::Result<()> {
    match format {
        SchemaFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&wireline_config::json_schema())?
        ),
        SchemaFormat::Markdown => print!("{}", wireline_config::reference_markdown()),
    }
    Ok(())
}
