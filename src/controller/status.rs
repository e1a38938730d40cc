//! What every reconciler shares: the field manager and the conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The one field manager every object Chronicle writes is applied under.
pub const FIELD_MANAGER: &str = "chronicle-controller";

/// A `metav1.Condition` for `generation`; its transition time moves only
/// when its status does.
pub fn condition(
    kind: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    previous: &[Condition],
) -> Condition {
    let status = if status { "True" } else { "False" };
    // The transition time moves only when the status does.
    let last = previous.iter().find(|c| c.type_ == kind && c.status == status).map(|c| c.last_transition_time.clone());
    Condition {
        type_: kind.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: last.unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now())),
    }
}

/// The delay before the `failures`-th retry of one object: 5 s doubling to 5 min.
pub fn backoff_delay(failures: u32) -> std::time::Duration {
    let seconds = 5u64.saturating_mul(1u64 << failures.saturating_sub(1).min(16));
    std::time::Duration::from_secs(seconds.min(300))
}

fn object_key<K: kube::ResourceExt + kube::Resource<DynamicType = ()>>(object: &K) -> String {
    format!("{}/{}/{}", K::kind(&()), object.namespace().unwrap_or_default(), object.name_any())
}

/// Retry after a failed reconcile, backing off per object: a broken object
/// is retried less and less often; the others are not slowed down.
pub fn error_policy<K: kube::ResourceExt + kube::Resource<DynamicType = ()>>(
    object: std::sync::Arc<K>,
    error: &super::ingest_job::Error,
    ctx: std::sync::Arc<super::ingest_job::Context>,
) -> kube::runtime::controller::Action {
    let failures = {
        let mut failures = ctx.failures.lock().expect("failure counts");
        let count = failures.entry(object_key(object.as_ref())).or_insert(0);
        *count += 1;
        *count
    };
    let delay = backoff_delay(failures);
    tracing::warn!(object = %object.name_any(), %error, failures, retry_in = ?delay, "reconcile failed");
    kube::runtime::controller::Action::requeue(delay)
}

/// Forgets an object's failures after a reconcile that worked.
pub fn reconciled<K: kube::ResourceExt + kube::Resource<DynamicType = ()>>(
    object: &K,
    ctx: &super::ingest_job::Context,
) {
    ctx.failures.lock().expect("failure counts").remove(&object_key(object));
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

/// Applies `status` to an object's status subresource under [`FIELD_MANAGER`].
pub async fn apply_status<K>(api: &kube::Api<K>, name: &str, status: serde_json::Value) -> Result<(), kube::Error>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let body = serde_json::json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    let params = kube::api::PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(name, &params, &kube::api::Patch::Apply(&body)).await?;
    Ok(())
}
