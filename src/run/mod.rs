//! The commands: the hook ([`hook`]), `mirror` and `verify` ([`mirror`]), `status`
//! ([`status`]). Each reads the repository side, asks [`crate::plan`] what to do, and drives
//! that through the [`crate::engine`], reporting progress and a summary.

pub mod hook;
mod links;
pub mod mirror;
mod output;
pub mod remote_tree;
mod runner;
mod session;
pub mod status;
mod sync;
