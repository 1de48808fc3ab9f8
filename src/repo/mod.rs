//! The repository side: what reprepro hands over and what the hook keeps on the local disk.
//!
//! Owns the outlog parser ([`outlog`]), the journal of confirmed work ([`journal`], the only
//! writer of `DONE` lines), which logs a run takes and in what order ([`logs`]), and the locks
//! ([`lock`]: outsftphook's own and waiting for reprepro's), and the deletions held back
//! ([`held`]). Nothing here talks to a server.

pub(crate) mod held;
pub mod journal;
pub mod lock;
pub mod logs;
pub mod outlog;
pub(crate) mod owner;
pub mod scan;
