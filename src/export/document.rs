//! What an export is made of: documents (one per transaction), rendered
//! through a named, versioned template, with their metadata alongside; and
//! which transactions are selected. Chain-neutral: each chain says what a
//! transaction's summary, data and logs are (`chain/solana/documents.rs`,
//! `chain/evm/documents.rs`); [`render`] makes every template of them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::inline_template::InlineTemplate;
use crate::crd::training_export::RenderTemplate;

/// One training document and its metadata, as a JSONL line and a Parquet row.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// The transaction's signature (or hash).
    pub id: String,
    pub text: String,
    pub slot: u64,
    /// Unix seconds, where the block has a time.
    pub block_time: Option<i64>,
    /// `success` or `failure`.
    pub status: String,
    pub fee: Option<u64>,
    /// Programs invoked (top level and inner), by well-known name or id, sorted.
    pub programs: Vec<String>,
    /// Token mints the transaction moved or held, sorted.
    pub mints: Vec<String>,
    /// The template and its version: `transaction-summary@1`.
    pub template: String,
    /// Chat forms: the conversation (`text` is it rendered, roles first);
    /// empty otherwise. Every export has the same columns.
    #[serde(default)]
    pub messages: Vec<Message>,
    /// Instruction forms: the prompt and its completion (`text` is both).
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub completion: Option<String>,
}

/// One turn of a chat document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl Document {
    /// The content hash exact deduplication and the split are keyed on.
    pub fn content_hash(&self) -> [u8; 32] {
        Sha256::digest(self.text.as_bytes()).into()
    }
}

/// The built-in templates: the CRD's own enum (`spec.template.builtin`),
/// named as manifests spell them. A template's version changes whenever its
/// output does.
pub use crate::crd::training_export::BuiltinTemplate as Template;

const TEMPLATES: [Template; 5] = [
    Template::TransactionSummary,
    Template::TransactionJson,
    Template::ProgramLogs,
    Template::TransactionChat,
    Template::TransactionInstruct,
];

impl Template {
    pub fn named(name: &str) -> Result<Self, String> {
        TEMPLATES.into_iter().find(|t| t.name() == name).ok_or_else(|| {
            let known: Vec<&str> = TEMPLATES.iter().map(|t| t.name()).collect();
            format!("unknown template {name:?}: the built-in ones are {}", known.join(", "))
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::TransactionSummary => "transaction-summary",
            Self::TransactionJson => "transaction-json",
            Self::ProgramLogs => "program-logs",
            Self::TransactionChat => "transaction-chat",
            Self::TransactionInstruct => "transaction-instruct",
        }
    }

    /// `name@version`, as documents and the manifest record it.
    pub fn id(self) -> String {
        format!("{}@1", self.name())
    }
}

/// How documents are rendered: a built-in template, or the user's own
/// (`spec.template.inline`, `inline_template.rs`).
#[derive(Clone, Debug)]
pub enum Rendering {
    Builtin(Template),
    Inline(Arc<InlineTemplate>),
}

impl Rendering {
    /// What the spec names: exactly one of a built-in or an inline template
    /// (the CRD's rule); an inline one is compiled here, so a syntax error
    /// is reported before anything is read.
    pub fn of(template: &RenderTemplate) -> Result<Self, String> {
        match (&template.inline, template.builtin) {
            (Some(source), _) => Ok(Self::Inline(Arc::new(InlineTemplate::compile(source)?))),
            (None, Some(builtin)) => Ok(Self::Builtin(builtin)),
            (None, None) => Err("the template names neither a builtin nor an inline template".into()),
        }
    }

    /// `name@version` (`inline@<sha256 prefix>`), as documents and the manifest record it.
    pub fn id(&self) -> String {
        match self {
            Self::Builtin(template) => template.id(),
            Self::Inline(template) => template.id().to_string(),
        }
    }
}

/// What one chain's transaction gives the templates.
pub trait Renderable {
    /// What `transaction-json` writes and an inline template sees.
    type Data<'a>: Serialize
    where
        Self: 'a;

