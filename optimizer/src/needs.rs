//! Which catalog rows a single-task plan can use, so that a caller that loads the catalog for
//! one plan (the CLI) loads only those: [`offer_filter`].

use std::sync::Arc;

use skycat_catalog::{MachineRule, OfferFilter, RowRule, SizeBounds};

use crate::defaults::{cpu_default, in_family};
use crate::plan::{resolve, Alt, PlanError};
use crate::spec::{SizeReq, TaskSpec};

/// The rows `task`'s plan can choose from, as a catalog filter: per resource alternative, the
/// rows of its cloud (when it names one) that carry its accelerator, or are of its instance
/// type, or — for a CPU-only alternative — are machines SkyPilot's default rules pick from
/// (the cloud's default families, GPU machines only where the rules take them, at least the
/// default size).
///
/// A plan over the filtered rows equals the plan over the whole catalog whenever it succeeds,
/// provided it is made with [`crate::PlanOptions::filtered_rows`] set (`tests/offer_filter.rs`
/// checks this on random tasks): the relaxed pass and the guessing of accelerator names need
/// rows the filter drops, so such a plan fails instead. When it fails, plan again over the whole
/// catalog, whose explanation sees every row ("did you mean", the counts on offer).
pub fn offer_filter(task: &TaskSpec) -> Result<OfferFilter, PlanError> {
    let alts = resolve(task)?;
    if alts.is_empty() {
        return Ok(OfferFilter::all());
    }
    Ok(OfferFilter::any_of(alts.iter().map(rule_for)))
}

fn rule_for(alt: &Alt) -> RowRule {
    let mut rule = RowRule::every_row();
    if let Some(cloud) = &alt.cloud {
        rule = rule.in_clouds([cloud]);
    }
    if let Some(accel) = &alt.accel {
        rule.accelerators([&accel.name])
    } else if let Some(itype) = &alt.instance_type {
        rule.instance_types([itype])
    } else if alt.default_shape {
        rule.machines(Arc::new(DefaultMachines { cpus: alt.cpus, memory: alt.memory }))
    } else {
        rule
    }
}

/// SkyPilot's default machine rules for a CPU-only alternative without an instance type
/// ([`crate::defaults::cpu_default`]), as the planner's strict pass applies them.
#[derive(Debug)]
struct DefaultMachines {
    cpus: Option<SizeReq>,
    memory: Option<SizeReq>,
}

impl MachineRule for DefaultMachines {
    fn keeps_type(&self, cloud: &str, instance_type: &str, has_accelerator: bool) -> bool {
        let rule = cpu_default(&cloud.to_ascii_lowercase());
        (!has_accelerator || rule.gpu_instances) && rule.families.is_none_or(|f| in_family(f, instance_type))
    }

    fn size_bounds(&self, cloud: &str) -> SizeBounds {
        let (cpus, memory, ratio) = cpu_default(&cloud.to_ascii_lowercase()).bounds(self.cpus, self.memory);
        SizeBounds { min_vcpus: cpus.map(|c| c.value), min_memory_gib: memory.map(|m| m.value), min_memory_per_vcpu: ratio }
    }
}
