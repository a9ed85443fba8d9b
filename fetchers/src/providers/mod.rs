//! The registry of providers. A new cloud = one file in this folder + one `pub mod` line and one
//! `Arc::new(...)` line below.

use std::sync::Arc;

use crate::provider::Provider;

pub mod aws;
pub mod azure;
pub mod gcp;
pub mod ibm;
pub mod lambda;
pub mod oci;
pub mod runpod;
pub mod scp;
pub mod vast;
// (provider modules: one `pub mod <cloud>;` line each)

/// Every provider, in display order.
pub fn registry() -> Vec<Arc<dyn Provider>> {
    vec![
        Arc::new(aws::Aws),
        Arc::new(azure::Azure),
        Arc::new(gcp::Gcp),
        Arc::new(ibm::Ibm),
        Arc::new(lambda::Lambda),
        Arc::new(oci::Oci),
        Arc::new(runpod::RunPod),
        Arc::new(scp::Scp),
        Arc::new(vast::Vast),
        // (one `Arc::new(<cloud>::<Type>),` line per provider)
    ]
}

/// The provider named `name` (lower case), if registered.
pub fn by_name(name: &str) -> Option<Arc<dyn Provider>> {
    registry().into_iter().find(|p| p.name() == name)
}

/// Names of all registered providers.
pub fn names() -> Vec<&'static str> {
    registry().iter().map(|p| p.name()).collect()
}
