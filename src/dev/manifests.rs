//! The manifests `chronicle dev` runs: read from files and directories,
//! checked with the same schemas and CEL rules the API server applies
//! (`crd/validate.rs`), sorted by kind. `kind: Secret` manifests supply the
//! values Secrets would, `kind: Namespace` is accepted (a namespace is a
//! name here); any other Kubernetes kind needs a cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::crd::validate::{Validator, Verdict};
use crate::crd::{CacheTier, ChainSource, IngestJob, RetentionPolicy, TrainingExport};

/// One object and the file it came from (relative paths in annotations are
/// relative to that file).
#[derive(Clone, Debug)]
pub struct Placed<T> {
    pub object: T,
    pub file: PathBuf,
}

#[derive(Debug, Default)]
pub struct Manifests {
    pub sources: Vec<Placed<ChainSource>>,
    pub jobs: Vec<Placed<IngestJob>>,
    pub tiers: Vec<Placed<CacheTier>>,
    pub policies: Vec<Placed<RetentionPolicy>>,
    pub exports: Vec<Placed<TrainingExport>>,
    /// `(namespace, name)` → key → value.
    pub secrets: BTreeMap<(String, String), BTreeMap<String, String>>,
}

/// The namespace an object without one lands in, as `kubectl apply` would.
pub const DEFAULT_NAMESPACE: &str = "default";

impl Manifests {
    /// Reads every YAML document under `paths`, refusing the lot if any is
    /// invalid (with every problem listed) or needs a cluster.
    pub fn load(paths: &[PathBuf]) -> anyhow::Result<Self> {
        let validator = Validator::for_chronicle();
        let mut files = Vec::new();
        for path in paths {
            crate::cli::collect_yaml_files(path, &mut files)?;
        }
        anyhow::ensure!(!files.is_empty(), "no YAML files in {}", show(paths));
        let mut manifests = Manifests::default();
        let mut problems = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            for (index, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
                let place = format!("{}#{}", file.display(), index + 1);
                let mut value: Value =
                    serde::Deserialize::deserialize(document).map_err(|e| anyhow::anyhow!("{place}: not YAML: {e}"))?;
                if value.is_null() {
                    continue;
                }
                if value["metadata"]["namespace"].is_null() {
                    value["metadata"]["namespace"] = Value::from(DEFAULT_NAMESPACE);
                }
                match validator.validate(&value) {
                    Verdict::Valid => {}
                    Verdict::Invalid(found) => {
                        problems.extend(found.iter().map(|p| format!("{place}: {p}")));
                        continue;
                    }
                    Verdict::NotOurs => {
                        if let Err(e) = manifests.add_secret(&value) {
                            problems.push(format!("{place}: {e}"));
                        }
                        continue;
                    }
                }
                if let Err(e) = manifests.add(&value, file) {
                    problems.push(format!("{place}: {e}"));
                }
            }
        }
        anyhow::ensure!(problems.is_empty(), "the manifests are not valid:\n  {}", problems.join("\n  "));
        Ok(manifests)
    }

    fn add(&mut self, value: &Value, file: &Path) -> anyhow::Result<()> {
        fn typed<T: DeserializeOwned>(value: &Value, file: &Path) -> anyhow::Result<Placed<T>> {
            Ok(Placed { object: serde_json::from_value(value.clone())?, file: file.to_path_buf() })
        }
        match value["kind"].as_str().unwrap_or_default() {
            "ChainSource" => self.sources.push(typed(value, file)?),
            "IngestJob" => self.jobs.push(typed(value, file)?),
            "CacheTier" => self.tiers.push(typed(value, file)?),
            "RetentionPolicy" => self.policies.push(typed(value, file)?),
            "TrainingExport" => self.exports.push(typed(value, file)?),
            other => anyhow::bail!("kind {other} is not run by chronicle dev"),
        }
        Ok(())
    }

    fn add_secret(&mut self, value: &Value) -> anyhow::Result<()> {
        let kind = value["kind"].as_str().unwrap_or_default();
        // In one process a namespace is only a name; nothing to create.
        if value["apiVersion"] == "v1" && kind == "Namespace" {
            return Ok(());
        }
        anyhow::ensure!(
            value["apiVersion"] == "v1" && kind == "Secret",
            "{} {kind} needs a cluster: chronicle dev runs chronicle.dev kinds and takes Secrets",
            value["apiVersion"].as_str().unwrap_or("(no apiVersion)")
        );
        let name = value["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let namespace = value["metadata"]["namespace"].as_str().unwrap_or(DEFAULT_NAMESPACE).to_string();
        let mut keys = BTreeMap::new();
        for (key, encoded) in value["data"].as_object().into_iter().flatten() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.as_str().unwrap_or_default())
                .map_err(|e| anyhow::anyhow!("Secret {name}: data.{key} is not base64: {e}"))?;
            keys.insert(key.clone(), String::from_utf8_lossy(&bytes).trim().to_string());
        }
        for (key, text) in value["stringData"].as_object().into_iter().flatten() {
            keys.insert(key.clone(), text.as_str().unwrap_or_default().trim().to_string());
        }
        self.secrets.insert((namespace, name), keys);
        Ok(())
    }

    /// A key of a Secret given to `dev`, if it was given.
    pub fn secret(&self, namespace: &str, reference: &crate::crd::common::SecretKeyRef) -> Option<String> {
        self.secrets.get(&(namespace.to_string(), reference.name.clone()))?.get(&reference.key).cloned()
    }

    /// The ChainSource `name` in `namespace`.
    pub fn source(&self, namespace: &str, name: &str) -> Option<&Placed<ChainSource>> {
        use kube::ResourceExt;
        self.sources.iter().find(|s| s.object.name_any() == name && s.object.namespace().as_deref() == Some(namespace))
    }
}

fn show(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}
