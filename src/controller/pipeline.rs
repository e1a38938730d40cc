//! The loop every kind runs in: a kube-runtime `Controller` whose reconcile
//! is timed and counted, whose failures back off per object and raise one
//! Warning Event per streak (not one per retry). A kind's file gives its
//! reconcile function and the children it owns; nothing else.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use kube::runtime::Predicate;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use tracing::Instrument;

use super::context::{Context, Error};

/// What a reconciled kind (and a child) is: a namespaced, typed object.
pub trait Kind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}
impl<K> Kind for K where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// The delay before the `failures`-th retry of one object: 5 s doubling to 5 min.
pub fn backoff_delay(failures: u32) -> Duration {
    let seconds = 5u64.saturating_mul(1u64 << failures.saturating_sub(1).min(16));
    Duration::from_secs(seconds.min(300))
}

fn object_key<K: Kind>(object: &K) -> String {
    format!("{}/{}/{}", K::kind(&()), object.namespace().unwrap_or_default(), object.name_any())
}

/// Retry after a failed reconcile, backing off per object: a broken object
/// is retried less and less often; the others are not slowed down.
pub fn error_policy<K: Kind>(object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = {
        let mut failures = ctx.failures.lock().expect("failure counts");
        let count = failures.entry(object_key(object.as_ref())).or_insert(0);
        *count += 1;
        *count
    };
    let delay = backoff_delay(failures);
    tracing::warn!(kind = %K::kind(&()), object = %object.name_any(), %error, failures, retry_in = ?delay, "reconcile failed");
    if failures == 1 {
        // One Event per failure streak: repeated errors do not storm.
        let event = Event {
            type_: EventType::Warning,
            reason: "ReconcileFailed".into(),
            note: Some(error.to_string()),
            action: "Reconcile".into(),
            secondary: None,
        };
        let reference = object.object_ref(&());
        tokio::spawn(async move {
            if let Err(e) = ctx.recorder.publish(&event, &reference).await {
                tracing::warn!(error = %e, "cannot publish an event");
            }
        });
    }
    Action::requeue(delay)
}

/// A Controller for every `K` in the cluster, woken by changes of an
/// object's spec (its generation), labels or annotations — not by status
/// writes, which are the reconcile's own output: reacting to them would loop
/// (a status carrying a probe time or a rate changes at every write). Owned
/// children and requeues wake it too.
pub fn controller<K: Kind>(client: &kube::Client) -> Controller<K> {
    use kube::runtime::{WatchStreamExt, predicates, reflector, watcher};
    let (reader, writer) = reflector::store();
    let triggers = watcher(kube::Api::<K>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation.combine(predicates::labels).combine(predicates::annotations),
            Default::default(),
        );
    Controller::for_stream(triggers, reader)
}

/// Runs `controller` with `reconcile` until `shutdown` resolves.
pub async fn run<K, F, Fut>(
    ctx: Arc<Context>,
    controller: Controller<K>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    reconcile: F,
) where
    K: Kind,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let reconcile = Arc::new(reconcile);
    let timed = move |object: Arc<K>, ctx: Arc<Context>| {
        let reconcile = reconcile.clone();
        // One span per reconcile: every log line of it names the object.
        let span = tracing::info_span!(
            "reconcile",
            kind = %K::kind(&()),
            namespace = %object.namespace().unwrap_or_default(),
            name = %object.name_any(),
            generation = object.meta().generation.unwrap_or_default(),
        );
        async move {
            let started = Instant::now();
            let result = reconcile(object.clone(), ctx.clone()).await;
            ctx.metrics.observe(&K::kind(&()), result.is_ok(), started.elapsed());
            if result.is_ok() {
                ctx.failures.lock().expect("failure counts").remove(&object_key(object.as_ref()));
            }
            result
        }
        .instrument(span)
    };
    controller
        .graceful_shutdown_on(shutdown)
        .run(timed, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile error");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::backoff_delay;
    use std::time::Duration;

    #[test]
    fn retries_back_off_per_failure_up_to_five_minutes() {
        let delays: Vec<u64> = (1..=8).map(|n| backoff_delay(n).as_secs()).collect();
        assert_eq!(delays, vec![5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff_delay(u32::MAX), Duration::from_secs(300));
    }
}
