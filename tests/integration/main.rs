//! Integration tests: the engine and the program against real SFTP servers (OpenSSH's
//! `sftp-server`, Green End's `gesftpserver`, `sshd`, ProFTPD's mod_sftp, `rclone serve
//! sftp` and asyncssh's server, each on 127.0.0.1).

mod across_servers;
mod admin;
mod apt;
mod aside;
mod bwlimit;
mod concurrent;
mod confinement;
mod dotnew;
mod engine;
mod faults;
mod fulldisk;
mod held;
mod hook;
mod hostile_server;
mod interop;
mod landing;
mod links;
mod listings;
mod mirroring;
mod mirrors;
mod more_servers;
mod package;
mod pipes;
mod quiet;
mod reader;
mod repo;
mod rollback;
mod servers;
mod settings;
mod sources;
mod sshd;
mod support;
mod together;
mod trouble;
mod words;
