//! The per-user monthly budget, checked when a managed job is submitted: before its row is
//! stored and before anything is provisioned, so a refused job leaves no trace and costs nothing.
//! See [`crate::costs`] for the `budgets:` section and how costs are attributed.

use anyhow::anyhow;
use skycat_optimizer::PlanOptions;

use super::policy::set_market;
use super::{JobError, JobRequest, Managed};
use crate::costs::{self, Budgets};

/// Projected run time when the request gives none, hours.
pub const DEFAULT_PROJECTED_HOURS: f64 = 1.0;

impl Managed {
    /// Submits like [`Managed::submit_as`] after checking `owner`'s monthly budget: metered cost
    /// this calendar month (UTC) + the plan's hourly price × `hours` must not exceed it. A
    /// refusal is [`JobError::OverBudget`]; nothing is stored or launched. Two submissions racing
    /// each other are each checked against the ledger alone (the cap is on metered cost, not a
    /// reservation).
    pub async fn submit_within_budget(&self, req: JobRequest, owner: &str, hours: Option<f64>) -> Result<i64, JobError> {
        self.check_budget(&req, owner, hours.unwrap_or(DEFAULT_PROJECTED_HOURS)).await?;
        self.submit_as(req, owner).await
    }

    /// The state store (the cost ledger of every user's clusters).
    pub fn store(&self) -> &crate::Store {
        &self.inner.ctl.store
    }

    /// Validates `budgets:` in config.yaml (at start, so that a typo is seen then, not at the
    /// first launch).
    pub fn budgets(&self) -> Result<Budgets, anyhow::Error> {
        Ok(Budgets::load(&self.inner.ctl.home.root.join("config.yaml"))?)
    }

    pub(super) async fn check_budget(&self, req: &JobRequest, owner: &str, hours: f64) -> Result<(), JobError> {
        if owner.is_empty() {
            return Ok(());
        }
        let Some(limit) = self.budgets()?.monthly_for(owner) else { return Ok(()) };
        let now = chrono::Utc::now();
        let start = costs::month_start(now);
        let metered = costs::metered_since(&self.inner.ctl.store, owner, &start).await.map_err(|e| anyhow!(e))?;
        let mut spec = req.spec.clone().unwrap_or_default();
        set_market(&mut spec, req.use_spot);
        if spec.num_nodes.is_none() {
            spec.num_nodes = Some(req.task.num_nodes.max(1));
        }
        let catalog = (self.inner.catalog)();
        // No placement at all: the job ends FAILED_NO_RESOURCE without costing anything, as
        // before; the budget has nothing to refuse.
        let (hourly, what) = match self.inner.ctl.plan_launch(&spec, &catalog, &PlanOptions::default()) {
            Ok(lp) => (lp.plan.hourly_total, format!("{} in {}/{}", lp.plan.chosen.short(), lp.plan.chosen.cloud, lp.plan.chosen.location())),
            Err(_) => (0.0, String::new()),
        };
        let projected = hourly * hours;
        if metered + projected > limit + 1e-9 {
            return Err(JobError::OverBudget(format!(
                "over {owner}'s monthly budget of ${limit:.2}: ${metered:.2} metered since {} (UTC) + ${projected:.2} projected \
                 (${hourly:.4}/h × {hours} h, {what}) = ${:.2}",
                start.format("%Y-%m-%d"),
                metered + projected
            )));
        }
        Ok(())
    }
}
