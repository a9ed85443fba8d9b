//! What the clusters-and-jobs pages show, read from the controller with the API's visibility
//! rules (see the module docs of [`super`]).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use skycat_controller::costs;
use skycat_controller::managed::{JobError, JobView, Managed};
use skycat_controller::store::StoreError;

use crate::auth::{Principal, Role};

/// The cost charts cover this many days back from now.
pub const COST_DAYS: i64 = 30;

/// A read of the controller's state that failed.
#[derive(Debug)]
pub struct ReadError {
    /// The database was unreachable (503: try again later).
    pub unavailable: bool,
    pub message: String,
}

impl From<JobError> for ReadError {
    fn from(e: JobError) -> Self {
        ReadError { unavailable: e.is_unavailable(), message: format!("{e:#}") }
    }
}

impl From<anyhow::Error> for ReadError {
    fn from(e: anyhow::Error) -> Self {
        JobError::Internal(e).into()
    }
}

impl From<StoreError> for ReadError {
    fn from(e: StoreError) -> Self {
        ReadError { unavailable: e.is_unavailable(), message: e.to_string() }
    }
}

/// One node of a cluster.
#[derive(Debug, Clone)]
pub struct NodeLine {
    pub rank: u32,
    pub ip: String,
    pub last_heartbeat_at: Option<String>,
}

/// One live cluster.
#[derive(Debug, Clone)]
pub struct ClusterLine {
    pub name: String,
    pub status: String,
    pub owner: String,
    /// `cloud/region[/zone]` or `ssh/POOL`.
    pub infra: String,
    pub instance_type: Option<String>,
    pub spot: bool,
    pub num_nodes: u32,
    /// The price pinned at launch, per node-hour.
    pub price_per_node_hour: f64,
    /// The whole cluster's price per hour.
    pub per_hour: f64,
    /// Metered so far: the ledger, or the nodes' running totals when newer.
    pub cost_usd: f64,
    pub nodes: Vec<NodeLine>,
    /// `ip:port` (or `ip:lo-hi`) of the head node for each opened port range.
    pub endpoints: Vec<String>,
    pub created_at: String,
    /// `10 min`, `10 min, then down`.
    pub autostop: Option<String>,
}

/// Metered cost over the last [`COST_DAYS`] days.
#[derive(Debug, Clone, Default)]
pub struct CostSummary {
    /// Every day from the first with a cost to today, with zeros between.
    pub days: Vec<(NaiveDate, f64)>,
    /// Dearest first.
    pub clusters: Vec<(String, f64)>,
    /// Dearest first.
    pub users: Vec<(String, f64)>,
}

/// The `/ui/jobs` page's data.
#[derive(Debug, Clone)]
pub struct Overview {
    pub clusters: Vec<ClusterLine>,
    pub jobs: Vec<JobView>,
    pub costs: CostSummary,
    /// Whether the caller sees every user's (an admin, or a dashboard without tokens).
    pub everyone: bool,
    pub now: DateTime<Utc>,
}

/// One job with its logs and blocks (`/ui/jobs/{id}`).
#[derive(Debug, Clone)]
pub struct JobDetail {
    pub view: JobView,
    /// (attempt, log) of every attempt.
    pub logs: Vec<(u32, String)>,
    /// (pool, host, scope) blocked for the rest of the job.
    pub blocks: Vec<(String, String, String)>,
}

/// The owner whose things the caller sees; None: everyone's (an admin, or no tokens at all).
fn only_owner(who: Option<&Principal>) -> Option<&str> {
    who.filter(|p| p.role != Role::Admin).map(|p| p.name.as_str())
}

/// The endpoints of the head node, as `skycat status --endpoints` prints them.
pub fn endpoints(head_ip: Option<&str>, ranges: &[(u16, u16)]) -> Vec<String> {
    let Some(ip) = head_ip else { return Vec::new() };
    ranges
        .iter()
        .map(|(lo, hi)| if lo == hi { format!("{ip}:{lo}") } else { format!("{ip}:{lo}-{hi}") })
        .collect()
}

