//! What changed between two catalogs of one cloud: instance types added and removed, and the
//! biggest price moves.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use skycat_catalog::Offer;

/// How many price moves a diff keeps.
pub const TOP_MOVES: usize = 10;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PriceMove {
    pub instance_type: String,
    /// `region` or `region/zone`.
    pub location: String,
    pub spot: bool,
    pub old: f64,
    pub new: f64,
    /// (new - old) / old, as a fraction.
    pub change: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CatalogDiff {
    /// Instance types present now and absent before (any region).
    pub types_added: Vec<String>,
    pub types_removed: Vec<String>,
    /// Largest relative changes first (on-demand and spot, per location).
    pub biggest_moves: Vec<PriceMove>,
    /// Launchables (type × accelerator × region × zone) whose price changed at all.
    pub prices_changed: usize,
}

impl CatalogDiff {
    pub fn is_empty(&self) -> bool {
        self.types_added.is_empty() && self.types_removed.is_empty() && self.prices_changed == 0
    }
}

/// (type, region, zone, accelerator, count as bits): one launchable.
type Key<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>, u64);

fn index(offers: &[Offer]) -> BTreeMap<Key<'_>, &Offer> {
    offers
        .iter()
        .map(|o| {
            let k = (
                o.instance_type.as_ref(),
                o.region.as_ref(),
                o.zone.as_deref(),
                o.accelerator_name.as_deref(),
                o.accelerator_count.to_bits(),
            );
            (k, o)
        })
        .collect()
}

pub fn diff_offers(old: &[Offer], new: &[Offer]) -> CatalogDiff {
    let old_types: BTreeSet<&str> = old.iter().map(|o| o.instance_type.as_ref()).collect();
    let new_types: BTreeSet<&str> = new.iter().map(|o| o.instance_type.as_ref()).collect();
    let oi = index(old);
    let ni = index(new);
    let mut moves = Vec::new();
    let mut changed = BTreeSet::new();
    for (k, n) in &ni {
        let Some(o) = oi.get(k) else { continue };
        for (spot, a, b) in [(false, o.price, n.price), (true, o.spot_price, n.spot_price)] {
            if let (Some(a), Some(b)) = (a, b) {
                if a > 0.0 && (a - b).abs() > 1e-9 {
                    changed.insert(*k);
                    let instance_type = match &n.accelerator_name {
                        Some(a) if n.price_breakdown.is_some() => format!("{} + {a}:{}", n.instance_type, n.accelerator_count),
                        _ => n.instance_type.to_string(),
                    };
                    moves.push(PriceMove {
                        instance_type,
                        location: n.location(),
                        spot,
                        old: a,
                        new: b,
                        change: (b - a) / a,
                    });
                }
            }
        }
    }
    moves.sort_by(|a, b| {
        b.change
            .abs()
            .total_cmp(&a.change.abs())
            .then_with(|| a.instance_type.cmp(&b.instance_type))
            .then_with(|| a.location.cmp(&b.location))
            .then_with(|| a.spot.cmp(&b.spot))
    });
    moves.truncate(TOP_MOVES);
    CatalogDiff {
        types_added: new_types.difference(&old_types).map(|s| s.to_string()).collect(),
        types_removed: old_types.difference(&new_types).map(|s| s.to_string()).collect(),
        biggest_moves: moves,
        prices_changed: changed.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(t: &str, r: &str, price: f64, spot: Option<f64>) -> Offer {
        Offer { price: Some(price), spot_price: spot, ..Offer::blank("aws", t, r, "", chrono::Utc::now()) }
    }

    #[test]
    fn added_removed_and_moves() {
        let old = vec![o("a", "r", 1.0, Some(0.5)), o("b", "r", 2.0, None), o("c", "r", 1.0, None)];
        let new = vec![o("a", "r", 1.1, Some(0.25)), o("b", "r", 2.0, None), o("d", "r", 3.0, None)];
        let d = diff_offers(&old, &new);
        assert_eq!(d.types_added, vec!["d"]);
        assert_eq!(d.types_removed, vec!["c"]);
        assert_eq!(d.prices_changed, 1);
        assert_eq!(d.biggest_moves.len(), 2);
        assert!(d.biggest_moves[0].spot);
        assert!((d.biggest_moves[0].change + 0.5).abs() < 1e-12);
        assert!((d.biggest_moves[1].change - 0.1).abs() < 1e-9);
    }
}
