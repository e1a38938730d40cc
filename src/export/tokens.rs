//! Tokenization and token files. Documents are encoded with a BPE encoding
//! (`tiktoken-rs`, ranks embedded: no network), each preceded by the
//! encoding's end-of-text token as GPT-style pretraining data is, and packed
//! into fixed-length sequences; a shard's last sequence is padded with
//! end-of-text tokens, so a shard holds whole sequences.
//!
//! Files are llm.c's token format (`dev/data/data_common.py`): a header of
//! 256 little-endian int32 (`[0]` magic, `[1]` version, `[2]` token count),
//! then the tokens, little-endian: uint16 for vocabularies that fit
//! (magic 20240520, version 1, GPT-2's), uint32 otherwise (magic 20240801,
//! version 7, LLaMA-3's). `numpy.memmap(path, dtype, offset=1024)` reads them.

use tiktoken_rs::CoreBPE;

use crate::crd::training_export::TokenizerEncoding;

/// An encoding, loaded.
pub struct Tokenizer {
    pub encoding: TokenizerEncoding,
    bpe: CoreBPE,
    /// The end-of-text token's id.
    pub end_of_text: u32,
    /// Ids are below this.
    pub vocabulary: u32,
}

impl Tokenizer {
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
        Ok(Self { encoding, bpe, end_of_text, vocabulary })
    }

    /// A document's tokens, end-of-text first. Text that looks like a special
    /// token is encoded as ordinary text (a document cannot forge one).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut tokens = Vec::with_capacity(text.len() / 3 + 1);
        tokens.push(self.end_of_text);
        tokens.extend(self.bpe.encode_ordinary(text));
        tokens
    }

    /// Bytes per token in a file: 2 when every id fits in 16 bits.
    pub fn width(&self) -> usize {
        if self.vocabulary <= 1 << 16 { 2 } else { 4 }
    }

    pub fn name(&self) -> &'static str {
        name(self.encoding)
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

    #[test]
    fn documents_pack_into_whole_sequences_with_end_of_text_between() {
        let tokenizer = Tokenizer::load(TokenizerEncoding::Cl100kBase).unwrap();
        let (a, b) = (tokenizer.encode("hello world"), tokenizer.encode("<|endoftext|> is text here"));
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
