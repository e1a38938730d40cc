//! Chronicle: a Kubernetes operator for a blockchain data platform. One binary
//! runs in several modes (see `cli`); each module below is one responsibility.

pub mod bigquery;
pub mod catalog;
pub mod chain;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod dev;
pub mod export;
pub mod lake;
pub mod pipeline;
pub mod plugin;
pub mod replication;
pub mod retention;
pub mod serve;
pub mod store;
pub mod telemetry;
pub mod worker;
