//! Integration tests: the engine and the program against real SFTP servers (OpenSSH's
//! `sftp-server`, Green End's `gesftpserver`, and `sshd` on 127.0.0.1).

mod admin;
mod concurrent;
mod confinement;
mod dotnew;
mod engine;
mod faults;
mod fulldisk;
mod hook;
mod landing;
mod reader;
mod repo;
mod sshd;
mod support;
