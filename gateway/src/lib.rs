//! Vaitio, the gateway: HTTPS listener, FHIR REST API, encrypted storage on SQLite or
//! PostgreSQL, and the operator CLI. See ARCHITECTURE.md for the map.

pub mod access_log;
pub mod app;
pub mod audit;
pub mod cache;
pub mod capability;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod db;
pub mod enforce;
pub mod error;
pub mod fhir;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod store;
pub mod submission;

pub use app::Application;
pub use config::{Config, ConfigArgs, Mode};
