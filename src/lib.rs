//! outsftphook: keeps a remote copy of a reprepro repository in sync over SFTP.
//!
//! The data flows one way, and each step has its folder:
//!
//! ```text
//!  reprepro's outlogs, journal,       repo/       parse logs, journal DONE lines, choose
//!  locks, held deletions,        -->              and order logs, locks, the record of
//!  the local repository                           held deletions, scan local files
//!                                      |
//!                                      v
//!  what to do, in the safe order      plan/       pure: logs -> Plan, trees -> MirrorPlan;
//!                                                 plan::order is the one safe order
//!                                      |
//!                                      v
//!  hook, mirror, verify, status       run/        drive a plan through the engine: journal,
//!                                                 held deletions, the guard of a
//!                                                 finalisation, progress, interrupts,
//!                                                 summary, output
//!                                      |
//!                                      v
//!  operations on the remote           engine/     connections, scheduling, limits, the
//!                                                 directory table, operations as state
//!                                                 machines, tuning from the round trip
//!                                      |
//!                                      v
//!  SFTP v3 packets                    sftp/       wire codec and session: bytes only
//!                                      |
//!                                      v
//!  ssh or a local sftp-server         transport   the only place with processes and fds
//! ```
//!
//! Beside the flow: [`cli`] (the flags), `config` (flags, environment and conf files ->
//! one `Settings`), `interrupt` (signals), `relpath` and `remote_path` (the two kinds of
//! path, as bytes). [`run()`] is the program; `main.rs` only parses the flags and prints the
//! error.

#![forbid(unsafe_code)]
// The documentation is for the people who work on outsftphook and is read with
// `cargo doc --document-private-items`: the front door is small, the links go inside.
#![allow(rustdoc::private_intra_doc_links)]

pub mod cli;
mod config;
mod engine;
mod exit;
mod interrupt;
mod plan;
mod relpath;
mod remote_path;
mod repo;
mod run;
mod sftp;
mod transport;

// The front door: what the binary and the tests need, nothing more. The engine's types are
// here so that tests can drive it against real servers without the hook around it.
pub use engine::{
    Cause, DEFAULT_MAX_OPEN_FILES, Engine, EngineConfig, EngineErrorKind, Op, OpResult, Outcome,
    Req, Status,
};
pub use exit::{ExitStatus, Fatal};
pub use remote_path::RemotePath;
pub use repo::outlog::parse as parse_outlog;
pub use transport::{KeptConnection, ServerCommand, TransportError};

/// Sets up logging: warnings by default, more with `-v`/`--debug-sftp`, or as `RUST_LOG` says.
pub fn init_logging(verbose: u8, debug_sftp: u32) {
    let level = match (verbose, debug_sftp) {
        (_, 2..) | (2.., _) => "outsftphook=trace",
        (_, 1) => "outsftphook=debug",
        (1, _) => "outsftphook=info",
        _ => "outsftphook=warn",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_target(false)
        .format_timestamp(None)
        .init();
}

/// The hook's run (no command): true when something is left to do.
fn hook(
    args: &cli::Args,
    mirrors: &[config::Settings],
    unselected: &[config::Settings],
    interrupt: &interrupt::Interrupt,
) -> Result<bool, Fatal> {
    let how = repo::logs::Selection {
        pending: args.pending,
        ignore_pending: args.ignore_pending,
        force_order: args.force_order,
        autoretry: mirrors[0].autoretry,
    };
    // reprepro knows 0, 1 and 2 (and 75, busy): an unreachable server fails the run.
    let report = run::hook::run(
        mirrors,
        unselected,
        &args.files,
        how,
        args.dry_run,
        interrupt,
    )
    .map_err(|mut e| {
        if e.status == ExitStatus::Unreachable {
            e.status = ExitStatus::Failed;
        }
        e
    })?;
    Ok(report.unfinished())
}

/// The mirrors selected (`--only`), and those configured but not selected.
fn resolve_mirrors(
    args: &cli::Args,
    env: &dyn config::Env,
    read: config::ReadFile<'_>,
) -> Result<(Vec<config::Settings>, Vec<config::Settings>), Fatal> {
    let selected = config::resolve_mirrors(args, env, read).map_err(Fatal::setup)?;
    if args.only.is_none() {
        return Ok((selected, Vec::new()));
    }
    let all = cli::Args {
        only: None,
        ..args.clone()
    };
    let unselected = config::resolve_mirrors(&all, env, read)
        .map_err(Fatal::setup)?
        .into_iter()
        .filter(|m| !selected.iter().any(|s| s.mirror == m.mirror))
        .collect();
    Ok((selected, unselected))
}

/// The program: resolve the settings, run the hook (or a command), tell how it went. An
/// error carries the exit status it ends the run with.
pub fn run(args: cli::Args) -> Result<ExitStatus, Fatal> {
    use cli::Command;
    if let Some(Command::Completions { shell }) = &args.command {
        let mut command = <cli::Args as clap::CommandFactory>::command();
        // Through `show`, which ends quietly on a closed stdout (clap_complete panics).
        let mut script = Vec::new();
        clap_complete::generate(*shell, &mut command, "outsftphook", &mut script);
        run::show(String::from_utf8_lossy(&script).trim_end_matches('\n'));
        return Ok(ExitStatus::Success);
    }
    if args.command.is_some() && (!args.files.is_empty() || args.pending) {
        let error = anyhow::anyhow!("outlog files and --pending go without a command");
        return Err(Fatal::setup(error));
    }
    let env = |name: &str| std::env::var_os(name);
    let read = |p: &std::path::Path| match std::fs::read_to_string(p) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    };
    let (mirrors, unselected) = resolve_mirrors(&args, &env, &read)?;
    let settings = mirrors[0].clone();
    run::output::set_quiet(settings.quiet);
    if settings.debug_sftp > 0 && log::max_level() < log::LevelFilter::Debug {
        log::set_max_level(log::LevelFilter::Debug);
    }
    let interrupt = interrupt::Interrupt::install().map_err(anyhow::Error::new)?;
    let failed = match &args.command {
        Some(Command::Status) => {
            return Ok(
                if run::status::run(&mirrors, settings.verbose > 0).map_err(Fatal::setup)? {
                    ExitStatus::Pending
                } else {
                    ExitStatus::Success
                },
            );
        }
        Some(Command::Mirror {
            delete,
            max_delete,
            checksum,
            dirs,
        }) => {
            let tops = run::mirror::tops(dirs).map_err(Fatal::setup)?;
            let options = run::mirror::MirrorOptions {
                delete: *delete,
                max_delete: *max_delete,
                checksum: *checksum,
                dry_run: args.dry_run,
            };
            run::each_mirror(&mirrors, |settings| {
                Ok(run::mirror::mirror(settings, &tops, &options, &interrupt)?.failures > 0)
            })?
        }
        Some(Command::Verify { checksum, dirs }) => {
            let tops = run::mirror::tops(dirs).map_err(Fatal::setup)?;
            run::each_mirror(&mirrors, |settings| {
                Ok(run::mirror::verify(settings, &tops, *checksum, &interrupt)? > 0)
            })?
        }
        Some(Command::Completions { .. }) => unreachable!("handled above"),
        None => hook(&args, &mirrors, &unselected, &interrupt)?,
    };
    Ok(if failed {
        ExitStatus::Failed
    } else {
        ExitStatus::Success
    })
}
