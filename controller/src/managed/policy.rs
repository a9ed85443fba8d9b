//! The recovery policy of managed jobs, as pure code: the strategy, the blocks a preemption
//! leaves (zones hard, regions soft), the order in which a recovery tries the plan's placements,
//! and the keys of clusters and nodes they are recorded under.

use skycat_optimizer::{BlockedResource, Placement, TaskSpec};

use crate::store::{ClusterRow, NodeRow};

/// Recovery strategy, as SkyPilot's `job_recovery.strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Avoid the preempted region: other regions first, the preempted one only as a last resort.
    #[default]
    EagerNextRegion,
    /// Retry the preempted region first (other zones of it), then the other regions.
    Failover,
}

impl Strategy {
    pub fn parse(s: &str) -> Option<Strategy> {
        match s.trim().to_ascii_uppercase().replace('-', "_").as_str() {
            "EAGER_NEXT_REGION" => Some(Strategy::EagerNextRegion),
            "FAILOVER" => Some(Strategy::Failover),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::EagerNextRegion => "EAGER_NEXT_REGION",
            Strategy::Failover => "FAILOVER",
        }
    }
}

/// `cloud/region` of a cluster (`ssh/POOL` for pools): the key of a managed job's blocks.
pub(crate) fn region_key(c: &ClusterRow) -> String {
    let mut parts = c.infra.split('/');
    let cloud = parts.next().unwrap_or_default();
    match parts.next() {
        Some(r) => format!("{cloud}/{r}"),
        None => format!("{cloud}/{}", c.pool),
    }
}

/// The blocking key of a node inside its region: the pool host for SSH pools, the zone for
/// clouds, the node a pod ran on for Kubernetes (its zone).
pub(crate) fn zone_key(c: &ClusterRow, n: &NodeRow) -> String {
    if c.cloud() == "ssh" {
        n.host_key()
    } else {
        // The planned zone as the plan names it (AWS: the zone id), so the block matches the
        // plan's placements; the provider's own zone name only when the plan had none.
        c.infra.split('/').nth(2).map(str::to_string).or_else(|| n.zone.clone()).unwrap_or_default()
    }
}

/// Market of every resource alternative of the task.
pub(crate) fn set_market(spec: &mut TaskSpec, spot: bool) {
    let r = spec.resources.get_or_insert_with(Default::default);
    r.use_spot = Some(spot);
    for e in r.any_of.iter_mut().flatten().chain(r.ordered.iter_mut().flatten()) {
        e.use_spot = Some(spot);
    }
}

/// A managed job's blocks as the planner takes them.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct JobBlocks {
    /// Preempted zones (hard: never used again by this job).
    pub(crate) zones: Vec<BlockedResource>,
    /// Preempted pool hosts (hard).
    pub(crate) hosts: Vec<String>,
    /// Preempted regions (soft, EAGER_NEXT_REGION: tried last).
    pub(crate) regions: Vec<(String, String)>,
}

impl JobBlocks {
    /// From `managed_blocks` rows (pool = `cloud/region`, or a bare pool name in old rows;
    /// host = zone or pool host; scope).
    pub(crate) fn from_rows(rows: &[(String, String, String)]) -> JobBlocks {
        let mut b = JobBlocks::default();
        for (pool, host, scope) in rows {
            let (cloud, region) = pool.split_once('/').unwrap_or(("ssh", pool.as_str()));
            match scope.as_str() {
                "zone" if cloud == "ssh" => b.hosts.push(host.clone()),
                // A Kubernetes node (the pod's failure domain): avoided, the context is not.
                "zone" if cloud == crate::backend::kubernetes::INFRA && !host.is_empty() => b.hosts.push(host.clone()),
                "zone" if !host.is_empty() => b.zones.push(BlockedResource {
                    cloud: cloud.to_string(),
                    region: Some(region.to_string()),
                    zone: Some(host.clone()),
                }),
                "zone" => b.zones.push(BlockedResource { cloud: cloud.to_string(), region: Some(region.to_string()), zone: None }),
                _ => b.regions.push((cloud.to_string(), region.to_string())),
            }
        }
        b
    }
}

