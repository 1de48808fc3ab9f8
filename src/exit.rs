//! The exit statuses of outsftphook (the man page's EXIT STATUS lists the same), and the
//! error that ends a run with one. Each stage says the status of its own errors where it
//! raises them; nothing here inspects an error to guess it.

use std::fmt;
use std::process::ExitCode;

/// How a run ended, as its exit status tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Every planned change is on the remote (`verify`: the remote matches).
    Success = 0,
    /// Some operation failed, or a signal stopped the run (also while it waited for a
    /// lock): what completed is journalled, a rerun finishes the rest. `verify`: the
    /// remote differs.
    Failed = 1,
    /// Usage, configuration or outlog error, or a `targetdir` that is not a directory on
    /// the server (for `mirror` and `verify`, also a missing or empty top directory; for
    /// `mirror`, more deletions than `--max-delete`): nothing was sent.
    Setup = 2,
    /// `mirror`, `verify`: the server could not be reached, or the connection to it was
    /// lost. The hook says 1 instead (reprepro knows 0, 1 and 2).
    Unreachable = 3,
    /// `status`: outlogs are pending (not yet pushed, or failed): the next hook run or
    /// `--pending` pushes them.
    Pending = 4,
    /// reprepro or another outsftphook held its lock for longer than the lock timeout:
    /// nothing was touched, try again later (sysexits' EX_TEMPFAIL).
    Busy = 75,
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> ExitCode {
        ExitCode::from(status as u8)
    }
}

/// An error that ended the run, with the exit status it ends it with. Its message is said
/// once, as `outsftphook: MESSAGE` (the whole chain of contexts).
#[derive(Debug)]
pub struct Fatal {
    pub status: ExitStatus,
    pub error: anyhow::Error,
}

impl Fatal {
    /// The server could not be reached, or the connection was lost.
    pub(crate) fn unreachable(error: impl Into<anyhow::Error>) -> Fatal {
        Fatal {
            status: ExitStatus::Unreachable,
            error: error.into(),
        }
    }

    /// An error found before anything was sent: the input is wrong.
    pub(crate) fn setup(error: impl Into<anyhow::Error>) -> Fatal {
        Fatal {
            status: ExitStatus::Setup,
            error: error.into(),
        }
    }
}

/// Whatever else goes wrong in a run (a lost connection, a journal that cannot be
/// written, a signal) fails it: a rerun may finish.
impl From<anyhow::Error> for Fatal {
    fn from(error: anyhow::Error) -> Fatal {
        Fatal {
            status: ExitStatus::Failed,
            error,
        }
    }
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statuses_are_those_the_man_page_lists() {
        let codes = [
            ExitStatus::Success,
            ExitStatus::Failed,
            ExitStatus::Setup,
            ExitStatus::Unreachable,
            ExitStatus::Pending,
            ExitStatus::Busy,
        ]
        .map(|s| s as u8);
        assert_eq!(codes, [0, 1, 2, 3, 4, 75]);
    }

    #[test]
    fn an_error_fails_the_run_unless_it_is_said_to_be_a_setup_error() {
        let failed = Fatal::from(anyhow::anyhow!("lost").context("the push stopped"));
        assert_eq!(failed.status, ExitStatus::Failed);
        assert_eq!(failed.to_string(), "the push stopped: lost");
        let setup = Fatal::setup(anyhow::anyhow!("no such dir"));
        assert_eq!(setup.status, ExitStatus::Setup);
        assert_eq!(setup.to_string(), "no such dir");
    }
}
