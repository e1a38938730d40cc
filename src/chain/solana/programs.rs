//! A registry of well-known Solana programs, by program id: what training
//! documents call a program instead of its base58 key. Versioned, since a
//! rendered document depends on it (the manifest records the version);
//! add entries in a new version, never rename one in place.

/// Bumped whenever an entry is added or changed.
pub const REGISTRY_VERSION: &str = "solana-programs-1";

/// The vote program: transactions of only its instructions are votes.
pub const VOTE_PROGRAM: &str = "Vote111111111111111111111111111111111111111";

const PROGRAMS: &[(&str, &str)] = &[
    ("11111111111111111111111111111111", "System Program"),
    ("Vote111111111111111111111111111111111111111", "Vote Program"),
    ("Stake11111111111111111111111111111111111111", "Stake Program"),
    ("ComputeBudget111111111111111111111111111111", "Compute Budget Program"),
    ("AddressLookupTab1e1111111111111111111111111", "Address Lookup Table Program"),
    ("Config1111111111111111111111111111111111111", "Config Program"),
    ("BPFLoader2111111111111111111111111111111111", "BPF Loader 2"),
    ("BPFLoaderUpgradeab1e11111111111111111111111", "BPF Upgradeable Loader"),
    ("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA", "SPL Token"),
    ("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb", "SPL Token-2022"),
    ("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL", "SPL Associated Token Account"),
    ("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr", "SPL Memo"),
    ("Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo", "SPL Memo v1"),
    ("metaqbxxUerdq28cj1RbAWkYQm3ybzjb6a8bt518x1s", "Metaplex Token Metadata"),
    ("JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4", "Jupiter Aggregator v6"),
    ("675kPX9MHTjS2zt1qfr1NYHuzeLXfQM9H24wFSUt1Mp8", "Raydium AMM v4"),
    ("whirLbMiicVdio4qvUfM5KAg6Ct8VwpYzGff3uctyCc", "Orca Whirlpools"),
    ("9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin", "Serum DEX v3"),
    ("mv3ekLzLbnVPNxjSKvqBpU3ZeZXPQdEC3bp5MDEBG68", "Mango Markets v3"),
];

/// The program's well-known name, if it has one.
pub fn program_name(id: &str) -> Option<&'static str> {
    PROGRAMS.iter().find(|(key, _)| *key == id).map(|(_, name)| *name)
}

/// The name to show: the well-known one, else the id itself.
pub fn display_name(id: &str) -> String {
    program_name(id).map_or_else(|| id.to_string(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid_keys_and_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for (id, _) in PROGRAMS {
            assert!(id.parse::<solana_pubkey::Pubkey>().is_ok(), "{id} is not a public key");
            assert!(seen.insert(id), "{id} twice");
        }
        assert_eq!(program_name("11111111111111111111111111111111"), Some("System Program"));
    }
}
