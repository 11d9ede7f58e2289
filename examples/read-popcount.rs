//! The speed limit a health test could reach on this machine: one pass
//! that reads a file in the same 1 MB-per-job reads `check` makes and
//! popcounts it with the best popcount the CPU has, nothing else.
//! `benches/ratios.py` reports `check` as a fraction of it.
//!
//!     cargo run --release --example read-popcount -- FILE [BYTES]

use std::io::Read;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: read-popcount FILE [BYTES]");
        std::process::exit(2);
    };
    let limit: u64 = args
        .next()
        .map_or(u64::MAX, |n| n.parse().unwrap_or(u64::MAX));
    let mut file = std::fs::File::open(&path).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(2);
    });
    let started = Instant::now();
    let mut buf = vec![0u8; 1_000_000];
    let (mut bytes, mut ones) = (0u64, 0u64);
    while bytes < limit {
        let want = buf.len().min((limit - bytes) as usize);
        let n = file.read(&mut buf[..want]).expect("read");
        if n == 0 {
            break;
        }
        ones += popcount(&buf[..n]);
        bytes += n as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("{{\"bytes\": {bytes}, \"ones\": {ones}, \"seconds\": {seconds}}}");
}

fn popcount(bytes: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512vpopcntdq") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { popcount_avx512(bytes) };
    }
    popcount_words(bytes)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq,popcnt")]
fn popcount_avx512(bytes: &[u8]) -> u64 {
    popcount_words(bytes)
}

#[inline(always)]
fn popcount_words(bytes: &[u8]) -> u64 {
    let (words, tail) = bytes.as_chunks::<8>();
    let sum: u64 = words
        .iter()
        .map(|w| u64::from(u64::from_ne_bytes(*w).count_ones()))
        .sum();
    sum + tail.iter().map(|b| u64::from(b.count_ones())).sum::<u64>()
}
