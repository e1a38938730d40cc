//! The Helm chart, offline: rendered by a real Helm (built from its Go module
//! by scripts/install-deps.sh), every manifest checked against Kubernetes
//! 1.37's OpenAPI schemas (PyPI kubernetes-validate, strict: unknown fields
//! fail), values checked by values.schema.json, and the properties the
//! operator promises: restricted pods, split RBAC with a reason per rule, a
//! PodDisruptionBudget for the standby. `e2e/api_server.rs` installs the same
//! rendering on a real API server and runs the controller under its RBAC.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

#[path = "support/helm.rs"]
mod helm;

use helm::{documents, render};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// kubernetes-validate's verdict on `manifests`: Ok, or its complaints.
fn validate(manifests: &str) -> Result<(), String> {
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(file.path(), manifests).unwrap();
    let output = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "--quiet", "-k", "1.37.0"])
        .arg(file.path())
        .output()
        .expect("run python3 -m kubernetes_validate (scripts/install-deps.sh installs it)");
    let said = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    if output.status.success() { Ok(()) } else { Err(said) }
}

#[test]
fn the_rendered_chart_is_valid_kubernetes() {
    let manifests = render(&[]).unwrap();
    validate(&manifests).unwrap();
    let objects = documents(&manifests);
    let kinds: Vec<&str> = objects.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    for kind in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    ] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
    assert_eq!(of_kind(&objects, "CustomResourceDefinition").len(), 5);
    assert!(!kinds.contains(&"ServiceMonitor"), "ServiceMonitor is optional and off by default");

    // The validator itself rejects what is wrong (so a pass means something).
    let mut deployment = of_kind(&objects, "Deployment")[0].clone();
    deployment["spec"]["replicaz"] = Value::from(2);
    let complaint = validate(&serde_yaml::to_string(&deployment).unwrap()).unwrap_err();
    assert!(complaint.contains("replicaz"), "{complaint}");
}

#[test]
fn options_render_valid_manifests() {
    let manifests = render(&["metrics.serviceMonitor.enabled=true", "controller.replicas=1"]).unwrap();
    let objects = documents(&manifests);
    let monitor = of_kind(&objects, "ServiceMonitor");
    assert_eq!(monitor.len(), 1);
    assert_eq!(monitor[0]["spec"]["endpoints"][0]["path"], "/metrics");
    assert!(of_kind(&objects, "PodDisruptionBudget").is_empty(), "one replica has no standby to keep");
    // kubernetes-validate knows no Prometheus Operator schema: validate the rest.
    let core: Vec<String> =
        objects.iter().filter(|o| o["kind"] != "ServiceMonitor").map(|o| serde_yaml::to_string(o).unwrap()).collect();
    validate(&core.join("---\n")).unwrap();
}

#[test]
fn values_are_checked_by_the_schema() {
    for (set, expected) in [
        ("controller.replicas=0", "/controller/replicas"),
        ("controller.replicaCount=2", "replicaCount"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("metrics.serviceMonitor.interval=soon", "/metrics/serviceMonitor/interval"),
    ] {
        let error = render(&[set]).unwrap_err();
        assert!(error.contains(expected), "--set {set}: {error}");
    }
}

#[test]
fn the_controller_pod_is_restricted() {
    let objects = documents(&render(&[]).unwrap());
    let deployment = of_kind(&objects, "Deployment")[0];
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "chronicle-controller");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(container["args"][0], "controller");
    // The workers it starts run the same image.
    let image = container["image"].as_str().unwrap();
    let env = container["env"].as_array().unwrap();
    assert!(env.iter().any(|e| e["name"] == "CHRONICLE_IMAGE" && e["value"] == image));
    assert!(env.iter().any(|e| e["name"] == "POD_NAME" && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"));
    for probe in ["livenessProbe", "readinessProbe"] {
        assert!(container[probe]["httpGet"]["path"].is_string(), "{probe}");
    }
}

#[test]
fn rbac_is_split_least_privilege_and_explained() {
    let objects = documents(&render(&[]).unwrap());
    let cluster_rules = &of_kind(&objects, "ClusterRole")[0]["rules"];
    let verbs_on = |resource: &str| -> Vec<String> {
        cluster_rules
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["resources"].as_array().unwrap().iter().any(|x| x == resource))
            .flat_map(|r| r["verbs"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()))
            .collect()
    };
    // Secrets are read by name only, never listed or watched.
    assert_eq!(verbs_on("secrets"), vec!["get"]);
    // Custom resources are never written but through status.
    assert_eq!(verbs_on("ingestjobs"), vec!["get", "list", "watch"]);
    assert_eq!(verbs_on("ingestjobs/status"), vec!["patch"]);
    assert!(!cluster_rules.to_string().contains("\"*\""), "no wildcards");
    // Leader election is namespaced, not cluster-wide.
    assert!(verbs_on("leases").is_empty());
    let role = of_kind(&objects, "Role")[0];
    assert_eq!(role["metadata"]["namespace"], "chronicle-system");
    assert_eq!(role["rules"][0]["resources"], serde_json::json!(["leases"]));
    // Every rule says which code path needs it.
    let template = std::fs::read_to_string(Path::new(ROOT).join("charts/chronicle/templates/rbac.yaml")).unwrap();
    let lines: Vec<&str> = template.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("- apiGroups:") {
            assert!(lines[i - 1].trim_start().starts_with('#'), "rule at line {} has no comment", i + 1);
        }
    }
    // Workers hold no token, so they need no rules: every worker pod (ingest,
    // serve, an embedded source's node) is built by `workload::worker_pod`,
    // the one pod literal in the controller, which mounts none.
    let workload = std::fs::read_to_string(Path::new(ROOT).join("src/controller/workload.rs")).unwrap();
    let pod_literals = workload.matches("    PodSpec {").count();
    assert_eq!(pod_literals, 1, "one pod builder");
    assert_eq!(workload.matches("automount_service_account_token: Some(false)").count(), pod_literals);
    for file in std::fs::read_dir(Path::new(ROOT).join("src/controller")).unwrap() {
        let path = file.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if path.file_name().unwrap() != "workload.rs" {
            assert!(!text.contains("PodSpec {"), "{}: pods are built by workload::worker_pod", path.display());
        }
    }
}
