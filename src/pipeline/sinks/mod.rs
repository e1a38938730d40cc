//! The sinks an ingest writes to, one file each, named by the `IngestJob`
//! target they serve. Which sink holds the batch when it fails and which
//! drops and counts is each sink's [`SinkPolicy`](super::SinkPolicy):
//!
//! | target | sink | policy |
//! |---|---|---|
//! | `canonical` | [`canonical::CanonicalSink`]: the block store in the chain's layout | held: a failed write is a gap, a failed flush stops before the checkpoint |
//! | (a CacheTier's Redis) | [`cache::CacheInvalidation`]: drops cached answers a block changes | best effort: answers expire with their TTL |
//!
//! `lake` and `metrics` have no sink in this build yet (issues 13 and 16).

pub mod cache;
pub mod canonical;
