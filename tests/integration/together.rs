//! Several engines, one per server, driven by one loop ([`Engine::run_together`],
//! [`Engine::connect_all`]) against real OpenSSH `sftp-server`s.

use std::fs;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use outsftphook::TransportError;
use outsftphook::{Engine, EngineConfig, EngineErrorKind, Op, Outcome, ServerCommand};

use crate::support::{OPENSSH_SFTP_SERVER, Sandbox, pattern, require, rpath};

/// `n` uploads of `size(i)` bytes to `d{i % 3}/f{i}`, sources made in the sandbox.
fn uploads(sandbox: &Sandbox, n: usize, size: impl Fn(usize) -> usize, seed: u8) -> Vec<Op> {
    (0..n)
        .map(|i| Op::Upload {
            local: sandbox.local_file(&format!("f{i}"), size(i), seed ^ i as u8),
            remote: rpath(&format!("d{}/f{i}", i % 3)),
            fsync: false,
            mtime: None,
        })
        .collect()
}

/// Each upload of [`uploads`] arrived whole, at the name `name(i)`.
fn assert_uploaded(
    sandbox: &Sandbox,
    n: usize,
    size: impl Fn(usize) -> usize,
    seed: u8,
    name: impl Fn(usize) -> String,
) {
    for i in 0..n {
        let got = fs::read(sandbox.remote().join(name(i))).unwrap();
        assert!(
            got == pattern(size(i), seed ^ i as u8),
            "{} differs",
            name(i)
        );
    }
}

/// OpenSSH's server in `remote/`, writing its shell's pid (the server's, after `exec`) to
/// `server.pid` first.
fn with_pid(sandbox: &Sandbox) -> ServerCommand {
    require(OPENSSH_SFTP_SERVER);
    sandbox.shell(&format!(
        "echo $$ > '{}'; exec {OPENSSH_SFTP_SERVER} -d '{}'",
        pidfile(sandbox).display(),
        sandbox.remote().display()
    ))
}

fn pidfile(sandbox: &Sandbox) -> std::path::PathBuf {
    sandbox.dir.path().join("server.pid")
}

fn signal(pidfile: &Path, sig: Signal) {
    let pid: i32 = fs::read_to_string(pidfile).unwrap().trim().parse().unwrap();
    kill(Pid::from_raw(pid), sig).unwrap();
}

fn connect(servers: &[(ServerCommand, EngineConfig)]) -> Vec<Engine> {
    Engine::connect_all(servers)
        .into_iter()
        .map(|r| r.expect("connect"))
        .collect()
}

#[test]
fn three_mirrors_take_uploads_and_renames_in_one_loop() {
    let sandboxes: Vec<Sandbox> = (0..3).map(|_| Sandbox::new()).collect();
    // The third goes over several connections, its large files in parts: its run has more
    // passes than the others' (round trip, clearing, parts, sizes, renames).
    let spread = EngineConfig {
        connections: 3,
        multi_connection_min_rtt: Duration::ZERO,
        part_size: 100_000,
        ..EngineConfig::default()
    };
    let configs = [EngineConfig::default(), EngineConfig::default(), spread];
    let servers: Vec<(ServerCommand, EngineConfig)> = sandboxes
        .iter()
        .zip(configs)
        .map(|(s, c)| (s.openssh(), c))
        .collect();
    let mut engines = connect(&servers);
    let n = [30, 5, 12];
    let size = |i: usize| (i % 4) * 150_000 + 17;
    let ops: Vec<Vec<Op>> = (0..3)
        .map(|k| uploads(&sandboxes[k], n[k], size, k as u8))
        .collect();
    let mut reported: Vec<Vec<usize>> = n.iter().map(|&n| vec![0; n]).collect();
    let results = {
        let mut refs: Vec<&mut Engine> = engines.iter_mut().collect();
        let lists: Vec<&[Op]> = ops.iter().map(Vec::as_slice).collect();
        Engine::run_together(&mut refs, &lists, |k, i, r| {
            assert_eq!(r, &Ok(Outcome::Done));
            reported[k][i] += 1;
        })
    };
    for (k, result) in results.into_iter().enumerate() {
        let result = result.expect("run");
        assert_eq!(result.len(), n[k]);
        assert!(result.iter().all(|r| r == &Ok(Outcome::Done)), "{result:?}");
        assert!(reported[k].iter().all(|&c| c == 1), "{:?}", reported[k]);
    }
    assert!(
        engines[2].stats().parts_uploaded > 0,
        "the third went in parts"
    );
    // Renames: in order, on each engine's first connection.
    let renames: Vec<Vec<Op>> = n
        .iter()
        .map(|&n| {
            (0..n)
                .map(|i| Op::Rename {
                    from: rpath(&format!("d{}/f{i}", i % 3)),
                    to: rpath(&format!("d{}/g{i}", i % 3)),
                })
                .collect()
        })
        .collect();
    let results = {
        let mut refs: Vec<&mut Engine> = engines.iter_mut().collect();
        let lists: Vec<&[Op]> = renames.iter().map(Vec::as_slice).collect();
        Engine::run_together(&mut refs, &lists, |_, _, _| {})
    };
    for result in results {
        assert!(result.unwrap().iter().all(|r| r == &Ok(Outcome::Done)));
    }
    for engine in engines {
        engine.close();
    }
    for (k, sandbox) in sandboxes.iter().enumerate() {
        assert_uploaded(sandbox, n[k], size, k as u8, |i| format!("d{}/g{i}", i % 3));
        assert_eq!(sandbox.sessions_opened(), if k == 2 { 3 } else { 1 });
    }
}

