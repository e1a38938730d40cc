//! Tokenization and token files. Documents are encoded with a BPE encoding
//! (`tiktoken-rs`, ranks embedded: no network) or a Hugging Face
//! `tokenizer.json` (the `tokenizers` crate; its truncation and padding
//! turned off, no special tokens added), each preceded by the tokenizer's
//! end-of-text token as GPT-style pretraining data is, and packed into
//! fixed-length sequences; a shard's last sequence is padded with
//! end-of-text tokens, so a shard holds whole sequences. Text that spells a
//! special token is encoded as ordinary text: a document cannot forge one.
//!
//! Files are llm.c's token format (`dev/data/data_common.py`): a header of
//! 256 little-endian int32 (`[0]` magic, `[1]` version, `[2]` token count),
//! then the tokens, little-endian: uint16 for vocabularies that fit
//! (magic 20240520, version 1, GPT-2's), uint32 otherwise (magic 20240801,
//! version 7, LLaMA-3's). `numpy.memmap(path, dtype, offset=1024)` reads them.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tiktoken_rs::CoreBPE;

use crate::crd::training_export::TokenizerEncoding;

/// Which tokenizer an export uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TokenizerChoice {
    /// A BPE encoding tiktoken-rs ships.
    Encoding(TokenizerEncoding),
    /// A Hugging Face `tokenizer.json`.
    HuggingFace(HuggingFaceFile),
}

/// A `tokenizer.json`: a file on the worker's file system (a ConfigMap
/// volume in a pod) or an `http(s)://` URL it downloads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HuggingFaceFile {
    /// A path, or an `http://`/`https://` URL.
    pub path: String,
    /// The file's sha256 (hex): a file that differs is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The token put before each document; default: the first of
    /// [`END_OF_TEXT_NAMES`] the vocabulary has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_of_text: Option<String>,
}

/// The `tokenizer.json`'s bytes, from its file or its URL.
async fn read(file: &HuggingFaceFile) -> Result<Vec<u8>, String> {
    if !(file.path.starts_with("http://") || file.path.starts_with("https://")) {
        return std::fs::read(&file.path).map_err(|e| format!("reading the tokenizer {}: {e}", file.path));
    }
    // The URL may carry a token: errors name its host only.
    let host = crate::pipeline::config::url_host(&file.path);
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(120)).build();
    let response = client
        .map_err(|e| e.to_string())?
        .get(&file.path)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("downloading the tokenizer from {host}: {}", e.without_url()))?;
    let bytes =
        response.bytes().await.map_err(|e| format!("downloading the tokenizer from {host}: {}", e.without_url()))?;
    Ok(bytes.to_vec())
}

/// End-of-text tokens as common tokenizers name them (GPT-2, LLaMA/T5, Gemma, BERT's separator).
pub const END_OF_TEXT_NAMES: [&str; 4] = ["<|endoftext|>", "</s>", "<eos>", "[SEP]"];

enum Engine {
    Bpe(CoreBPE),
    HuggingFace(Box<tokenizers::Tokenizer>),
}

/// A tokenizer, loaded.
pub struct Tokenizer {
    /// `cl100k_base`, …, or `huggingface` for a `tokenizer.json`.
    name: &'static str,
    /// The `tokenizer.json`'s sha256 (what the manifest pins).
    pub file_sha256: Option<String>,
    engine: Engine,
    /// The end-of-text token's id.
    pub end_of_text: u32,
    /// Ids are below this.
    pub vocabulary: u32,
}

impl Tokenizer {
    pub async fn open(choice: &TokenizerChoice) -> Result<Self, String> {
        match choice {
            TokenizerChoice::Encoding(encoding) => Self::load(*encoding),
            TokenizerChoice::HuggingFace(file) => Self::hugging_face(file, &read(file).await?),
        }
    }

