//! The --source and --sink parsers: never panic, and what they accept prints
//! back to a spec that parses to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use random_refresher::sink::SinkSpec;
use random_refresher::source::SourceSpec;

fuzz_target!(|text: &str| {
    if let Ok(spec) = text.parse::<SourceSpec>() {
        assert_eq!(spec.to_string().parse::<SourceSpec>(), Ok(spec));
    }
    if let Ok(spec) = text.parse::<SinkSpec>() {
        assert_eq!(spec.to_string().parse::<SinkSpec>(), Ok(spec));
    }
});
