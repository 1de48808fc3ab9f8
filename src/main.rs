use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = outsftphook::cli::Args::parse();
    outsftphook::init_logging(args.verbose, args.debug_sftp.unwrap_or(0));
    match outsftphook::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("outsftphook: {err:#}");
            outsftphook::exit_code_for(&err)
        }
    }
}