    fn hugging_face(file: &HuggingFaceFile, bytes: &[u8]) -> Result<Self, String> {
        let sha256: String = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
        if let Some(want) = file.sha256.as_ref().filter(|want| **want != sha256) {
            return Err(format!("the tokenizer {} has sha256 {sha256}, not the {want} the spec pins", file.path));
        }
        let mut tokenizer = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| format!("{} is not a Hugging Face tokenizer.json: {e}", file.path))?;
        // Whole documents: no truncation, no padding; special tokens in the text are text.
        tokenizer.with_truncation(None).map_err(|e| format!("{}: {e}", file.path))?;
        tokenizer.with_padding(None);
        tokenizer.set_encode_special_tokens(true);
        let end_of_text = match &file.end_of_text {
            Some(name) => tokenizer
                .token_to_id(name)
                .ok_or_else(|| format!("the tokenizer {} has no token {name:?} (endOfText)", file.path))?,
            None => END_OF_TEXT_NAMES.iter().find_map(|name| tokenizer.token_to_id(name)).ok_or_else(|| {
                format!(
                    "the tokenizer {} has none of the end-of-text tokens {}: name one (endOfText)",
                    file.path,
                    END_OF_TEXT_NAMES.join(", ")
                )
            })?,
        };
        let vocabulary = tokenizer.get_vocab_size(true) as u32;
        Ok(Self {
            name: "huggingface",
            file_sha256: Some(sha256),
            engine: Engine::HuggingFace(Box::new(tokenizer)),
            end_of_text,
            vocabulary,
        })
    }

    pub fn load(encoding: TokenizerEncoding) -> Result<Self, String> {
        let loaded = match encoding {
            TokenizerEncoding::Cl100kBase => tiktoken_rs::cl100k_base(),
            TokenizerEncoding::O200kBase => tiktoken_rs::o200k_base(),
            TokenizerEncoding::P50kBase => tiktoken_rs::p50k_base(),
            TokenizerEncoding::R50kBase => tiktoken_rs::r50k_base(),
        };
        let bpe = loaded.map_err(|e| format!("loading the {} encoding: {e}", name(encoding)))?;
        // The special tokens' ids, as the encodings define them.
        let (end_of_text, vocabulary) = match encoding {
            TokenizerEncoding::Cl100kBase => (100_257, 100_277),
            TokenizerEncoding::O200kBase => (199_999, 200_019),
            TokenizerEncoding::P50kBase => (50_256, 50_281),
            TokenizerEncoding::R50kBase => (50_256, 50_257),
        };
        Ok(Self { name: name(encoding), file_sha256: None, engine: Engine::Bpe(bpe), end_of_text, vocabulary })
    }

    /// A document's tokens, end-of-text first. Text that looks like a special
    /// token is encoded as ordinary text (a document cannot forge one).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        let mut tokens = Vec::with_capacity(text.len() / 3 + 1);
        tokens.push(self.end_of_text);
        match &self.engine {
            Engine::Bpe(bpe) => tokens.extend(bpe.encode_ordinary(text)),
            Engine::HuggingFace(tokenizer) => {
                let encoding = tokenizer.encode(text, false).map_err(|e| format!("tokenizing: {e}"))?;
                tokens.extend_from_slice(encoding.get_ids());
            }
        }
        Ok(tokens)
    }

    /// Bytes per token in a file: 2 when every id fits in 16 bits.
    pub fn width(&self) -> usize {
        if self.vocabulary <= 1 << 16 { 2 } else { 4 }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

const ENCODINGS: [TokenizerEncoding; 4] = [
    TokenizerEncoding::Cl100kBase,
    TokenizerEncoding::O200kBase,
    TokenizerEncoding::P50kBase,
    TokenizerEncoding::R50kBase,
];

/// The encoding named `name` (`cl100k_base`, …).
pub fn encoding_named(name: &str) -> Result<TokenizerEncoding, String> {
    ENCODINGS.into_iter().find(|e| self::name(*e) == name).ok_or_else(|| {
        let known: Vec<&str> = ENCODINGS.into_iter().map(self::name).collect();
        format!("unknown tokenizer {name:?}: the encodings are {}", known.join(", "))
    })
}

pub fn name(encoding: TokenizerEncoding) -> &'static str {
    match encoding {
        TokenizerEncoding::Cl100kBase => "cl100k_base",
        TokenizerEncoding::O200kBase => "o200k_base",
        TokenizerEncoding::P50kBase => "p50k_base",
        TokenizerEncoding::R50kBase => "r50k_base",
    }
}

/// One shard's tokens, packed: sequences of `sequence_length`.
pub struct Packed {
    pub tokens: Vec<u32>,
    pub sequences: u64,
}

