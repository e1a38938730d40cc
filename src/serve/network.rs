//! Which Solana cluster a serve replica answers for: its genesis hash and
//! epoch schedule. Known clusters carry both; any other network may name its
//! genesis hash, and its schedule-dependent methods report that they cannot be
//! answered here (or go to the upstream node, when one is configured).

use solana_epoch_schedule::EpochSchedule;
use solana_hash::Hash;

/// Slots per epoch on every public cluster (agave's `DEFAULT_SLOTS_PER_EPOCH`).
const SLOTS_PER_EPOCH: u64 = 432_000;

/// Public clusters: name, genesis hash, whether the first epochs warmed up.
/// Genesis hashes as `solana genesis-hash` prints them (and agave's
/// `genesis-utils` checks); testnet alone was started with epoch warmup.
const KNOWN: &[(&str, &str, bool)] = &[
    ("mainnet-beta", "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d", false),
    ("devnet", "EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG", false),
    ("testnet", "4uhcVJyU9pJkvQyS88uRDiswHXSCkY3zQawwpjk2NsNY", true),
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    /// `None`: not known and not configured; `getGenesisHash` says so.
    pub genesis_hash: Option<Hash>,
    /// `None`: not known; epoch methods say so.
    pub epoch_schedule: Option<EpochSchedule>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetworkError {
    #[error("genesis hash {0:?} is not a base58 32-byte hash")]
    BadGenesisHash(String),
    #[error("network {name} has genesis hash {known}, not {given}")]
    WrongGenesisHash { name: String, known: String, given: String },
}

impl Network {
    /// A network by name (`mainnet` is accepted for `mainnet-beta`), with an
    /// optional genesis hash for networks Chronicle does not know.
    pub fn new(name: &str, genesis_hash: Option<&str>) -> Result<Self, NetworkError> {
        let canonical = if name == "mainnet" { "mainnet-beta" } else { name };
        let given = genesis_hash
            .map(|text| text.parse::<Hash>().map_err(|_| NetworkError::BadGenesisHash(text.to_string())))
            .transpose()?;
        let Some((_, known, warmup)) = KNOWN.iter().find(|(n, _, _)| *n == canonical) else {
            return Ok(Self { name: name.to_string(), genesis_hash: given, epoch_schedule: None });
        };
        let known: Hash = known.parse().expect("known genesis hashes are valid");
        if let Some(given) = given
            && given != known
        {
            return Err(NetworkError::WrongGenesisHash {
                name: canonical.to_string(),
                known: known.to_string(),
                given: given.to_string(),
            });
        }
        Ok(Self {
            name: canonical.to_string(),
            genesis_hash: Some(known),
            epoch_schedule: Some(EpochSchedule::custom(SLOTS_PER_EPOCH, SLOTS_PER_EPOCH, *warmup)),
        })
    }
}

impl Default for Network {
    fn default() -> Self {
        Self::new("mainnet-beta", None).expect("mainnet-beta is known")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_clusters_have_their_schedules() {
        let mainnet = Network::new("mainnet", None).unwrap();
        assert_eq!(mainnet.name, "mainnet-beta");
        let schedule = mainnet.epoch_schedule.unwrap();
        // Slot 64,800,004 (a recorded block) opens epoch 150 on mainnet.
        assert_eq!(schedule.get_epoch_and_slot_index(64_800_004), (150, 4));
        let testnet = Network::new("testnet", None).unwrap().epoch_schedule.unwrap();
        assert_eq!((testnet.first_normal_epoch, testnet.first_normal_slot), (14, 524_256));
    }

    #[test]
    fn other_networks_name_their_genesis() {
        let local = Network::new("localnet", Some("EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG")).unwrap();
        assert!(local.genesis_hash.is_some() && local.epoch_schedule.is_none());
        assert!(matches!(
            Network::new("devnet", Some("11111111111111111111111111111111")),
            Err(NetworkError::WrongGenesisHash { .. })
        ));
        assert!(matches!(Network::new("x", Some("not-a-hash")), Err(NetworkError::BadGenesisHash(_))));
    }
}
