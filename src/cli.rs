//! The command line, as flags only: no I/O, no defaults that need the environment.
//! The doc comments are the `--help` text.

use std::path::PathBuf;

use clap::Parser;

/// Push the changes reprepro made to a remote mirror over SFTP.
///
/// reprepro runs it as its outhook (`outhook /usr/bin/outsftphook` in conf/options) with one
/// .outlog file after every change; by hand, `outsftphook --basedir /srv/repo --pending`
/// retries what is left. The server, user and target directory come from
/// CONFDIR/outsftphook.conf; see outsftphook(1).
///
/// Exit status: 0 when everything is on the remote, 1 when some operation failed (a rerun
/// finishes the rest), 2 for usage, configuration or outlog errors (nothing was sent).
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "outsftphook", version, max_term_width = 100)]
pub struct Args {
    /// The .outlog files to process, oldest first (reprepro gives exactly one).
    #[arg(value_name = "FILE.outlog")]
    pub files: Vec<PathBuf>,

    /// Tell what is done; twice for every request.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,

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
    #[arg(short = 'b', long, value_name = "DIR")]
    pub basedir: Option<PathBuf>,

    /// Where pool/ is (reprepro's outdir) [default: BASEDIR].
    #[arg(long, value_name = "DIR")]
    pub outdir: Option<PathBuf>,

    /// Where the .outlog files are [default: BASEDIR/logs].
    #[arg(long, value_name = "DIR")]
    pub logdir: Option<PathBuf>,

    /// Where options and outsftphook.conf are [default: BASEDIR/conf].
    #[arg(long, value_name = "DIR")]
    pub confdir: Option<PathBuf>,

    /// Log SFTP traffic: 1 each request, 2 also the server's extensions and limits.
    #[arg(long, value_name = "N")]
    pub debug_sftp: Option<u32>,

    /// How long to wait for another outsftphook working on the same log dir.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub lock_timeout: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn the_man_page_documents_every_long_flag() {
        let page = include_str!("../man/outsftphook.1").replace("\\-", "-");
        for arg in Args::command().get_arguments() {
            if let Some(long) = arg.get_long() {
                assert!(
                    page.contains(&format!("--{long}")),
                    "man/outsftphook.1 lacks --{long}"
                );
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
        assert_eq!(a.files, [PathBuf::from("logs/1-a.outlog")]);
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
