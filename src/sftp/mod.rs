//! SFTP version 3: the wire format and the client's conversation state, both without I/O:
//! no file descriptor, no clock, no process. What to send is the engine's to decide; moving
//! the bytes is the transport's.

mod outbox;
pub mod printable;
pub mod session;
pub mod wire;
