//! skycat's cluster lifecycle: SSH node pools, provisioning over russh, the agent bootstrap, the
//! SQLite state store and the heartbeat endpoint. Used by the CLI and by `skycat serve`.

pub mod agent_client;
pub mod aws_ec2;
pub mod backend;
pub mod enabled;
pub mod home;
pub mod keys;
pub mod lifecycle;
pub mod managed;
pub mod placement;
pub mod pools;
pub mod router;
pub mod ssh;
pub mod ssh_config;
pub mod store;

pub use lifecycle::{Controller, LaunchRequest, LaunchOutcome, TaskRun};
pub use pools::pools_as_offers;
pub use router::router;
pub use store::Store;
