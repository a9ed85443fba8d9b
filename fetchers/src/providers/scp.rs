//! Samsung Cloud Platform (SCP v1 OpenAPI): zones and server types — and no prices, because
//! the API publishes none. Wire shapes: /work/shared/api-formats/samsung-scp.md.
//!
//! ## Why this provider writes no rows
//! SCP's OpenAPI lists server types with vCPU and memory, but it has no price list: the only
//! price-like calls are an account-scoped charge estimate (`POST /billing/v2/charges/estimate`,
//! currency and the meaning of its `value` undocumented) and an item `cost` string without a
//! unit. No public, citable SCP price list was found either (Samsung's docs describe hourly
//! billing but publish no rate table; SkyPilot's `scp/vms.csv` is hand-made with no recorded
//! source). Inventing or guessing a price is ruled out, so after listing the zone's server types
//! `fetch_region` fails with an error naming that reason and what was listed: the run reports
//! it, publishes nothing for SCP, and keeps any previous SCP catalog untouched.
//! [`list_server_types`] is public for callers that want the specs alone.
//!
//! ## Credentials and signing
//! `SCP_ACCESS_KEY`, `SCP_SECRET_KEY`, `SCP_PROJECT_ID`, else SkyPilot's `~/.scp/scp_credential`
//! (`access_key = …` lines split on the first `" = "`; `~` is the run's `$HOME`). Every request
//! carries `X-Cmp-AccessKey`, `X-Cmp-ClientType: OpenApi`, `X-Cmp-ProjectId`,
//! `X-Cmp-Timestamp` (ms since the epoch), `X-Cmp-Language: en-US` and `X-Cmp-Signature` =
//! Base64(HMAC-SHA256(secret, METHOD + URL + TIMESTAMP + ACCESS_KEY + PROJECT_ID + "OpenApi")),
//! URL being the request URL exactly as sent (scheme, host, path, query). The paths and queries
//! used here contain only unreserved characters, where SkyPilot's, the guide's and scpcli's URL
//! encodings agree.
//!
//! ## Calls (`SKYCAT_SCP_ENDPOINT`, default `https://openapi.samsungsdscloud.com/`)
//! - `project/v3/projects/{projectId}/zones` → `contents[] {serviceZoneId, serviceZoneName}`;
//!   the region id is `serviceZoneName` (as in SkyPilot), once per run;
//! - `product/v2/zones/{serviceZoneId}/product-groups` → the `COMPUTE` groups whose
//!   `targetProduct` is `Virtual Server` or `GPU Server`;
//! - `product/v2/product-groups/{productGroupId}/products` → `products`, a map from product type
//!   to products (Terraform SDK) or a flat array (the guide): both are read. `SCALE` products
//!   are server types (`productName`), `item[]` `cpu`/`memory` values are strings.
//!
//! Lists are `{contents, totalCount}` without paging parameters; a list shorter than its
//! `totalCount` is an error rather than a silent truncation. Gateway errors
//! (`{code, message, status}`) with 401/403/412, or 404 `PLATFORM-GW-00002` (unknown access key),
//! are auth errors naming SCP.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use sha2::{Digest, Sha256};
use skycat_catalog::accelerators::{self, AcceleratorInfo};
use skycat_catalog::Offer;
use url::Url;

use crate::error::FetchError;
use crate::provider::{FetchContext, Provider};

const CLOUD: &str = "scp";
const DEFAULT_ENDPOINT: &str = "https://openapi.samsungsdscloud.com/";
pub const CLIENT_TYPE: &str = "OpenApi";

/// SkyPilot's SCP regions (`serviceZoneName`s of its catalog).
pub const DEFAULT_REGIONS: &[&str] = &[
    "KOREA-WEST-1-SCP-B001", "KOREA-WEST-1-SCP-B002", "KOREA-WEST-2-SCP-B001", "KOREA-EAST-1-SCP-B001",
    "KOREA-WEST-MAZ-SCP-B001",
];

#[derive(Debug, Default)]
pub struct Scp;

/// One server type of a zone, as the product API describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerType {
    pub name: String,
    pub vcpus: f64,
    pub memory_gib: f64,
    pub accelerator: Option<(AcceleratorInfo, f64)>,
}