#[test]
fn a_server_that_cannot_start_fails_only_its_own_connection() {
    let (a, b) = (Sandbox::new(), Sandbox::new());
    let servers = [
        (a.openssh(), EngineConfig::default()),
        (a.shell("exit 1"), EngineConfig::default()),
        (
            ServerCommand::Direct(vec!["/nonexistent/sftp-server".into()]),
            EngineConfig::default(),
        ),
        (b.openssh(), EngineConfig::default()),
    ];
    let mut results = Engine::connect_all(&servers).into_iter();
    let first = results.next().unwrap().expect("the first connects");
    let exited = results.next().unwrap().err().expect("exit 1 is no server");
    assert!(
        matches!(
            exited.kind,
            EngineErrorKind::Transport(TransportError::Closed { .. })
        ),
        "{exited}"
    );
    assert_eq!(exited.in_flight, ["INIT"]);
    let missing = results.next().unwrap().err().expect("no such program");
    assert!(
        matches!(
            missing.kind,
            EngineErrorKind::Transport(TransportError::Spawn { .. })
        ),
        "{missing}"
    );
    let last = results.next().unwrap().expect("the last connects");
    assert!(results.next().is_none());
    // Both work.
    for (engine, sandbox) in [(first, &a), (last, &b)] {
        let mut engine = engine;
        let ops = uploads(sandbox, 3, |_| 1000, 7);
        let results = engine.run_batch(&ops, |_, _| {}).unwrap();
        assert!(results.iter().all(|r| r == &Ok(Outcome::Done)));
        engine.close();
        assert_uploaded(sandbox, 3, |_| 1000, 7, |i| format!("d{}/f{i}", i % 3));
    }
}

#[test]
fn a_server_killed_mid_batch_fails_only_its_engine() {
    let sandboxes: Vec<Sandbox> = (0..3).map(|_| Sandbox::new()).collect();
    let servers: Vec<(ServerCommand, EngineConfig)> = vec![
        (sandboxes[0].openssh(), EngineConfig::default()),
        (with_pid(&sandboxes[1]), EngineConfig::default()),
        (sandboxes[2].openssh(), EngineConfig::default()),
    ];
    let mut engines = connect(&servers);
    let size = |_| 1_000_000;
    let ops: Vec<Vec<Op>> = (0..3)
        .map(|k| uploads(&sandboxes[k], 20, size, k as u8))
        .collect();
    let pid = pidfile(&sandboxes[1]);
    let mut killed = false;
    let results = {
        let mut refs: Vec<&mut Engine> = engines.iter_mut().collect();
        let lists: Vec<&[Op]> = ops.iter().map(Vec::as_slice).collect();
        Engine::run_together(&mut refs, &lists, |_, _, _| {
            if !killed {
                signal(&pid, Signal::SIGKILL);
                killed = true;
            }
        })
    };
    assert!(killed);
    let mut results = results.into_iter();
    assert!(results.next().unwrap().unwrap().iter().all(Result::is_ok));
    let err = results.next().unwrap().unwrap_err();
    assert!(
        matches!(
            err.kind,
            EngineErrorKind::Transport(TransportError::Closed { .. })
        ),
        "{err}"
    );
    assert!(!err.in_flight.is_empty(), "{err}");
    assert!(results.next().unwrap().unwrap().iter().all(Result::is_ok));
    // The killed one's connection is broken; the others go on.
    let again = engines[1].run(&ops[1][..1], |_, _| {}).unwrap_err();
    assert!(matches!(again.kind, EngineErrorKind::Broken), "{again}");
    let results = {
        let [first, _, last] = &mut engines[..] else {
            unreachable!("three engines")
        };
        let mut refs: Vec<&mut Engine> = vec![first, last];
        Engine::run_together(&mut refs, &[&ops[0][..1], &[]], |_, _, _| {})
    };
    assert_eq!(results[0].as_ref().unwrap(), &[Ok(Outcome::Done)]);
    assert!(results[1].as_ref().unwrap().is_empty(), "nothing to do");
    for k in [0, 2] {
        assert_uploaded(&sandboxes[k], 20, size, k as u8, |i| {
            format!("d{}/f{i}", i % 3)
        });
    }
}

