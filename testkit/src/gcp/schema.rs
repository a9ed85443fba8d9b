//! Request-body checks of the GCP emulation, after the Compute v1 discovery document's `Instance`
//! and `Firewall` schemas (the fields listed are the schema's writable fields; an unknown name is
//! refused as the API's JSON parser refuses it, and so are a wrong type, a bad enum value and a
//! missing required field).

use serde_json::{Map, Value};

const INSTANCE_FIELDS: &[&str] = &[
    "name", "description", "machineType", "disks", "networkInterfaces", "guestAccelerators", "scheduling", "metadata",
    "labels", "tags", "serviceAccounts", "minCpuPlatform", "canIpForward", "deletionProtection", "hostname",
    "shieldedInstanceConfig", "confidentialInstanceConfig", "reservationAffinity", "resourcePolicies",
    "advancedMachineFeatures", "displayDevice", "params", "privateIpv6GoogleAccessType", "networkPerformanceConfig",
    "keyRevocationActionType", "sourceMachineImage", "labelFingerprint",
];
const DISK_FIELDS: &[&str] = &["boot", "autoDelete", "initializeParams", "type", "mode", "deviceName", "source", "interface"];
const INIT_FIELDS: &[&str] = &["sourceImage", "diskSizeGb", "diskType", "diskName", "labels", "provisionedIops", "provisionedThroughput"];
const NIC_FIELDS: &[&str] = &["network", "subnetwork", "accessConfigs", "networkIP", "stackType", "nicType", "queueCount"];
const ACCESS_FIELDS: &[&str] = &["type", "name", "networkTier", "natIP", "setPublicPtr"];
const ACCEL_FIELDS: &[&str] = &["acceleratorType", "acceleratorCount"];
const SCHED_FIELDS: &[&str] = &[
    "onHostMaintenance", "automaticRestart", "preemptible", "provisioningModel", "instanceTerminationAction",
    "nodeAffinities", "minNodeCpus", "maxRunDuration", "terminationTime", "localSsdRecoveryTimeout",
];
const FIREWALL_FIELDS: &[&str] = &[
    "name", "description", "network", "priority", "direction", "allowed", "denied", "sourceRanges", "destinationRanges",
    "sourceTags", "targetTags", "sourceServiceAccounts", "targetServiceAccounts", "disabled", "logConfig",
];
/// The accelerator types the emulated zones have.
pub const ACCELERATOR_TYPES: &[&str] = &[
    "nvidia-tesla-t4", "nvidia-tesla-p4", "nvidia-tesla-v100", "nvidia-tesla-p100", "nvidia-tesla-k80", "nvidia-l4",
    "nvidia-tesla-a100", "nvidia-a100-80gb", "nvidia-h100-80gb",
];

type Check = Result<(), String>;

fn unknown(obj: &Map<String, Value>, allowed: &[&str], at: &str) -> Check {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("Invalid JSON payload received. Unknown name \"{k}\" at '{at}': Cannot find field.")),
        None => Ok(()),
    }
}

fn object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object().ok_or_else(|| format!("Invalid JSON payload received. '{at}' must be an object."))
}

fn array<'a>(v: &'a Value, at: &str) -> Result<&'a Vec<Value>, String> {
    v.as_array().ok_or_else(|| format!("Invalid JSON payload received. '{at}' must be a list."))
}

fn string<'a>(v: &'a Value, at: &str) -> Result<&'a str, String> {
    v.as_str().ok_or_else(|| format!("Invalid JSON payload received. Invalid value at '{at}' ({v}): expected a string."))
}

fn boolean(v: &Value, at: &str) -> Check {
    v.as_bool().map(|_| ()).ok_or_else(|| format!("Invalid JSON payload received. Invalid value at '{at}' ({v}): expected a boolean."))
}

fn enum_of(v: &Value, at: &str, values: &[&str]) -> Check {
    let s = string(v, at)?;
    if values.contains(&s) {
        Ok(())
    } else {
        Err(format!("Invalid value for field '{at}': '{s}'. Must be one of {values:?}."))
    }
}

/// int64 fields: a JSON string of digits (or a number, which the parser also takes).
fn int64(v: &Value, at: &str) -> Result<i64, String> {
    match v {
        Value::String(s) => s.parse().map_err(|_| format!("Invalid value at '{at}' (TYPE_INT64), \"{s}\"")),
        Value::Number(n) => n.as_i64().ok_or_else(|| format!("Invalid value at '{at}' (TYPE_INT64), {n}")),
        _ => Err(format!("Invalid value at '{at}' (TYPE_INT64), {v}")),
    }
}

