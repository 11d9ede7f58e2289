//! Throughput of the health gate, the sources' read paths and a whole cycle.
//! Run with `cargo bench`; compare the numbers within one run only.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use random_refresher::health::fips::{FipsTester, reference};
use random_refresher::health::sp800_90b::{AdaptiveProportion, RepetitionCount};
use random_refresher::health::{BLOCK_BYTES, Block, ContinuousRun, Cutoffs, Gate, HealthConfig};
use random_refresher::kernel::KernelPaths;
use random_refresher::refresher::{Config, CycleOutcome, Refresher};
use random_refresher::sink::SinkSpec;
use random_refresher::source::{CpuInstruction, ReadLimits, Source, SourceSpec};
use random_refresher::telemetry::Registry;

/// 400 blocks (1 MB) of noise from a fixed seed.
fn noise_blocks() -> Vec<Block> {
    let mut x = xorshift::XorShift(0x9E37_79B9_7F4A_7C15);
    (0..400)
        .map(|_| std::array::from_fn(|_| x.mid_byte()))
        .collect()
}

#[path = "../src/xorshift.rs"]
mod xorshift;

fn health(c: &mut Criterion) {
    let blocks = noise_blocks();
    let bytes = (blocks.len() * BLOCK_BYTES) as u64;
    let cutoffs = Cutoffs::new(8.0, -40.0).unwrap();
    let mut g = c.benchmark_group("health");
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("fips140_2", |b| {
        let mut t = FipsTester::new(ContinuousRun::default());
        b.iter(|| {
            blocks
                .iter()
                .filter(|blk| t.test_block(black_box(blk)).passed())
                .count()
        })
    });
    // Every build of the word loop this CPU runs, the portable one last:
    // under qemu-aarch64 this compares NEON with portable.
    for tester in FipsTester::all_levels(ContinuousRun::default()) {
        g.bench_function(format!("fips140_2_{}", tester.level_name()), |b| {
            let mut t = tester;
            b.iter(|| {
                blocks
                    .iter()
                    .filter(|blk| t.test_block(black_box(blk)).passed())
                    .count()
            })
        });
    }
    g.bench_function("sp800_90b_rct_apt", |b| {
        let mut rct = RepetitionCount::new(cutoffs.rct);
        let mut apt = AdaptiveProportion::new(cutoffs.apt);
        b.iter(|| {
            blocks
                .iter()
                .filter(|blk| rct.feed(black_box(&blk[..])) | apt.feed(&blk[..]))
                .count()
        })
    });
    g.bench_function("sp800_90b_rct", |b| {
        let mut rct = RepetitionCount::new(cutoffs.rct);
        b.iter(|| {
            blocks
                .iter()
                .filter(|blk| rct.feed(black_box(&blk[..])))
                .count()
        })
    });
    g.bench_function("sp800_90b_apt", |b| {
        let mut apt = AdaptiveProportion::new(cutoffs.apt);
        b.iter(|| {
            blocks
                .iter()
                .filter(|blk| apt.feed(black_box(&blk[..])))
                .count()
        })
    });
    g.bench_function("gate", |b| {
        // Every test plus the hold-back copy, as the daemon runs it.
        let mut gate = Gate::new(cutoffs);
        let mut out = [0u8; BLOCK_BYTES];
        b.iter(|| {
            blocks
                .iter()
                .filter(|blk| gate.push(black_box(blk), &mut out).released)
                .count()
        })
    });
    g.sample_size(10);
    g.bench_function("min_entropy_assessment", |b| {
        // The full SP 800-90B assessment (both tracks, ten estimators) of
        // the same bytes as one window, on one thread, as a source's
        // online assessment runs it.
        let window = blocks.concat();
        b.iter(|| random_refresher::health::entropy::assess(black_box(&window), 8).unwrap())
    });
    g.bench_function("fips140_2_reference", |b| {
        let mut cont = ContinuousRun::default();
        b.iter(|| {
            blocks
                .iter()
                .filter(|blk| reference::test_block(black_box(blk), &mut cont).passed())
                .count()
        })
    });
    g.finish();
}

