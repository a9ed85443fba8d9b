//! Thin handlers: validate, call the optimizer or read the snapshot, map errors.

pub mod catalog;
pub mod optimize;
pub mod system;

#[cfg(feature = "control")]
pub mod heartbeat;
#[cfg(feature = "control")]
pub mod jobs;
#[cfg(feature = "control")]
pub mod uploads;
