//! skycat's fetchers: one file per provider behind one [`Provider`] trait, an HTTP client with
//! retries, and the fetch run (concurrency, progress events, validation guard, atomic publish,
//! history, diff).

pub mod check;
pub mod diff;
pub mod error;
pub mod history;
pub mod http;
pub mod progress;
pub mod provider;
pub mod providers;
pub mod run;
pub mod validate;

pub use check::{check_clouds, CloudCheck, Found, Verification};
pub use error::FetchError;
pub use http::{HttpClient, RetryPolicy};
pub use provider::{AwsOnDemandSource, FetchContext, Provider};
pub use run::{run_fetch, CloudReport, FetchEvent, FetchOptions, FetchReport};
