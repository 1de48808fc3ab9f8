//! outsftphook: keeps a remote copy of a reprepro repository in sync over SFTP.
//!
//! Data flows outlog -> plan -> [`pipeline`] -> [`sftp::session`] -> [`sftp::wire`] bytes ->
//! [`transport`] (the pipes of `ssh` or a local `sftp-server`).

#![forbid(unsafe_code)]

pub mod outlog;
pub mod pipeline;
pub mod plan;
pub mod relpath;
pub mod remote_path;
pub mod sftp;
pub mod transport;
