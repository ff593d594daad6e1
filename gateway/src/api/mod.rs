//! The HTTP handlers, thin: each reads its request (`request.rs`), does its work in the blocking
//! pool through the enforcement point or the write path, and answers (`response.rs`).

pub mod access_log;
pub mod alerts;
pub mod import;
pub mod read;
pub mod request;
pub mod response;
pub mod search;
pub mod submission;
pub mod system;
pub mod write;
