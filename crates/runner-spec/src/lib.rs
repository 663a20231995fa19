//! The part of `runner` that does not touch libtorch: the experiment spec (loading, layers,
//! validation, located errors), the catalogue of component names, and the command line.
//! The `runner` front end links only this crate, so `runner list` and `runner validate`
//! start without loading libtorch.

pub mod catalogue;
pub mod cli;
pub mod queue;
pub mod report;
pub mod spec;
pub mod sweep;
