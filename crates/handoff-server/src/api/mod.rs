//! HTTP handlers, one module per area of the contract in DESIGN.md.

pub mod events;
pub mod exports;
pub mod handoffs;
pub mod ingest;
pub mod meta;
pub mod stream;
pub mod webhooks;
