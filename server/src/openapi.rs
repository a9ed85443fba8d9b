//! The OpenAPI document, generated from the handlers' annotations and the request/response types
//! (the optimizer's types derive `utoipa::ToSchema` too).

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;
use crate::routes;

/// Bearer API tokens on every operation (the document's default), the agents' cluster tokens on
/// the heartbeat route; `/healthz` overrides it with no security.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let comps = doc.components.get_or_insert_with(Default::default);
        comps.add_security_scheme(
            "api_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token from `skycat serve token create`. Always required on /v1/*; on /optimize, /catalog/*, /metrics and /openapi.json unless the server runs with --public-read (the default on loopback only).",
                    ))
                    .build(),
            ),
        );
        comps.add_security_scheme(
            "cluster_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The cluster's agent token, handed to its agents at launch; valid for that cluster only."))
                    .build(),
            ),
        );
        doc.security = Some(vec![SecurityRequirement::new("api_token", Vec::<String>::new())]);
    }
}

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
    modifiers(&Security),
    tags(
        (name = "optimize", description = "Plans: single task, DAG, fleet"),
        (name = "catalog", description = "The price catalog in service"),
        (name = "system", description = "Health, metrics, this document"),
        (name = "jobs", description = "Managed jobs (with the `control` feature)"),
        (name = "agents", description = "Agent reports (with the `control` feature)"),
    )
)]
pub struct ApiDoc;

/// The document as JSON, built once.
pub fn document_json() -> String {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        #[allow(unused_mut)]
        let mut doc = ApiDoc::openapi();
        #[cfg(feature = "control")]
        {
            doc.merge(routes::jobs::JobsDoc::openapi());
            doc.merge(routes::uploads::UploadsDoc::openapi());
        }
        doc.to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    })
    .clone()
}
