//! A minimal OpenAPI v3 document, enough for kubectl's field-validation probe
//! (k8s.io/cli-runtime resource/query_param_verifier_v3.go): `/openapi/v3` lists the `api/v1`
//! group-version, and its document declares, for the PATCH operations of Pod and Service, the
//! `fieldValidation` query parameter. kubectl then leaves validation to the server
//! (`?fieldValidation=Strict`), which is what this emulation does anyway. It is not the full
//! Kubernetes OpenAPI: schemas are absent, so clients that validate or explain from schemas
//! (`kubectl explain`, client-side validation) are not served.

use serde_json::{json, Value};

/// `/openapi/v3`: the group-versions and where their documents are.
pub fn discovery() -> Value {
    json!({"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"}}})
}

fn patch_operation(kind: &str, plural: &str) -> Value {
    json!({
        "tags": ["core_v1"],
        "description": format!("partially update the specified {kind}"),
        "operationId": format!("patchCoreV1Namespaced{kind}"),
        "parameters": [
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldValidation", "in": "query", "description": "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields.", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}}
        ],
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": kind},
        "x-kubernetes-resource": plural
    })
}

/// `/openapi/v3/api/v1`: the PATCH operations of the kinds kubectl creates here.
pub fn core_v1() -> Value {
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": super::objects::KUBELET_VERSION},
        "paths": {
            "/api/v1/namespaces/{namespace}/pods/{name}": {"patch": patch_operation("Pod", "pods")},
            "/api/v1/namespaces/{namespace}/services/{name}": {"patch": patch_operation("Service", "services")}
        },
        "components": {"schemas": {}}
    })
}
