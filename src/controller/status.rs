//! What every reconciler writes: conditions, the status subresource (applied
//! under one field manager) and an Event for each change that matters — a
//! newly observed generation, or `Ready` changing status or reason. Steady
//! state emits nothing, so requeues do not flood the event stream.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::events::{Event, EventType};
use kube::{Api, ResourceExt};

use super::context::{Context, Error};
use super::pipeline::Kind;
use crate::crd::common::CommonStatus;
use crate::crd::{CacheTier, ChainSource, IngestJob, RetentionPolicy, TrainingExport};

/// The one field manager every object Chronicle writes is applied under.
pub const FIELD_MANAGER: &str = "chronicle-controller";

/// A kind with Chronicle's common status (`observedGeneration`, conditions).
pub trait Reported: Kind + serde::Serialize {
    fn common_status(&self) -> Option<&CommonStatus>;
}

/// Every kind's status keeps the common part under `common`.
macro_rules! reported {
    ($($kind:ty),*) => {$(
        impl Reported for $kind {
            fn common_status(&self) -> Option<&CommonStatus> {
                self.status.as_ref().map(|s| &s.common)
            }
        }
    )*};
}
reported!(IngestJob, CacheTier, ChainSource, RetentionPolicy, TrainingExport);

/// Where a Job stands, as the Job controller's status says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Pending,
    Running,
    Complete,
    Failed,
}

pub fn job_state(job: Option<&k8s_openapi::api::batch::v1::Job>) -> JobState {
    let Some(status) = job.and_then(|j| j.status.as_ref()) else { return JobState::Pending };
    let done = |kind: &str| status.conditions.iter().flatten().any(|c| c.type_ == kind && c.status == "True");
    if done("Complete") {
        JobState::Complete
    } else if done("Failed") {
        JobState::Failed
    } else if status.active.unwrap_or(0) > 0 {
        JobState::Running
    } else {
        JobState::Pending
    }
}

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

/// The Events a new status calls for, compared with the previous one.
pub fn transitions(previous: Option<&CommonStatus>, generation: Option<i64>, conditions: &[Condition]) -> Vec<Event> {
    let mut events = Vec::new();
    let observed = previous.and_then(|s| s.observed_generation);
    if let Some(generation) = generation
        && observed != Some(generation)
    {
        events.push(Event {
            type_: EventType::Normal,
            reason: "SpecApplied".into(),
            note: Some(format!("generation {generation} applied")),
            action: "Reconcile".into(),
            secondary: None,
        });
    }
    let find = |list: &[Condition], kind: &str| list.iter().find(|c| c.type_ == kind).cloned();
    let before = previous.and_then(|s| find(&s.conditions, "Ready"));
    if let Some(ready) = find(conditions, "Ready")
        && before.is_none_or(|b| b.status != ready.status || b.reason != ready.reason)
    {
        let degraded = find(conditions, "Degraded").is_some_and(|c| c.status == "True");
        events.push(Event {
            type_: if degraded { EventType::Warning } else { EventType::Normal },
            reason: ready.reason.clone(),
            note: Some(ready.message.clone()).filter(|m| !m.is_empty()),
            action: "Reconcile".into(),
            secondary: None,
        });
    }
    events
}

/// Applies `status` to `object`'s status subresource under [`FIELD_MANAGER`]
/// and publishes the Events the change calls for.
pub async fn report<K: Reported>(ctx: &Context, object: &K, status: impl serde::Serialize) -> Result<(), Error> {
    let mut status = serde_json::to_value(status).expect("a status serializes");
    note_fields_not_acted_on(object, &mut status);
    let conditions: Vec<Condition> = serde_json::from_value(status["conditions"].clone()).unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &object.namespace().unwrap_or_default());
    let body = serde_json::json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    let params = kube::api::PatchParams::apply(FIELD_MANAGER).force();
    match api.patch_status(&object.name_any(), &params, &kube::api::Patch::Apply(&body)).await {
        // Deleted while being reconciled: nothing left to report on.
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
        result => result?,
    };
    let reference = object.object_ref(&());
    for event in transitions(object.common_status(), object.meta().generation, &conditions) {
        publish(ctx, &event, &reference).await;
    }
    Ok(())
}

/// Fields the object sets that nothing acts on yet are named in its `Ready`
/// message (see `fields.rs`), so an accepted field is never silently ignored.
fn note_fields_not_acted_on<K: Reported>(object: &K, status: &mut serde_json::Value) {
    let Ok(json) = serde_json::to_value(object) else { return };
    let ignored = super::fields::not_acted_on(&K::kind(&()), &json);
    if ignored.is_empty() {
        return;
    }
    let Some(conditions) = status["conditions"].as_array_mut() else { return };
    if let Some(ready) = conditions.iter_mut().find(|c| c["type"] == "Ready") {
        let message = ready["message"].as_str().unwrap_or_default();
        let note = format!("accepted but not acted on yet: {}", ignored.join(", "));
        ready["message"] = serde_json::json!(if message.is_empty() { note } else { format!("{message}; {note}") });
    }
}

/// Publishes an Event; Events are best effort and never fail a reconcile.
pub async fn publish(ctx: &Context, event: &Event, reference: &k8s_openapi::api::core::v1::ObjectReference) {
    if let Err(e) = ctx.recorder.publish(event, reference).await {
        tracing::warn!(error = %e, reason = %event.reason, "cannot publish an event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(generation: i64, ready: bool, reason: &str) -> CommonStatus {
        CommonStatus {
            observed_generation: Some(generation),
            conditions: vec![
                condition("Ready", ready, reason, "", Some(generation), &[]),
                condition("Degraded", !ready, reason, "", Some(generation), &[]),
            ],
        }
    }

    #[test]
    fn a_steady_state_emits_nothing() {
        let now = status(3, true, "Serving");
        assert!(transitions(Some(&now), Some(3), &now.conditions).is_empty());
    }

    #[test]
    fn a_new_generation_and_a_ready_change_are_events() {
        let before = status(1, true, "Serving");
        let after = status(2, false, "SourceNotFound");
        let events = transitions(Some(&before), Some(2), &after.conditions);
        let reasons: Vec<_> = events.iter().map(|e| (e.reason.as_str(), e.type_)).collect();
        assert_eq!(reasons, vec![("SpecApplied", EventType::Normal), ("SourceNotFound", EventType::Warning)]);
        // A new object: its first generation and its first Ready.
        assert_eq!(transitions(None, Some(1), &after.conditions).len(), 2);
    }
}
