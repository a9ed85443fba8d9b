//! Team-wide costs from the metered ledger (`skycat cost-report --all-users --since`) and the
//! per-user monthly budgets of `skycat serve` (`budgets:` in `$SKYCAT_HOME/config.yaml`).
//!
//! Who a cost belongs to: the owner (API token name) of the managed job whose attempt ran the
//! cluster; a cluster launched from the CLI belongs to [`LOCAL_OWNER`]. Costs are the agents'
//! ledger records, metered at the price pinned at launch, never re-priced.
//!
//! ```yaml
//! budgets:
//!   monthly_usd: 200              # every API user, per calendar month (UTC)
//!   users: {alice: 1000, ci: 50}  # per user, instead of the default
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use sqlx::Row;

use crate::store::{Store, StoreError};

/// The owner shown for clusters launched from the CLI rather than as a managed job.
pub const LOCAL_OWNER: &str = "(cli)";

/// One line of the team report: a user's metered cost on one cluster.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TeamCostLine {
    pub user: String,
    pub cluster: String,
    pub cloud: String,
    /// `cloud/region[/zone]` of the cluster.
    pub infra: String,
    pub instance_type: Option<String>,
    /// The price pinned at launch, USD per node-hour.
    pub price_per_hour: f64,
    pub metered_seconds: f64,
    pub usd: f64,
}

/// `since` as the ledger writes timestamps (RFC 3339, microseconds, `Z`), so that text order is
/// time order.
pub fn ledger_ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The first instant of `now`'s calendar month, UTC.
pub fn month_start(now: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0).single().unwrap_or(now)
}

/// `--since`: `2026-11-01`, `2026-11-01T12:00:00Z`, or `30d` / `12h` back from now.
pub fn parse_since(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let s = raw.trim();
    if let Some(n) = s.strip_suffix('d').and_then(|n| n.parse::<u32>().ok()) {
        return Ok(now - chrono::Duration::days(n as i64));
    }
    if let Some(n) = s.strip_suffix('h').and_then(|n| n.parse::<u32>().ok()) {
        return Ok(now - chrono::Duration::hours(n as i64));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(Utc.from_utc_datetime(&t));
        }
    }
    Err(format!("{raw:?}: expected a date (2026-11-01), an RFC 3339 time, or a span back from now (30d, 12h)"))
}

/// Ledger records ending at or after `since`, per user and cluster; `user` keeps one user's.
/// Ordered by user, then cost (dearest first).
pub async fn team_costs(store: &Store, since: Option<&DateTime<Utc>>, user: Option<&str>) -> Result<Vec<TeamCostLine>, StoreError> {
    let since = since.map(ledger_ts).unwrap_or_default();
    let rows = sqlx::query(
        "SELECT COALESCE((SELECT j.owner FROM managed_attempts a JOIN managed_jobs j ON j.id = a.job_id
                          WHERE a.cluster_id = c.id LIMIT 1), $1) AS owner,
                c.name, c.infra, c.instance_type, c.price_per_hour,
                COALESCE(SUM(l.seconds), 0.0) AS seconds, COALESCE(SUM(l.usd), 0.0) AS usd
         FROM cost_ledger l JOIN clusters c ON c.id = l.cluster_id
         WHERE l.to_ts >= $2
         GROUP BY c.id",
    )
    .bind(LOCAL_OWNER)
    .bind(&since)
    .fetch_all(store.db())
    .await
    .map_err(|e| store.err(e))?;
    let mut out: Vec<TeamCostLine> = rows
        .iter()
        .map(|r| {
            let owner: String = r.get("owner");
            let infra: String = r.get("infra");
            TeamCostLine {
                user: owner_label(owner),
                cluster: r.get("name"),
                cloud: infra.split('/').next().unwrap_or_default().to_string(),
                infra,
                instance_type: r.get("instance_type"),
                price_per_hour: r.get("price_per_hour"),
                metered_seconds: r.get("seconds"),
                usd: r.get("usd"),
            }
        })
        .filter(|l| user.is_none_or(|u| l.user == u))
        .collect();
    out.sort_by(|a, b| a.user.cmp(&b.user).then(b.usd.total_cmp(&a.usd)).then(a.cluster.cmp(&b.cluster)));
    Ok(out)
}

