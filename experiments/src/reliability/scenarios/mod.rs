//! The reliability scenarios, each a function that runs a fault or an abuse against a real
//! [`Cluster`](offload_testkit::cluster::Cluster) and returns what it observed. They assert nothing: their tests
//! (`tests`) run them small and assert the invariants (nothing lost, statuses right, memory bounded),
//! `offload-bench reliability` runs them full size and reports.
//!
//! [`sampling`] is the load they share: open-loop calls through the gateway, each recorded with its status, latency
//! and the replica that served it.

mod deadlines;
mod faults;
mod network;
mod overload;
pub mod sampling;
mod soak;

pub use self::{
    deadlines::{DeadlinePlan, Deadlines, deadlines},
    faults::{ReplicaLoss, Restart, RollingRestart, Steady, replica_loss, rolling_restart},
    network::{Keepalive, NetworkFault, PROXIED, network_fault},
    overload::{AdmissionPlan, Overload, OverloadPlan, overload},
    sampling::{Sample, job_of, recording_of},
    soak::{Checkpoint, Soak, SoakPlan, soak},
};

#[cfg(test)]
mod tests;
