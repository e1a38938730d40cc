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

/// Retry after a failed reconcile: a fixed 5 s for now (per-object
/// exponential backoff is still to come with the rest of the controller issue).
pub fn error_policy<K: kube::ResourceExt>(
    object: std::sync::Arc<K>,
    error: &super::ingest_job::Error,
    _ctx: std::sync::Arc<super::ingest_job::Context>,
) -> kube::runtime::controller::Action {
    tracing::warn!(object = %object.name_any(), %error, "reconcile failed; retrying");
    kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(5))
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