/// The owner of each live cluster, by the rule of [`team_costs`]: the API token that submitted
/// the managed job whose attempt ran it, `(server)` for a job submitted in-process, [`LOCAL_OWNER`]
/// for a cluster launched from the CLI. Keyed by cluster id.
pub async fn cluster_owners(store: &Store) -> Result<BTreeMap<String, String>, StoreError> {
    let rows = sqlx::query(
        "SELECT c.id, COALESCE((SELECT j.owner FROM managed_attempts a JOIN managed_jobs j ON j.id = a.job_id
                               WHERE a.cluster_id = c.id LIMIT 1), $1) AS owner
         FROM clusters c WHERE c.status != 'TERMINATED'",
    )
    .bind(LOCAL_OWNER)
    .fetch_all(store.db())
    .await
    .map_err(|e| store.err(e))?;
    Ok(rows.iter().map(|r| (r.get::<String, _>("id"), owner_label(r.get("owner")))).collect())
}

/// A job submitted in-process has no token name: it is the server's own.
fn owner_label(owner: String) -> String {
    if owner.is_empty() {
        "(server)".into()
    } else {
        owner
    }
}

/// One user's metered cost on one cluster during one UTC day (the day a ledger record ends).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DayCostLine {
    /// `2026-12-02`.
    pub day: String,
    pub user: String,
    pub cluster: String,
    pub usd: f64,
}

/// Ledger records ending at or after `since`, per UTC day, user and cluster (owners as in
/// [`team_costs`]); `user` keeps one user's. Ordered by day, then user and cluster.
pub async fn daily_costs(store: &Store, since: Option<&DateTime<Utc>>, user: Option<&str>) -> Result<Vec<DayCostLine>, StoreError> {
    let since = since.map(ledger_ts).unwrap_or_default();
    // Ledger timestamps are RFC 3339 UTC: their first ten characters are the day.
    let rows = sqlx::query(
        "SELECT substr(l.to_ts, 1, 10) AS day, c.name,
                COALESCE((SELECT j.owner FROM managed_attempts a JOIN managed_jobs j ON j.id = a.job_id
                          WHERE a.cluster_id = c.id LIMIT 1), $1) AS owner,
                COALESCE(SUM(l.usd), 0.0) AS usd
         FROM cost_ledger l JOIN clusters c ON c.id = l.cluster_id
         WHERE l.to_ts >= $2
         GROUP BY substr(l.to_ts, 1, 10), c.id",
    )
    .bind(LOCAL_OWNER)
    .bind(&since)
    .fetch_all(store.db())
    .await
    .map_err(|e| store.err(e))?;
    let mut out: Vec<DayCostLine> = rows
        .iter()
        .map(|r| DayCostLine { day: r.get("day"), user: owner_label(r.get("owner")), cluster: r.get("name"), usd: r.get("usd") })
        .filter(|l| user.is_none_or(|u| l.user == u))
        .collect();
    out.sort_by(|a, b| a.day.cmp(&b.day).then(a.user.cmp(&b.user)).then(a.cluster.cmp(&b.cluster)));
    Ok(out)
}

/// What `user` has been metered since `since` on the clusters of its managed jobs.
pub async fn metered_since(store: &Store, user: &str, since: &DateTime<Utc>) -> Result<f64, StoreError> {
    let usd: f64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(l.usd), 0.0) FROM cost_ledger l
         WHERE l.to_ts >= $1 AND l.cluster_id IN
           (SELECT a.cluster_id FROM managed_attempts a JOIN managed_jobs j ON j.id = a.job_id WHERE j.owner = $2)",
    )
    .bind(ledger_ts(since))
    .bind(user)
    .fetch_one(store.db())
    .await
    .map_err(|e| store.err(e))?;
    Ok(usd)
}

/// A `budgets:` entry that cannot be used, naming its key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}: {key}: {message}")]
pub struct BudgetError {
    pub file: String,
    pub key: String,
    pub message: String,
}

