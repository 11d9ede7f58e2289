//! Writes the man page and the shell completions the Debian package ships,
//! generated from the command line's own definition so that they cannot
//! drift from it: `cargo run --release --example gen-assets -- target/assets`.

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;
use random_refresher::cli::Cli;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/assets".into()),
    );
    std::fs::create_dir_all(&dir)?;
    let cmd = Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    // One page for the whole tool, with each subcommand's options after it.
    for sub in cmd.get_subcommands() {
        use std::io::Write;
        writeln!(
            page,
            ".SH \"RANDOM-REFRESHER {}\"",
            sub.get_name().to_uppercase()
        )?;
        if let Some(about) = sub.get_about() {
            writeln!(page, "{about}")?;
        }
        clap_mangen::Man::new(sub.clone()).render_options_section(&mut page)?;
    }
    std::fs::write(dir.join("random-refresher.1"), page)?;
    for (shell, file) in [
        (Shell::Bash, "random-refresher.bash"),
        (Shell::Zsh, "_random-refresher"),
        (Shell::Fish, "random-refresher.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "random-refresher", &mut out);
        std::fs::write(dir.join(file), out)?;
    }
    Ok(())
}