/// The failover order for a recovery: with EAGER_NEXT_REGION placements in preempted regions go
/// last; with FAILOVER placements in the previous region go first. Otherwise the plan's order.
pub(crate) fn order_for_recovery(
    failover: Vec<Placement>,
    strategy: Strategy,
    preempted_regions: &[(String, String)],
    prev_region: Option<&str>,
) -> Vec<Placement> {
    let key = |p: &Placement| format!("{}/{}", p.cloud, p.region);
    let (mut first, mut rest): (Vec<Placement>, Vec<Placement>) = match strategy {
        Strategy::EagerNextRegion => {
            failover.into_iter().partition(|p| !preempted_regions.iter().any(|(c, r)| *c == p.cloud && *r == p.region))
        }
        Strategy::Failover => failover.into_iter().partition(|p| prev_region == Some(key(p).as_str())),
    };
    first.append(&mut rest);
    first
}


#[cfg(test)]
mod tests {
    use super::*;

    fn pl(cloud: &str, region: &str, zone: &str, price: f64) -> Placement {
        Placement {
            cloud: cloud.into(),
            region: region.into(),
            zone: Some(zone.into()),
            instance_type: "m6i.large".into(),
            vcpus: Some(2.0),
            memory_gib: Some(8.0),
            accelerator: None,
            count: 0.0,
            use_spot: true,
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
    fn blocks_from_rows_new_and_old() {
        let rows = vec![
            ("aws/us-east-1".to_string(), "use1-az1".to_string(), "zone".to_string()),
            ("aws/us-east-1".to_string(), String::new(), "region".to_string()),
            ("ssh/cheap".to_string(), "root@10.0.0.1:22".to_string(), "zone".to_string()),
            // Rows written before cloud backends: a bare pool name.
            ("dear".to_string(), "root@10.0.0.2:22".to_string(), "zone".to_string()),
        ];
        let b = JobBlocks::from_rows(&rows);
        assert_eq!(
            b.zones,
            vec![BlockedResource { cloud: "aws".into(), region: Some("us-east-1".into()), zone: Some("use1-az1".into()) }]
        );
        assert_eq!(b.hosts, vec!["root@10.0.0.1:22", "root@10.0.0.2:22"]);
        assert_eq!(b.regions, vec![("aws".to_string(), "us-east-1".to_string())]);
    }

    #[test]
    fn recovery_order_follows_the_strategy() {
        let plan = vec![
            pl("aws", "us-east-1", "use1-az5", 1.0),
            pl("aws", "us-west-2", "usw2-az4", 1.1),
            pl("aws", "us-east-1", "use1-az2", 1.2),
            pl("aws", "us-west-2", "usw2-az2", 1.3),
        ];
        let zones = |v: &[Placement]| v.iter().map(|p| p.zone.clone().unwrap()).collect::<Vec<_>>();
        let eager = order_for_recovery(plan.clone(), Strategy::EagerNextRegion, &[("aws".into(), "us-east-1".into())], None);
        assert_eq!(zones(&eager), ["usw2-az4", "usw2-az2", "use1-az5", "use1-az2"]);
        let failover = order_for_recovery(plan.clone(), Strategy::Failover, &[], Some("aws/us-west-2"));
        assert_eq!(zones(&failover), ["usw2-az4", "usw2-az2", "use1-az5", "use1-az2"]);
        let first = order_for_recovery(plan.clone(), Strategy::EagerNextRegion, &[], None);
        assert_eq!(zones(&first), zones(&plan));
    }

    #[test]
    fn market_is_set_on_every_alternative() {
        let mut spec = skycat_optimizer::parse_task_yaml("resources:\n  any_of:\n    - accelerators: A100:1\n    - accelerators: V100:1\n").unwrap();
        set_market(&mut spec, true);
        let r = spec.resources.unwrap();
        assert_eq!(r.use_spot, Some(true));
        assert!(r.any_of.unwrap().iter().all(|e| e.use_spot == Some(true)));
    }
}
