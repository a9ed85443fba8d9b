//! The EMULATION's Microsoft.Compute virtual machines: create (schema and semantic checks,
//! injected faults), get, instance view, deallocate, start, simulated eviction, delete.

use std::collections::BTreeMap;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{arm_error, evict, new_op, parse, reject, schema, Effect, Fault, State, Vm, VmPut, VmView};

fn instance_view(v: &Vm) -> Value {
    let mut statuses = vec![];
    let p = v.view.provisioning.to_ascii_lowercase();
    if p == "failed" {
        let code = v.view.body.get("failure").and_then(Value::as_str).unwrap_or("AllocationFailed").to_string();
        statuses.push(json!({"code": format!("ProvisioningState/failed/{code}"), "level": "Error", "displayStatus": "Provisioning failed"}));
    } else {
        statuses.push(json!({"code": format!("ProvisioningState/{p}"), "level": "Info", "displayStatus": format!("Provisioning {p}")}));
    }
    if !v.view.power.is_empty() {
        statuses.push(json!({"code": format!("PowerState/{}", v.view.power), "level": "Info", "displayStatus": format!("VM {}", v.view.power)}));
    }
    json!({"computerName": v.view.name, "osName": "ubuntu", "hyperVGeneration": "V2", "statuses": statuses})
}

fn vm_json(v: &Vm) -> Value {
    let mut b = v.view.body.clone();
    if let Some(o) = b.as_object_mut() {
        o.remove("failure");
    }
    b["id"] = json!(v.view.id);
    b["name"] = json!(v.view.name);
    b["type"] = json!("Microsoft.Compute/virtualMachines");
    b["properties"]["vmId"] = json!(v.vm_id);
    b["properties"]["provisioningState"] = json!(v.view.provisioning);
    b
}

#[allow(clippy::too_many_arguments)]
pub(super) fn compute(st: &mut State, method: &Method, action: Option<&str>, id: &str, key: &str, name: &str, group: &str, query: &BTreeMap<String, String>, body: &[u8], what: &str) -> Response {
    let not_found = || arm_error(StatusCode::NOT_FOUND, "ResourceNotFound", &format!("The Resource 'Microsoft.Compute/virtualMachines/{name}' under resource group '{group}' was not found."), None);
    match (method.clone(), action) {
        (Method::GET, None) => match st.vms.get(key) {
            Some(v) => {
                let mut b = vm_json(v);
                if query.get("$expand").map(String::as_str) == Some("instanceView") {
                    b["properties"]["instanceView"] = instance_view(v);
                }
                axum::Json(b).into_response()
            }
            None => not_found(),
        },
        (Method::GET, Some("instanceview")) => match st.vms.get(key) {
            Some(v) => axum::Json(instance_view(v)).into_response(),
            None => not_found(),
        },
        (Method::PUT, None) => create_vm(st, id, key, name, group, body, what),
        (Method::POST, Some(a @ ("deallocate" | "start"))) => {
            let Some(v) = st.vms.get_mut(key) else { return not_found() };
            if v.view.provisioning != "Succeeded" {
                let m = format!("Operation '{a}' is not allowed on VM '{name}' since the VM is in provisioning state {}.", v.view.provisioning);
                return arm_error(StatusCode::CONFLICT, "OperationNotAllowed", &m, None);
            }
            let (power, effect) = if a == "deallocate" {
                ("deallocating", Effect::VmDeallocated(key.to_string()))
            } else {
                ("starting", Effect::VmStarted(key.to_string()))
            };
            v.view.power = power.into();
            let loc = v.view.location.clone();
            let (_, headers) = new_op(st, &loc, None, effect);
            let mut r = StatusCode::ACCEPTED.into_response();
            r.headers_mut().extend(headers);
            r
        }
        (Method::POST, Some("simulateeviction")) => {
            if !st.vms.get(key).is_some_and(|v| v.view.spot) {
                return arm_error(StatusCode::CONFLICT, "OperationNotAllowed", "Simulate eviction is only supported for Spot VMs.", None);
            }
            evict(st, key);
            StatusCode::NO_CONTENT.into_response()
        }
        (Method::DELETE, None) => {
            let Some(v) = st.vms.get_mut(key) else { return StatusCode::NO_CONTENT.into_response() };
            v.view.provisioning = "Deleting".into();
            let loc = v.view.location.clone();
            let (_, headers) = new_op(st, &loc, None, Effect::VmDeleted(key.to_string()));
            let mut r = StatusCode::ACCEPTED.into_response();
            r.headers_mut().extend(headers);
            r
        }
        _ => reject(st, what.to_string(), StatusCode::NOT_FOUND, "InvalidResourceType", "The resource type could not be found.", None),
    }
}

const RESERVED_USERS: &[&str] = &["administrator", "admin", "user", "user1", "test", "root", "guest", "sys", "support", "server", "sql", "owner", "console", "backup", "adm"];

