//! The chart as Helm renders it (Helm built from its Go module into the
//! cache by scripts/install-deps.sh); shared by tests/chart.rs and e2e/.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn helm() -> PathBuf {
    if let Ok(path) = std::env::var("CHRONICLE_HELM") {
        return path.into();
    }
    let cache = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(&std::env::var("HOME").unwrap()).join(".cache"));
    let helm = cache.join("chronicle/helm/v3.22.0/helm");
    assert!(helm.exists(), "{} is missing: run scripts/install-deps.sh", helm.display());
    helm
}

/// `helm template` of charts/chronicle into namespace `chronicle-system`,
/// CRDs included, with `--set` values; Err is Helm's message.
pub fn render(sets: &[&str]) -> Result<String, String> {
    render_release("chronicle", "chronicle-system", sets)
}

/// The same as release `release` in `namespace`.
pub fn render_release(release: &str, namespace: &str, sets: &[&str]) -> Result<String, String> {
    let mut command = Command::new(helm());
    command.args(["template", release]).arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/chronicle"));
    command.args(["--namespace", namespace, "--include-crds"]);
    for set in sets {
        command.args(["--set", set]);
    }
    let output = command.output().expect("run helm");
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// The objects of a multi-document YAML text.
pub fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}
