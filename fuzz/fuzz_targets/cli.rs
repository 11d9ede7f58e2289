//! The command line on arbitrary arguments (NUL-separated in the input):
//! parsing and resolving never panic; what they refuse is an error message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use random_refresher::cli::Cli;

fuzz_target!(|data: &[u8]| {
    let args = std::iter::once(&b"random-refresher"[..])
        .chain(data.split(|b| *b == 0))
        .map(|a| String::from_utf8_lossy(a).into_owned());
    if let Err(e) = Cli::try_parse_args(args) {
        assert!(!e.is_empty());
    }
});
