//! `wireline call SERVICE OP --param k=v`: one named operation, in-process, as the operator.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::{Map, Value};
use wireline_direct::{Caller, Direct, OperationRequest};
use wireline_store::Store;

pub fn run(
    path: &Path,
    service: &str,
    operation: &str,
    params: &[String],
    idempotency_key: Option<String>,
) -> anyhow::Result<()> {
    let loaded = super::load_config(path)?;
    let mut object = Map::new();
    for param in params {
        let (name, value) = param
            .split_once('=')
            .with_context(|| format!("--param {param:?} has no '='; write --param name=value"))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        object.insert(name.to_owned(), value);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = super::open_store(&loaded)?;
        let shared: Arc<dyn Store> = Arc::clone(&store);
        let direct =
            Direct::new(&loaded.config, &loaded.base_dir, shared).map_err(anyhow::Error::msg)?;
        let request = OperationRequest {
            caller: Caller::Operator,
            service: service.to_owned(),
            operation: operation.to_owned(),
            params: Value::Object(object),
            idempotency_key,
        };
        let result = direct.operation(request).await;
        direct.shutdown().await;
        store.close().await?;
        match result {
            Ok(reply) => {
                let status = reply.status();
                std::io::stdout().write_all(reply.body())?;
                println!();
                if !status.is_success() {
                    bail!("{service} answered {status} to {operation}; the body above says why");
                }
                Ok(())
            }
            Err(problem) => bail!("{}", problem.detail),
        }
    })
}
