//! Kinds the API accepts whose workers this build does not have yet
//! (`RetentionPolicy`): each object is told so in its
//! status — `Ready=False` with reason `WorkerNotBuilt` and what does not
//! happen — instead of being silently ignored. When a worker lands, its kind
//! gets a reconciler of its own and leaves this file.

use std::sync::Arc;
use std::time::Duration;

use crate::crd::common::CommonStatus;
use kube::runtime::controller::Action;

use super::context::{Context, Error};
use super::pipeline::Kind;
use super::status::{Reported, condition, report};
use crate::crd::RetentionPolicy;

/// The reason every such object reports.
pub const REASON: &str = "WorkerNotBuilt";

/// What a kind would do and which worker does it.
pub trait NotBuilt: Reported {
    const WHAT: &'static str;
}

/// What a RetentionPolicy's status says.
pub const RETENTION: &str =
    "the retention worker is not in this Chronicle build yet: nothing is pruned and no GC rule is set";
impl NotBuilt for RetentionPolicy {
    const WHAT: &'static str = RETENTION;
}

pub(crate) async fn reconcile<K: NotBuilt>(object: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let generation = object.meta().generation;
    let previous = object.common_status().map(|s| s.conditions.clone()).unwrap_or_default();
    let conditions = vec![
        condition("Ready", false, REASON, K::WHAT, generation, &previous),
        condition("Progressing", false, REASON, K::WHAT, generation, &previous),
        condition("Degraded", false, REASON, K::WHAT, generation, &previous),
    ];
    report(&ctx, object.as_ref(), CommonStatus { observed_generation: generation, conditions }).await?;
    // Only a new generation changes the answer.
    Ok(Action::requeue(Duration::from_secs(3600)))
}

/// Runs the reconciler of kind `K` until `shutdown` resolves.
pub async fn run<K: NotBuilt + Kind>(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let controller = super::pipeline::controller::<K>(&ctx.client);
    super::pipeline::run(ctx, controller, shutdown, reconcile::<K>).await;
}
