//! Writes the man page and the shell completions the Debian package ships,
//! generated from the command line's own definition so that they cannot
//! drift from it: `cargo run --release --example gen-assets -- target/assets`.

use std::io::Write;
use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;
use random_refresher::app::{EXIT_CONFIG, EXIT_FAILED, EXIT_OK};
use random_refresher::cli::Cli;

#[allow(dead_code)] // the tests include this file for `man_page` alone
fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/assets".into()),
    );
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("random-refresher.1"), man_page()?)?;
    let cmd = Cli::command();
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

/// The one page for the whole tool: the commands listed, each with its
/// options after it, then the exit status and the signals. It names no
/// other page of its own (clap_mangen's command list points at one page
/// per command, which the package does not ship).
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let cmd = Cli::command();
    let man = clap_mangen::Man::new(cmd.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    let subs: Vec<&clap::Command> = cmd.get_subcommands().filter(|s| !s.is_hide_set()).collect();
    writeln!(page, ".SH COMMANDS")?;
    writeln!(
        page,
        "Each command is described in a section of its own below."
    )?;
    for sub in &subs {
        writeln!(page, ".TP")?;
        writeln!(page, "\\fBrandom\\-refresher {}\\fR", roff(sub.get_name()))?;
        if let Some(about) = sub.get_about() {
            writeln!(page, "{}", roff(&about.to_string()))?;
        }
    }
    for sub in &subs {
        writeln!(
            page,
            ".SH \"RANDOM-REFRESHER {}\"",
            sub.get_name().to_uppercase()
        )?;
        if let Some(about) = sub.get_about() {
            writeln!(page, "{}", roff(&about.to_string()))?;
        }
        clap_mangen::Man::new((*sub).clone()).render_options_section(&mut page)?;
    }
    for (heading, items) in [("EXIT STATUS", exit_status()), ("SIGNALS", signals())] {
        writeln!(page, ".SH \"{heading}\"")?;
        for (tag, text) in items {
            writeln!(page, ".TP\n\\fB{}\\fR\n{}", roff(&tag), roff(text))?;
        }
    }
    man.render_version_section(&mut page)?;
    writeln!(page, ".SH \"SEE ALSO\"")?;
    writeln!(
        page,
        "{}",
        roff(
            "random(4); /usr/share/doc/random-refresher/README.md, which covers the health \
             tests, the sinks, the failure modes and the metrics in full."
        )
    )?;
    Ok(page)
}

/// Every exit code the commands give (src/app.rs), and clap's own.
fn exit_status() -> Vec<(String, &'static str)> {
    vec![
        (
            EXIT_OK.to_string(),
            "Success: run stopped by SIGTERM or SIGINT; once delivered a tested batch to every \
             sink (and pushed the metrics, if asked); check read every block asked for and every \
             block passed; probe got 200; --help and --version.",
        ),
        (
            EXIT_FAILED.to_string(),
            "A failure at run time: run failed --max-failed-cycles cycles in a row; once read no \
             tested batch, a sink or the push failed, or a signal stopped it before it delivered; \
             check saw a block fail or the source end before --blocks; probe got no 200 answer; \
             quarantine --release could not give a device its quality back.",
        ),
        (
            EXIT_CONFIG.to_string(),
            "A usage or configuration error, reported as one line that names the option: a value \
             out of range, an option only run takes given to once, no source that can be opened, \
             a sink that cannot be used (the kernel sink without CAP_SYS_ADMIN), a port that \
             cannot be bound.",
        ),
    ]
}

/// What each signal does (src/app.rs, the signal thread).
fn signals() -> Vec<(String, &'static str)> {
    vec![
        (
            "SIGTERM, SIGINT".into(),
            "End run with exit 0 within a second, also while it sleeps or waits on a slow device. \
             End check early with a report of what was read. Stop once, which exits 1 if no batch \
             was delivered yet.",
        ),
        (
            "SIGHUP".into(),
            "run closes and reopens its sources between cycles (a replaced device node, a FIFO's \
             new writer); a regular file is reopened where it was left, so that no byte of it is \
             read twice. once and check ignore it.",
        ),
        (
            "SIGUSR1".into(),
            "run logs a statistics line. once and check ignore it.",
        ),
    ]
}

/// Plain text as roff: backslashes and hyphens escaped, and no line that
/// starts as a request would.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    match escaped.starts_with(['.', '\'']) {
        true => format!("\\&{escaped}"),
        false => escaped,
    }
}
