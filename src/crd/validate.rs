//! In-process admission check: a manifest is validated against the generated
//! CRDs the way the API server would, first the OpenAPI schema (types, enums,
//! ranges, patterns, required and unknown fields), then the CEL rules
//! (`x-kubernetes-validations`), so a bad manifest is caught before it reaches
//! a cluster (`chronicle validate`) and every rule is exercised on each
//! `cargo test`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize;
use serde_json::{Map, Value};

/// One thing wrong with a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Field path in the object, e.g. `spec.range.endSlot`; empty for the object itself.
    pub path: String,
    /// What is wrong, in the words of the rule that failed.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

/// The verdict on one YAML document.
#[derive(Debug)]
pub enum Verdict {
    Valid,
    Invalid(Vec<Problem>),
    /// Not a Chronicle kind; someone else's to check.
    NotOurs,
}

/// A document of a manifest file and its verdict.
#[derive(Debug)]
pub struct DocumentReport {
    pub file: PathBuf,
    /// 1-based index of the document in its file.
    pub index: usize,
    pub kind: String,
    pub name: String,
    pub verdict: Verdict,
}

#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("reading {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{path}: document {index} is not YAML: {cause}")]
    Yaml { path: PathBuf, index: usize, cause: serde_yaml::Error },
    #[error("CRD {crd}: version {version} has no OpenAPI schema")]
    NoSchema { crd: String, version: String },
    #[error("CRD {crd}: the OpenAPI schema does not compile: {message}")]
    BadSchema { crd: String, message: String },
    #[error("CRD {crd}: CEL rule does not compile: {message}")]
    BadRule { crd: String, message: String },
}

struct KindSchema {
    /// The schema as served, with CEL rules and defaults, for the CEL pass.
    openapi: Value,
    cel: kube_cel::CompiledSchema,
    /// The same schema made strict for a JSON Schema validator.
    structural: jsonschema::Validator,
}

/// Validates objects against a set of CRDs.
pub struct Validator {
    /// Keyed by (apiVersion, kind).
    kinds: BTreeMap<(String, String), KindSchema>,
}