#[test]
fn a_stalled_server_times_out_alone() {
    let (a, b) = (Sandbox::new(), Sandbox::new());
    let quick = EngineConfig {
        timeout: Duration::from_secs(1),
        ..EngineConfig::default()
    };
    // The working one's stall timeout is long: only the stalled one's deadline may end it.
    let servers = [
        (a.openssh(), EngineConfig::default()),
        (with_pid(&b), quick),
    ];
    let mut engines = connect(&servers);
    let size = |_| 500_000;
    let ops = [uploads(&a, 40, size, 1), uploads(&b, 40, size, 2)];
    let pid = pidfile(&b);
    let mut stopped = false;
    let results = {
        let mut refs: Vec<&mut Engine> = engines.iter_mut().collect();
        Engine::run_together(&mut refs, &[&ops[0], &ops[1]], |_, _, _| {
            if !stopped {
                signal(&pid, Signal::SIGSTOP);
                stopped = true;
            }
        })
    };
    assert!(results[0].as_ref().unwrap().iter().all(Result::is_ok));
    let err = results[1].as_ref().unwrap_err();
    assert!(matches!(err.kind, EngineErrorKind::Stalled(_)), "{err}");
    signal(&pid, Signal::SIGKILL);
    assert_uploaded(&a, 40, size, 1, |i| format!("d{}/f{i}", i % 3));
}

#[test]
fn mirrors_progress_together_not_one_after_the_other() {
    let sandboxes: Vec<Sandbox> = (0..2).map(|_| Sandbox::new()).collect();
    // Each engine's bucket lets its files through a few at a time, so that each engine's
    // reports are spread over many turns (unlimited, loopback may finish all of one
    // engine's files in one turn, and all of the other's in the same turn after them).
    let limited = EngineConfig {
        bwlimit: Some(4_000_000),
        ..EngineConfig::default()
    };
    let servers: Vec<(ServerCommand, EngineConfig)> = sandboxes
        .iter()
        .map(|s| (s.openssh(), limited.clone()))
        .collect();
    let mut engines = connect(&servers);
    let size = |_| 100_000;
    let ops: Vec<Vec<Op>> = (0..2)
        .map(|k| uploads(&sandboxes[k], 20, size, k as u8))
        .collect();
    let mut order = Vec::new();
    let results = {
        let mut refs: Vec<&mut Engine> = engines.iter_mut().collect();
        Engine::run_together(&mut refs, &[&ops[0], &ops[1]], |k, _, _| order.push(k))
    };
    assert!(results.iter().all(Result::is_ok));
    // Engine after engine, every report of the first would come before any of the second:
    // in one loop, the second's first file is in before the first's last.
    let first_of_second = order.iter().position(|&k| k == 1).unwrap();
    let last_of_first = order.iter().rposition(|&k| k == 0).unwrap();
    assert!(first_of_second < last_of_first, "{order:?}");
    for (k, sandbox) in sandboxes.iter().enumerate() {
        assert_uploaded(sandbox, 20, size, k as u8, |i| format!("d{}/f{i}", i % 3));
    }
}
