use clap::CommandFactory;
use random_refresher::cli::Cli;

fn main() -> std::process::ExitCode {
    // clap reports its own errors (exit 2) and answers --help and --version.
    let matches = Cli::command().get_matches();
    match Cli::from_matches(&matches) {
        Ok(cli) => random_refresher::app::main(cli),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(random_refresher::app::EXIT_CONFIG)
        }
    }
}
