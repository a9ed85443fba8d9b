//! Validation before publishing: schema checks, non-positive prices, spot > 3x on-demand
//! flags, deterministic duplicate collapse.

use std::collections::BTreeMap;

use skycat_catalog::Offer;

/// Outcome of validating one cloud's raw offers.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Validated {
    pub offers: Vec<Offer>,
    /// Rows or prices removed, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Offers kept but suspicious (`type region/zone: spot X > 3x on-demand Y`).
    pub flagged: Vec<String>,
}

fn bump(m: &mut BTreeMap<String, u64>, reason: &str) {
    *m.entry(reason.to_string()).or_insert(0) += 1;
}

fn finite_nonneg(v: Option<f64>) -> bool {
    v.is_none_or(|x| x.is_finite() && x >= 0.0)
}

/// Validate raw offers of `cloud` fetched for `region`.
///
/// - schema: wrong cloud or region, empty instance type, non-finite or negative counts/specs
///   → row dropped;
/// - a zero, negative or non-finite price (on-demand or spot) → that price removed; a row left
///   with neither price → dropped ("no positive price");
/// - spot > 3x on-demand → kept and flagged.
pub fn check_region(cloud: &str, region: &str, raw: Vec<Offer>, out: &mut Validated) {
    for mut o in raw {
        if *o.cloud != *cloud {
            bump(&mut out.dropped, "schema: wrong cloud");
            continue;
        }
        if *o.region != *region {
            bump(&mut out.dropped, "schema: offer outside the fetched region");
            continue;
        }
        if o.instance_type.trim().is_empty() {
            bump(&mut out.dropped, "schema: empty instance type");
            continue;
        }
        let specs_ok = finite_nonneg(Some(o.accelerator_count))
            && finite_nonneg(o.vcpus)
            && finite_nonneg(o.memory_gib)
            && finite_nonneg(o.accelerator_memory_gib);
        if !specs_ok {
            bump(&mut out.dropped, "schema: negative or non-finite spec");
            continue;
        }
        if o.accelerator_count > 0.0 && o.accelerator_name.is_none() {
            bump(&mut out.dropped, "schema: accelerator count without a name");
            continue;
        }
        if let Some(p) = o.price {
            if !(p.is_finite() && p > 0.0) {
                bump(&mut out.dropped, "zero or negative on-demand price");
                o.price = None;
            }
        }
        if let Some(p) = o.spot_price {
            if !(p.is_finite() && p > 0.0) {
                bump(&mut out.dropped, "zero or negative spot price");
                o.spot_price = None;
            }
        }
        if o.price.is_none() && o.spot_price.is_none() {
            bump(&mut out.dropped, "no positive price");
            continue;
        }
        if let (Some(p), Some(s)) = (o.price, o.spot_price) {
            if s > 3.0 * p {
                out.flagged.push(format!(
                    "{} {}: spot {s:.4} > 3x on-demand {p:.4}",
                    o.instance_type,
                    o.location()
                ));
            }
        }
        out.offers.push(o);
    }
}

fn cmp_opt(a: Option<f64>, b: Option<f64>) -> std::cmp::Ordering {
    // None sorts after any price.
    match (a, b) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

/// Whether two offers are the same launchable thing: same type, region, zone and accelerator
/// (GCP sells one host type with several GPU counts: those are distinct offers).
pub fn same_launchable(a: &Offer, b: &Offer) -> bool {
    a.region == b.region
        && a.zone == b.zone
        && a.instance_type == b.instance_type
        && a.accelerator_name == b.accelerator_name
        && a.accelerator_count == b.accelerator_count
}

/// Sort deterministically and collapse duplicates of (instance_type, region, zone,
/// accelerator name and count): the row
/// with the lowest on-demand price wins, then the lowest spot price, then the smallest source
/// string. Returns the number of rows removed.
pub fn collapse_duplicates(offers: &mut Vec<Offer>) -> u64 {
    offers.sort_by(|a, b| {
        a.region
            .cmp(&b.region)
            .then_with(|| a.zone.cmp(&b.zone))
            .then_with(|| a.instance_type.cmp(&b.instance_type))
            .then_with(|| a.accelerator_name.cmp(&b.accelerator_name))
            .then_with(|| a.accelerator_count.total_cmp(&b.accelerator_count))
            .then_with(|| cmp_opt(a.price, b.price))
            .then_with(|| cmp_opt(a.spot_price, b.spot_price))
            .then_with(|| a.source.cmp(&b.source))
    });
    let before = offers.len();
    offers.dedup_by(|later, first| same_launchable(later, first));
    (before - offers.len()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn offer(t: &str, region: &str, zone: Option<&str>, price: Option<f64>, spot: Option<f64>) -> Offer {
        Offer {
            cloud: "aws".into(),
            instance_type: t.into(),
            region: region.into(),
            zone: zone.map(String::from).map(Into::into),
            accelerator_name: None,
            accelerator_count: 0.0,
            accelerator_memory_gib: None,
            accelerator_vendor: None,
            vcpus: Some(2.0),
            memory_gib: Some(8.0),
            arch: None,
            price,
            spot_price: spot,
            fetched_at: Utc::now(),
            source: "test".into(),
            price_breakdown: None,
            spot_interruption: None,
            hyperv_generations: None,
        }
    }

    #[test]
    fn prices_are_checked_and_spot_flagged() {
        let mut v = Validated::default();
        let raw = vec![
            offer("a", "r1", None, Some(1.0), Some(0.3)),
            offer("b", "r1", None, Some(0.0), None),
            offer("c", "r1", None, Some(-1.0), Some(0.5)),
            offer("d", "r1", None, Some(1.0), Some(3.5)),
            offer("e", "r2", None, Some(1.0), None),
            offer("", "r1", None, Some(1.0), None),
        ];
        check_region("aws", "r1", raw, &mut v);
        let kept: Vec<_> = v.offers.iter().map(|o| (o.instance_type.as_ref(), o.price, o.spot_price)).collect();
        assert_eq!(kept, vec![("a", Some(1.0), Some(0.3)), ("c", None, Some(0.5)), ("d", Some(1.0), Some(3.5))]);
        assert_eq!(v.dropped.get("no positive price"), Some(&1));
        assert_eq!(v.dropped.get("zero or negative on-demand price"), Some(&2));
        assert_eq!(v.dropped.get("schema: offer outside the fetched region"), Some(&1));
        assert_eq!(v.dropped.get("schema: empty instance type"), Some(&1));
        assert_eq!(v.flagged, vec!["d r1: spot 3.5000 > 3x on-demand 1.0000".to_string()]);
    }

    #[test]
    fn duplicates_collapse_to_the_cheapest_whatever_the_input_order() {
        let a = vec![
            offer("x", "r1", Some("z1"), Some(2.0), None),
            offer("x", "r1", Some("z1"), Some(1.0), Some(0.5)),
            offer("x", "r1", Some("z2"), Some(1.0), None),
        ];
        let mut b = a.clone();
        b.reverse();
        let mut a = a;
        let mut with_gpu = offer("x", "r1", Some("z1"), Some(3.0), None);
        with_gpu.accelerator_name = Some("T4".into());
        with_gpu.accelerator_count = 1.0;
        a.push(with_gpu.clone());
        b.push(with_gpu);
        assert_eq!(collapse_duplicates(&mut a), 1);
        assert_eq!(collapse_duplicates(&mut b), 1);
        assert_eq!(a, b);
        assert_eq!(a.len(), 3, "the host with a GPU is another offer");
        assert_eq!(a[0].price, Some(1.0));
        assert_eq!(a[0].zone.as_deref(), Some("z1"));
    }
}
