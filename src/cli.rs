//! The command line, as flags only: no I/O, no defaults that need the environment.
//! The doc comments are the `--help` text; the man page documents every long flag (a test
//! checks it).
//!
//! It must not resolve anything: what a flag means together with the environment and the
//! conf files is [`crate::config`]'s.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Push the changes reprepro made to a remote mirror over SFTP.
///
/// reprepro runs it as its outhook (`outhook /usr/bin/outsftphook` in conf/options) with one
/// .outlog file after every change; by hand, `outsftphook --basedir /srv/repo --pending`
/// retries what is left, and the commands below seed, repair and check a mirror. The
/// server, user and target directory come from CONFDIR/outsftphook.conf; see outsftphook(1).
///
/// Exit status: 0 when everything is on the remote, 1 when some operation failed or a signal
/// stopped the run (a rerun finishes the rest; for verify: when the mirror differs), 2 for
/// usage, configuration or outlog errors or a missing targetdir (nothing was sent), 3 when
/// mirror or verify cannot reach or read the server, 4 when status finds logs pending, 75
/// when reprepro or another outsftphook held its lock past --lock-timeout (nothing was
/// touched; try again later).
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "outsftphook",
    version,
    max_term_width = 100,
    subcommand_precedence_over_arg = true
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The .outlog files to process, oldest first (reprepro gives exactly one).
    #[arg(value_name = "FILE.outlog")]
    pub files: Vec<PathBuf>,

    /// Tell what is done; twice for every request.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Say nothing on success, for scripts: no progress line, no summary (errors are still
    /// said on stderr).
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Print what would be done, in order, and change nothing.
    #[arg(short = 'n', long, global = true)]
    pub dry_run: bool,

    /// Process every unprocessed .outlog in the log dir instead of FILEs.
    #[arg(long, conflicts_with_all = ["files", "ignore_pending"])]
    pub pending: bool,

    /// Process unprocessed older .outlogs first (the default; see --no-autoretry).
    #[arg(long, overrides_with = "no_autoretry")]
    pub autoretry: bool,

    /// Refuse to run while older .outlogs are unprocessed, as the reference hook does.
    #[arg(long, overrides_with = "autoretry")]
    pub no_autoretry: bool,

    /// Do not look for unprocessed older .outlogs at all.
    #[arg(long)]
    pub ignore_pending: bool,

    /// Process FILEs in the order given even if their names are not in order.
    #[arg(long)]
    pub force_order: bool,

    /// The repository's base directory; the defaults of the others derive from it.
    #[arg(short = 'b', long, value_name = "DIR", global = true)]
    pub basedir: Option<PathBuf>,

    /// Where pool/ is (reprepro's outdir) [default: BASEDIR].
    #[arg(long, value_name = "DIR", global = true)]
    pub outdir: Option<PathBuf>,

    /// Where the .outlog files are [default: BASEDIR/logs].
    #[arg(long, value_name = "DIR", global = true)]
    pub logdir: Option<PathBuf>,

    /// Where options and outsftphook.conf are [default: BASEDIR/conf].
    #[arg(long, value_name = "DIR", global = true)]
    pub confdir: Option<PathBuf>,

    /// Log SFTP traffic on stderr: 1 each request and reply (with the server's extensions and
    /// limits), 2 everything outsftphook can tell.
    #[arg(long, value_name = "N", global = true, value_parser = clap::value_parser!(u32).range(0..=2))]
    pub debug_sftp: Option<u32>,

    /// Print on stderr, for each phase of a hook push (prepare, connect, uploads, switch,
    /// after, close, journal), when it started and ended, the round trips it waited for and
    /// the bytes it moved.
    #[arg(long, global = true)]
    pub timeline: bool,

    /// Write at most RATE to the servers, over all connections: KiB/s, or with a suffix
    /// (500K, 2M: powers of 1024; 1MB: of 1000); 0 for no limit [conf: bwlimit].
    #[arg(long, value_name = "RATE", global = true, value_parser = rate)]
    pub bwlimit: Option<u64>,

    /// How long a file the repository no longer references stays on the mirror before it
    /// is deleted, for apt clients that read the old indexes: 90s, 30m, 36h, 2d; 0 deletes
    /// at once [default: 36h; conf: keepdeleted].
    #[arg(long, value_name = "DURATION", global = true, value_parser = duration)]
    pub keepdeleted: Option<std::time::Duration>,

    /// Work on these mirrors only, by the names outsftphook.conf gives them: NAME of a
    /// `mirror NAME` line, and for the first mirror (the keys before any `mirror` line) its
    /// servername, or `default` without one [default: every mirror].
    #[arg(
        long,
        value_name = "NAME[,NAME...]",
        value_delimiter = ',',
        global = true
    )]
    pub only: Option<Vec<String>>,

    /// How long to wait for another outsftphook working on the same log dir.
    #[arg(long, value_name = "SECONDS", default_value_t = 600, global = true)]
    pub lock_timeout: u64,
}

fn rate(s: &str) -> Result<u64, String> {
    crate::config::parse_rate(s)
        .ok_or_else(|| "a rate like 500 (KiB/s), 500K, 2M or 1MB; 0 for none".to_string())
}

fn duration(s: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(s).ok_or_else(|| crate::config::DURATION_WORDS.to_string())
}

