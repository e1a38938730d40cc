//! `pause` and `resume`: `spec.suspend` of an IngestJob, as `kubectl rollout
//! pause` sets `spec.paused`: a merge patch under the plugin's field manager.
//! A GitOps tool whose manifest declares `suspend` — by server-side apply (a
//! field manager's `Apply` entry) or client-side apply (kubectl's
//! last-applied annotation, as Argo CD does by default) — would undo the
//! change at its next sync, so the plugin refuses then and names it (unless
//! `--force`); one whose manifests leave `suspend` out keeps the pause.

use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use super::{FIELD_MANAGER, PluginError, get};
use crate::crd::IngestJob;

/// kubectl's record of the manifest a client-side apply last sent.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What else declares `spec.suspend` in a manifest: the field managers whose
/// server-side apply does, and a client-side apply's last manifest.
fn declared_by_others(job: &IngestJob) -> Vec<String> {
    let entries = job.metadata.managed_fields.iter().flatten();
    let mut others: Vec<String> = entries
        .filter(|m| m.operation.as_deref() == Some("Apply") && m.manager.as_deref() != Some(FIELD_MANAGER))
        .filter(|m| m.fields_v1.as_ref().and_then(|f| f.0.get("f:spec")?.get("f:suspend")).is_some())
        .map(|m| m.manager.clone().unwrap_or_default())
        .collect();
    let last_applied = job.metadata.annotations.as_ref().and_then(|a| a.get(LAST_APPLIED));
    let manifest: Option<serde_json::Value> = last_applied.and_then(|text| serde_json::from_str(text).ok());
    if manifest.is_some_and(|m| m["spec"].get("suspend").is_some()) {
        others.push(format!("a client-side apply ({LAST_APPLIED})"));
    }
    others
}

pub async fn set(
    client: &Client,
    namespace: &str,
    name: &str,
    suspend: bool,
    force: bool,
) -> Result<String, PluginError> {
    let api: Api<IngestJob> = Api::namespaced(client.clone(), namespace);
    let job = get(&api, "IngestJob", namespace, name).await?;
    let what = if suspend { "paused" } else { "resumed" };
    if job.spec.suspend == suspend {
        return Ok(format!("ingestjob.chronicle.dev/{name} already {what}\n"));
    }
    let others = declared_by_others(&job);
    if !others.is_empty() && !force {
        return Err(PluginError::Conflict { managers: others.join(", ") });
    }
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() };
    api.patch(name, &params, &Patch::Merge(json!({"spec": {"suspend": suspend}})))
        .await
        .map_err(PluginError::from_api)?;
    let consequence = if suspend {
        "its workers stop after their current batch; progress is kept"
    } else {
        "its workers resume from their checkpoints"
    };
    let mut out = format!("ingestjob.chronicle.dev/{name} {what}: {consequence}\n");
    if !others.is_empty() {
        out.push_str(&format!(
            "warning: {} also declares spec.suspend; its next sync may undo this\n",
            others.join(", ")
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};

    fn job(metadata: serde_json::Value) -> IngestJob {
        let mut job: IngestJob = serde_json::from_value(json!({
            "apiVersion": "chronicle.dev/v1alpha1", "kind": "IngestJob", "metadata": {"name": "j"},
            "spec": {"sourceRef": {"name": "s"}, "source": {"rpc": {}}, "mode": "follow"}}))
        .unwrap();
        job.metadata = serde_json::from_value(metadata).unwrap();
        job
    }

    #[test]
    fn a_manifest_that_declares_suspend_is_found_whichever_way_it_was_applied() {
        let server_side = ManagedFieldsEntry {
            manager: Some("flux".into()),
            operation: Some("Apply".into()),
            fields_v1: Some(FieldsV1(json!({"f:spec": {"f:suspend": {}}}))),
            ..ManagedFieldsEntry::default()
        };
        let created = ManagedFieldsEntry {
            manager: Some("kubectl-create".into()),
            operation: Some("Update".into()),
            fields_v1: Some(FieldsV1(json!({"f:spec": {"f:suspend": {}}}))),
            ..ManagedFieldsEntry::default()
        };
        let mut declared = job(json!({"name": "j"}));
        declared.metadata.managed_fields = Some(vec![server_side, created.clone()]);
        assert_eq!(declared_by_others(&declared), ["flux"], "a create's defaulted field is not a declaration");
        let client_side = job(json!({"name": "j", "annotations": {LAST_APPLIED: r#"{"spec":{"suspend":false}}"#}}));
        assert_eq!(declared_by_others(&client_side), [format!("a client-side apply ({LAST_APPLIED})")]);
        let silent = job(json!({"name": "j", "annotations": {LAST_APPLIED: r#"{"spec":{"mode":"follow"}}"#}}));
        assert!(declared_by_others(&silent).is_empty());
    }
}
