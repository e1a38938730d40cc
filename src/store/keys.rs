//! Row keys of agave's Bigtable layout (section 2 of the format notes):
//! slots as 16 lowercase hex digits, `tx` rows by first signature (base58),
//! `tx-by-addr` rows as `<address>/<hex of !slot>` so an address's rows sort
//! newest first.

use solana_clock::Slot;
use solana_pubkey::Pubkey;

/// `blocks` / `entries` row key: slot 42 → `000000000000002a`.
pub fn slot_key(slot: Slot) -> String {
    format!("{slot:016x}")
}

/// Inverse of [`slot_key`]; `None` for anything that is not 16 hex digits.
pub fn parse_slot_key(key: &str) -> Option<Slot> {
    (key.len() == 16 && key.bytes().all(|b| b.is_ascii_hexdigit())).then(|| u64::from_str_radix(key, 16).ok()).flatten()
}

/// `tx-by-addr` row key: the address, `/`, then the slot key of `!slot`.
pub fn address_key(address: &Pubkey, slot: Slot) -> String {
    format!("{address}/{}", slot_key(!slot))
}

/// The slot of a `tx-by-addr` row key.
pub fn parse_address_key(key: &str) -> Option<Slot> {
    let (_, inverted) = key.rsplit_once('/')?;
    parse_slot_key(inverted).map(|s| !s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn slot_keys_match_the_spec() {
        assert_eq!(slot_key(42), "000000000000002a");
        assert_eq!(slot_key(300_000_000), "0000000011e1a300");
        assert_eq!(slot_key(123_456_789), "00000000075bcd15");
        assert_eq!(slot_key(0), "0000000000000000");
        assert_eq!(parse_slot_key("00000000075bcd15"), Some(123_456_789));
        assert_eq!(parse_slot_key("75bcd15"), None);
    }

    #[test]
    fn address_keys_match_the_spec() {
        let token = Pubkey::from_str("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA").unwrap();
        assert_eq!(address_key(&token, 123_456_789), "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA/fffffffff8a432ea");
        assert!(address_key(&token, 300_000_000).ends_with("/ffffffffee1e5cff"));
        assert!(address_key(&token, 42).ends_with("/ffffffffffffffd5"));
        assert!(address_key(&token, 0).ends_with("/ffffffffffffffff"));
        assert_eq!(parse_address_key(&address_key(&token, 42)), Some(42));
    }
}
