//! The thin PostgreSQL glue: one file per SQL concept. All SPI lives here; the mathematics lives
//! in `crate::engine`.

mod access;
mod algorithms;
pub(crate) mod cache;
mod catalog;
pub mod errors;
mod evaluate;
mod item_cache;
mod jobs;
pub mod gucs;
mod plans;
pub mod progress;
mod recommend;
mod similarity;
mod source;
mod split;
mod synthetic;
mod train;
pub(crate) mod transfer;
mod tune;

/// Seconds between the Unix epoch and PostgreSQL's (2000-01-01).
pub const PG_EPOCH_OFFSET: i64 = 946_684_800;