    /// The transaction's id, for errors.
    fn id(&self) -> &str;
    fn data(&self) -> Self::Data<'_>;
    /// A readable paragraph (`transaction-summary`, the chat forms' answer).
    fn summary(&self) -> String;
    /// `program-logs`: none for a transaction without logs.
    fn logs(&self) -> Option<String>;
    /// A document of `text` with the transaction's metadata columns.
    fn document(&self, text: String, template: String, forms: Forms) -> Document;
}

/// The chat and instruction forms' fields (empty for the other templates).
#[derive(Default)]
pub struct Forms {
    pub messages: Vec<Message>,
    pub prompt: Option<String>,
    pub completion: Option<String>,
}

/// The chat forms' system turn and the question asked of each transaction
/// (part of the templates' version).
pub struct Chat {
    pub system: &'static str,
    pub question: &'static str,
}

/// The document `rendering` makes of `tx`, or none (`program-logs` of a
/// transaction without logs; an inline template that renders only whitespace).
pub fn render<T: Renderable>(tx: &T, rendering: &Rendering, chat: &Chat) -> Result<Option<Document>, String> {
    let template = match rendering {
        Rendering::Builtin(template) => *template,
        Rendering::Inline(inline) => {
            let text = inline.render(&tx.data()).map_err(|e| format!("transaction {}: {e}", tx.id()))?;
            return Ok(text.map(|text| tx.document(text, rendering.id(), Forms::default())));
        }
    };
    let json = || serde_json::to_string(&tx.data()).expect("plain data serializes");
    let question = || format!("{}\n{}", chat.question, json());
    let mut forms = Forms::default();
    let text = match template {
        Template::TransactionSummary => tx.summary(),
        Template::TransactionJson => json(),
        Template::ProgramLogs => match tx.logs() {
            Some(logs) => logs,
            None => return Ok(None),
        },
        Template::TransactionChat => {
            let turn = |role: &str, content: String| Message { role: role.into(), content };
            forms.messages =
                vec![turn("system", chat.system.into()), turn("user", question()), turn("assistant", tx.summary())];
            forms.messages.iter().map(|m| format!("{}: {}", m.role, m.content)).collect::<Vec<_>>().join("\n\n")
        }
        Template::TransactionInstruct => {
            let (asked, answer) = (question(), tx.summary());
            let text = format!("{asked}\n\n{answer}");
            (forms.prompt, forms.completion) = (Some(asked), Some(answer));
            text
        }
    };
    Ok(Some(tx.document(text, template.id(), forms)))
}

/// Which transactions become documents.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selection {
    /// Only transactions that invoke one of these programs (ids); empty: any.
    pub programs: Vec<String>,
    pub success_only: bool,
    /// Vote transactions (the bulk of Solana's) are left out unless asked for.
    pub include_votes: bool,
    /// Only transactions with an instruction of one of these parsed types; empty: any.
    pub instruction_types: Vec<String>,
    /// Only documents whose text has at least / at most this many bytes.
    pub min_bytes: Option<u64>,
    pub max_bytes: Option<u64>,
    /// This fraction of the documents, drawn by content hash and the seed.
    pub sample: Option<f64>,
}

impl Selection {
    /// The document-level part of the selection (size and sample), the
    /// same for every chain: applied after rendering, before tokenizing.
    pub fn keeps(&self, document: &Document, seed: u64) -> bool {
        let size = document.text.len() as u64;
        self.min_bytes.is_none_or(|min| size >= min)
            && self.max_bytes.is_none_or(|max| size <= max)
            && self.sample.is_none_or(|fraction| draw(b"sample", seed, &document.content_hash()) < fraction)
    }
}

/// A uniform draw in [0, 1) from sha256(domain ‖ seed ‖ hash): deterministic
/// per document, independent across domains (the sample and the split).
pub fn draw(domain: &[u8], seed: u64, hash: &[u8; 32]) -> f64 {
    let mut hasher = Sha256::new();
    hasher.update(domain);
    hasher.update(seed.to_le_bytes());
    hasher.update(hash);
    let bits: [u8; 8] = hasher.finalize()[..8].try_into().expect("8 bytes");
    u64::from_le_bytes(bits) as f64 / (u64::MAX as f64 + 1.0)
}