pub async fn overview(m: &Managed, who: Option<&Principal>) -> Result<Overview, ReadError> {
    let only = only_owner(who);
    let now = Utc::now();
    let jobs = m.jobs_of(only).await?;
    let store = m.store();
    let owners = costs::cluster_owners(store).await?;
    let ledger: HashMap<String, f64> = store.cost_report().await?.into_iter().map(|l| (l.cluster_id, l.usd)).collect();
    let mut clusters = Vec::new();
    for c in store.clusters().await? {
        let owner = owners.get(&c.id).cloned().unwrap_or_else(|| costs::LOCAL_OWNER.to_string());
        if only.is_some_and(|u| u != owner) {
            continue;
        }
        let nodes = store.nodes(&c.id).await?;
        let accrued: f64 = nodes.iter().map(|n| n.accrued_usd).sum();
        let autostop = c.idle_minutes.map(|m| {
            let m = super::html::num(m);
            if c.down_on_idle { format!("{m} min, then down") } else { format!("{m} min") }
        });
        clusters.push(ClusterLine {
            endpoints: endpoints(nodes.first().map(|n| n.ip.as_str()), &c.port_ranges()),
            cost_usd: ledger.get(&c.id).copied().unwrap_or(0.0).max(accrued),
            nodes: nodes.iter().map(|n| NodeLine { rank: n.rank, ip: n.ip.clone(), last_heartbeat_at: n.last_heartbeat_at.clone() }).collect(),
            per_hour: c.price_per_hour * f64::from(c.num_nodes),
            price_per_node_hour: c.price_per_hour,
            num_nodes: c.num_nodes,
            spot: c.spot,
            instance_type: c.instance_type.clone(),
            infra: c.infra.clone(),
            status: c.status.clone(),
            created_at: c.created_at.clone(),
            name: c.name,
            owner,
            autostop,
        });
    }
    let costs = cost_summary(m, only, now).await?;
    Ok(Overview { clusters, jobs, costs, everyone: only.is_none(), now })
}

async fn cost_summary(m: &Managed, only: Option<&str>, now: DateTime<Utc>) -> Result<CostSummary, ReadError> {
    let since = now - chrono::Duration::days(COST_DAYS);
    let store = m.store();
    let mut per_day: BTreeMap<NaiveDate, f64> = BTreeMap::new();
    for l in costs::daily_costs(store, Some(&since), only).await? {
        if let Ok(d) = NaiveDate::parse_from_str(&l.day, "%Y-%m-%d") {
            *per_day.entry(d).or_default() += l.usd;
        }
    }
    let mut days = Vec::new();
    if let Some(first) = per_day.keys().next().copied() {
        let last = now.date_naive().max(*per_day.keys().last().unwrap_or(&first));
        let mut d = first;
        while d <= last {
            days.push((d, per_day.get(&d).copied().unwrap_or(0.0)));
            match d.succ_opt() {
                Some(n) => d = n,
                None => break,
            }
        }
    }
    let mut clusters: BTreeMap<String, f64> = BTreeMap::new();
    let mut users: BTreeMap<String, f64> = BTreeMap::new();
    for l in costs::team_costs(store, Some(&since), only).await? {
        *clusters.entry(l.cluster).or_default() += l.usd;
        *users.entry(l.user).or_default() += l.usd;
    }
    let dearest = |m: BTreeMap<String, f64>| {
        let mut v: Vec<(String, f64)> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    };
    Ok(CostSummary { days, clusters: dearest(clusters), users: dearest(users) })
}

/// Job `id` with its logs, if the caller may see it (another user's job is absent, as in the API).
pub async fn job(m: &Managed, who: Option<&Principal>, id: i64) -> Result<Option<JobDetail>, ReadError> {
    let Some(v) = m.job(id).await? else { return Ok(None) };
    if who.is_some_and(|p| !p.may_see(&v.owner)) {
        return Ok(None);
    }
    let (view, logs) = m.logs(id).await?;
    let blocks = m.blocks(id).await?;
    Ok(Some(JobDetail { view, logs, blocks }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_of_the_head_node() {
        assert_eq!(endpoints(Some("10.0.0.1"), &[(8080, 8080), (9000, 9010)]), vec!["10.0.0.1:8080", "10.0.0.1:9000-9010"]);
        assert!(endpoints(None, &[(8080, 8080)]).is_empty());
    }

    #[test]
    fn users_see_their_own_admins_everyone() {
        let alice = Principal { name: "alice".into(), role: Role::User };
        let root = Principal { name: "root".into(), role: Role::Admin };
        assert_eq!(only_owner(Some(&alice)), Some("alice"));
        assert_eq!(only_owner(Some(&root)), None);
        assert_eq!(only_owner(None), None);
    }
}
