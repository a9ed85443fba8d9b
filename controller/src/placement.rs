//! Where a launch goes: the optimizer's plan over the offers of the enabled backends (SSH pools
//! always, clouds that `skycat check` enabled), and the failover walk over that plan. `launch`,
//! `launch --dryrun`, `jobs launch` and `gpunode` all plan here, so a dry run prints exactly the
//! placements a launch tries, in the order it tries them.
//!
//! The walk follows SkyPilot's blocking: a capacity error blocks the zone (the region when the
//! placement has no zone), a quota error the region, an auth error the whole cloud; the next
//! placement of the failover order that is not blocked is tried next.

use std::collections::BTreeSet;
use std::future::Future;

use skycat_catalog::Offer;
use skycat_optimizer::{BlockedResource, OfferIndex, Placement, Plan, PlanError, PlanOptions, TaskSpec};

use crate::backend::{BlockScope, Backends, ProvisionError};

/// The plan a launch executes.
#[derive(Debug, Clone)]
pub struct LaunchPlan {
    pub plan: Plan,
    /// Clouds that are not enabled but would be cheaper than the chosen placement: their
    /// cheapest placement each, cheapest first.
    pub cheaper_elsewhere: Vec<Placement>,
}

/// Why no plan could be made.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PlacementError {
    #[error("{0}")]
    Plan(PlanError),
    /// Feasible only on clouds that are not enabled.
    #[error("no enabled cloud offers this ({wanted}); it is offered on {clouds}, which are not enabled: {how}")]
    NotEnabled { wanted: String, clouds: String, how: String },
}

/// The offers a launch may use: each enabled backend's offers (catalog rows of its cloud; SSH
/// pools from their YAML).
pub fn launchable_offers(backends: &Backends, enabled: &BTreeSet<String>, catalog: &[Offer]) -> Vec<Offer> {
    let mut out = Vec::new();
    for name in backends.names() {
        if name != "ssh" && !enabled.contains(name) {
            continue;
        }
        if let Some(b) = backends.get(name) {
            out.extend(b.offers(catalog));
        }
    }
    out
}

/// Plans `task` over `launchable` (what the walk will try); `everything` (the whole catalog plus
/// pools) tells which cheaper clouds are not enabled. `how_to_enable` says, per cloud, how.
pub fn plan_launch(
    task: &TaskSpec,
    launchable: &[Offer],
    everything: &[Offer],
    opts: &PlanOptions,
    how_to_enable: &dyn Fn(&str) -> String,
) -> Result<LaunchPlan, PlacementError> {
    let mut opts = opts.clone();
    // A launch walks the whole order if it has to.
    opts.max_failover = 0;
    let launch_index = OfferIndex::build(launchable);
    let all_index = OfferIndex::build(everything);
    let enabled: BTreeSet<&str> = launchable.iter().map(|o| o.cloud.as_ref()).collect();
    let all_plan = skycat_optimizer::plan(task, &all_index, &opts).ok();
    match skycat_optimizer::plan(task, &launch_index, &opts) {
        Ok(plan) => {
            let cheaper_elsewhere = all_plan
                .map(|a| {
                    a.per_cloud_cheapest
                        .into_iter()
                        // Compute and egress: data far from a cheaper cloud can make it dearer.
                        .filter(|p| !enabled.contains(p.cloud.as_str()) && p.total_cost + 1e-9 < plan.chosen.total_cost)
                        .collect()
                })
                .unwrap_or_default();
            Ok(LaunchPlan { plan, cheaper_elsewhere })
        }
        Err(e) => match all_plan {
            Some(a) => {
                let clouds: Vec<String> = a.per_cloud_cheapest.iter().map(|p| p.cloud.clone()).collect();
                let how = clouds.iter().map(|c| format!("{c}: {}", how_to_enable(c))).collect::<Vec<_>>().join("; ");
                Err(PlacementError::NotEnabled { wanted: a.requested.join(" or "), clouds: clouds.join(", "), how })
            }
            None => Err(PlacementError::Plan(e)),
        },
    }
}