impl Validator {
    /// A validator for the given CRDs (all served versions). Fails if a schema
    /// or a CEL rule in them does not compile.
    pub fn new(crds: &[CustomResourceDefinition]) -> Result<Self, ValidateError> {
        let mut kinds = BTreeMap::new();
        for crd in crds {
            let crd_name = crd.metadata.name.clone().unwrap_or_default();
            for version in crd.spec.versions.iter().filter(|v| v.served) {
                let schema =
                    version.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()).ok_or_else(|| {
                        ValidateError::NoSchema { crd: crd_name.clone(), version: version.name.clone() }
                    })?;
                let openapi = serde_json::to_value(schema).expect("a JSON schema is JSON");
                let cel = kube_cel::compile_schema(&openapi);
                if let Some(err) = first_compilation_error(&cel) {
                    return Err(ValidateError::BadRule { crd: crd_name, message: err });
                }
                let structural = jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft4)
                    .build(&strict_json_schema(&with_object_meta(&openapi)))
                    .map_err(|e| ValidateError::BadSchema { crd: crd_name.clone(), message: e.to_string() })?;
                let api_version = format!("{}/{}", crd.spec.group, version.name);
                kinds.insert((api_version, crd.spec.names.kind.clone()), KindSchema { openapi, cel, structural });
            }
        }
        Ok(Self { kinds })
    }

    /// A validator for Chronicle's own CRDs.
    pub fn for_chronicle() -> Self {
        Self::new(&super::all()).expect("Chronicle's generated CRDs compile")
    }

    /// Checks one object (already parsed from YAML or JSON).
    pub fn validate(&self, object: &Value) -> Verdict {
        let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
        let Some(schema) = self.kinds.get(&(api_version.to_string(), kind.to_string())) else {
            return Verdict::NotOurs;
        };
        let mut problems = metadata_problems(object);
        problems.extend(
            schema
                .structural
                .iter_errors(object)
                .map(|e| Problem { path: dotted_path(e.instance_path().as_str()), message: structural_message(&e) }),
        );
        // Like the API server, CEL rules run only on objects that pass the schema.
        if problems.is_empty()
            && let Err(errors) = kube_cel::validate_compiled(&schema.cel, object, None)
        {
            problems.extend(errors.iter().map(|e| Problem {
                path: e.field_path.trim_start_matches('.').to_string(),
                message: e.message.clone(),
            }));
        }
        if problems.is_empty() { Verdict::Valid } else { Verdict::Invalid(problems) }
    }

    /// Checks every document of a YAML file.
    pub fn validate_file(&self, path: &Path) -> Result<Vec<DocumentReport>, ValidateError> {
        let text =
            std::fs::read_to_string(path).map_err(|cause| ValidateError::Read { path: path.to_path_buf(), cause })?;
        let mut reports = Vec::new();
        for (i, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let index = i + 1;
            let value = Value::deserialize(document).map_err(|cause| ValidateError::Yaml {
                path: path.to_path_buf(),
                index,
                cause,
            })?;
            if value.is_null() {
                continue; // an empty document, e.g. a trailing `---`
            }
            let text_of = |pointer: &str| value.pointer(pointer).and_then(Value::as_str).unwrap_or("").to_string();
            reports.push(DocumentReport {
                file: path.to_path_buf(),
                index,
                kind: text_of("/kind"),
                name: text_of("/metadata/name"),
                verdict: self.validate(&value),
            });
        }
        Ok(reports)
    }

    /// The OpenAPI schema served for a kind (as in the CRD).
    pub fn schema(&self, api_version: &str, kind: &str) -> Option<&Value> {
        self.kinds.get(&(api_version.to_string(), kind.to_string())).map(|k| &k.openapi)
    }
}

fn first_compilation_error(schema: &kube_cel::CompiledSchema) -> Option<String> {
    if let Some(err) = schema.compilation_errors().first() {
        return Some(format!("{err:?}"));
    }
    schema
        .properties
        .values()
        .chain(schema.items.as_deref())
        .chain(schema.additional_properties.as_deref())
        .find_map(first_compilation_error)
}

/// `metadata` is not described by a CRD's schema; the API server checks the
/// name itself. Only what a manifest author controls is checked here.
fn metadata_problems(object: &Value) -> Vec<Problem> {
    let name = object.pointer("/metadata/name").and_then(Value::as_str);
    match name {
        None => vec![Problem { path: "metadata.name".into(), message: "Required value: name is required".into() }],
        Some(name) if !is_dns_subdomain(name) => vec![Problem {
            path: "metadata.name".into(),
            message: format!(
                "Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ),
        }],
        Some(_) => Vec::new(),
    }
}

fn is_dns_subdomain(name: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !name.is_empty()
        && name.len() <= 253
        && name.starts_with(alnum)
        && name.ends_with(alnum)
        && name.chars().all(|c| alnum(c) || c == '-' || c == '.')
}

/// A CRD's root schema leaves out the fields every object has; the API server
/// adds them implicitly (and checks `metadata` itself).
fn with_object_meta(schema: &Value) -> Value {
    let mut schema = schema.clone();
    if let Some(Value::Object(properties)) = schema.get_mut("properties") {
        properties.insert("apiVersion".into(), serde_json::json!({"type": "string"}));
        properties.insert("kind".into(), serde_json::json!({"type": "string"}));
        properties.insert(
            "metadata".into(),
            serde_json::json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        );
    }
    schema
}

/// Turns a structural schema into the strict JSON Schema the API server
/// effectively enforces with field validation on: fields not in `properties`
/// are errors (unless `x-kubernetes-preserve-unknown-fields`), `nullable`
/// admits `null`, and int-or-string admits both.
fn strict_json_schema(schema: &Value) -> Value {
    let Value::Object(map) = schema else { return schema.clone() };
    let mut out: Map<String, Value> = map
        .iter()
        .filter(|(k, _)| k.as_str() != "x-kubernetes-validations" && k.as_str() != "default")
        .map(|(k, v)| {
            let v = match k.as_str() {
                "properties" => Value::Object(
                    v.as_object()
                        .into_iter()
                        .flatten()
                        .map(|(name, s)| (name.clone(), strict_json_schema(s)))
                        .collect(),
                ),
                "items" | "additionalProperties" | "not" => strict_json_schema(v),
                "allOf" | "anyOf" | "oneOf" => {
                    Value::Array(v.as_array().into_iter().flatten().map(strict_json_schema).collect())
                }
                _ => v.clone(),
            };
            (k.clone(), v)
        })
        .collect();
    let flag = |key: &str| map.get(key).and_then(Value::as_bool) == Some(true);
    if out.contains_key("properties")
        && !out.contains_key("additionalProperties")
        && !flag("x-kubernetes-preserve-unknown-fields")
    {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    if flag("nullable")
        && let Some(Value::String(t)) = out.get("type").cloned()
    {
        out.insert("type".into(), serde_json::json!([t, "null"]));
    }
    if flag("x-kubernetes-int-or-string") {
        out.insert("type".into(), serde_json::json!(["integer", "string"]));
    }
    Value::Object(out)
}

/// `/spec/endpoints/0/url` → `spec.endpoints[0].url`.
fn dotted_path(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.bytes().all(|b| b.is_ascii_digit()) && !segment.is_empty() {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment);
        }
    }
    out
}

