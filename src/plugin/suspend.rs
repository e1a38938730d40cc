//! `pause` and `resume`: `spec.suspend` of an IngestJob, as `kubectl rollout
//! pause` sets `spec.paused`: a merge patch under the plugin's field manager.
//! A GitOps tool that declares `suspend` in its server-side-applied manifest
//! would undo the change at its next sync, so the plugin refuses then and
//! names it (unless `--force`); one whose manifests leave `suspend` out keeps
//! the pause.

use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use super::{FIELD_MANAGER, PluginError, get};
use crate::crd::IngestJob;

/// The field managers other than ours whose server-side apply declares `spec.suspend`.
fn declared_by_others(job: &IngestJob) -> Vec<String> {
    let entries = job.metadata.managed_fields.iter().flatten();
    entries
        .filter(|m| m.operation.as_deref() == Some("Apply") && m.manager.as_deref() != Some(FIELD_MANAGER))
        .filter(|m| m.fields_v1.as_ref().and_then(|f| f.0.get("f:spec")?.get("f:suspend")).is_some())
        .map(|m| m.manager.clone().unwrap_or_default())
        .collect()
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
