//! The `outsftphook` binary: parse the arguments, set up logging, run, and end with the
//! run's exit status, saying the error that ended it (if one did) once.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = outsftphook::cli::Args::parse();
    outsftphook::init_logging(args.verbose, args.debug_sftp.unwrap_or(0));
    match outsftphook::run(args) {
        Ok(status) => status.into(),
        Err(fatal) => {
            eprintln!("outsftphook: {fatal}");
            fatal.status.into()
        }
    }
}