fn limits() -> ReadLimits {
    ReadLimits {
        timeout: Duration::from_secs(10),
        stop: Arc::new(AtomicBool::new(false)),
        progress: None,
    }
}

fn sources(c: &mut Criterion) {
    const LEN: usize = 1 << 20;
    let mut g = c.benchmark_group("source");
    g.throughput(Throughput::Bytes(LEN as u64));
    let mut buf = vec![0u8; LEN];

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("noise");
    std::fs::write(&file, noise_blocks().concat().repeat(64)).unwrap();
    let spec = SourceSpec::Path(file.clone());
    g.bench_function("file", |b| {
        let mut s = Source::open(&spec, &limits(), None).unwrap();
        b.iter(|| {
            let mut got = 0;
            if s.fill(&mut buf, &mut got).is_err() {
                s = Source::open(&spec, &limits(), None).unwrap(); // wrapped round the file
            }
            got
        })
    });

    for instr in CpuInstruction::ALL {
        if !instr.supported() {
            eprintln!("{}: not on this CPU, skipped", instr.name());
            continue;
        }
        g.bench_function(instr.name(), |b| {
            let mut s = Source::open(&SourceSpec::Cpu(instr), &limits(), None).unwrap();
            b.iter(|| s.fill(&mut buf, &mut 0).unwrap())
        });
        #[cfg(target_arch = "x86_64")]
        g.bench_function(format!("{}_raw_instruction", instr.name()), |b| {
            b.iter(|| raw_instruction(instr, &mut buf))
        });
    }
    g.finish();
}

/// The instruction alone, in the plainest loop: the ceiling a source can reach.
#[cfg(target_arch = "x86_64")]
fn raw_instruction(instr: CpuInstruction, buf: &mut [u8]) {
    let (words, _) = buf.as_chunks_mut::<8>();
    // SAFETY: the caller checked that the CPU has the instruction.
    unsafe {
        match instr {
            CpuInstruction::RdRand => raw_rdrand(words),
            CpuInstruction::RdSeed => raw_rdseed(words),
            CpuInstruction::Rndr | CpuInstruction::Rndrrs => {}
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "rdrand")]
fn raw_rdrand(words: &mut [[u8; 8]]) {
    for w in words {
        let mut v = 0u64;
        while std::arch::x86_64::_rdrand64_step(&mut v) != 1 {}
        *w = v.to_le_bytes();
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "rdseed")]
fn raw_rdseed(words: &mut [[u8; 8]]) {
    for w in words {
        let mut v = 0u64;
        while std::arch::x86_64::_rdseed64_step(&mut v) != 1 {}
        *w = v.to_le_bytes();
    }
}

fn cycle(c: &mut Criterion) {
    const BATCH: usize = 100 * BLOCK_BYTES;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("noise");
    std::fs::write(&src, noise_blocks().concat().repeat(16)).unwrap();
    let config = Config {
        sources: vec![SourceSpec::Path(src.clone())],
        sinks: vec![SinkSpec::File(dir.path().join("seed"))],
        random_device: "/dev/random".into(),
        batch_size: BATCH,
        interval: Duration::from_secs(1),
        entropy_per_byte: None,
        credit_streams: Vec::new(),
        max_failed_cycles: 10,
        health: HealthConfig::default(),
        limits: limits(),
        kernel: KernelPaths::new("/proc".as_ref(), "/sys".as_ref()),
        quarantine: false,
        hold_quality: false,
        hwrng: "/dev/hwrng".into(),
        state_dir: None,
    };
    let mut g = c.benchmark_group("cycle");
    g.throughput(Throughput::Bytes(BATCH as u64));
    g.bench_function("file_to_seed_file", |b| {
        let registry = Registry::discarding();
        let mut r = Refresher::new(config.clone(), &registry).unwrap();
        b.iter(|| {
            if r.cycle() != (CycleOutcome::Delivered { bytes: BATCH }) {
                r = Refresher::new(config.clone(), &registry).unwrap(); // wrapped round the file
            }
        })
    });
    g.finish();
}

criterion_group!(benches, health, sources, cycle);
criterion_main!(benches);
