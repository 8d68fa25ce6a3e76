//! The integration tests of the server, as one binary split into areas (ripgrep style): each
//! test starts the real server in-process on `127.0.0.1:0`, over a real SQLite file in a
//! temporary folder, with a clock the test moves by hand, and talks to it over HTTP only.

mod common;

mod access;

mod bad_input;
mod basemap;
mod carrier;
mod checkpoint;
mod engine;
mod exports;
mod follow;
mod ingest;
mod nodes;
mod outage;
mod phones;
mod privacy;
mod restart;
mod slow;
mod stint;
mod stream;
mod tokens;
mod tracking;
mod trust;
mod webhooks;
