use clap::Parser;

fn main() -> std::process::ExitCode {
    match random_refresher::cli::Cli::parse().resolve() {
        Ok(cli) => random_refresher::app::main(cli),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(random_refresher::app::EXIT_CONFIG)
        }
    }
}
