//! `weir serve`: the HTTP service over the embedded log or Kafka.
//!
//! Read top-down along the request path; no module imports its caller:
//!
//! - [`routes`] — `app(state) -> Router`, the HTTP API (docs/api.md);
//! - [`handlers`] — one file per resource (statements, events, outputs, live
//!   subscriptions, metrics, health and `/metrics`); [`app`] is their axum state and
//!   [`error`] the error answer every layer returns;
//! - [`statements`] — statement changes: checked, appended to the `statements` topic,
//!   installed as a catalog version (event sourcing: replayed at start);
//! - [`ingest`] — event checks, routing to partitions ([`routing`]: by the key's typed
//!   value when the stream declares `key`, else partition 0, so every event of one
//!   PARTITION BY key meets the others in one partition), idempotency keys, appends;
//! - [`log`] — the embedded log or Kafka behind one interface, and checkpoints;
//!   [`state`] — what workers and requests share (catalog versions, progress, counters);
//! - [`worker`] — one thread per partition runs the engine, writes repartitioned copies
//!   ([`repartition`]) and outputs (the `outputs` topic: one partition whose offsets are
//!   the output cursors), and checkpoints; [`kafka`] hands partitions to this instance in
//!   Kafka mode;
//! - [`start`] — opening, replaying and recovering at start; [`clock`] — the wall clock
//!   workers advance quiet streams by (injectable for tests).

pub mod app;
pub mod clock;
pub mod error;
pub mod guard;
pub mod handlers;
pub mod ingest;
pub mod kafka;
pub mod listen;
pub mod log;
pub mod repartition;
pub mod routes;
pub mod routing;
pub mod start;
pub mod state;
pub mod statements;
pub mod worker;

pub use app::App;
pub use error::AppError;
pub use start::{open, open_kafka, start_workers};
pub use statements::{apply_rule_files, apply_statements};
