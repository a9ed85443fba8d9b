//! Your prices, not the list price: the `prices:` section of `$SKYCAT_HOME/config.yaml`.
//!
//! ```yaml
//! prices:
//!   aws: {discount: 0.40}                  # 40% off every AWS on-demand list price
//!   gcp:
//!     discount: 0.20
//!     spot_discount: 0.10                  # spot is discounted only when said so
//!     families: {a2: 0.35}                 # an instance family's discount wins over the cloud's
//!     regions: {europe-west4: 0.25}        # a region's wins over the cloud's
//!   overrides:
//!     - {cloud: lambda, instance_type: gpu_8x_h100_sxm5, price: 20.00, note: "reserved contract 2026"}
//! ```
//!
//! Precedence, most specific first, and never compounded: an override (of that instance type,
//! in that region when it names one) > the instance family's discount > the region's > the
//! cloud's. A family matches an instance type equal to it or starting with it and then `.`, `-`
//! or `_` (`a2` matches `a2-highgpu-1g`, `p4d` matches `p4d.24xlarge`); the longest one wins.
//!
//! Spot prices get `spot_discount` only (default none): contract discounts (AWS EDP/PPA, GCP
//! committed use, Azure reservations) are negotiated on on-demand prices and are not uniformly
//! honoured on spot markets, so a spot discount is something the user states, not assumes.
//!
//! Rules are applied when a command or the server loads offers ([`PriceRules::apply`]), never
//! written into the Parquet catalogs, which keep list prices and their provenance. Every repriced
//! row is marked in its `price_breakdown` (`custom: …`) and described in the returned
//! [`Repricing`], which keeps the list prices for display.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use crate::offer::Offer;

/// A `prices:` rule that cannot be used, naming its key (`prices.aws.discount`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}: {key}: {message}")]
pub struct PriceRuleError {
    pub file: String,
    pub key: String,
    pub message: String,
}

/// The infrastructures that are priced in their own configuration, not here.
const OWN_PRICE: &[(&str, &str)] = &[
    ("ssh", "SSH node pools are priced by `price_per_hour` in ssh_node_pools.yaml"),
    ("k8s", "Kubernetes contexts are priced by gpu_hour_usd / vcpu_hour_usd under `kubernetes:` in config.yaml"),
    ("kubernetes", "Kubernetes contexts are priced by gpu_hour_usd / vcpu_hour_usd under `kubernetes:` in config.yaml"),
];

#[derive(Debug, Clone, Default, PartialEq)]
struct CloudRule {
    discount: Option<f64>,
    spot_discount: Option<f64>,
    families: BTreeMap<String, f64>,
    regions: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq)]
struct Override {
    cloud: String,
    instance_type: String,
    region: Option<String>,
    price: Option<f64>,
    spot_price: Option<f64>,
    note: String,
}

/// The parsed `prices:` section. Empty when the section (or the file) is absent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceRules {
    clouds: BTreeMap<String, CloudRule>,
    overrides: Vec<Override>,
}

/// How one row's prices were changed: the list prices beside the effective ones, and the rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomPrice {
    pub list_price: Option<f64>,
    pub list_spot_price: Option<f64>,
    pub price: Option<f64>,
    pub spot_price: Option<f64>,
    /// `prices.aws.discount 40%`, `prices.overrides[0]: reserved contract 2026`.
    pub rule: String,
}

impl CustomPrice {
    /// Whether the price of this market was changed.
    pub fn changes(&self, spot: bool) -> bool {
        if spot {
            self.spot_price != self.list_spot_price
        } else {
            self.price != self.list_price
        }
    }

    /// The list price of this market.
    pub fn list_for(&self, spot: bool) -> Option<f64> {
        if spot {
            self.list_spot_price
        } else {
            self.list_price
        }
    }
}

/// Row identity for [`Repricing`]: cloud, instance type, region, zone.
pub type RowKey = (String, String, String, Option<String>);

/// The rows [`PriceRules::apply`] changed, by row identity.
#[derive(Debug, Clone, Default)]
pub struct Repricing {
    rows: HashMap<RowKey, CustomPrice>,
}

