//! A TCP proxy that delays every byte by a fixed one-way time, to imitate a WAN round trip
//! on loopback (this kernel has no netem). A benchmark tool, not part of outsftphook:
//!
//!     cargo build --release --examples
//!     target/release/examples/delayproxy LISTEN_PORT TARGET_HOST TARGET_PORT ONE_WAY_MS
//!
//! Unlike `contrib/bench/delayproxy.py` it costs microseconds per chunk, so a protocol of
//! many small messages is not slowed by the proxy itself: each direction has a reader that
//! stamps what it reads and a writer that sends everything due at once. Delays overlap
//! (latency, no bandwidth limit), order is kept, EOF is passed on as a half-close after the
//! delay. Threads are fine here: this is the test bench, not the engine.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const CHUNK: usize = 256 * 1024;

/// Copies `from` to `to` with `delay`; an empty chunk stands for EOF.
fn forward(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::sync_channel::<(Instant, Vec<u8>)>(4096);
    let reader = thread::spawn(move || {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = from.read(&mut buf).unwrap_or(0);
            if tx
                .send((Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
                || n == 0
            {
                return;
            }
        }
    });
    let mut pending: Vec<u8> = Vec::new();
    'outer: while let Ok((due, data)) = rx.recv() {
        let mut eof = data.is_empty();
        pending.extend_from_slice(&data);
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        // Whatever else is due by now goes out in the same write.
        while !eof {
            match rx.try_recv() {
                Ok((due, data)) if due <= Instant::now() => {
                    eof = data.is_empty();
                    pending.extend_from_slice(&data);
                }
                Ok((due, data)) => {
                    if to.write_all(&pending).is_err() {
                        break 'outer;
                    }
                    pending.clear();
                    thread::sleep(due.saturating_duration_since(Instant::now()));
                    eof = data.is_empty();
                    pending.extend_from_slice(&data);
                }
                Err(_) => break,
            }
        }
        if to.write_all(&pending).is_err() {
            break;
        }
        pending.clear();
        if eof {
            let _ = to.shutdown(Shutdown::Write);
            break;
        }
    }
    drop(rx);
    let _ = reader.join();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: delayproxy LISTEN_PORT TARGET_HOST TARGET_PORT ONE_WAY_MS");
        std::process::exit(2);
    }
    let listen: u16 = args[1].parse().expect("LISTEN_PORT");
    let target = format!("{}:{}", args[2], args[3]);
    let delay =
        Duration::from_micros((args[4].parse::<f64>().expect("ONE_WAY_MS") * 1000.0) as u64);
    let listener = TcpListener::bind(("127.0.0.1", listen)).expect("listen");
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let target = target.clone();
        thread::spawn(move || {
            let Ok(server) = TcpStream::connect(&target) else {
                eprintln!("delayproxy: cannot connect to {target}");
                return;
            };
            for s in [&client, &server] {
                let _ = s.set_nodelay(true);
            }
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let up = thread::spawn(move || forward(client, server, delay));
            forward(s2, c2, delay);
            let _ = up.join();
        });
    }
}
