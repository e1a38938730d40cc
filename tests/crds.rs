//! The committed CRDs are what the code generates, every example is accepted,
//! and every file under `examples/invalid/` is rejected with the message of
//! the rule it breaks, by the in-process validator (OpenAPI schema + CEL).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use chronicle::crd::{
    self,
    validate::{Validator, Verdict},
};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const REGENERATE: &str = "regenerate with `cargo run -- crd --out-dir crds && cp crds/*.yaml charts/chronicle/crds/`";

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn committed_crds_match_the_code() {
    for dir in ["crds", "charts/chronicle/crds"] {
        let dir = Path::new(ROOT).join(dir);
        let generated = crd::all();
        let expected: BTreeSet<String> = generated.iter().map(crd::file_name).collect();
        let present: BTreeSet<String> =
            yaml_files(&dir).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(present, expected, "{} holds other files than the CRDs; {REGENERATE}", dir.display());
        for crd in &generated {
            let path = dir.join(crd::file_name(crd));
            let committed = std::fs::read_to_string(&path).unwrap();
            assert!(committed == crd::to_yaml(crd), "{} is stale; {REGENERATE}", path.display());
        }
    }
}

#[test]
fn crd_command_prints_the_committed_crds() {
    let output = Command::new(env!("CARGO_BIN_EXE_chronicle")).arg("crd").output().expect("run chronicle crd");
    assert!(output.status.success(), "chronicle crd failed: {}", String::from_utf8_lossy(&output.stderr));
    let committed: Vec<String> = crd::all()
        .iter()
        .map(|c| std::fs::read_to_string(Path::new(ROOT).join("crds").join(crd::file_name(c))).unwrap())
        .collect();
    assert_eq!(String::from_utf8(output.stdout).unwrap(), committed.join("---\n"), "{REGENERATE}");
}

#[test]
fn every_kind_has_names_columns_and_status() {
    for crd in crd::all() {
        let names = &crd.spec.names;
        assert_eq!(crd.spec.group, "chronicle.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(names.categories.as_deref(), Some(&["chronicle".to_string()][..]), "{}", names.kind);
        assert!(names.short_names.as_ref().is_some_and(|s| !s.is_empty()), "{} has no short name", names.kind);
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(),
            "{} has no status subresource",
            names.kind
        );
        let columns = version.additional_printer_columns.as_deref().unwrap_or_default();
        assert!(columns.iter().any(|c| c.name == "Age"), "{} has no Age column", names.kind);
        let schema =
            serde_json::to_value(version.schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap()).unwrap();
        let status = &schema["properties"]["status"]["properties"];
        assert_eq!(status["conditions"]["x-kubernetes-list-type"], "map", "{} conditions", names.kind);
        assert!(
            status["conditions"]["items"]["properties"]["observedGeneration"].is_object(),
            "{} condition shape",
            names.kind
        );
        assert!(status["observedGeneration"].is_object(), "{} has no status.observedGeneration", names.kind);
    }
}

#[test]
fn every_example_is_valid() {
    let validator = Validator::for_chronicle();
    let mut kinds_seen = BTreeSet::new();
    let examples = Path::new(ROOT).join("examples");
    let all = [yaml_files(&examples), yaml_files(&examples.join("scenarios")), yaml_files(&examples.join("dev"))];
    for file in all.into_iter().flatten() {
        for report in validator.validate_file(&file).unwrap() {
            match report.verdict {
                Verdict::Valid => {
                    kinds_seen.insert(report.kind);
                }
                Verdict::NotOurs => {}
                Verdict::Invalid(problems) => panic!(
                    "{}#{} {}/{} is invalid:\n{}",
                    file.display(),
                    report.index,
                    report.kind,
                    report.name,
                    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
                ),
            }
        }
    }
    let all_kinds: BTreeSet<String> = crd::all().into_iter().map(|c| c.spec.names.kind).collect();
    assert_eq!(kinds_seen, all_kinds, "every kind needs at least one valid example");
}

/// The `# expect: <message>` line an invalid example starts with.
fn expected_message(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("# expect: "))
        .unwrap_or_else(|| panic!("{} has no `# expect: <message>` line", file.display()))
        .to_string()
}

#[test]
fn every_invalid_example_is_rejected_with_its_rules_message() {
    let validator = Validator::for_chronicle();
    let files = yaml_files(&Path::new(ROOT).join("examples/invalid"));
    assert!(!files.is_empty());
    for file in files {
        let expected = expected_message(&file);
        let reports = validator.validate_file(&file).unwrap();
        assert_eq!(reports.len(), 1, "{}: one document per invalid example", file.display());
        match &reports[0].verdict {
            Verdict::Invalid(problems) => {
                // Exactly the rule the file is about, and nothing else.
                for problem in problems {
                    assert!(
                        problem.message.contains(&expected),
                        "{}: expected only {expected:?}, got {problem}",
                        file.display()
                    );
                }
            }
            other => panic!("{} was not rejected ({other:?}); expected {expected:?}", file.display()),
        }
    }
}

fn cel_messages(schema: &Value, out: &mut BTreeSet<String>) {
    match schema {
        Value::Object(map) => {
            for rule in map.get("x-kubernetes-validations").and_then(Value::as_array).into_iter().flatten() {
                out.insert(rule["message"].as_str().expect("every rule has a message").to_string());
            }
            map.values().for_each(|v| cel_messages(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| cel_messages(v, out)),
        _ => {}
    }
}

#[test]
fn every_cel_rule_has_an_invalid_example() {
    let mut rules = BTreeSet::new();
    for crd in crd::all() {
        cel_messages(&serde_json::to_value(&crd).unwrap(), &mut rules);
    }
    let covered: BTreeSet<String> =
        yaml_files(&Path::new(ROOT).join("examples/invalid")).iter().map(|f| expected_message(f)).collect();
    let uncovered: Vec<&String> = rules.iter().filter(|r| !covered.contains(*r)).collect();
    assert!(uncovered.is_empty(), "CEL rules without a file in examples/invalid/: {uncovered:#?}");
}