/// Per-user monthly budgets, USD per calendar month (UTC).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Budgets {
    default_monthly_usd: Option<f64>,
    users: BTreeMap<String, f64>,
}

impl Budgets {
    /// The `budgets:` section of the config file at `path`; none when absent.
    pub fn load(path: &Path) -> Result<Budgets, BudgetError> {
        let file = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(t) => Budgets::parse(&t, &file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Budgets::default()),
            Err(e) => Err(BudgetError { file, key: "budgets".into(), message: format!("cannot read: {e}") }),
        }
    }

    pub fn parse(text: &str, file: &str) -> Result<Budgets, BudgetError> {
        let err = |key: &str, message: String| BudgetError { file: file.into(), key: key.into(), message };
        if text.trim().is_empty() {
            return Ok(Budgets::default());
        }
        let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| err("budgets", format!("not YAML: {e}")))?;
        let Some(section) = doc.get("budgets").filter(|v| !v.is_null()) else { return Ok(Budgets::default()) };
        let m = section.as_mapping().ok_or_else(|| err("budgets", "must be a mapping".into()))?;
        let usd = |key: &str, v: &serde_yaml::Value| match v.as_f64() {
            Some(x) if x.is_finite() && x >= 0.0 => Ok(x),
            _ => Err(err(key, format!("must be a non-negative USD amount per month, got {}", serde_yaml::to_string(v).unwrap_or_default().trim()))),
        };
        let mut out = Budgets::default();
        for (k, v) in m {
            match k.as_str().unwrap_or_default() {
                "monthly_usd" => out.default_monthly_usd = Some(usd("budgets.monthly_usd", v)?),
                "users" => {
                    let users = v.as_mapping().ok_or_else(|| err("budgets.users", "must be a mapping of user: USD".into()))?;
                    for (u, amount) in users {
                        let name = u.as_str().filter(|s| !s.trim().is_empty()).ok_or_else(|| err("budgets.users", "keys must be user (token) names".into()))?;
                        out.users.insert(name.to_string(), usd(&format!("budgets.users.{name}"), amount)?);
                    }
                }
                other => return Err(err(&format!("budgets.{other}"), "unknown key (expected monthly_usd, users)".into())),
            }
        }
        Ok(out)
    }

    /// The monthly budget of `user`, if one applies.
    pub fn monthly_for(&self, user: &str) -> Option<f64> {
        self.users.get(user).copied().or(self.default_monthly_usd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_and_name_bad_keys() {
        let b = Budgets::parse("aws: {ssh_user: x}\nbudgets:\n  monthly_usd: 200\n  users: {alice: 1000, ci: 0}\n", "c.yaml").unwrap();
        assert_eq!((b.monthly_for("alice"), b.monthly_for("ci"), b.monthly_for("bob")), (Some(1000.0), Some(0.0), Some(200.0)));
        assert_eq!(Budgets::parse("prices: {}\n", "c.yaml").unwrap().monthly_for("x"), None);
        let e = Budgets::parse("budgets:\n  users: {alice: -5}\n", "c.yaml").unwrap_err().to_string();
        assert!(e.starts_with("c.yaml: budgets.users.alice: must be a non-negative"), "{e}");
        let e = Budgets::parse("budgets:\n  monthly: 5\n", "c.yaml").unwrap_err().to_string();
        assert!(e.contains("budgets.monthly: unknown key"), "{e}");
    }

    #[test]
    fn since_and_month_start() {
        let now = Utc.with_ymd_and_hms(2026, 12, 2, 9, 30, 0).unwrap();
        assert_eq!(month_start(now), Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap());
        assert_eq!(parse_since("2026-11-01", now).unwrap(), Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap());
        assert_eq!(parse_since("2d", now).unwrap(), Utc.with_ymd_and_hms(2026, 11, 30, 9, 30, 0).unwrap());
        assert_eq!(parse_since("2026-11-05T10:00:00Z", now).unwrap(), Utc.with_ymd_and_hms(2026, 11, 5, 10, 0, 0).unwrap());
        assert!(parse_since("last week", now).is_err());
        // Text order of ledger timestamps is time order.
        assert!(ledger_ts(&month_start(now)) < ledger_ts(&now));
    }
}
