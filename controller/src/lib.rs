//! skycat's cluster lifecycle: backends (SSH node pools, AWS EC2), placement from the optimizer,
//! the agent bootstrap over russh, managed jobs, heartbeat acceptance and the SQLite state store.
//! Used by the CLI and by `skycat serve` (whose HTTP routes live in `skycat-server`).

pub mod agent_client;
pub mod api_tokens;
pub mod aws_ec2;
pub mod backend;
pub mod costs;
pub mod enabled;
pub mod heartbeat;
pub mod home;
pub mod keys;
pub mod leader;
pub mod lifecycle;
pub mod managed;
pub mod mounts;
pub mod placement;
pub mod pools;
pub mod secret_box;
pub mod ssh;
pub mod ssh_config;
pub mod store;
pub mod transport;

pub use lifecycle::{Controller, LaunchRequest, LaunchOutcome, TaskRun};
pub use pools::pools_as_offers;
pub use store::Store;