/// Concatenates documents' tokens and pads the tail to whole sequences.
pub fn pack(documents: &[Vec<u32>], sequence_length: usize, pad: u32) -> Packed {
    let mut tokens: Vec<u32> = documents.iter().flatten().copied().collect();
    let length = sequence_length.max(1);
    let sequences = tokens.len().div_ceil(length);
    tokens.resize(sequences * length, pad);
    Packed { tokens, sequences: sequences as u64 }
}

/// The llm.c token file of `tokens`, `width` bytes each.
pub fn token_file(tokens: &[u32], width: usize) -> Result<Vec<u8>, String> {
    let count = i32::try_from(tokens.len()).map_err(|_| format!("{} tokens do not fit one file", tokens.len()))?;
    let (magic, version) = if width == 2 { (20_240_520, 1) } else { (20_240_801, 7) };
    let mut header = [0i32; 256];
    (header[0], header[1], header[2]) = (magic, version, count);
    let mut bytes = Vec::with_capacity(1024 + tokens.len() * width);
    for word in header {
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    for &token in tokens {
        match width {
            2 => bytes.extend_from_slice(&(token as u16).to_le_bytes()),
            _ => bytes.extend_from_slice(&token.to_le_bytes()),
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minilm(sha256: Option<&str>) -> HuggingFaceFile {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tokenizers/all-MiniLM-L6-v2/tokenizer.json");
        HuggingFaceFile { path: path.into(), sha256: sha256.map(String::from), end_of_text: None }
    }

    #[tokio::test]
    async fn a_tokenizer_json_encodes_whole_documents_without_special_tokens() {
        let tokenizer = Tokenizer::open(&TokenizerChoice::HuggingFace(minilm(None))).await.unwrap();
        assert_eq!((tokenizer.end_of_text, tokenizer.vocabulary, tokenizer.width()), (102, 30_522, 2), "BERT's [SEP]");
        let long = "transfer ".repeat(300);
        let tokens = tokenizer.encode(&long).unwrap();
        assert_eq!(tokens.len(), 301, "no truncation to 128, no padding, no [CLS]: {:?}", &tokens[..4]);
        let forged = tokenizer.encode("[SEP] is text here").unwrap();
        assert!(!forged[1..].contains(&102), "a document cannot forge the separator: {forged:?}");
        let wrong = "0".repeat(64);
        let refused = Tokenizer::open(&TokenizerChoice::HuggingFace(minilm(Some(&wrong)))).await.err().unwrap();
        assert!(refused.contains("not the 000"), "{refused}");
        let mut missing = minilm(None);
        missing.end_of_text = Some("<|endoftext|>".into());
        let refused = Tokenizer::open(&TokenizerChoice::HuggingFace(missing)).await.err().unwrap();
        assert!(refused.contains("has no token \"<|endoftext|>\""), "{refused}");
    }

    #[test]
    fn documents_pack_into_whole_sequences_with_end_of_text_between() {
        let tokenizer = Tokenizer::load(TokenizerEncoding::Cl100kBase).unwrap();
        let (a, b) =
            (tokenizer.encode("hello world").unwrap(), tokenizer.encode("<|endoftext|> is text here").unwrap());
        assert_eq!(a[0], tokenizer.end_of_text);
        assert!(!b[1..].contains(&tokenizer.end_of_text), "a document cannot forge the separator");
        let packed = pack(&[a.clone(), b.clone()], 4, tokenizer.end_of_text);
        assert_eq!(packed.tokens.len() % 4, 0);
        assert_eq!(packed.sequences as usize, (a.len() + b.len()).div_ceil(4));
        assert_eq!(tokenizer.width(), 4, "cl100k ids need 32 bits");
        assert_eq!(Tokenizer::load(TokenizerEncoding::R50kBase).unwrap().width(), 2);
    }

    #[test]
    fn token_files_carry_llm_c_headers() {
        let file = token_file(&[1, 2, 3], 2).unwrap();
        assert_eq!(file.len(), 1024 + 6);
        assert_eq!(i32::from_le_bytes(file[0..4].try_into().unwrap()), 20_240_520);
        assert_eq!(i32::from_le_bytes(file[8..12].try_into().unwrap()), 3);
        assert_eq!(u16::from_le_bytes(file[1024..1026].try_into().unwrap()), 1);
    }
}
