//! `edgevox`: parses the command line and hands each subcommand to its module in `cli/`.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    edgevox::metrics::one_heap_arena();
    let args = cli::Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(args.log_level()))
        .format_timestamp_millis()
        .init();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgevox: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