impl Repricing {
    pub fn get(&self, cloud: &str, instance_type: &str, region: &str, zone: Option<&str>) -> Option<&CustomPrice> {
        self.rows.get(&(cloud.to_string(), instance_type.to_string(), region.to_string(), zone.map(str::to_string)))
    }

    /// The change of `offer`'s row, if any.
    pub fn of(&self, offer: &Offer) -> Option<&CustomPrice> {
        self.get(&offer.cloud, &offer.instance_type, &offer.region, offer.zone.as_deref())
    }

    /// Like [`get`](Self::get), only when the price of that market was changed.
    pub fn market(&self, cloud: &str, instance_type: &str, region: &str, zone: Option<&str>, spot: bool) -> Option<&CustomPrice> {
        self.get(cloud, instance_type, region, zone).filter(|c| c.changes(spot))
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Adds another load's changes (the same rules over other rows).
    pub fn extend(&mut self, other: Repricing) {
        self.rows.extend(other.rows);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

fn err(file: &str, key: impl Into<String>, message: impl Into<String>) -> PriceRuleError {
    PriceRuleError { file: file.to_string(), key: key.into(), message: message.into() }
}

fn key_text(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn mapping<'a>(file: &str, key: &str, v: &'a serde_yaml::Value) -> Result<&'a serde_yaml::Mapping, PriceRuleError> {
    v.as_mapping().ok_or_else(|| err(file, key, "must be a mapping"))
}

/// A fraction off the list price: 0 ≤ d < 1 (`0.4` is 40% off).
fn discount(file: &str, key: &str, v: &serde_yaml::Value) -> Result<f64, PriceRuleError> {
    match v.as_f64() {
        Some(d) if d.is_finite() && (0.0..1.0).contains(&d) => Ok(d),
        Some(d) if (1.0..100.0).contains(&d) => {
            Err(err(file, key, format!("must be a fraction below 1 (0.40 is 40% off), got {d}")))
        }
        _ => Err(err(file, key, format!("must be a fraction from 0 to below 1 (0.40 is 40% off), got {}", show(v)))),
    }
}

fn price(file: &str, key: &str, v: &serde_yaml::Value) -> Result<f64, PriceRuleError> {
    match v.as_f64() {
        Some(p) if p.is_finite() && p > 0.0 => Ok(p),
        _ => Err(err(file, key, format!("must be a positive USD per hour, got {}", show(v)))),
    }
}

fn show(v: &serde_yaml::Value) -> String {
    serde_yaml::to_string(v).map(|s| s.trim().to_string()).unwrap_or_else(|_| "?".into())
}

fn name(file: &str, key: &str, v: &serde_yaml::Value) -> Result<String, PriceRuleError> {
    match v.as_str().map(str::trim) {
        Some(s) if !s.is_empty() => Ok(s.to_string()),
        _ => Err(err(file, key, "must be a non-empty string")),
    }
}

fn cloud_key(file: &str, key: &str, raw: &str) -> Result<String, PriceRuleError> {
    let c = raw.trim().to_ascii_lowercase();
    if let Some((_, why)) = OWN_PRICE.iter().find(|(n, _)| *n == c) {
        return Err(err(file, key, format!("not priced here: {why}")));
    }
    if c.is_empty() || !c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_') {
        return Err(err(file, key, format!("{raw:?} is not a cloud name")));
    }
    Ok(c)
}

impl PriceRules {
    /// The `prices:` section of the config file at `path`; none when the file or the section is
    /// absent. Errors name the file and the key.
    pub fn load(path: &Path) -> Result<PriceRules, PriceRuleError> {
        let file = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(PriceRules::default()),
            Err(e) => return Err(err(&file, "prices", format!("cannot read: {e}"))),
        };
        PriceRules::parse(&text, &file)
    }

