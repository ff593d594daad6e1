//! The audit log's integration tests, one binary: an untampered log verifies, every way of
//! tampering with it is found and named, and an export verifies without the gateway.

mod export;
mod sound;
mod support;
mod tamper;
