//! Chain adapters: how each chain family's blocks are fetched and decoded.

pub mod solana;

use crate::crd::chain_source::ChainFamily;

/// Whether this binary has an adapter for `family`; if not, why (a status
/// message: the controller reports it instead of treating the chain as Solana).
pub fn adapter(family: ChainFamily) -> Result<(), String> {
    match family {
        ChainFamily::Solana => Ok(()),
        ChainFamily::Evm => Err("this Chronicle build has no evm chain adapter yet".into()),
    }
}
