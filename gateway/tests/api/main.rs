//! The gateway's integration tests: one binary, real TLS, real SQLite and PostgreSQL.

mod support;

mod attribution;
mod audit;
mod cli;
mod conformance;
mod consent;
mod failure;
mod fhir_api;
mod harvest;
mod identity;
mod import;
mod keys;
mod portal;
mod portal_oidc;
mod retention;
mod storage;
mod submission;