// ---- Signature

/// HMAC-SHA256 (RFC 2104) over SHA-256's 64-byte block.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new().chain_update(&ipad).chain_update(message).finalize();
    Sha256::new().chain_update(&opad).chain_update(inner).finalize().into()
}

/// Standard Base64 with `=` padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(chunk.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(chunk.get(2).copied().unwrap_or(0));
        let sextet = |shift: u32| ALPHABET[((n >> shift) & 63) as usize] as char;
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}

/// The `X-Cmp-Signature` of a request.
pub fn signature(secret: &str, method: &str, url: &str, timestamp: &str, access_key: &str, project_id: &str) -> String {
    let message = format!("{method}{url}{timestamp}{access_key}{project_id}{CLIENT_TYPE}");
    base64(&hmac_sha256(secret.as_bytes(), message.as_bytes()))
}

// ---- Credentials

#[derive(Debug, Clone)]
struct Credentials {
    access_key: String,
    secret_key: String,
    project_id: String,
}

fn credentials(cx: &FetchContext) -> Result<Credentials, FetchError> {
    if let (Some(a), Some(s), Some(p)) = (cx.env("SCP_ACCESS_KEY"), cx.env("SCP_SECRET_KEY"), cx.env("SCP_PROJECT_ID")) {
        return Ok(Credentials { access_key: a.trim().into(), secret_key: s.trim().into(), project_id: p.trim().into() });
    }
    let missing = |why: String| FetchError::Auth { provider: CLOUD.into(), message: why };
    let hint = "set SCP_ACCESS_KEY, SCP_SECRET_KEY and SCP_PROJECT_ID, or ~/.scp/scp_credential";
    let Some(home) = cx.env("HOME") else { return Err(missing(format!("no SCP credentials: {hint}"))) };
    let path = PathBuf::from(home).join(".scp").join("scp_credential");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing(format!("no SCP credentials: {hint}"))),
        Err(e) => return Err(FetchError::io(&path, e)),
    };
    let field = |key: &str| {
        text.lines()
            .filter_map(|l| l.split_once(" = "))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| missing(format!("{}: no `{key} = …` line", path.display())))
    };
    Ok(Credentials { access_key: field("access_key")?, secret_key: field("secret_key")?, project_id: field("project_id")? })
}

// ---- Signed calls

/// The gateway's error body: `{"code": "PLATFORM-GW-00003", "message": "…", "status": 412}`.
/// The HTTP layer keeps only a body's first 300 characters, so a cut body still yields its
/// `PLATFORM-…` code when one is there.
fn gateway_error(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    if let (Some(c), Some(m)) = (v["code"].as_str(), v["message"].as_str()) {
        return format!("{c} {m}");
    }
    let flat = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.find("PLATFORM-") {
        Some(i) => {
            let code: String = flat[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
            format!("{code} {}", flat.chars().take(200).collect::<String>())
        }
        None => flat.chars().take(200).collect(),
    }
}

async fn signed_get(cx: &FetchContext, creds: &Credentials, path: &str) -> Result<Value, FetchError> {
    let base = cx.endpoint(CLOUD, DEFAULT_ENDPOINT)?;
    let url: Url = base.join(path).map_err(|e| FetchError::Config(format!("scp endpoint {base}: {e}")))?;
    let timestamp = chrono::Utc::now().timestamp_millis().to_string();
    let sig = signature(&creds.secret_key, "GET", url.as_str(), &timestamp, &creds.access_key, &creds.project_id);
    let headers = [
        ("X-Cmp-AccessKey", creds.access_key.clone()),
        ("X-Cmp-ClientType", CLIENT_TYPE.to_string()),
        ("X-Cmp-ProjectId", creds.project_id.clone()),
        ("X-Cmp-Timestamp", timestamp),
        ("X-Cmp-Signature", sig),
        ("X-Cmp-Language", "en-US".to_string()),
    ];
    match cx.http.get_json::<Value>(&url, &headers).await {
        Err(FetchError::Http { status, body, .. })
            if matches!(status, 401 | 403 | 412) || (status == 404 && body.contains("PLATFORM-GW-00002")) =>
        {
            Err(FetchError::Auth {
                provider: CLOUD.into(),
                message: format!("the gateway refused the signed request ({status}): {}", gateway_error(&body)),
            })
        }
        other => other,
    }
}

/// `contents` of a `{contents, totalCount}` list, refusing a truncated one.
fn contents<'a>(v: &'a Value, what: &str) -> Result<&'a Vec<Value>, FetchError> {
    let arr = v["contents"].as_array().ok_or_else(|| FetchError::malformed(what, "no `contents` array"))?;
    if let Some(total) = v["totalCount"].as_u64() {
        if total as usize > arr.len() {
            return Err(FetchError::malformed(what, format!("{} of totalCount {total} entries returned", arr.len())));
        }
    }
    Ok(arr)
}

