//! Where every field of every custom resource goes: into the worker's
//! [`WorkerSpec`](crate::worker::spec::WorkerSpec), into something the
//! controller does itself, or nowhere yet — and then the object's status says
//! so (see [`not_acted_on`]). A test walks every field of every CRD and fails
//! when one is missing here, and mutates each `Worker` field in the examples
//! to prove the worker's spec changes with it.

use serde_json::Value;

/// What becomes of a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldUse {
    /// Reaches the worker through its spec.
    Worker,
    /// Acted on by the controller itself (where, in a few words).
    Controller(&'static str),
    /// Accepted but not acted on yet (which issue brings it); the object's
    /// status names it when it is set.
    NotYet(&'static str),
}

use FieldUse::{Controller, NotYet, Worker};

/// Every spec field, by `Kind.spec.path` (`[]` for list items; `.*` covers a
/// whole subtree, such as Kubernetes' own `resources` type).
pub const FIELDS: &[(&str, FieldUse)] = &[
    // ChainSource
    ("ChainSource.spec.chain.family", Worker),
    ("ChainSource.spec.chain.network", Worker),
    ("ChainSource.spec.chain.chainId", Worker),
    ("ChainSource.spec.chain.confirmations", Worker),
    ("ChainSource.spec.chain.traces", Worker),
    ("ChainSource.spec.chain.genesisHash", Worker),
    ("ChainSource.spec.commitment", Worker),
    ("ChainSource.spec.endpoints[].name", Worker),
    ("ChainSource.spec.endpoints[].url", Worker),
    ("ChainSource.spec.endpoints[].websocketUrl", Worker),
    ("ChainSource.spec.endpoints[].maxConcurrent", Worker),
    ("ChainSource.spec.endpoints[].rateLimit.requestsPerSecond", Worker),
    ("ChainSource.spec.endpoints[].rateLimit.burst", Worker),
    ("ChainSource.spec.endpoints[].auth.header", Worker),
    ("ChainSource.spec.endpoints[].auth.secretRef.name", Controller("pod variable from the Secret; probe token")),
    ("ChainSource.spec.endpoints[].auth.secretRef.key", Controller("pod variable from the Secret; probe token")),
    ("ChainSource.spec.bigQuery.project", Worker),
    ("ChainSource.spec.bigQuery.dataset", Worker),
    ("ChainSource.spec.bigQuery.location", Worker),
    ("ChainSource.spec.bigQuery.billingProject", Worker),
    ("ChainSource.spec.bigQuery.credentialsSecretRef.name", Controller("the key file's Secret volume")),
    ("ChainSource.spec.bigQuery.credentialsSecretRef.key", Controller("the key file's Secret volume")),
    ("ChainSource.spec.bigQuery.endpoint", Worker),
    ("ChainSource.spec.store.bigtable.project", Worker),
    ("ChainSource.spec.store.bigtable.instance", Worker),
    ("ChainSource.spec.store.bigtable.appProfile", Worker),
    ("ChainSource.spec.store.bigtable.emulatorHost", Worker),
    ("ChainSource.spec.store.bigtable.credentialsSecretRef.name", Controller("the key file's Secret volume")),
    ("ChainSource.spec.store.bigtable.credentialsSecretRef.key", Worker),
    ("ChainSource.spec.store.embedded.size", Controller("the store's PersistentVolumeClaim")),
    ("ChainSource.spec.store.embedded.storageClassName", Controller("the store's PersistentVolumeClaim")),
    ("ChainSource.spec.lake.url", Worker),
    ("ChainSource.spec.lake.credentialsSecretRef.name", Controller("pod variables from the Secret")),
    ("ChainSource.spec.lake.credentialsSecretRef.key", Controller("pod variables from the Secret")),
    ("ChainSource.spec.catalog.connectionSecretRef.name", Controller("pod variable from the Secret; progress")),
    ("ChainSource.spec.catalog.connectionSecretRef.key", Controller("pod variable from the Secret; progress")),
    ("ChainSource.spec.metrics.influxdb.url", Worker),
    ("ChainSource.spec.metrics.influxdb.org", Worker),
    ("ChainSource.spec.metrics.influxdb.bucket", Worker),
    ("ChainSource.spec.metrics.influxdb.tokenSecretRef.name", Controller("pod variable from the Secret")),
    ("ChainSource.spec.metrics.influxdb.tokenSecretRef.key", Controller("pod variable from the Secret")),
    // IngestJob
    ("IngestJob.spec.sourceRef.name", Controller("the ChainSource the spec is built from")),
    ("IngestJob.spec.source.rpc.endpoints", Worker),
    ("IngestJob.spec.source.bigQuery.slotsPerQuery", Worker),
    ("IngestJob.spec.source.bigQuery.repairFromRpc", Worker),
    ("IngestJob.spec.source.bigQuery.pollInterval", Worker),
    ("IngestJob.spec.source.bigQuery.settleSlots", Worker),
    ("IngestJob.spec.source.store.chainSourceRef.name", Controller("resolved to that ChainSource's Bigtable instance")),
    ("IngestJob.spec.source.store.bigtable.project", Worker),
    ("IngestJob.spec.source.store.bigtable.instance", Worker),
    ("IngestJob.spec.source.store.bigtable.appProfile", Worker),
    ("IngestJob.spec.source.store.bigtable.emulatorHost", Worker),
    ("IngestJob.spec.source.store.bigtable.credentialsSecretRef.name", Controller("the origin key's Secret volume")),
    ("IngestJob.spec.source.store.bigtable.credentialsSecretRef.key", Worker),
    ("IngestJob.spec.source.store.verify", Worker),
    ("IngestJob.spec.source.archive.url", Worker),
    ("IngestJob.spec.source.store.repair", Worker),
    ("IngestJob.spec.mode", Worker),
    ("IngestJob.spec.range.startSlot", Worker),
    ("IngestJob.spec.range.endSlot", Worker),
    ("IngestJob.spec.parallelism", Worker),
    ("IngestJob.spec.batchSize", Worker),
    ("IngestJob.spec.targets", Worker),
    ("IngestJob.spec.suspend", Controller("Job suspend / zero replicas")),
    ("IngestJob.spec.resources.*", Controller("the worker container's resources")),
    // CacheTier
    ("CacheTier.spec.sourceRef.name", Controller("the ChainSource the spec is built from")),
    ("CacheTier.spec.redis.urlSecretRef.name", Controller("pod variable from the Secret")),
    ("CacheTier.spec.redis.urlSecretRef.key", Controller("pod variable from the Secret")),
    ("CacheTier.spec.redis.tls.*", NotYet("a CA bundle for Redis TLS (issue 22)")),
    ("CacheTier.spec.redis.poolSize", Worker),
    ("CacheTier.spec.methods[].name", Worker),
    ("CacheTier.spec.methods[].ttl", Worker),
    ("CacheTier.spec.defaultTtl", Worker),
    ("CacheTier.spec.immutableTtl", Worker),
    ("CacheTier.spec.maxMemory", Worker),
    ("CacheTier.spec.eviction", Worker),
    ("CacheTier.spec.invalidateOnIngest", Worker),
    ("CacheTier.spec.server.replicas", Controller("the serve Deployment's replicas")),
    ("CacheTier.spec.server.port", Worker),
    ("CacheTier.spec.server.apiKeysSecretRef.name", Controller("the API-key Secret volume")),
    ("CacheTier.spec.server.rateLimit.requestsPerSecond", Worker),
    ("CacheTier.spec.server.rateLimit.burst", Worker),
    ("CacheTier.spec.server.resources.*", Controller("the serve container's resources")),
    ("CacheTier.spec.upstream.endpoint", Worker),
    ("CacheTier.spec.upstream.forwardMisses", Worker),
    ("CacheTier.spec.upstream.requestsPerSecond", Worker),
    ("CacheTier.spec.upstream.maxSlotsBehind", Worker),
    // TrainingExport
    ("TrainingExport.spec.sourceRef.name", Controller("the ChainSource the spec is built from")),
    ("TrainingExport.spec.range.startSlot", Worker),
    ("TrainingExport.spec.range.endSlot", Worker),
    ("TrainingExport.spec.window.start", Worker),
    ("TrainingExport.spec.window.end", Worker),
    ("TrainingExport.spec.filters.programs", Worker),
    ("TrainingExport.spec.filters.successOnly", Worker),
    ("TrainingExport.spec.filters.includeVotes", Worker),
    ("TrainingExport.spec.filters.instructionTypes", Worker),
    ("TrainingExport.spec.filters.minBytes", Worker),
    ("TrainingExport.spec.filters.maxBytes", Worker),
    ("TrainingExport.spec.filters.sample", Worker),
    ("TrainingExport.spec.template.builtin", Worker),
    ("TrainingExport.spec.template.inline", Worker),
    ("TrainingExport.spec.tokenizer.encoding", Worker),
    ("TrainingExport.spec.tokenizer.huggingFace.configMapRef.name", Controller("the tokenizer's ConfigMap volume")),
    ("TrainingExport.spec.tokenizer.huggingFace.configMapRef.key", Controller("the tokenizer's ConfigMap volume")),
    ("TrainingExport.spec.tokenizer.huggingFace.url", Worker),
    ("TrainingExport.spec.tokenizer.huggingFace.sha256", Worker),
    ("TrainingExport.spec.tokenizer.huggingFace.endOfText", Worker),
    ("TrainingExport.spec.sequenceLength", Worker),
    ("TrainingExport.spec.output.url", Worker),
    ("TrainingExport.spec.output.credentialsSecretRef.name", Controller("pod variables from the Secret")),
    ("TrainingExport.spec.output.credentialsSecretRef.key", Controller("pod variables from the Secret")),
    ("TrainingExport.spec.output.formats", Worker),
    ("TrainingExport.spec.output.shardSize", Worker),
    ("TrainingExport.spec.split.validationFraction", Worker),
    ("TrainingExport.spec.split.seed", Worker),
    ("TrainingExport.spec.dedup.exact", Worker),
    ("TrainingExport.spec.dedup.nearDuplicate.threshold", Worker),
    ("TrainingExport.spec.resources.*", Controller("the export container's resources")),
    // Kinds without a worker in this build (their status says so).
    ("RetentionPolicy.spec.sourceRef.name", Controller("the ChainSource the spec is built from")),
    ("RetentionPolicy.spec.rules[].target", Worker),
    ("RetentionPolicy.spec.rules[].keepSlots", Worker),
    ("RetentionPolicy.spec.rules[].keepFor", Worker),
    ("RetentionPolicy.spec.rules[].method", Worker),
    ("RetentionPolicy.spec.schedule", Controller("the CronJob's schedule")),
    ("RetentionPolicy.spec.dryRun", Worker),
    ("RetentionPolicy.spec.replicaGuard.enabled", Controller("which replication jobs guard the cut")),
    ("RetentionPolicy.spec.replicaGuard.ingestJobs[].name", Controller("which replication jobs guard the cut")),
];

/// How `path` is used, if listed (an exact entry, or a `.*` subtree).
pub fn field_use(path: &str) -> Option<FieldUse> {
    FIELDS.iter().find(|(listed, _)| covers(listed, path)).map(|(_, used)| *used)
}

fn covers(listed: &str, path: &str) -> bool {
    match listed.strip_suffix(".*") {
        Some(prefix) => path == prefix || path.starts_with(&format!("{prefix}.")),
        None => listed == path,
    }
}

/// The `NotYet` fields `object` (of `kind`, as JSON) sets, as `spec.…`
/// paths, for its status (a whole-kind entry, `Kind.spec.*`, is left out).
pub fn not_acted_on(kind: &str, object: &Value) -> Vec<String> {
    let mut set = Vec::new();
    for (listed, used) in FIELDS {
        let FieldUse::NotYet(_) = used else { continue };
        let Some(path) = listed.strip_prefix(kind).and_then(|p| p.strip_prefix('.')) else { continue };
        let path = path.trim_end_matches(".*");
        if path == "spec" {
            continue;
        }
        if is_set(object, &path.split('.').collect::<Vec<_>>()) {
            // A list's items are named by the list.
            set.push(path.split("[]").next().unwrap_or(path).to_string());
        }
    }
    set.dedup();
    set
}

fn is_set(value: &Value, path: &[&str]) -> bool {
    let Some((first, rest)) = path.split_first() else { return !value.is_null() };
    let (name, list) = match first.strip_suffix("[]") {
        Some(name) => (name, true),
        None => (*first, false),
    };
    match value.get(name) {
        None | Some(Value::Null) => false,
        Some(Value::Array(items)) if list => items.iter().any(|item| is_set(item, rest)),
        Some(Value::Array(items)) => !items.is_empty(),
        Some(child) => is_set(child, rest),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{JSONSchemaProps, JSONSchemaPropsOrArray};
    use serde_json::json;

    use super::*;
    use crate::controller::workload::{ingest_spec, serve_spec};

    /// Every leaf of a schema, with its schema.
    fn leaves(schema: &JSONSchemaProps, path: String, out: &mut Vec<(String, JSONSchemaProps)>) {
        if let Some(properties) = &schema.properties {
            for (name, child) in properties {
                leaves(child, format!("{path}.{name}"), out);
            }
            return;
        }
        if let Some(JSONSchemaPropsOrArray::Schema(items)) = &schema.items
            && items.properties.is_some()
        {
            return leaves(items, format!("{path}[]"), out);
        }
        out.push((path, schema.clone()));
    }

    fn all_fields() -> Vec<(String, JSONSchemaProps)> {
        let mut out = Vec::new();
        for crd in crate::crd::all() {
            let schema = crd.spec.versions[0].schema.clone().unwrap().open_api_v3_schema.unwrap();
            let spec = &schema.properties.as_ref().unwrap()["spec"];
            leaves(spec, format!("{}.spec", crd.spec.names.kind), &mut out);
        }
        out
    }

    #[test]
    fn every_field_of_every_crd_is_listed_and_every_entry_is_a_field() {
        let fields = all_fields();
        let missing: Vec<&String> = fields.iter().map(|(p, _)| p).filter(|p| field_use(p).is_none()).collect();
        assert!(missing.is_empty(), "fields neither consumed nor listed in controller/fields.rs: {missing:#?}");
        for (listed, _) in FIELDS {
            assert!(fields.iter().any(|(p, _)| covers(listed, p)), "{listed} is listed but is no field");
        }
    }

    fn example(file: &str) -> Value {
        crate::controller::example(file, |_| {})
    }

    /// Another value of the field's type (another enum member, a larger number…).
    fn other(schema: &JSONSchemaProps, current: Option<&Value>) -> Value {
        if let Some(members) = &schema.enum_ {
            let member = members.iter().find(|m| Some(&m.0) != current).expect("an enum with two members");
            return member.0.clone();
        }
        match (schema.type_.as_deref(), current) {
            (Some("integer"), Some(Value::Number(n))) => json!(n.as_u64().unwrap_or(1) + 1),
            (Some("integer"), _) => json!(2),
            (Some("boolean"), Some(Value::Bool(b))) => json!(!b),
            (Some("boolean"), _) => json!(true),
            (Some("array"), _) => json!([other(items(schema), None)]),
            (_, Some(Value::String(s))) if s.parse::<u64>().is_ok() => json!(format!("{}Mi", s)),
            (_, Some(Value::String(s))) => json!(format!("{s}x")),
            _ if schema.x_kubernetes_int_or_string == Some(true) => json!("3Gi"),
            _ => json!("x-changed:1"),
        }
    }

    fn items(schema: &JSONSchemaProps) -> &JSONSchemaProps {
        match &schema.items {
            Some(JSONSchemaPropsOrArray::Schema(items)) => items,
            _ => panic!("an array schema has items"),
        }
    }

    /// Sets `path` (`a.b[].c`, `[]` = the first item) in `value`, creating objects on the way.
    fn set(value: &mut Value, path: &[&str], new: Value) -> Option<Value> {
        let (first, rest) = path.split_first()?;
        let (name, list) = match first.strip_suffix("[]") {
            Some(name) => (name, true),
            None => (*first, false),
        };
        let object = value.as_object_mut()?;
        let child = object.entry(name).or_insert_with(|| if list { json!([{}]) } else { json!({}) });
        let child = if list { child.get_mut(0)? } else { child };
        if rest.is_empty() {
            return Some(std::mem::replace(child, new));
        }
        set(child, rest, new)
    }

    fn get<'v>(value: &'v Value, path: &[&str]) -> Option<&'v Value> {
        path.iter().try_fold(value, |v, part| match part.strip_suffix("[]") {
            Some(name) => v.get(name)?.get(0),
            None => v.get(*part),
        })
    }

    /// The worker specs the examples make, as JSON (an error counts as an
    /// answer): `[source, backfill, follow, tier, history, export, replicate, retention]`.
    fn worker_specs(objects: &[Value]) -> Vec<String> {
        let source = serde_json::from_value(objects[0].clone());
        let Ok(source) = source else { return vec![format!("bad ChainSource: {source:?}")] };
        let tier: Result<crate::crd::CacheTier, _> = serde_json::from_value(objects[3].clone());
        let Ok(tier) = tier else { return vec![format!("bad CacheTier: {tier:?}")] };
        let mut out = Vec::new();
        for job in [&objects[1], &objects[2], &objects[4], &objects[6]] {
            out.push(match serde_json::from_value(job.clone()) {
                Ok(job) => {
                    format!("{:?}", ingest_spec(&job, &source, std::slice::from_ref(&tier)).map(|s| s.to_json()))
                }
                Err(e) => format!("bad IngestJob: {e}"),
            });
        }
        out.push(format!("{:?}", serve_spec(&tier, &source).map(|s| s.to_json())));
        out.push(match serde_json::from_value(objects[5].clone()) {
            Ok(export) => {
                format!("{:?}", crate::controller::training_export::export_spec(&export, &source).map(|s| s.to_json()))
            }
            Err(e) => format!("bad TrainingExport: {e}"),
        });
        out.push(match serde_json::from_value(objects[7].clone()) {
            Ok(policy) => format!(
                "{:?}",
                crate::controller::retention_policy::retention_spec(&policy, &source, Vec::new(), &[])
                    .map(|s| s.to_json())
            ),
            Err(e) => format!("bad RetentionPolicy: {e}"),
        });
        out
    }

    /// Each `Worker` field, changed in the examples, changes a worker's spec.
    #[test]
    fn every_worker_field_changes_the_worker_spec() {
        let base = [
            example("chainsource-solana-mainnet.yaml"),
            example("ingestjob-backfill.yaml"),
            example("ingestjob-follow.yaml"),
            example("cachetier.yaml"),
            example("ingestjob-bigquery.yaml"),
            example("trainingexport.yaml"),
            example("ingestjob-replicate.yaml"),
            example("retentionpolicy.yaml"),
        ];
        let before = worker_specs(&base);
        let mut unchanged = BTreeSet::new();
        for (path, schema) in all_fields() {
            if field_use(&path) != Some(Worker) {
                continue;
            }
            let (kind, rest) = path.split_once('.').unwrap();
            let parts: Vec<&str> = rest.split('.').collect();
            let targets: &[usize] = match kind {
                "ChainSource" => &[0],
                "IngestJob" => &[1, 2, 4, 6],
                "CacheTier" => &[3],
                "TrainingExport" => &[5],
                "RetentionPolicy" => &[7],
                other => panic!("no example for {other}"),
            };
            let mut changed = false;
            for &index in targets {
                let mut objects = base.clone();
                let current = get(&objects[index], &parts).cloned();
                set(&mut objects[index], &parts, other(&schema, current.as_ref())).unwrap();
                changed |= worker_specs(&objects) != before;
            }
            if !changed {
                unchanged.insert(path);
            }
        }
        assert!(unchanged.is_empty(), "listed as Worker, but the worker spec ignores them: {unchanged:#?}");
    }

    #[test]
    fn fields_not_acted_on_yet_are_named_when_set() {
        let tier = example("cachetier.yaml");
        let named = not_acted_on("CacheTier", &tier);
        assert!(named.contains(&"spec.redis.tls".to_string()), "{named:?}");
        let source = example("chainsource-solana-mainnet.yaml");
        let named = not_acted_on("ChainSource", &source);
        assert!(!named.iter().any(|f| f.starts_with("spec.metrics")), "{named:?}");
        assert!(!named.iter().any(|f| f == "spec.lake.url"), "{named:?}");
        assert!(!named.iter().any(|f| f.starts_with("spec.store")), "{named:?}");
    }
}
