//! Solana: `getBlock` responses in, agave's stored block out.

pub mod decode;
pub mod layout;
pub mod response;
pub mod rpc;