/// Whether a block covers the placement.
pub fn is_blocked(p: &Placement, blocks: &[BlockedResource]) -> bool {
    blocks.iter().any(|b| {
        b.cloud == p.cloud
            && b.region.as_ref().is_none_or(|r| *r == p.region)
            && b.zone.as_ref().is_none_or(|z| p.zone.as_ref() == Some(z))
    })
}

/// The block an error of `scope` at `p` adds.
pub fn block_for(p: &Placement, scope: BlockScope) -> BlockedResource {
    match scope {
        BlockScope::Zone => BlockedResource { cloud: p.cloud.clone(), region: Some(p.region.clone()), zone: p.zone.clone() },
        BlockScope::Region => BlockedResource { cloud: p.cloud.clone(), region: Some(p.region.clone()), zone: None },
        BlockScope::Cloud => BlockedResource { cloud: p.cloud.clone(), region: None, zone: None },
    }
}

/// `aws/us-east-1/us-east-1a`.
pub fn infra_of(p: &Placement) -> String {
    match &p.zone {
        Some(z) => format!("{}/{}/{}", p.cloud, p.region, z),
        None => format!("{}/{}", p.cloud, p.region),
    }
}

fn scope_label(b: &BlockedResource) -> String {
    match (&b.region, &b.zone) {
        (Some(_), Some(z)) => format!("zone {z}"),
        (Some(r), None) => format!("region {}/{r}", b.cloud),
        _ => format!("cloud {}", b.cloud),
    }
}

/// One line per placement: `aws us-east-1/us-east-1a p3.2xlarge[spot] V100:1 $0.918/h`.
pub fn describe(p: &Placement) -> String {
    format!(
        "{} {} {}{} {} ${:.4}/h",
        p.cloud,
        p.location(),
        p.instance_type,
        if p.use_spot { "[spot]" } else { "" },
        p.accelerator_label(),
        p.hourly_total
    )
}

/// A failed try of the walk.
#[derive(Debug, Clone)]
pub struct FailedTry {
    pub placement: Placement,
    pub error: ProvisionError,
    pub blocked: BlockedResource,
}

/// Every placement was blocked or failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no placement could be provisioned ({} tried): {}", tried.len(), summary(tried))]
pub struct Exhausted {
    pub tried: Vec<FailedTry>,
}

fn summary(tried: &[FailedTry]) -> String {
    if tried.is_empty() {
        return "every placement of the plan is blocked".into();
    }
    tried.iter().map(|t| format!("{}: {}", infra_of(&t.placement), t.error)).collect::<Vec<_>>().join("; ")
}

