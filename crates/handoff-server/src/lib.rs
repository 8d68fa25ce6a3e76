//! The server side of handoff: everything that speaks to the network. So far, the ingest
//! decoders that turn the phone protocols and the batch API into [`handoff_core::ping::Ping`]s;
//! they are pure functions of already-extracted request pieces, so the HTTP layer stays thin.

pub mod ingest;