    /// Parses a whole config file's text (other sections are ignored); `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<PriceRules, PriceRuleError> {
        if text.trim().is_empty() {
            return Ok(PriceRules::default());
        }
        let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| err(file, "prices", format!("not YAML: {e}")))?;
        match doc.get("prices") {
            None | Some(serde_yaml::Value::Null) => Ok(PriceRules::default()),
            Some(v) => PriceRules::from_value(v, file),
        }
    }

    /// The section itself (the value under `prices:`).
    pub fn from_value(v: &serde_yaml::Value, file: &str) -> Result<PriceRules, PriceRuleError> {
        let mut rules = PriceRules::default();
        for (k, v) in mapping(file, "prices", v)? {
            let raw = key_text(k).ok_or_else(|| err(file, "prices", "keys must be cloud names or `overrides`"))?;
            if raw == "overrides" {
                let list = v.as_sequence().ok_or_else(|| err(file, "prices.overrides", "must be a list"))?;
                for (i, o) in list.iter().enumerate() {
                    rules.overrides.push(parse_override(file, &format!("prices.overrides[{i}]"), o)?);
                }
                continue;
            }
            let key = format!("prices.{raw}");
            let cloud = cloud_key(file, &key, &raw)?;
            if rules.clouds.contains_key(&cloud) {
                return Err(err(file, &key, "given twice"));
            }
            let mut rule = CloudRule::default();
            for (f, fv) in mapping(file, &key, v)? {
                let field = key_text(f).unwrap_or_default();
                let fkey = format!("{key}.{field}");
                match field.as_str() {
                    "discount" => rule.discount = Some(discount(file, &fkey, fv)?),
                    "spot_discount" => rule.spot_discount = Some(discount(file, &fkey, fv)?),
                    "families" | "regions" => {
                        let mut m = BTreeMap::new();
                        for (n, d) in mapping(file, &fkey, fv)? {
                            let n = key_text(n).map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
                            let n = n.ok_or_else(|| err(file, &fkey, "keys must be non-empty names"))?;
                            let d = discount(file, &format!("{fkey}.{n}"), d)?;
                            m.insert(n.to_ascii_lowercase(), d);
                        }
                        if field == "families" {
                            rule.families = m;
                        } else {
                            rule.regions = m;
                        }
                    }
                    other => {
                        return Err(err(
                            file,
                            &fkey,
                            format!("unknown key {other:?} (expected discount, spot_discount, families, regions)"),
                        ))
                    }
                }
            }
            rules.clouds.insert(cloud, rule);
        }
        Ok(rules)
    }

    pub fn is_empty(&self) -> bool {
        self.clouds.is_empty() && self.overrides.is_empty()
    }

    /// Clouds the rules name (cloud rules and overrides), for a check against the catalog.
    pub fn clouds(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self.clouds.keys().map(|c| (c.clone(), format!("prices.{c}"))).collect();
        for (i, o) in self.overrides.iter().enumerate() {
            out.push((o.cloud.clone(), format!("prices.overrides[{i}].cloud")));
        }
        out
    }

    /// The effective prices of one row and the rule that set them; None when no rule applies.
    pub fn price_of(&self, offer: &Offer) -> Option<CustomPrice> {
        let (list, list_spot) = (offer.price, offer.spot_price);
        let itype = offer.instance_type.to_ascii_lowercase();
        let region = offer.region.to_ascii_lowercase();
        // An override of this type: one naming the region wins over one that does not.
        let ov = self
            .overrides
            .iter()
            .enumerate()
            .filter(|(_, o)| *o.cloud == *offer.cloud && o.instance_type.eq_ignore_ascii_case(&itype))
            .filter(|(_, o)| o.region.as_deref().is_none_or(|r| r.eq_ignore_ascii_case(&region)))
            .max_by_key(|(i, o)| (o.region.is_some(), usize::MAX - i));
        if let Some((i, o)) = ov {
            // A market the row is not sold on stays unsold: an override sets a price, it does not
            // invent a market.
            let price = if list.is_some() { o.price.or(list) } else { None };
            let spot_price = if list_spot.is_some() { o.spot_price.or(list_spot) } else { None };
            if price == list && spot_price == list_spot {
                return None;
            }
            return Some(CustomPrice {
                list_price: list,
                list_spot_price: list_spot,
                price,
                spot_price,
                rule: format!("prices.overrides[{i}]: {}", o.note),
            });
        }
        let rule = self.clouds.get(&*offer.cloud)?;
        let family = rule
            .families
            .iter()
            .filter(|(f, _)| {
                itype == **f || (itype.starts_with(f.as_str()) && itype[f.len()..].starts_with(['.', '-', '_']))
            })
            .max_by_key(|(f, _)| f.len());
        let (d, why) = if let Some((f, d)) = family {
            (*d, format!("prices.{}.families.{f}", offer.cloud))
        } else if let Some(d) = rule.regions.get(&region) {
            (*d, format!("prices.{}.regions.{region}", offer.cloud))
        } else if let Some(d) = rule.discount {
            (d, format!("prices.{}.discount", offer.cloud))
        } else {
            (0.0, String::new())
        };
        let sd = rule.spot_discount.unwrap_or(0.0);
        let price = list.map(|p| p * (1.0 - d));
        let spot_price = list_spot.map(|p| p * (1.0 - sd));
        let mut parts = Vec::new();
        if d > 0.0 && list.is_some() {
            parts.push(format!("{why} {}%", pct(d)));
        }
        if sd > 0.0 && list_spot.is_some() {
            parts.push(format!("prices.{}.spot_discount {}%", offer.cloud, pct(sd)));
        }
        if parts.is_empty() {
            return None;
        }
        Some(CustomPrice { list_price: list, list_spot_price: list_spot, price, spot_price, rule: parts.join(", ") })
    }

    /// The rule that sets the price of this row and market today, if any (for reports of what
    /// was launched earlier, whose list price is not at hand).
    pub fn rule_for(&self, cloud: &str, instance_type: &str, region: &str, spot: bool) -> Option<String> {
        let probe = Offer {
            price: Some(1.0),
            spot_price: Some(1.0),
            ..Offer::blank(cloud, instance_type, region, "", chrono::DateTime::UNIX_EPOCH)
        };
        self.price_of(&probe).filter(|c| c.changes(spot)).map(|c| c.rule)
    }

    /// Applies the rules to `offers` in place: effective prices, a `custom: …` note in
    /// `price_breakdown` (the list price and the rule; an earlier breakdown is kept after it), and
    /// the table of what changed.
    pub fn apply(&self, offers: &mut [Offer]) -> Repricing {
        let mut out = Repricing::default();
        if self.is_empty() {
            return out;
        }
        for o in offers.iter_mut() {
            let Some(c) = self.price_of(o) else { continue };
            let mut note = format!("custom: {}", c.rule);
            if let Some(l) = c.list_price.filter(|_| c.changes(false)) {
                note.push_str(&format!("; list ${l:.4}/h"));
            }
            if let Some(l) = c.list_spot_price.filter(|_| c.changes(true)) {
                note.push_str(&format!("; list spot ${l:.4}/h"));
            }
            if let Some(prev) = &o.price_breakdown {
                note.push_str(&format!("; list price: {prev}"));
            }
            o.price = c.price;
            o.spot_price = c.spot_price;
            o.price_breakdown = Some(note.into());
            out.rows.insert((o.cloud.to_string(), o.instance_type.to_string(), o.region.to_string(), o.zone.as_deref().map(str::to_string)), c);
        }
        out
    }
}

