//! Which catalog rows a single-task plan can use, so that a caller that loads the catalog for
//! one plan (the CLI) loads only those: [`offer_filter`].

use skycat_catalog::OfferFilter;

use crate::plan::{resolve, PlanError};
use crate::spec::TaskSpec;

/// The rows `task`'s plan can choose from or mention, as a catalog filter: when every resource
/// alternative names an accelerator, rows carrying one of those accelerators; when every
/// alternative names a cloud, rows of those clouds. Otherwise (a CPU-only alternative picks from
/// each cloud's default machines) every row.
///
/// A plan over the filtered rows equals the plan over the whole catalog whenever it succeeds
/// (`tests/offer_filter.rs` checks this on random tasks); when it fails, plan again over the
/// whole catalog, whose explanation sees every row ("did you mean", the counts on offer).
pub fn offer_filter(task: &TaskSpec) -> Result<OfferFilter, PlanError> {
    let alts = resolve(task)?;
    if alts.is_empty() {
        return Ok(OfferFilter::all());
    }
    let accelerators: Option<Vec<&str>> = alts.iter().map(|a| a.accel.as_ref().map(|c| c.name.as_str())).collect();
    let clouds: Option<Vec<&str>> = alts.iter().map(|a| a.cloud.as_deref()).collect();
    let filter = match accelerators {
        Some(names) => OfferFilter::accelerators(names),
        None => OfferFilter::all(),
    };
    Ok(match clouds {
        Some(clouds) => filter.in_clouds(clouds),
        None => filter,
    })
}
