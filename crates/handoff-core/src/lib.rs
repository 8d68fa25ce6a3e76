//! The pure domain of handoff: the relay plan (model, parsing, validation, schedule) and route
//! geometry. No I/O, no async, no clock: files are handed in as text and "now" is an argument,
//! so everything here is deterministic and testable.

pub mod custody;
pub mod eta;
pub mod eval;
pub mod geodesic;
pub mod ping;
pub mod plan;
pub mod route;
pub mod schedule;
pub mod snapshot;
pub mod track;