fn pct(d: f64) -> String {
    let p = d * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{}", p.round() as i64)
    } else {
        format!("{p:.2}")
    }
}

fn parse_override(file: &str, key: &str, v: &serde_yaml::Value) -> Result<Override, PriceRuleError> {
    let m = mapping(file, key, v)?;
    let (mut cloud, mut itype, mut region, mut p, mut sp, mut note) = (None, None, None, None, None, None);
    for (f, fv) in m {
        let field = key_text(f).unwrap_or_default();
        let fkey = format!("{key}.{field}");
        match field.as_str() {
            "cloud" => cloud = Some(cloud_key(file, &fkey, &name(file, &fkey, fv)?)?),
            "instance_type" => itype = Some(name(file, &fkey, fv)?),
            "region" => region = Some(name(file, &fkey, fv)?),
            "price" => p = Some(price(file, &fkey, fv)?),
            "spot_price" => sp = Some(price(file, &fkey, fv)?),
            "note" => note = Some(name(file, &fkey, fv)?),
            other => {
                return Err(err(
                    file,
                    &fkey,
                    format!("unknown key {other:?} (expected cloud, instance_type, region, price, spot_price, note)"),
                ))
            }
        }
    }
    let cloud = cloud.ok_or_else(|| err(file, format!("{key}.cloud"), "is missing"))?;
    let instance_type = itype.ok_or_else(|| err(file, format!("{key}.instance_type"), "is missing"))?;
    if p.is_none() && sp.is_none() {
        return Err(err(file, format!("{key}.price"), "is missing (give price, spot_price or both)"));
    }
    let note = note.ok_or_else(|| err(file, format!("{key}.note"), "is missing: say where the price comes from"))?;
    Ok(Override { cloud, instance_type, region, price: p, spot_price: sp, note })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(cloud: &str, itype: &str, region: &str, price: Option<f64>, spot: Option<f64>) -> Offer {
        Offer {
            cloud: cloud.into(),
            instance_type: itype.into(),
            region: region.into(),
            zone: None,
            accelerator_name: Some("A100".into()),
            accelerator_count: 8.0,
            accelerator_memory_gib: Some(40.0),
            accelerator_vendor: Some("nvidia".into()),
            vcpus: Some(96.0),
            memory_gib: Some(1152.0),
            arch: Some("x86_64".into()),
            price,
            spot_price: spot,
            fetched_at: chrono::Utc::now(),
            source: "test".into(),
            price_breakdown: None,
            spot_interruption: None,
            hyperv_generations: None,
        }
    }

    fn rules(yaml: &str) -> PriceRules {
        PriceRules::parse(yaml, "config.yaml").unwrap()
    }

    fn bad(yaml: &str) -> String {
        let e = PriceRules::parse(yaml, "config.yaml").unwrap_err().to_string();
        assert!(!e.contains('\n'), "one line: {e}");
        e
    }

    const SAMPLE: &str = "aws:\n  vpc_name: x\nprices:\n  aws: {discount: 0.40}\n  gcp:\n    discount: 0.20\n    spot_discount: 0.5\n    families: {a2: 0.35}\n    regions: {europe-west4: 0.25}\n  overrides:\n    - {cloud: lambda, instance_type: gpu_8x_h100_sxm5, price: 20.00, note: \"reserved contract 2026\"}\n    - {cloud: gcp, instance_type: a2-highgpu-8g, region: us-central1, price: 10, note: \"ours\"}\n";

    #[test]
    fn no_file_no_section_no_rules() {
        assert!(PriceRules::load(Path::new("/nonexistent/config.yaml")).unwrap().is_empty());
        assert!(rules("aws:\n  ssh_user: ubuntu\n").is_empty());
        assert!(rules("").is_empty());
        assert!(rules("prices:\n").is_empty());
    }

    #[test]
    fn cloud_discount_on_demand_only_unless_spot_discount() {
        let r = rules(SAMPLE);
        let c = r.price_of(&offer("aws", "p4d.24xlarge", "us-east-1", Some(32.7726), Some(10.0))).unwrap();
        assert!((c.price.unwrap() - 32.7726 * 0.6).abs() < 1e-9);
        assert_eq!(c.spot_price, Some(10.0), "no spot_discount on aws: spot stays at list");
        assert_eq!(c.rule, "prices.aws.discount 40%");
        assert!(c.changes(false) && !c.changes(true));
        // GCP has a spot discount.
        let c = r.price_of(&offer("gcp", "g2-standard-4", "us-central1", Some(1.0), Some(0.4))).unwrap();
        assert!((c.price.unwrap() - 0.8).abs() < 1e-9 && (c.spot_price.unwrap() - 0.2).abs() < 1e-9, "{c:?}");
        assert!(c.rule.contains("spot_discount 50%"), "{}", c.rule);
        // A cloud without a rule is untouched.
        assert!(r.price_of(&offer("azure", "Standard_ND96asr_v4", "eastus", Some(27.0), None)).is_none());
    }

    #[test]
    fn precedence_override_family_region_cloud() {
        let r = rules(SAMPLE);
        // Region and family both match: the family wins.
        let c = r.price_of(&offer("gcp", "a2-highgpu-1g", "europe-west4", Some(100.0), None)).unwrap();
        assert!((c.price.unwrap() - 65.0).abs() < 1e-9, "{c:?}");
        assert_eq!(c.rule, "prices.gcp.families.a2 35%");
        // Only the region.
        let c = r.price_of(&offer("gcp", "g2-standard-4", "europe-west4", Some(100.0), None)).unwrap();
        assert!((c.price.unwrap() - 75.0).abs() < 1e-9);
        // `a2` is not a prefix family of `a2x-…`? It is not: the family must end at a separator.
        let c = r.price_of(&offer("gcp", "a2ultra-8g", "us-central1", Some(100.0), None)).unwrap();
        assert_eq!(c.rule, "prices.gcp.discount 20%");
        // The override with the region beats the family.
        let c = r.price_of(&offer("gcp", "a2-highgpu-8g", "us-central1", Some(29.4), None)).unwrap();
        assert_eq!(c.price, Some(10.0));
        assert_eq!(c.rule, "prices.overrides[1]: ours");
        // …but only in its region.
        let c = r.price_of(&offer("gcp", "a2-highgpu-8g", "us-east1", Some(29.4), None)).unwrap();
        assert_eq!(c.rule, "prices.gcp.families.a2 35%");
        // An override never invents a market the row is not sold on.
        assert!(r.price_of(&offer("lambda", "gpu_8x_h100_sxm5", "us-east-1", None, Some(9.0))).is_none());
    }

    #[test]
    fn apply_marks_rows_and_keeps_list_prices() {
        let r = rules(SAMPLE);
        let mut offers = vec![
            offer("lambda", "gpu_8x_h100_sxm5", "us-east-1", Some(23.92), None),
            offer("azure", "Standard_ND96asr_v4", "eastus", Some(27.0), None),
        ];
        offers[0].price_breakdown = Some("host + gpu".into());
        let table = r.apply(&mut offers);
        assert_eq!(table.len(), 1);
        assert_eq!(offers[0].price, Some(20.0));
        let note = offers[0].price_breakdown.as_deref().unwrap();
        assert_eq!(note, "custom: prices.overrides[0]: reserved contract 2026; list $23.9200/h; list price: host + gpu");
        let c = table.of(&offers[0]).unwrap();
        assert_eq!(c.list_price, Some(23.92));
        assert!(table.market("lambda", "gpu_8x_h100_sxm5", "us-east-1", None, false).is_some());
        assert!(table.market("lambda", "gpu_8x_h100_sxm5", "us-east-1", None, true).is_none());
        assert_eq!(offers[1].price, Some(27.0));
        assert!(offers[1].price_breakdown.is_none());
    }

    #[test]
    fn bad_rules_name_their_key() {
        let e = bad("prices:\n  aws: {discount: 40}\n");
        assert!(e.starts_with("config.yaml: prices.aws.discount: must be a fraction below 1"), "{e}");
        let e = bad("prices:\n  aws: {discount: -0.1}\n");
        assert!(e.contains("prices.aws.discount"), "{e}");
        let e = bad("prices:\n  aws: {discont: 0.1}\n");
        assert!(e.contains("prices.aws.discont: unknown key"), "{e}");
        let e = bad("prices:\n  gcp: {families: {a2: 1.5}}\n");
        assert!(e.contains("prices.gcp.families.a2"), "{e}");
        let e = bad("prices:\n  ssh: {discount: 0.1}\n");
        assert!(e.contains("prices.ssh: not priced here") && e.contains("price_per_hour"), "{e}");
        let e = bad("prices:\n  overrides:\n    - {cloud: aws, instance_type: p5.48xlarge, price: 50}\n");
        assert!(e.contains("prices.overrides[0].note: is missing"), "{e}");
        let e = bad("prices:\n  overrides:\n    - {cloud: aws, instance_type: p5.48xlarge, note: x}\n");
        assert!(e.contains("prices.overrides[0].price"), "{e}");
        let e = bad("prices:\n  overrides:\n    - {cloud: aws, instance_type: p5.48xlarge, price: 0, note: x}\n");
        assert!(e.contains("prices.overrides[0].price: must be a positive"), "{e}");
        let e = bad("prices: [1]\n");
        assert!(e.contains("prices: must be a mapping"), "{e}");
        let e = bad("prices:\n  aws: {discount: 0.1}\n  AWS: {discount: 0.2}\n");
        assert!(e.contains("given twice"), "{e}");
    }
}
