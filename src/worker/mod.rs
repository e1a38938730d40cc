//! Worker modes: the jobs the controller runs in pods (and operators by hand).

pub mod host;
pub mod import;
pub mod ingest;
pub mod reorg;
pub mod run;
pub mod spec;
