//! The controller: reconciles the custom resources into workloads and status.
//! Built up issue by issue; today it holds the children builders.

pub mod cache_tier;
pub mod chain_source;
pub mod ingest_job;
pub mod probe;
pub mod status;
pub mod workload;
