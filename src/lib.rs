//! crm-etl: turn CRM vendor exports into clean, typed, verifiable data.
//!
//! Data flows one way: read ([`read`]) -> compile ([`plan`]) -> map in parallel ([`map`], [`pipeline`]) ->
//! write ([`write`]) -> hash and account ([`manifest`]).

pub mod archive;
pub mod canon;
pub mod cast;
pub mod cli;
pub mod convert;
pub mod datetime;
pub mod defer;
pub mod diff;
pub mod digest;
pub mod error;
pub mod inspect;
pub mod keyset;
pub mod load;
pub mod manifest;
pub mod map;
pub mod pipeline;
pub mod plan;
pub mod progress;
pub mod read;
pub mod relate;
pub mod report;
pub mod rowhash;
pub mod run;
pub mod since;
pub mod spec;
pub mod swar;
pub mod target;
#[cfg(test)]
mod testing;
pub mod types;
pub mod write;