/// `serviceZoneName` → `serviceZoneId` of the project. Once per run.
async fn zones(cx: &FetchContext) -> Result<Arc<Vec<(String, String)>>, FetchError> {
    cx.shared("scp:zones", || async {
        let creds = credentials(cx)?;
        let v = signed_get(cx, &creds, &format!("project/v3/projects/{}/zones", creds.project_id)).await?;
        let what = "scp project zones";
        let mut out = Vec::new();
        for z in contents(&v, what)? {
            let (Some(name), Some(id)) = (z["serviceZoneName"].as_str(), z["serviceZoneId"].as_str()) else {
                return Err(FetchError::malformed(what, "a zone without serviceZoneName/serviceZoneId"));
            };
            out.push((name.to_string(), id.to_string()));
        }
        Ok(out)
    })
    .await
}

fn number_item(product: &Value, item_type: &str) -> Option<f64> {
    product["item"].as_array()?.iter().find(|i| i["itemType"].as_str() == Some(item_type))?["itemValue"]
        .as_str()?
        .trim()
        .parse()
        .ok()
}

/// The server types (`SCALE` products) of the zone named `zone_name`.
pub async fn list_server_types(cx: &FetchContext, zone_name: &str) -> Result<Vec<ServerType>, FetchError> {
    let creds = credentials(cx)?;
    let zones = zones(cx).await?;
    let Some((_, zone_id)) = zones.iter().find(|(n, _)| n == zone_name) else {
        return Err(FetchError::api(CLOUD, format!("zone {zone_name} is not among the project's zones")));
    };
    let what = format!("scp product groups of {zone_name}");
    let groups = signed_get(cx, &creds, &format!("product/v2/zones/{zone_id}/product-groups")).await?;
    let mut out = Vec::new();
    for g in contents(&groups, &what)? {
        let compute = g["targetProductGroup"].as_str() == Some("COMPUTE")
            && matches!(g["targetProduct"].as_str(), Some("Virtual Server" | "GPU Server"));
        if !compute {
            continue;
        }
        let gid = g["productGroupId"].as_str().ok_or_else(|| FetchError::malformed(&what, "a group without productGroupId"))?;
        let v = signed_get(cx, &creds, &format!("product/v2/product-groups/{gid}/products")).await?;
        let what = format!("scp products of group {gid}");
        // A map from product type to products (Terraform SDK) or one flat array (the guide).
        let products: Vec<&Value> = match &v["products"] {
            Value::Object(m) => m.get("SCALE").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default(),
            Value::Array(a) => a.iter().filter(|p| p["productType"].as_str() == Some("SCALE")).collect(),
            _ => return Err(FetchError::malformed(&what, "no `products` map or array")),
        };
        for p in products {
            if p["productState"].as_str().is_some_and(|s| s != "AVAILABLE") {
                cx.skip(CLOUD, "server type not AVAILABLE", 1);
                continue;
            }
            let name = p["productName"].as_str().ok_or_else(|| FetchError::malformed(&what, "a product without productName"))?;
            let (Some(vcpus), Some(memory_gib)) = (number_item(p, "cpu"), number_item(p, "memory")) else {
                return Err(FetchError::malformed(&what, format!("server type {name}: no numeric cpu/memory item")));
            };
            let accelerator = accelerators::from_instance_type(CLOUD, name);
            if name.starts_with("g1") && accelerator.is_none() {
                cx.skip(CLOUD, "GPU server type not understood", 1);
                continue;
            }
            out.push(ServerType { name: name.to_string(), vcpus, memory_gib, accelerator });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    Ok(out)
}

#[async_trait]
impl Provider for Scp {
    fn name(&self) -> &'static str {
        CLOUD
    }

    fn default_regions(&self) -> &'static [&'static str] {
        DEFAULT_REGIONS
    }

    async fn regions(&self, cx: &FetchContext) -> Result<Vec<String>, FetchError> {
        Ok(zones(cx).await?.iter().map(|(n, _)| n.clone()).collect())
    }

    async fn fetch_region(&self, cx: &FetchContext, region: &str) -> Result<Vec<Offer>, FetchError> {
        let types = list_server_types(cx, region).await?;
        let gpus = types.iter().filter(|t| t.accelerator.is_some()).count();
        Err(FetchError::api(
            CLOUD,
            format!(
                "zone {region}: {} server types listed ({gpus} with GPUs), but SCP's OpenAPI publishes no hourly \
                 price and no citable SCP price list exists, so no offers are written",
                types.len()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "test-secret-key";
    const AK: &str = "TESTACCESSKEY0001";
    const PID: &str = "PROJECT-abcdefghij0123456789";
    const TS: &str = "1700000000000";

    #[test]
    fn hmac_matches_rfc4231() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        // Test case 6: a key longer than the block is hashed first.
        let mac = hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn signatures_match_the_worked_examples() {
        let cases = [
            (
                "https://openapi.samsungsdscloud.com/project/v3/projects/PROJECT-abcdefghij0123456789/zones",
                "MOn2KA0lcP05C9lNWj3vvUbjRqJhQ7dYKQ8QTG0vyyM=",
            ),
            (
                "https://openapi.samsungsdscloud.com/product/v2/zones/ZONE-abc123/products?productType=SCALE",
                "Lw72jIYIoucFyjVO4r2IIDnReK8j7PIvoyj35O5OrjE=",
            ),
            (
                "https://openapi.samsungsdscloud.com/virtual-server/v2/virtual-servers?virtualServerName=my%2520vm&page=0&size=20",
                "IZFR6I1FJplI9ELv8WUQ/zPUIVB7iALKsMYAiGQZIyU=",
            ),
            (
                "https://openapi.samsungsdscloud.com/virtual-server/v2/virtual-servers?virtualServerName=my%20vm&page=0&size=20",
                "DET460gtGFrbsuJh7uepu1jRLC0KKOF5Lo8NeBmRF+o=",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(signature(SECRET, "GET", url, TS, AK, PID), want, "{url}");
        }
        // The guide's lower-case `openApi` gives another signature: the client type is signed.
        let msg = format!("GET{}{TS}{AK}{PID}openApi", cases[0].0);
        assert_eq!(base64(&hmac_sha256(SECRET.as_bytes(), msg.as_bytes())), "re2y4wW442JnnA75cW32FPL1IMWOIEMeVBC1c7dx5pA=");
    }

    #[test]
    fn gateway_errors_name_their_code_even_when_cut() {
        let full = r#"{"service": "GW", "message": "The signature does not match.", "status": 412, "code": "PLATFORM-GW-00003"}"#;
        assert_eq!(gateway_error(full), "PLATFORM-GW-00003 The signature does not match.");
        let cut = "{\n \"service\": \"GW\",\n \"status\": 412,\n \"code\": \"PLATFORM-GW-00003\",\n \"path\": \"/pro";
        assert!(gateway_error(cut).starts_with("PLATFORM-GW-00003 {"), "{}", gateway_error(cut));
        assert_eq!(gateway_error("Bad Gateway"), "Bad Gateway");
    }

    #[test]
    fn the_signed_url_is_the_one_sent() {
        // `Url` keeps an unreserved path and query byte for byte, so what is signed is what goes out.
        let u = Url::parse(DEFAULT_ENDPOINT).unwrap().join("product/v2/zones/ZONE-abc123/products?productType=SCALE").unwrap();
        assert_eq!(u.as_str(), "https://openapi.samsungsdscloud.com/product/v2/zones/ZONE-abc123/products?productType=SCALE");
    }
}
