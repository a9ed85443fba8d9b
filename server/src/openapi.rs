//! The OpenAPI document, generated from the handlers' annotations and the request/response types
//! (the optimizer's types derive `utoipa::ToSchema` too).

use std::sync::OnceLock;

use utoipa::OpenApi;

use crate::error::ErrorBody;
use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "skycat",
        description = "Find the cheapest place to run GPU work: SkyPilot-compatible task, DAG and fleet optimization over a live price catalog."
    ),
    paths(
        routes::optimize::optimize,
        routes::catalog::gpus,
        routes::catalog::offers,
        routes::catalog::status,
        routes::system::healthz,
        routes::system::metrics,
        routes::system::openapi,
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "optimize", description = "Plans: single task, DAG, fleet"),
        (name = "catalog", description = "The price catalog in service"),
        (name = "system", description = "Health, metrics, this document"),
    )
)]
pub struct ApiDoc;

/// The document as JSON, built once.
pub fn document_json() -> String {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")))
        .clone()
}
