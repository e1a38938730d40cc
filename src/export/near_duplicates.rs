//! Near-duplicate removal: a MinHash signature of each document's word
//! 3-grams and an LSH index over the documents kept so far (`gaoya`); a
//! document whose estimated Jaccard similarity to a kept one reaches the
//! threshold is dropped and counted. Signatures are deterministic (fixed
//! hash family and seed), so the same documents drop on every rebuild.
//! The index holds every kept signature (`bands × width` u32 each, about
//! 0.5 KiB per document).

use std::sync::Arc;

use fnv::FnvBuildHasher;
use gaoya::minhash::{MinHashIndex, MinHasher, MinHasher32, calculate_minhash_params};

/// Hash functions before banding (the index uses `bands × width` of them).
const HASHES: usize = 128;
/// Words per shingle.
const SHINGLE: usize = 3;
/// The hash family's seed: part of the dataset's definition.
const SEED: u64 = 20_240_520;

/// Computes signatures; shared by the tasks that render blocks.
pub struct Signer(MinHasher32<FnvBuildHasher>);

impl Signer {
    pub fn signature(&self, text: &str) -> Vec<u32> {
        let words: Vec<&str> = text.split_whitespace().collect();
        match words.len() {
            0 => self.0.create_signature(std::iter::once("")),
            n if n < SHINGLE => self.0.create_signature(std::iter::once(words.as_slice())),
            _ => self.0.create_signature(words.windows(SHINGLE)),
        }
    }
}

pub struct NearDuplicates {
    index: MinHashIndex<u32, u64>,
    kept: u64,
}

impl NearDuplicates {
    /// The index for `threshold`, and the signer its signatures must come from.
    pub fn new(threshold: f64) -> (Self, Arc<Signer>) {
        let (bands, width) = calculate_minhash_params(threshold, HASHES);
        let signer = MinHasher32::new_with_hasher_and_seed(bands * width, FnvBuildHasher::default(), SEED);
        (Self { index: MinHashIndex::new(bands, width, threshold), kept: 0 }, Arc::new(Signer(signer)))
    }

    /// Whether a kept document is this similar; if not, this one is kept.
    /// (The caller keeps `signature` for the resume state when it is kept.)
    #[allow(clippy::ptr_arg, reason = "gaoya's query takes a &Vec")]
    pub fn is_duplicate(&mut self, signature: &Vec<u32>) -> bool {
        if !self.index.query(signature).is_empty() {
            return true;
        }
        self.keep(signature.clone());
        false
    }

    /// Adds a kept document's signature (rebuilding the index on resume).
    pub fn keep(&mut self, signature: Vec<u32>) {
        self.index.insert(self.kept, signature);
        self.kept += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nearly_equal_text_is_a_duplicate_and_another_is_not() {
        let (mut index, signer) = NearDuplicates::new(0.8);
        let base: String = (0..200).map(|i| format!("word{i} ")).collect();
        let edited = base.replace("word100 ", "changed ");
        let other: String = (0..200).map(|i| format!("other{i} ")).collect();
        assert!(!index.is_duplicate(&signer.signature(&base)));
        assert!(index.is_duplicate(&signer.signature(&edited)), "one word of 200 changed");
        assert!(!index.is_duplicate(&signer.signature(&other)));
        assert_eq!(signer.signature(&base), signer.signature(&base), "deterministic");
    }
}
