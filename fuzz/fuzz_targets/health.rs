//! The fast health tests against the bit-by-bit reference on arbitrary bytes,
//! at every SIMD level this CPU has; and the SP 800-90B tests the same
//! however the stream is split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use random_refresher::health::fips::{ContinuousRun, FipsTester, reference};
use random_refresher::health::sp800_90b::{AdaptiveProportion, RepetitionCount};
use random_refresher::health::{BLOCK_BYTES, Block};

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    // Stretch short inputs to whole blocks so that every input tests FIPS.
    let mut stream = data.to_vec();
    while stream.len() % BLOCK_BYTES != 0 {
        let fill = data[stream.len() % data.len()];
        stream.push(fill);
    }
    let mut slow = ContinuousRun::default();
    let mut testers = FipsTester::all_levels(ContinuousRun::default());
    for chunk in stream.chunks_exact(BLOCK_BYTES) {
        let block: &Block = chunk.try_into().unwrap();
        let want = reference::test_block(block, &mut slow);
        for t in &mut testers {
            assert_eq!(t.test_block(block), want);
        }
    }
    let cut = usize::from(data[0]) * data.len() / 256;
    for cutoff in [2, 3, 6, 19] {
        let whole = RepetitionCount::new(cutoff).feed(data);
        let mut split = RepetitionCount::new(cutoff);
        assert_eq!(whole, split.feed(&data[..cut]) | split.feed(&data[cut..]));
        let whole = AdaptiveProportion::new(cutoff).feed(data);
        let mut split = AdaptiveProportion::new(cutoff);
        assert_eq!(whole, split.feed(&data[..cut]) | split.feed(&data[cut..]));
    }
});
