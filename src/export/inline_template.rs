//! `spec.template.inline`: a template of the user's own (minijinja, Jinja2's
//! syntax) over each selected transaction's normalized data — the fields the
//! built-in `transaction-json` template writes: `signature`, `slot`,
//! `block_time`, `status`, `err`, `fee`, `signers`, `instructions` (`index`,
//! `parent_index`, `program`, `type`, `params`), `token_transfers` and
//! `balance_changes`; the document's metadata columns are filled as for
//! the built-in templates. A field the transaction does
//! not have is an error naming it, not an empty string; a template that
//! renders only whitespace gives no document for that transaction (so
//! `{% if … %}` can select); rendering is bounded (fuel), so a runaway loop
//! fails rather than hangs. The template's id, recorded in every document
//! and in the manifest, is `inline@` and the first 16 hex digits of its
//! text's sha256: the same text, the same id.

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::shards::hex;

/// Instructions a template may run per document (a large transaction's
/// loops stay far below it).
const FUEL: u64 = 5_000_000;
const NAME: &str = "inline";

pub struct InlineTemplate {
    environment: Environment<'static>,
    source: String,
    id: String,
}

impl std::fmt::Debug for InlineTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineTemplate").field("id", &self.id).finish()
    }
}

impl InlineTemplate {
    /// Compiles `source`; a syntax error names its line.
    pub fn compile(source: &str) -> Result<Self, String> {
        let mut environment = Environment::new();
        environment.set_undefined_behavior(UndefinedBehavior::Strict);
        environment.set_fuel(Some(FUEL));
        environment
            .add_template_owned(NAME, source.to_string())
            .map_err(|e| describe("the inline template", source, &e))?;
        let id = format!("inline@{}", &hex(&Sha256::digest(source.as_bytes()))[..16]);
        Ok(Self { environment, source: source.to_string(), id })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The text for one transaction's data; none when it renders empty.
    pub fn render(&self, data: &impl Serialize) -> Result<Option<String>, String> {
        let describe = |what: &str, e: &minijinja::Error| describe(what, &self.source, e);
        let template = self.environment.get_template(NAME).map_err(|e| describe("the inline template", &e))?;
        let text = template.render(data).map_err(|e| describe("rendering the inline template", &e))?;
        Ok(Some(text).filter(|t| !t.trim().is_empty()))
    }
}

/// The error with its line and, where minijinja knows it, the text it is
/// about (an undefined field's error carries no name of its own).
fn describe(what: &str, source: &str, error: &minijinja::Error) -> String {
    let reason = error.detail().map_or_else(|| error.kind().to_string(), str::to_string);
    let at = error.range().and_then(|range| source.get(range)).map(|text| format!(" (`{text}`)")).unwrap_or_default();
    match error.line() {
        Some(line) => format!("{what}, line {line}: {reason}{at}"),
        None => format!("{what}: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_fields_and_names_what_is_wrong() {
        let data = serde_json::json!({"signature": "5x", "fee": 5000, "programs": ["System Program"]});
        let template =
            InlineTemplate::compile("{{ signature }} paid {{ fee }} via {{ programs | join(', ') }}").unwrap();
        assert_eq!(template.render(&data).unwrap().as_deref(), Some("5x paid 5000 via System Program"));
        assert_eq!(
            template.id(),
            InlineTemplate::compile("{{ signature }} paid {{ fee }} via {{ programs | join(', ') }}").unwrap().id()
        );

        let unknown = InlineTemplate::compile("{{ signature }}\n{{ feee }}").unwrap().render(&data).unwrap_err();
        assert!(unknown.contains("line 2") && unknown.contains("feee"), "{unknown}");
        let syntax = InlineTemplate::compile("{% if fee %}unclosed").unwrap_err();
        assert!(syntax.starts_with("the inline template, line 1"), "{syntax}");
        let empty = InlineTemplate::compile("{% if fee > 10000 %}{{ signature }}{% endif %}").unwrap();
        assert_eq!(empty.render(&data).unwrap(), None, "renders nothing: no document");
        let runaway = InlineTemplate::compile(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        )
        .unwrap();
        assert!(runaway.render(&data).is_err(), "bounded by fuel");
    }
}