/// Walks `failover` in order, skipping blocked placements, calling `try_one` on each until one
/// succeeds. Each try and each failure is reported through `say`, one line each.
pub async fn walk<T, F, Fut>(
    failover: &[Placement],
    initial_blocks: &[BlockedResource],
    mut try_one: F,
    say: &(dyn Fn(&str) + Send + Sync),
) -> Result<(Placement, T, Vec<FailedTry>), Exhausted>
where
    F: FnMut(Placement) -> Fut,
    Fut: Future<Output = Result<T, ProvisionError>>,
{
    let mut blocks: Vec<BlockedResource> = initial_blocks.to_vec();
    let mut tried: Vec<FailedTry> = Vec::new();
    for p in failover {
        if is_blocked(p, &blocks) {
            continue;
        }
        say(&format!("Trying {} ...", describe(p)));
        match try_one(p.clone()).await {
            Ok(v) => return Ok((p.clone(), v, tried)),
            Err(error) => {
                let blocked = block_for(p, error.block_scope(p.zone.is_some()));
                say(&format!("  ✗ {}: {error} → blocking {}", infra_of(p), scope_label(&blocked)));
                blocks.push(blocked.clone());
                tried.push(FailedTry { placement: p.clone(), error, blocked });
            }
        }
    }
    Err(Exhausted { tried })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ErrorClass;

    fn pl(cloud: &str, region: &str, zone: Option<&str>, price: f64) -> Placement {
        Placement {
            cloud: cloud.into(),
            region: region.into(),
            zone: zone.map(str::to_string),
            instance_type: "t".into(),
            vcpus: None,
            memory_gib: None,
            accelerator: None,
            count: 0.0,
            use_spot: false,
            hourly_price: price,
            num_nodes: 1,
            hourly_total: price,
            hours: 1.0,
            total_cost: price,
            egress_cost: 0.0,
            spot_interruption: None,
            expected_cost: None,
        }
    }

    #[test]
    fn blocks_cover_zone_region_cloud() {
        let a = pl("aws", "us-east-1", Some("us-east-1a"), 1.0);
        let b = pl("aws", "us-east-1", Some("us-east-1b"), 1.0);
        let c = pl("aws", "us-west-2", Some("us-west-2a"), 1.0);
        let zone = block_for(&a, BlockScope::Zone);
        assert!(is_blocked(&a, &[zone.clone()]) && !is_blocked(&b, &[zone]));
        let region = block_for(&a, BlockScope::Region);
        assert!(is_blocked(&b, &[region.clone()]) && !is_blocked(&c, &[region]));
        let cloud = block_for(&a, BlockScope::Cloud);
        assert!(is_blocked(&c, &[cloud]));
        assert!(!is_blocked(&pl("ssh", "us-east-1", None, 1.0), &[block_for(&a, BlockScope::Cloud)]));
    }

    #[tokio::test]
    async fn walk_blocks_and_moves_on() {
        let order = vec![
            pl("aws", "us-east-1", Some("us-east-1a"), 1.0),
            pl("aws", "us-east-1", Some("us-east-1b"), 1.1),
            pl("aws", "us-east-2", Some("us-east-2a"), 1.2),
            pl("aws", "us-east-2", Some("us-east-2b"), 1.3),
            pl("aws", "us-west-2", Some("us-west-2a"), 1.4),
        ];
        let lines = std::sync::Mutex::new(Vec::<String>::new());
        let say = |l: &str| lines.lock().unwrap().push(l.to_string());
        let mut calls = Vec::new();
        let r = walk(
            &order,
            &[],
            |p: Placement| {
                calls.push(p.location());
                let out = match p.zone.as_deref() {
                    Some("us-east-1a") => Err(ProvisionError::new(ErrorClass::Capacity, "InsufficientInstanceCapacity")),
                    Some("us-east-1b") => Err(ProvisionError::new(ErrorClass::Quota, "VcpuLimitExceeded")),
                    _ => Ok(7),
                };
                async move { out }
            },
            &say,
        )
        .await
        .unwrap();
        assert_eq!(r.0.zone.as_deref(), Some("us-east-2a"));
        assert_eq!(r.1, 7);
        assert_eq!(calls, vec!["us-east-1/us-east-1a", "us-east-1/us-east-1b", "us-east-2/us-east-2a"]);
        let text = lines.lock().unwrap().join("\n");
        assert!(text.contains("blocking zone us-east-1a") && text.contains("blocking region aws/us-east-1"), "{text}");

        // An auth error blocks the cloud: nothing else of it is tried.
        let mut n = 0;
        let e = walk(
            &order,
            &[],
            |_p: Placement| {
                n += 1;
                async { Err::<(), _>(ProvisionError::new(ErrorClass::Auth, "AuthFailure")) }
            },
            &|_: &str| {},
        )
        .await
        .unwrap_err();
        assert_eq!((n, e.tried.len()), (1, 1));
        assert!(e.to_string().contains("AuthFailure"), "{e}");
    }
}