/// A resource name: `[a-z]([-a-z0-9]{0,61}[a-z0-9])?`.
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && !n.ends_with('-')
        && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn label_ok(k: &str, v: &str) -> bool {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
    k.len() <= 63 && k.starts_with(|c: char| c.is_ascii_lowercase()) && k.chars().all(ok) && v.len() <= 63 && v.chars().all(ok)
}

/// The last path segments of a partial or full resource URL, after `zones/{zone}/`.
fn zonal<'a>(v: &'a str, zone: &str, kind: &str) -> Option<&'a str> {
    let i = v.find(&format!("zones/{zone}/{kind}/"))?;
    let rest = &v[i + format!("zones/{zone}/{kind}/").len()..];
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

/// What an accepted insert asks for, for the emulator to keep.
#[derive(Debug)]
pub struct InsertSpec {
    pub name: String,
    pub machine_type: String,
    pub spot: bool,
    pub termination_action: String,
    pub ssh_keys: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub tags: Vec<String>,
}

/// Checks an instances.insert body for zone `zone`.
pub fn instance_insert(body: &Value, zone: &str) -> Result<InsertSpec, String> {
    let o = object(body, "resource")?;
    unknown(o, INSTANCE_FIELDS, "resource")?;
    let name = string(o.get("name").ok_or("Required field 'resource.name' not specified")?, "resource.name")?;
    if !valid_name(name) {
        return Err(format!("Invalid value for field 'resource.name': '{name}'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{{0,61}}[a-z0-9])?)'"));
    }
    let mt = string(o.get("machineType").ok_or("Required field 'resource.machineType' not specified")?, "resource.machineType")?;
    let machine_type = zonal(mt, zone, "machineTypes")
        .ok_or_else(|| format!("Invalid value for field 'resource.machineType': '{mt}'. Machine type must be in zone {zone}."))?
        .to_string();
    let family = machine_type.split('-').next().unwrap_or_default();
    let bundled_gpu = matches!(family, "a2" | "a3" | "a4" | "g2");

    let disks = array(o.get("disks").ok_or("Required field 'resource.disks' not specified")?, "resource.disks")?;
    if !disks.iter().any(|d| d.get("boot") == Some(&Value::Bool(true))) {
        return Err("Invalid value for field 'resource.disks': a boot disk is required.".into());
    }
    for (i, d) in disks.iter().enumerate() {
        let at = format!("resource.disks[{i}]");
        let d = object(d, &at)?;
        unknown(d, DISK_FIELDS, &at)?;
        for b in ["boot", "autoDelete"] {
            if let Some(v) = d.get(b) {
                boolean(v, &format!("{at}.{b}"))?;
            }
        }
        if let Some(p) = d.get("initializeParams") {
            let at = format!("{at}.initializeParams");
            let p = object(p, &at)?;
            unknown(p, INIT_FIELDS, &at)?;
            let img = string(p.get("sourceImage").ok_or(format!("Required field '{at}.sourceImage' not specified"))?, &at)?;
            if !(img.contains("/global/images/") || img.starts_with("global/images/")) {
                return Err(format!("Invalid value for field '{at}.sourceImage': '{img}'. The referenced image resource cannot be found."));
            }
            if let Some(s) = p.get("diskSizeGb") {
                let gb = int64(s, &format!("{at}.diskSizeGb"))?;
                if !(10..=65536).contains(&gb) {
                    return Err(format!("Invalid value for field '{at}.diskSizeGb': '{gb}'. Disk size must be 10-65536 GB."));
                }
            }
        }
    }

    let nics = array(o.get("networkInterfaces").ok_or("Required field 'resource.networkInterfaces' not specified")?, "resource.networkInterfaces")?;
    if nics.is_empty() {
        return Err("Invalid value for field 'resource.networkInterfaces': at least one is required.".into());
    }
    for (i, n) in nics.iter().enumerate() {
        let at = format!("resource.networkInterfaces[{i}]");
        let n = object(n, &at)?;
        unknown(n, NIC_FIELDS, &at)?;
        if let Some(net) = n.get("network") {
            let s = string(net, &format!("{at}.network"))?;
            if !s.contains("global/networks/") {
                return Err(format!("Invalid value for field '{at}.network': '{s}'. The referenced network resource cannot be found."));
            }
        }
        for (k, a) in array(n.get("accessConfigs").unwrap_or(&Value::Array(vec![])), &format!("{at}.accessConfigs"))?.iter().enumerate() {
            let at = format!("{at}.accessConfigs[{k}]");
            let a = object(a, &at)?;
            unknown(a, ACCESS_FIELDS, &at)?;
            if let Some(t) = a.get("type") {
                enum_of(t, &format!("{at}.type"), &["ONE_TO_ONE_NAT", "DIRECT_IPV6"])?;
            }
            if let Some(t) = a.get("networkTier") {
                enum_of(t, &format!("{at}.networkTier"), &["PREMIUM", "STANDARD", "FIXED_STANDARD", "STANDARD_OVERRIDES_FIXED_STANDARD"])?;
            }
        }
    }

    let mut gpus = bundled_gpu;
    if let Some(ga) = o.get("guestAccelerators") {
        for (i, g) in array(ga, "resource.guestAccelerators")?.iter().enumerate() {
            let at = format!("resource.guestAccelerators[{i}]");
            let g = object(g, &at)?;
            unknown(g, ACCEL_FIELDS, &at)?;
            let t = string(g.get("acceleratorType").ok_or(format!("Required field '{at}.acceleratorType' not specified"))?, &at)?;
            let name = zonal(t, zone, "acceleratorTypes")
                .ok_or_else(|| format!("Invalid value for field '{at}.acceleratorType': '{t}'. Accelerator type must be in zone {zone}."))?;
            if !ACCELERATOR_TYPES.contains(&name) {
                return Err(format!("Invalid value for field '{at}.acceleratorType': '{t}'. The resource was not found."));
            }
            let n = g.get("acceleratorCount").and_then(Value::as_u64).ok_or(format!("Invalid value for field '{at}.acceleratorCount'"))?;
            if ![1, 2, 4, 8].contains(&n) {
                return Err(format!("Invalid value for field '{at}.acceleratorCount': '{n}'."));
            }
            if family != "n1" && !bundled_gpu {
                return Err(format!("Accelerator {name} cannot be attached to machine type {machine_type}."));
            }
            gpus = true;
        }
    }

    let mut spot = false;
    let mut termination_action = "STOP".to_string();
    let mut on_host = "MIGRATE".to_string();
    let mut auto_restart = true;
    if let Some(s) = o.get("scheduling") {
        let s = object(s, "resource.scheduling")?;
        unknown(s, SCHED_FIELDS, "resource.scheduling")?;
        if let Some(v) = s.get("onHostMaintenance") {
            enum_of(v, "resource.scheduling.onHostMaintenance", &["MIGRATE", "TERMINATE"])?;
            on_host = v.as_str().unwrap_or_default().to_string();
        }
        if let Some(v) = s.get("automaticRestart") {
            boolean(v, "resource.scheduling.automaticRestart")?;
            auto_restart = v.as_bool().unwrap_or(true);
        }
        if let Some(v) = s.get("preemptible") {
            boolean(v, "resource.scheduling.preemptible")?;
            spot |= v.as_bool() == Some(true);
        }
        if let Some(v) = s.get("provisioningModel") {
            enum_of(v, "resource.scheduling.provisioningModel", &["STANDARD", "SPOT", "FLEX_START", "RESERVATION_BOUND"])?;
            spot |= *v == "SPOT";
        }
        if let Some(v) = s.get("instanceTerminationAction") {
            enum_of(v, "resource.scheduling.instanceTerminationAction", &["STOP", "DELETE"])?;
            termination_action = v.as_str().unwrap_or_default().to_string();
        }
    }
    if gpus && on_host != "TERMINATE" {
        return Err("Instances with guest accelerators do not support live migration.".into());
    }
    if spot && (on_host != "TERMINATE" || auto_restart) {
        return Err("Invalid value for field 'resource.scheduling': Spot VMs need onHostMaintenance TERMINATE and automaticRestart false.".into());
    }

    let mut ssh_keys = Vec::new();
    if let Some(m) = o.get("metadata") {
        let m = object(m, "resource.metadata")?;
        unknown(m, &["items", "fingerprint", "kind"], "resource.metadata")?;
        for (i, it) in array(m.get("items").unwrap_or(&Value::Array(vec![])), "resource.metadata.items")?.iter().enumerate() {
            let at = format!("resource.metadata.items[{i}]");
            let it = object(it, &at)?;
            unknown(it, &["key", "value"], &at)?;
            let k = string(it.get("key").ok_or(format!("Required field '{at}.key' not specified"))?, &at)?;
            let v = it.get("value").map(|v| string(v, &at)).transpose()?.unwrap_or("");
            if k == "ssh-keys" {
                for line in v.lines().filter(|l| !l.trim().is_empty()) {
                    let Some((user, key)) = line.split_once(':') else {
                        return Err(format!("Invalid value for field '{at}.value': ssh-keys line {line:?} is not USER:KEY"));
                    };
                    let parts: Vec<&str> = key.split_whitespace().collect();
                    if user.is_empty() || parts.len() < 2 || (!parts[0].starts_with("ssh-") && !parts[0].starts_with("ecdsa-")) {
                        return Err(format!("Invalid value for field '{at}.value': ssh-keys line {line:?} is not USER:KEYTYPE KEY [COMMENT]"));
                    }
                    ssh_keys.push(format!("{} {}", parts[0], parts[1]));
                }
            }
        }
    }
    let mut labels = Vec::new();
    if let Some(l) = o.get("labels") {
        for (k, v) in object(l, "resource.labels")? {
            let v = string(v, &format!("resource.labels.{k}"))?;
            if !label_ok(k, v) {
                return Err(format!("Invalid value for field 'resource.labels': '{k}={v}'. Label keys and values must match [a-z][_-a-z0-9]*."));
            }
            labels.push((k.clone(), v.to_string()));
        }
    }
    let mut tags = Vec::new();
    if let Some(t) = o.get("tags") {
        let t = object(t, "resource.tags")?;
        unknown(t, &["items", "fingerprint"], "resource.tags")?;
        for (i, it) in array(t.get("items").unwrap_or(&Value::Array(vec![])), "resource.tags.items")?.iter().enumerate() {
            let s = string(it, &format!("resource.tags.items[{i}]"))?;
            if !valid_name(s) {
                return Err(format!("Invalid value for field 'resource.tags.items[{i}]': '{s}'."));
            }
            tags.push(s.to_string());
        }
    }
    Ok(InsertSpec { name: name.to_string(), machine_type, spot, termination_action, ssh_keys, labels, tags })
}