fn create_vm(st: &mut State, id: &str, key: &str, name: &str, group: &str, body: &[u8], what: &str) -> Response {
    let v = match parse(st, body, &schema::VM, what) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
    let (location, size) = (s("/location").to_ascii_lowercase(), s("/properties/hardwareProfile/vmSize"));
    let bad = |st: &mut State, code: &str, m: &str, t: &str| reject(st, what.to_string(), StatusCode::BAD_REQUEST, code, m, Some(t));
    if st.vms.contains_key(key) {
        return bad(st, "PropertyChangeNotAllowed", "Changing property 'osProfile' is not allowed.", "osProfile");
    }
    if !size.starts_with("Standard_") {
        return bad(st, "InvalidParameter", &format!("The value {size} provided for the VM size is not valid."), "vmSize");
    }
    let admin = s("/properties/osProfile/adminUsername");
    if RESERVED_USERS.contains(&admin.to_ascii_lowercase().as_str()) {
        return bad(st, "InvalidParameter", "The Admin Username specified is not allowed.", "adminUsername");
    }
    let keys: Vec<String> = v
        .pointer("/properties/osProfile/linuxConfiguration/ssh/publicKeys")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|k| k["keyData"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if keys.iter().any(|k| !(k.starts_with("ssh-rsa ") || k.starts_with("ssh-ed25519 "))) {
        return bad(st, "InvalidParameter", "The value of parameter linuxConfiguration.ssh.publicKeys.keyData is invalid.", "linuxConfiguration.ssh.publicKeys.keyData");
    }
    let disable_pw = v.pointer("/properties/osProfile/linuxConfiguration/disablePasswordAuthentication").and_then(Value::as_bool).unwrap_or(false);
    if disable_pw && keys.is_empty() {
        return bad(st, "InvalidParameter", "Authentication using either SSH or by user name and password must be enabled in Linux profile.", "linuxConfiguration");
    }
    if !disable_pw && v.pointer("/properties/osProfile/adminPassword").is_none() {
        return bad(st, "InvalidParameter", "Required parameter 'adminPassword' is missing (null).", "adminPassword");
    }
    let priority = s("/properties/priority");
    let spot = priority.eq_ignore_ascii_case("Spot");
    if !spot && v.pointer("/properties/evictionPolicy").is_some() {
        return bad(st, "EvictionPolicyCanBeSetOnlyOnAzureSpotVirtualMachines", "Eviction policy can be set only on Azure Spot Virtual Machines.", "evictionPolicy");
    }
    if let Some(p) = v.pointer("/properties/billingProfile/maxPrice").and_then(Value::as_f64) {
        if !spot || (p != -1.0 && p <= 0.0) {
            return bad(st, "MaxPriceValueInvalid", "Max price value is invalid: -1 or a positive price in USD is expected, on Spot VMs only.", "billingProfile.maxPrice");
        }
    }
    let nic = s("/properties/networkProfile/networkInterfaces/0/id");
    if !st.resources.contains_key(&nic.to_ascii_lowercase()) || !nic.to_ascii_lowercase().contains("/microsoft.network/networkinterfaces/") {
        let m = format!("Resource {nic} referenced by resource {id} was not found.");
        return reject(st, what.to_string(), StatusCode::BAD_REQUEST, "InvalidResourceReference", &m, None);
    }
    if let Some(f @ (Fault::SkuNotAvailable | Fault::Quota)) = st.faults.get(&location).copied() {
        let (code, m) = if f == Fault::SkuNotAvailable {
            ("SkuNotAvailable", format!("The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: {size}' is currently not available in location '{location}'. Please try another size or deploy to a different location or different zone. See https://aka.ms/azureskunotavailable for details."))
        } else {
            ("OperationNotAllowed", format!("Operation could not be completed as it results in exceeding approved Total Regional Cores quota. Additional details - Deployment Model: Resource Manager, Location: {location}, Current Limit: 0, Current Usage: 0, Additional Required: 6, (Minimum) New Limit Required: 6."))
        };
        st.vm_puts.push(VmPut { location, size, outcome: Err(code.into()) });
        return arm_error(StatusCode::CONFLICT, code, &m, None);
    }
    let failure = match st.faults.get(&location) {
        Some(Fault::AllocationFailed) => Some(("AllocationFailed", "Allocation failed. We do not have sufficient capacity for the requested VM size in this region. Read more about improving likelihood of allocation success at http://aka.ms/allocation-guidance")),
        Some(Fault::ZonalAllocationFailed) => Some(("ZonalAllocationFailed", "Allocation failed. We do not have sufficient capacity for the requested VM size in this zone. Read more about improving likelihood of allocation success at http://aka.ms/allocation-guidance")),
        _ => None,
    };
    let public_ip = st
        .resources
        .get(&nic.to_ascii_lowercase())
        .and_then(|n| n.body.pointer("/properties/ipConfigurations/0/properties/publicIPAddress/id").and_then(Value::as_str).map(str::to_ascii_lowercase))
        .and_then(|ip| st.resources.get(&ip))
        .and_then(|ip| ip.body.pointer("/properties/ipAddress").and_then(Value::as_str).map(str::to_string));
    let mut stored = v.clone();
    if let Some((code, _)) = failure {
        stored["failure"] = json!(code);
    }
    let vm = Vm {
        view: VmView {
            id: id.to_string(),
            name: name.to_string(),
            resource_group: group.to_string(),
            location: location.clone(),
            size: size.clone(),
            provisioning: "Creating".into(),
            power: "starting".into(),
            spot,
            admin_username: admin,
            ssh_keys: keys,
            public_ip,
            body: stored,
        },
        nic: nic.clone(),
        vm_id: format!("{:08x}-aaaa-4bbb-8ccc-{:012x}", st.next_op, st.vms.len() + 1),
    };
    let out = vm_json(&vm);
    st.vms.insert(key.to_string(), vm);
    let (effect, error) = match failure {
        Some((code, m)) => (Effect::VmFailed(key.to_string()), Some((code.to_string(), m.to_string()))),
        None => (Effect::VmCreated(key.to_string()), None),
    };
    st.vm_puts.push(VmPut { location: location.clone(), size, outcome: match &error { Some((c, _)) => Err(c.clone()), None => Ok(name.to_string()) } });
    let (_, headers) = new_op(st, &location, error, effect);
    let mut r = (StatusCode::CREATED, axum::Json(out)).into_response();
    r.headers_mut().extend(headers);
    r
}

