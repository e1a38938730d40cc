//! Chain adapters: how each chain family's blocks are fetched and decoded.

pub mod solana;
