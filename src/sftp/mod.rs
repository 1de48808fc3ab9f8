//! SFTP version 3: the wire format and the client's conversation state, both without I/O.

mod outbox;
pub mod session;
pub mod wire;
