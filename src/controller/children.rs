//! Children that should no longer exist: those of a live owner that its
//! current spec no longer asks for (pruned by label at every reconcile), and
//! those whose owner is gone (swept periodically by owner reference, so the
//! cleanup does not depend on the cluster's garbage collector).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Service;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, ResourceExt};

use super::context::{Context, Error};
use super::pipeline::Kind;
use super::workload::{MANAGED_BY, owner_label};
use crate::crd::{CacheTier, ChainSource, IngestJob, RetentionPolicy, TrainingExport};

/// The selector of every child (see `workload::labels`).
pub fn managed() -> String {
    format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)
}

/// The selector of `owner`'s children.
pub fn selector_of<K: Kind>(owner: &K) -> String {
    format!("{}={},{}", owner_label(&K::kind(&())), owner.name_any(), managed())
}

/// Deletes `owner`'s children of kind `C` whose names are not in `keep`, with
/// a Normal Event for each; returns their names.
pub async fn prune<C: Kind, K: Kind>(ctx: &Context, owner: &K, keep: &[&str]) -> Result<Vec<String>, Error> {
    let namespace = owner.namespace().unwrap_or_default();
    let api: Api<C> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut deleted = Vec::new();
    for child in api.list(&ListParams::default().labels(&selector_of(owner))).await? {
        let name = child.name_any();
        if keep.contains(&name.as_str()) {
            continue;
        }
        delete(&api, &name).await?;
        let note = format!("deleted {} {name}: the spec no longer asks for it", C::kind(&()));
        let event = Event {
            type_: EventType::Normal,
            reason: "ChildDeleted".into(),
            note: Some(note),
            action: "Prune".into(),
            // The child makes each deletion its own Event, not a repeat.
            secondary: Some(child.object_ref(&())),
        };
        super::status::publish(ctx, &event, &owner.object_ref(&())).await;
        deleted.push(name);
    }
    Ok(deleted)
}

/// Deletes one object (its dependents in the background); gone already is fine.
pub async fn delete<C: Kind>(api: &Api<C>, name: &str) -> Result<(), Error> {
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The API resource of each Chronicle kind that can own children.
fn owner_kinds() -> Vec<ApiResource> {
    vec![
        ApiResource::erase::<IngestJob>(&()),
        ApiResource::erase::<CacheTier>(&()),
        ApiResource::erase::<ChainSource>(&()),
        ApiResource::erase::<RetentionPolicy>(&()),
        ApiResource::erase::<TrainingExport>(&()),
    ]
}

/// Deletes every managed child whose controlling owner no longer exists (or
/// exists under another uid: a recreated object of the same name). Returns
/// how many were deleted.
pub async fn sweep_orphans(ctx: &Context) -> Result<usize, Error> {
    Ok(sweep::<Job>(ctx).await?
        + sweep::<CronJob>(ctx).await?
        + sweep::<Deployment>(ctx).await?
        + sweep::<Service>(ctx).await?)
}

async fn sweep<C: Kind>(ctx: &Context) -> Result<usize, Error> {
    let kinds = owner_kinds();
    let mut deleted = 0;
    for child in Api::<C>::all(ctx.client.clone()).list(&ListParams::default().labels(&managed())).await? {
        let namespace = child.namespace().unwrap_or_default();
        let Some(owner) = child.owner_references().iter().find(|o| o.controller == Some(true)) else { continue };
        let Some(resource) = kinds.iter().find(|r| r.kind == owner.kind && r.api_version == owner.api_version) else {
            continue;
        };
        let owners: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &namespace, resource);
        let alive = owners.get_opt(&owner.name).await?.is_some_and(|o| o.uid().as_deref() == Some(owner.uid.as_str()));
        if !alive {
            let name = child.name_any();
            tracing::info!(kind = %C::kind(&()), %namespace, %name, owner = %owner.name, "deleting a child whose owner is gone");
            delete(&Api::<C>::namespaced(ctx.client.clone(), &namespace), &name).await?;
            ctx.metrics.orphans_deleted.inc();
            deleted += 1;
        }
    }
    Ok(deleted)
}
