//! skycat's price catalog: the offer schema, the accelerator registry, Parquet IO, queries,
//! manifests with provenance, and export to SkyPilot's catalog layout.
//!
//! Without the default `parquet` feature the crate is schema, registry and queries only, with no
//! polars: that is what the optimizer and the agent link.

pub mod accelerators;
pub mod catalog;
pub mod error;
pub mod filter;
pub mod fsutil;
pub mod home;
pub mod index;
pub mod manifest;
pub mod offer;
#[cfg(feature = "parquet")]
pub mod parquet;
pub mod prices;
pub mod query;
#[cfg(feature = "parquet")]
mod quiet_panic;
pub mod skypilot;

pub use catalog::{Catalog, CloudSource, Origin};
#[cfg(feature = "parquet")]
pub use catalog::{embedded_default, LoadedCatalog};
pub use error::CatalogError;
pub use filter::{MachineRule, OfferFilter, RowRule, SizeBounds};
pub use home::SkycatHome;
pub use manifest::{CloudManifest, Manifest};
pub use offer::{HypervGenerations, Offer, SpotInterruption};
pub use prices::{CustomPrice, PriceRuleError, PriceRules, Repricing};
pub use query::OfferQuery;
