//! The national document: translation of clinic records, the shipped profiles and their
//! validator, golden documents, and properties over generated records. One test binary.

mod golden;
mod profiles;
mod properties;
mod translation;
