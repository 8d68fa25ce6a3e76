//! HTTP handlers, one module per area of the HTTP contract (docs/api.md).

pub mod events;
pub mod exports;
pub mod handoffs;
pub mod ingest;
pub mod meta;
pub mod openapi;
pub mod stream;
pub mod webhooks;