/// What to do instead of processing outlogs.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Make the remote equal to the local repository, without any outlog: upload what is
    /// missing or different (by type, size and modification time; with --checksum, by
    /// content too), fix symlinks, in the hook's safe order. Run it to seed a new mirror or to repair one; run it again after
    /// an interruption.
    Mirror {
        /// Also remove remote files and directories that are not local (after the
        /// distributions are in place). Refused when a top directory is missing or empty
        /// locally.
        #[arg(long)]
        delete: bool,

        /// With --delete: refuse (exit 2, nothing changed) when more than N remote files,
        /// links and directories would be removed.
        #[arg(long, value_name = "N", requires = "delete")]
        max_delete: Option<u64>,

        /// Also compare the content of files whose size and time match (reads them
        /// remotely), and upload again those that differ.
        #[arg(long)]
        checksum: bool,

        /// Top directories to mirror, relative to the out dir [default: pool dists].
        #[arg(value_name = "DIR")]
        dirs: Vec<String>,
    },
    /// Compare the remote with the local repository and change nothing; prints each
    /// difference, exits 1 if there is any.
    Verify {
        /// Also compare the content of files whose size matches (reads them remotely).
        #[arg(long)]
        checksum: bool,

        /// Top directories to compare, relative to the out dir [default: pool dists].
        #[arg(value_name = "DIR")]
        dirs: Vec<String>,
    },
    /// Show the pending outlogs and what is left of each.
    Status,
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell).
    #[command(hide = true)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the man page does for flags (above), for conf keys: the man page, the README's
    /// table and the example conf name every key there is.
    #[test]
    fn every_conf_key_is_in_the_man_page_the_readme_and_the_example() {
        let man = include_str!("../man/outsftphook.1");
        let readme = include_str!("../README.md");
        let example = include_str!("../contrib/outsftphook.conf.example");
        for key in crate::config::CONF_KEYS {
            assert!(
                man.contains(key),
                "the man page does not name conf key {key}"
            );
            assert!(
                readme.contains(&format!("`{key}")),
                "the README does not name {key}"
            );
            assert!(
                example.contains(key),
                "the example conf does not name {key}"
            );
        }
    }
    use clap::CommandFactory;

    #[test]
    fn the_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn the_man_page_documents_every_long_flag() {
        let page = include_str!("../man/outsftphook.1").replace("\\-", "-");
        let command = Args::command();
        let mut commands = vec![&command];
        commands.extend(command.get_subcommands().filter(|c| !c.is_hide_set()));
        for cmd in commands {
            if cmd.get_name() != "outsftphook" {
                assert!(
                    page.contains(&format!(".B {}", cmd.get_name())),
                    "man/outsftphook.1 lacks the command {}",
                    cmd.get_name()
                );
            }
            for arg in cmd.get_arguments() {
                if let Some(long) = arg.get_long() {
                    assert!(
                        page.contains(&format!("--{long}")),
                        "man/outsftphook.1 lacks --{long}"
                    );
                }
            }
        }
        for key in crate::config::CONF_KEYS {
            assert!(page.contains(key), "man/outsftphook.1 lacks the key {key}");
        }
    }

    #[test]
    fn flags_take_values_in_both_forms() {
        let a = Args::try_parse_from([
            "outsftphook",
            "--basedir=/srv/a",
            "--outdir",
            "/srv/out",
            "--debug-sftp=2",
            "-vv",
            "logs/1-a.outlog",
        ])
        .unwrap();
        assert_eq!(a.basedir, Some(PathBuf::from("/srv/a")));
        assert_eq!(a.outdir, Some(PathBuf::from("/srv/out")));
        assert_eq!(a.debug_sftp, Some(2));
        assert_eq!(a.verbose, 2);
        let err = Args::try_parse_from(["outsftphook", "--debug-sftp", "7"]).unwrap_err();
        assert!(err.to_string().contains("0..=2"), "{err}");
        assert_eq!(a.files, [PathBuf::from("logs/1-a.outlog")]);
    }

    #[test]
    fn commands_take_the_global_flags_after_them() {
        let a = Args::try_parse_from([
            "outsftphook",
            "mirror",
            "--delete",
            "-b",
            "/srv/r",
            "--dry-run",
            "pool",
        ])
        .unwrap();
        assert!(matches!(
            a.command,
            Some(Command::Mirror { delete: true, ref dirs, .. }) if dirs == &["pool"]
        ));
        let alone = Args::try_parse_from(["outsftphook", "mirror", "--max-delete", "5"]);
        assert!(alone.is_err(), "--max-delete goes with --delete");
        let m = Args::try_parse_from([
            "outsftphook",
            "mirror",
            "--delete",
            "--max-delete=5",
            "--checksum",
        ])
        .unwrap();
        assert!(matches!(
            m.command,
            Some(Command::Mirror {
                max_delete: Some(5),
                checksum: true,
                ..
            })
        ));
        assert_eq!(a.basedir, Some(PathBuf::from("/srv/r")));
        assert!(a.dry_run);
        let a = Args::try_parse_from(["outsftphook", "-b", ".", "verify", "--checksum"]).unwrap();
        assert!(matches!(
            a.command,
            Some(Command::Verify { checksum: true, .. })
        ));
    }

    #[test]
    fn pending_excludes_files_and_ignore_pending() {
        assert!(Args::try_parse_from(["outsftphook", "--pending", "x.outlog"]).is_err());
        assert!(Args::try_parse_from(["outsftphook", "--pending", "--ignore-pending"]).is_err());
    }

    #[test]
    fn the_last_of_autoretry_and_no_autoretry_wins() {
        let a = Args::try_parse_from(["outsftphook", "--autoretry", "--no-autoretry"]).unwrap();
        assert!(a.no_autoretry && !a.autoretry);
    }
}
