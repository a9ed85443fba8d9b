//! Test support shared by the workspace's test suites (a dev-dependency only):
//!
//! * [`moto`]: moto's EC2 server on a free loopback port, killed on drop, and [`moto::use_fake_aws`]
//!   to point this process's AWS SDK at it (or at a proxy in front of it);
//! * [`output`]: what a child process (the `skycat` binary) printed;
//! * [`serve`]: a `skycat serve` child process, waited for until ready, stopped with SIGTERM or
//!   SIGKILL;
//! * [`storage`]: GCS (fake-gcs-server) and Azure Blob (azurite) emulators, and moto S3 puts;
//! * [`azure`]: an EMULATION of Azure Resource Manager and its token endpoint (testkit/emulators/azure.md);
//! * [`gcp`]: an EMULATION of the Compute Engine API v1 and Google's token endpoint
//!   (testkit/emulators/gcp.md);
//! * [`k8s`]: an EMULATION of a Kubernetes API server (core/v1 nodes, pods, services, watches,
//!   pods/exec over WebSocket) whose pods run in network-namespace hosts
//!   (testkit/emulators/kubernetes.md);
//! * [`lambda_emulator`]: an emulation of Lambda Cloud's REST API (see testkit/emulators/lambda.md);
//! * [`runpod`]: an EMULATION of RunPod's GraphQL API (testkit/emulators/runpod.md);
//! * [`postgres`]: a throwaway PostgreSQL cluster (Debian's binaries) on a free loopback port;
//! * [`free_port`]: a loopback port nothing listens on.

pub mod azure;
pub mod gcp;
pub mod k8s;
pub mod lambda_emulator;
pub mod moto;
pub mod output;
pub mod postgres;
pub mod runpod;
pub mod serve;
pub mod storage;

/// A free loopback TCP port: bound, read and released, so nothing listens on it (for a server
/// started as a child process, e.g. moto, or for a call that must find the port closed).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback").local_addr().expect("addr").port()
}
