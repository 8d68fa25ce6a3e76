//! The server side of handoff: the ingest protocols phones speak, the JSON API, the live
//! stream, auth, metrics, exports and outgoing webhooks, as a library ([`app::launch`]) so
//! tests run it in-process on `127.0.0.1:0` and the binary stays thin.

pub mod api;
pub mod app;
pub mod auth;
pub mod checkpoint;
pub mod custody;
pub mod engine;
pub mod error;
pub mod follow;
pub mod ingest;
pub mod layers;
pub mod limits;
pub mod metrics;
pub mod pages;
pub mod public;
pub mod serve;
pub mod webhooks;

pub use app::{AppState, Clock, Config, launch};
