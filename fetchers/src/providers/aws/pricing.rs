//! On-demand prices from the signed Price List Query API (`GetProducts`), the alternative to
//! the bulk files (`--aws-pricing-api`, or `fetch.aws.ondemand_source: pricing-api` in config).
//! Each `PriceList` element is a JSON document in a string.

use std::collections::BTreeMap;

use aws_sdk_pricing::error::DisplayErrorContext;
use aws_sdk_pricing::types::{Filter, FilterType};
use serde_json::Value;

use super::bulk::BulkRow;
use crate::error::FetchError;

fn term(field: &str, value: &str) -> Result<Filter, FetchError> {
    Filter::builder()
        .r#type(FilterType::TermMatch)
        .field(field)
        .value(value)
        .build()
        .map_err(|e| FetchError::Config(format!("pricing filter {field}: {e}")))
}

/// Linux / Shared / Used / no pre-installed software on-demand rows of `region`.
pub async fn get_products(
    client: &aws_sdk_pricing::Client,
    region: &str,
    skipped: &mut BTreeMap<&'static str, u64>,
) -> Result<Vec<BulkRow>, FetchError> {
    let filters = vec![
        term("regionCode", region)?,
        term("operatingSystem", "Linux")?,
        term("tenancy", "Shared")?,
        term("preInstalledSw", "NA")?,
        term("capacitystatus", "Used")?,
        term("licenseModel", "No License required")?,
    ];
    let mut pages = client
        .get_products()
        .service_code("AmazonEC2")
        .format_version("aws_v1")
        .set_filters(Some(filters))
        .max_results(100)
        .into_paginator()
        .send();
    let what = format!("aws {region} GetProducts PriceList");
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| FetchError::api("aws", format!("{region}: GetProducts: {}", DisplayErrorContext(&e))))?;
        for doc in page.price_list() {
            match parse_price_item(doc, region, &what)? {
                Some(row) => out.push(row),
                None => *skipped.entry("aws pricing api: not a Linux on-demand instance price").or_insert(0) += 1,
            }
        }
    }
    Ok(out)
}

fn attr<'a>(attrs: &'a Value, k: &str) -> Option<&'a str> {
    attrs.get(k).and_then(|v| v.as_str()).filter(|s| !s.is_empty())
}

/// One `PriceList` element → a row, or None when it is not what we keep.
pub fn parse_price_item(doc: &str, region: &str, what: &str) -> Result<Option<BulkRow>, FetchError> {
    let v: Value = serde_json::from_str(doc).map_err(|e| FetchError::malformed(what, e))?;
    let product = v.get("product").ok_or_else(|| FetchError::malformed(what, "element without `product`"))?;
    let attrs = product.get("attributes").ok_or_else(|| FetchError::malformed(what, "product without `attributes`"))?;
    let fam = product.get("productFamily").and_then(|f| f.as_str()).unwrap_or("");
    let ok = fam.starts_with("Compute Instance")
        && attr(attrs, "operatingSystem") == Some("Linux")
        && attr(attrs, "tenancy") == Some("Shared")
        && attr(attrs, "capacitystatus").is_none_or(|c| c == "Used")
        && attr(attrs, "preInstalledSw").is_none_or(|c| c == "NA")
        && attr(attrs, "marketoption").is_none_or(|c| c == "OnDemand")
        && attr(attrs, "regionCode").is_none_or(|c| c == region);
    let Some(itype) = attr(attrs, "instanceType") else { return Ok(None) };
    if !ok {
        return Ok(None);
    }
    // terms.OnDemand.<sku.term>.priceDimensions.<rate>.pricePerUnit.USD, unit Hrs.
    let mut price = None;
    if let Some(terms) = v.get("terms").and_then(|t| t.get("OnDemand")).and_then(|t| t.as_object()) {
        for t in terms.values() {
            let Some(dims) = t.get("priceDimensions").and_then(|d| d.as_object()) else { continue };
            for d in dims.values() {
                if d.get("unit").and_then(|u| u.as_str()) != Some("Hrs") {
                    continue;
                }
                let Some(usd) = d.get("pricePerUnit").and_then(|p| p.get("USD")).and_then(|p| p.as_str()) else {
                    continue;
                };
                let p: f64 = usd
                    .trim()
                    .parse()
                    .map_err(|_| FetchError::malformed(what, format!("{itype}: pricePerUnit.USD `{usd}`")))?;
                price = Some(p);
            }
        }
    }
    let Some(price) = price.filter(|p| *p > 0.0) else { return Ok(None) };
    let num = |k: &str| attr(attrs, k).and_then(|s| s.replace(',', "").parse::<f64>().ok());
    Ok(Some(BulkRow {
        instance_type: itype.to_string(),
        vcpus: num("vcpu"),
        memory_gib: attr(attrs, "memory")
            .and_then(|m| m.trim_end_matches("GiB").trim().replace(',', "").parse::<f64>().ok()),
        gpu_count: num("gpu").filter(|g| *g > 0.0),
        physical_processor: attr(attrs, "physicalProcessor").map(String::from),
        price,
    }))
}