/// The validator's finding in the API server's words (kube-openapi's
/// messages), so `chronicle validate` and a cluster say the same thing.
fn structural_message(error: &jsonschema::ValidationError<'_>) -> String {
    use jsonschema::error::ValidationErrorKind as Kind;
    let path = dotted_path(error.instance_path().as_str());
    let number = |v: &Value| match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => v.to_string(),
    };
    match error.kind() {
        Kind::AdditionalProperties { unexpected } => {
            let fields: Vec<String> = unexpected
                .iter()
                .map(|f| {
                    if path.is_empty() {
                        format!("unknown field \"{f}\"")
                    } else {
                        format!("unknown field \"{path}.{f}\"")
                    }
                })
                .collect();
            fields.join(", ")
        }
        Kind::Maximum { limit } => format!("{path} in body should be less than or equal to {}", number(limit)),
        Kind::Minimum { limit } => format!("{path} in body should be greater than or equal to {}", number(limit)),
        Kind::Pattern { pattern } => format!("{path} in body should match '{pattern}'"),
        Kind::MaxLength { limit } => format!("{path} in body should be at most {limit} chars long"),
        Kind::MinLength { limit } => format!("{path} in body should be at least {limit} chars long"),
        Kind::MaxItems { limit } => format!("must have at most {limit} items"),
        Kind::MinItems { limit } => format!("{path} in body should have at least {limit} items"),
        Kind::Required { property } => format!("Required value: {} is required", property.as_str().unwrap_or_default()),
        Kind::Enum { options } => {
            let supported: Vec<String> =
                options.as_array().into_iter().flatten().filter(|o| !o.is_null()).map(Value::to_string).collect();
            format!("Unsupported value: {}: supported values: {}", error.instance(), supported.join(", "))
        }
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_becomes_a_field_path() {
        assert_eq!(dotted_path("/spec/endpoints/0/url"), "spec.endpoints[0].url");
        assert_eq!(dotted_path(""), "");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let schema = serde_json::json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let strict = strict_json_schema(&schema);
        assert_eq!(strict["additionalProperties"], Value::Bool(false));
    }

    #[test]
    fn names_follow_rfc_1123() {
        assert!(is_dns_subdomain("mainnet.archive-1"));
        assert!(!is_dns_subdomain("Mainnet"));
        assert!(!is_dns_subdomain("-a"));
    }
}
