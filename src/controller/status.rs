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
