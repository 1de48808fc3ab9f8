//! What a run does when the server refuses symlinks (`symlinks auto`/`yes`): how a refusal
//! is recognised, the warning that links are copied from then on, and the advice under
//! `symlinks yes`. It must not make copies: the hook and [`super::sync`] do, each its way.

use crate::config::Settings;
use crate::engine::Status;
use crate::engine::{Cause, OpError, Req};

/// Whether a failed operation is the server refusing to make a symlink: OP_UNSUPPORTED
/// (rclone), or PERMISSION_DENIED for the SYMLINK itself (`sftp-server -P symlink`).
pub(crate) fn refuses_symlinks(e: &OpError) -> bool {
    matches!(
        e.cause,
        Cause::Status {
            request: Req::Symlink,
            code: Status::Unsupported | Status::PermissionDenied,
            ..
        }
    )
}

/// Says, once per run, that links are copied from now on (`symlinks auto`).
pub(crate) fn warn_copying(e: &OpError) {
    log::warn!(
        "the server refuses symlinks ({}): uploading copies of their targets instead; set \
         'symlinks copy' to say so",
        e.cause
    );
}

/// A refused symlink under `symlinks yes`: what to do about it.
pub(crate) fn refused_error(e: &OpError, settings: &Settings) -> String {
    format!(
        "{e}: the server refuses symlinks; set 'symlinks copy' (or auto) in {} to upload \
         copies of their targets instead",
        settings.confdir.join("outsftphook.conf").display()
    )
}
