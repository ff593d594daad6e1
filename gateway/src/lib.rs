//! Vaitio, the gateway: the HTTPS listener, the FHIR REST API, the enforcement point, the write
//! path and the operator CLI, over the storage layer (`store`) and authentication (`identity`). See ARCHITECTURE.md for the map.
//!
//! Layers, top down (a file imports only from layers below it):
//! `main.rs` → `cli.rs` → `app.rs` (start-up, the route table) → `api/`, `portal/` (handlers) →
//! `caller.rs`, `state.rs` → `write.rs` (the write path) → `enforce.rs` (the gate) →
//! `audit.rs` (events), `metrics.rs`, `http.rs`, `capability.rs`, `import_pool.rs` →
//! `config.rs`, `error.rs`.

pub mod api;
pub mod app;
pub mod audit;
pub mod caller;
pub mod capability;
pub mod cli;
pub mod config;
pub mod enforce;
pub mod error;
pub mod http;
pub mod import_pool;
pub mod metrics;
pub mod portal;
pub mod retention;
pub mod state;
pub mod watch;
pub mod write;

pub use app::Application;
pub use config::{Config, ConfigArgs, Mode};
