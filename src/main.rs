use clap::Parser;

fn main() -> std::process::ExitCode {
    random_refresher::app::main(random_refresher::cli::Cli::parse())
}