/// Checks a firewalls.insert body (`full`) or a firewalls.patch body.
pub fn firewall(body: &Value, full: bool) -> Check {
    let o = object(body, "resource")?;
    unknown(o, FIREWALL_FIELDS, "resource")?;
    if full {
        let name = string(o.get("name").ok_or("Required field 'resource.name' not specified")?, "resource.name")?;
        if !valid_name(name) {
            return Err(format!("Invalid value for field 'resource.name': '{name}'."));
        }
        if !o.contains_key("allowed") && !o.contains_key("denied") {
            return Err("Required field 'resource.allowed' not specified".into());
        }
    }
    if let Some(d) = o.get("direction") {
        enum_of(d, "resource.direction", &["INGRESS", "EGRESS"])?;
    }
    if let Some(p) = o.get("priority") {
        let n = p.as_u64().ok_or("Invalid value for field 'resource.priority'")?;
        if n > 65535 {
            return Err(format!("Invalid value for field 'resource.priority': '{n}'."));
        }
    }
    if let Some(n) = o.get("network") {
        let s = string(n, "resource.network")?;
        if !s.contains("global/networks/") {
            return Err(format!("Invalid value for field 'resource.network': '{s}'."));
        }
    }
    if let Some(a) = o.get("allowed") {
        for (i, r) in array(a, "resource.allowed")?.iter().enumerate() {
            let at = format!("resource.allowed[{i}]");
            let r = object(r, &at)?;
            unknown(r, &["IPProtocol", "ports"], &at)?;
            string(r.get("IPProtocol").ok_or(format!("Required field '{at}.IPProtocol' not specified"))?, &at)?;
            for (k, p) in array(r.get("ports").unwrap_or(&Value::Array(vec![])), &format!("{at}.ports"))?.iter().enumerate() {
                let s = string(p, &format!("{at}.ports[{k}]"))?;
                let (a, b) = s.split_once('-').unwrap_or((s, s));
                let ok = matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(x), Ok(y)) if x > 0 && x <= y);
                if !ok {
                    return Err(format!("Invalid value for field '{at}.ports[{k}]': '{s}'. Invalid port specification."));
                }
            }
        }
    }
    for f in ["sourceRanges", "targetTags", "sourceTags"] {
        if let Some(v) = o.get(f) {
            for (i, s) in array(v, &format!("resource.{f}"))?.iter().enumerate() {
                string(s, &format!("resource.{f}[{i}]"))?;
            }
        }
    }
    Ok(())
}
