//! The expected-cost model of `minimize: expected-cost` (docs/expected-cost.md): a spot
//! placement is charged, on top of its price, the run time it is expected to lose to
//! interruptions.
//!
//! - AWS's Spot Instance Advisor gives, per type and region, the share of spot capacity reclaimed
//!   in the trailing month as a band (`<5%` … `>20%`). Each band is read as `p`, the chance that
//!   an instance running a whole month (730 h) is interrupted at least once, taken at the band's
//!   upper edge: 5, 10, 15, 20 %, and 25 % for `>20%` (its floor plus one band width; the
//!   advisor publishes no upper edge). Upper edges because the objective exists to be careful.
//! - Interruptions are taken as a Poisson process: `P(none in 730 h) = 1 − p`, so the hazard is
//!   `λ = −ln(1 − p) / 730` per hour per node.
//! - A run of `h` hours on `n` nodes expects `n × λ × h` interruptions (any node's loss stops the
//!   whole job); each costs `overhead` hours of the whole cluster (recovery plus the work lost
//!   since the last checkpoint). Expected cost = `hourly_total × (h + n λ h × overhead) + egress`.
//! - On-demand placements have no overhead. A spot offer without a band (every non-AWS spot
//!   market, and AWS rows imported from SkyPilot's CSV) is charged as `>20%`: an unpublished rate
//!   must not look safer than a published bad one.
//!
//! Pure arithmetic: no IO.

use skycat_catalog::SpotInterruption;

use crate::plan::Placement;

/// Hours in the advisor's "month" (365 × 24 / 12).
pub const HOURS_PER_MONTH: f64 = 730.0;

/// Default `restart_overhead_hours`: a quarter hour to relaunch, reload and redo the work since
/// the last checkpoint.
pub const DEFAULT_RESTART_OVERHEAD_HOURS: f64 = 0.25;

/// The band an offer without one is charged as.
pub const UNKNOWN_BUCKET: SpotInterruption = SpotInterruption::Over20;

/// The chance that an instance running a whole month is interrupted at least once, read from
/// the band: its upper edge (`>20%`: 25 %).
pub fn monthly_probability(bucket: SpotInterruption) -> f64 {
    match bucket {
        SpotInterruption::Under5 => 0.05,
        SpotInterruption::From5To10 => 0.10,
        SpotInterruption::From10To15 => 0.15,
        SpotInterruption::From15To20 => 0.20,
        SpotInterruption::Over20 => 0.25,
    }
}

/// Interruptions per node-hour: `−ln(1 − p) / 730`.
pub fn hazard_per_hour(bucket: SpotInterruption) -> f64 {
    -(1.0 - monthly_probability(bucket)).ln() / HOURS_PER_MONTH
}

/// Expected interruptions of a run of `hours` on `num_nodes` spot nodes (`None`: no band known).
pub fn expected_interruptions(bucket: Option<SpotInterruption>, num_nodes: u32, hours: f64) -> f64 {
    hazard_per_hour(bucket.unwrap_or(UNKNOWN_BUCKET)) * num_nodes as f64 * hours
}

/// Expected cost of a run: `hourly_total × (hours + interruptions × overhead) + egress` for spot,
/// `hourly_total × hours + egress` on demand.
pub fn expected_cost(
    spot: bool,
    bucket: Option<SpotInterruption>,
    hourly_total: f64,
    num_nodes: u32,
    hours: f64,
    overhead_hours: f64,
    egress: f64,
) -> f64 {
    let lost = if spot { expected_interruptions(bucket, num_nodes, hours) * overhead_hours } else { 0.0 };
    hourly_total * (hours + lost) + egress
}

/// The plan note that explains the objective, with the chosen placement's figures.
pub fn plan_note(chosen: &Placement, overhead_hours: f64) -> String {
    let how = format!(
        "minimizing expected cost: a spot placement is charged hourly_total × (hours + interruptions × {overhead_hours} h restart overhead), \
         expecting nodes × λ × hours interruptions, λ = −ln(1 − p)/730 h with p the upper edge of AWS's Spot Instance Advisor band \
         (>20% as 25%; a spot offer without a band counts as >20%); on-demand placements have no overhead"
    );
    if !chosen.use_spot {
        return format!("{how}; the chosen placement is on demand");
    }
    let n = expected_interruptions(chosen.spot_interruption, chosen.num_nodes, chosen.hours);
    let band = match chosen.spot_interruption {
        Some(b) => format!("band {b}"),
        None => format!("no band known, counted as {UNKNOWN_BUCKET}"),
    };
    format!(
        "{how}; the chosen spot placement ({band}) expects {n:.4} interruptions: ${:.4} expected vs ${:.4} at list price",
        chosen.expected_cost.unwrap_or(chosen.total_cost),
        chosen.total_cost
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_are_ordered_and_the_hazard_matches_the_formula() {
        let rates: Vec<f64> = SpotInterruption::ALL.iter().map(|b| hazard_per_hour(*b)).collect();
        assert!(rates.windows(2).all(|w| w[0] < w[1]), "{rates:?}");
        // >20%: P(no interruption in a month) = 0.75.
        assert!(((-rates[4] * HOURS_PER_MONTH).exp() - 0.75).abs() < 1e-12);
        assert_eq!(expected_cost(false, None, 2.0, 1, 10.0, 1.0, 0.5), 20.5);
        let spot = expected_cost(true, None, 2.0, 2, 10.0, 1.0, 0.0);
        assert!((spot - 2.0 * (10.0 + 2.0 * 10.0 * rates[4])).abs() < 1e-12, "{spot}");
    }
}
