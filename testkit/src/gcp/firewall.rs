//! firewalls.insert / firewalls.patch of the emulation: schema-checked, answered with a global
//! Operation whose effect lands when it is DONE.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::{error, invalid, new_op, not_found, schema, Effect, State, LINK_HOST};

pub(super) fn firewall_insert(st: &mut State, body: Value) -> Response {
    if let Err(why) = schema::firewall(&body, true) {
        return invalid(st, "firewalls.insert", why);
    }
    let name = body["name"].as_str().unwrap_or_default().to_string();
    if st.firewalls.contains_key(&name) || st.ops.iter().any(|o| o.status != "DONE" && matches!(&o.effect, Effect::FirewallInsert(v) if v["name"] == name.as_str())) {
        return error(StatusCode::CONFLICT, "alreadyExists", &format!("The resource 'projects/{}/global/firewalls/{name}' already exists", st.cfg.project));
    }
    let mut stored = body.clone();
    stored["kind"] = json!("compute#firewall");
    stored["selfLink"] = json!(format!("{LINK_HOST}projects/{}/global/firewalls/{name}", st.cfg.project));
    let link = stored["selfLink"].as_str().unwrap_or_default().to_string();
    new_op(st, None, "insert", link, Effect::FirewallInsert(stored))
}

pub(super) fn firewall_patch(st: &mut State, name: &str, body: Value) -> Response {
    if let Err(why) = schema::firewall(&body, false) {
        return invalid(st, "firewalls.patch", why);
    }
    if !st.firewalls.contains_key(name) {
        return not_found(&format!("projects/{}/global/firewalls/{name}", st.cfg.project));
    }
    let link = format!("{LINK_HOST}projects/{}/global/firewalls/{name}", st.cfg.project);
    new_op(st, None, "patch", link, Effect::FirewallPatch(name.into(), body))
}
