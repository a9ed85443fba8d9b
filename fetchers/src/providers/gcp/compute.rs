//! The Compute Engine API (OAuth bearer + project): regions, zones, machine types and accelerator
//! types, turned into the shapes the join prices (see the module doc of [`super`]).

use std::collections::BTreeSet;

use serde::Deserialize;
use skycat_catalog::accelerators;

use super::{Shape, CLOUD, DEFAULT_COMPUTE, MAX_PAGES, N1_GPU_LIMITS};
use crate::error::FetchError;
use crate::provider::FetchContext;


pub(super) struct ComputeCreds {
    token: String,
    project: String,
}

pub(super) fn compute_creds(cx: &FetchContext) -> Option<ComputeCreds> {
    let token = cx.env("GOOGLE_OAUTH_ACCESS_TOKEN")?.to_string();
    let project = cx.env("GOOGLE_CLOUD_PROJECT").or_else(|| cx.env("CLOUDSDK_CORE_PROJECT"))?.to_string();
    Some(ComputeCreds { token, project })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ItemsPage<T> {
    #[serde(default = "Vec::new")]
    items: Vec<T>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct NamedItem {
    pub(super) name: String,
}

#[derive(Deserialize)]
struct RegionItem {
    #[serde(default)]
    zones: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MachineType {
    name: String,
    guest_cpus: f64,
    memory_mb: f64,
    #[serde(default)]
    accelerators: Vec<GuestAccelerator>,
    #[serde(default)]
    deprecated: Option<Deprecated>,
    #[serde(default)]
    architecture: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GuestAccelerator {
    guest_accelerator_type: String,
    guest_accelerator_count: f64,
}

#[derive(Deserialize)]
struct Deprecated {
    #[serde(default)]
    state: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AcceleratorType {
    name: String,
    #[serde(default)]
    maximum_cards_per_instance: Option<f64>,
}

pub(super) async fn compute_list<T: serde::de::DeserializeOwned>(
    cx: &FetchContext,
    creds: &ComputeCreds,
    path: &str,
    what: &str,
) -> Result<Vec<T>, FetchError> {
    let base = cx.endpoint("gcp_compute", DEFAULT_COMPUTE)?;
    let list = base
        .join(&format!("compute/v1/projects/{}/{path}", creds.project))
        .map_err(|e| FetchError::Config(format!("gcp compute endpoint {base}: {e}")))?;
    let headers = [("Authorization", format!("Bearer {}", creds.token))];
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut url = list.clone();
        if let Some(t) = &token {
            url.query_pairs_mut().append_pair("pageToken", t);
        }
        let text = cx.http.get_text(&url, &headers).await?;
        let page: ItemsPage<T> =
            serde_json::from_str(&text).map_err(|e| FetchError::malformed(format!("gcp compute {what}"), e))?;
        out.extend(page.items);
        match page.next_page_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => break,
        }
    }
    Ok(out)
}

/// Shapes per zone of `region` from the Compute API: (zone, shapes, GPUs attachable to N1 there).
pub(super) async fn compute_shapes(
    cx: &FetchContext,
    creds: &ComputeCreds,
    region: &str,
) -> Result<Vec<(String, Vec<Shape>, BTreeSet<(String, u32)>)>, FetchError> {
    let base = cx.endpoint("gcp_compute", DEFAULT_COMPUTE)?;
    let url = base
        .join(&format!("compute/v1/projects/{}/regions/{region}", creds.project))
        .map_err(|e| FetchError::Config(format!("gcp compute endpoint {base}: {e}")))?;
    let text = cx.http.get_text(&url, &[("Authorization", format!("Bearer {}", creds.token))]).await?;
    let reg: RegionItem =
        serde_json::from_str(&text).map_err(|e| FetchError::malformed(format!("gcp compute region {region}"), e))?;
    let mut zones: Vec<String> =
        reg.zones.iter().map(|z| z.rsplit('/').next().unwrap_or(z).to_string()).collect();
    zones.sort();
    let mut out = Vec::new();
    for zone in zones {
        let mts: Vec<MachineType> =
            compute_list(cx, creds, &format!("zones/{zone}/machineTypes"), &format!("machine types of {zone}")).await?;
        let accs: Vec<AcceleratorType> = compute_list(
            cx,
            creds,
            &format!("zones/{zone}/acceleratorTypes"),
            &format!("accelerator types of {zone}"),
        )
        .await?;
        let mut shapes = Vec::new();
        for mt in mts {
            if mt.deprecated.as_ref().is_some_and(|d| d.state == "DEPRECATED" || d.state == "OBSOLETE") {
                cx.skip(CLOUD, "deprecated machine type", 1);
                continue;
            }
            if mt.architecture.as_deref() == Some("ARM64") {
                cx.skip(CLOUD, "arm machine type (no rates parsed)", 1);
                continue;
            }
            let gpu = match mt.accelerators.first() {
                Some(a) => match accelerators::canonicalize(&a.guest_accelerator_type, None) {
                    Some(info) => Some((info.name, a.guest_accelerator_count)),
                    None => {
                        cx.skip(CLOUD, "accelerator not in the registry", 1);
                        continue;
                    }
                },
                None => None,
            };
            shapes.push(Shape { name: mt.name, vcpus: mt.guest_cpus, memory_gib: mt.memory_mb / 1024.0, gpu });
        }
        let mut n1_gpus = BTreeSet::new();
        for a in accs {
            if a.name.ends_with("-vws") {
                continue;
            }
            if let Some(info) = accelerators::canonicalize(&a.name, None) {
                let max = a.maximum_cards_per_instance.unwrap_or(8.0);
                for (g, n, _, _) in N1_GPU_LIMITS {
                    if *g == info.name && *n <= max {
                        n1_gpus.insert((info.name.clone(), *n as u32));
                    }
                }
            }
        }
        out.push((zone, shapes, n1_gpus));
    }
    Ok(out)
}
