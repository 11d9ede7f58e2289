//! The check's pipeline: one thread reads the source into a few large
//! buffers (so reading overlaps testing), `jobs` threads scan each chunk's
//! blocks (the per-block tests, the bulk of the work), and one of them
//! meanwhile takes the chunk before in stream order through the tests that
//! look across blocks. Scans are pure functions of a block, so the counts
//! are those of a single thread whatever `jobs` is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::sync::{Mutex, PoisonError};

use super::{Plan, Stream};
use crate::health::{BLOCK_BYTES, Block, BlockScan, Scanner};
use crate::source::{ReadLimits, Source};

/// Blocks read per job and chunk (1 MB): big reads, few thread hand-overs,
/// and a resident set of a few chunks whatever the input's size.
const BLOCKS_PER_JOB: usize = 400;
/// Chunks in memory at once: one being read, one being scanned, one being
/// finished in order.
const BUFFERS: usize = 3;
/// Blocks a scanning thread takes at a time.
const PIECE_BLOCKS: usize = 50;

/// What reading the stream came to.
pub(super) struct Outcome {
    pub bytes: u64,
    pub ended: Option<String>,
}

/// One read: whole blocks and perhaps the start of another, which is
/// counted as read but not tested (as rngtest does).
struct Chunk {
    buf: Vec<u8>,
    got: usize,
    ended: Option<String>,
}

impl Chunk {
    fn blocks(&self) -> &[Block] {
        self.buf[..self.got].as_chunks::<BLOCK_BYTES>().0
    }
}

pub(super) fn run(
    source: Source,
    plan: &Plan,
    limits: &ReadLimits,
    stream: &mut Stream,
) -> Outcome {
    let jobs = plan.jobs.max(1);
    let chunk_bytes = jobs * BLOCKS_PER_JOB * BLOCK_BYTES;
    let scanner = stream.tests.scanner();
    std::thread::scope(|s| {
        let (full_tx, full_rx) = sync_channel::<Chunk>(1);
        let (empty_tx, empty_rx) = channel::<Vec<u8>>();
        for _ in 0..BUFFERS {
            let _ = empty_tx.send(vec![0u8; chunk_bytes]);
        }
        let stop = &*limits.stop;
        let blocks = plan.blocks;
        s.spawn(move || read_chunks(source, blocks, stop, empty_rx, full_tx));

        let mut outcome = Outcome {
            bytes: 0,
            ended: None,
        };
        let mut pending: Option<(Chunk, Vec<BlockScan>)> = None;
        while let Ok(chunk) = full_rx.recv() {
            outcome.bytes += chunk.got as u64;
            let mut scans = vec![BlockScan::default(); chunk.blocks().len()];
            let before = pending.as_ref().map(|(c, s)| (c.blocks(), s.as_slice()));
            scan_while_finishing(&scanner, (chunk.blocks(), &mut scans), before, stream, jobs);
            if let Some((done, _)) = pending.take() {
                let _ = empty_tx.send(done.buf);
            }
            if chunk.ended.is_some() {
                outcome.ended.clone_from(&chunk.ended);
            }
            pending = Some((chunk, scans));
        }
        if let Some((chunk, scans)) = pending {
            stream.finish(chunk.blocks(), &scans);
        }
        outcome
    })
}

/// The reading thread: fills the buffers it is given, in stream order,
/// until the source ends, the blocks asked for are read, or a signal.
fn read_chunks(
    mut source: Source,
    blocks: u64,
    stop: &AtomicBool,
    empty: Receiver<Vec<u8>>,
    full: SyncSender<Chunk>,
) {
    let mut left = blocks;
    while let Ok(mut buf) = empty.recv() {
        if stop.load(Ordering::Relaxed) {
            let ended = Some("stopped by a signal".to_string());
            let _ = full.send(Chunk { buf, got: 0, ended });
            return;
        }
        let capacity = (buf.len() / BLOCK_BYTES) as u64;
        let want = if blocks == 0 {
            capacity
        } else {
            left.min(capacity)
        };
        if want == 0 {
            return;
        }
        let mut got = 0;
        let result = source.fill(&mut buf[..want as usize * BLOCK_BYTES], &mut got);
        left = left.saturating_sub((got / BLOCK_BYTES) as u64);
        let ended = result.err().map(|e| e.to_string());
        let last = ended.is_some();
        if full.send(Chunk { buf, got, ended }).is_err() || last {
            return;
        }
    }
}

/// Scans `next` on `jobs` threads while one of them first finishes
/// `before` (the previous chunk and its scans) in stream order.
fn scan_while_finishing(
    scanner: &Scanner,
    next: (&[Block], &mut [BlockScan]),
    before: Option<(&[Block], &[BlockScan])>,
    stream: &mut Stream,
    jobs: usize,
) {
    let pieces: Vec<_> = next
        .0
        .chunks(PIECE_BLOCKS)
        .zip(next.1.chunks_mut(PIECE_BLOCKS))
        .collect();
    let pieces = Mutex::new(pieces);
    let work = || {
        loop {
            let piece = pieces.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let Some((blocks, scans)) = piece else { break };
            for (block, scan) in blocks.iter().zip(scans) {
                *scan = scanner.scan(block);
            }
        }
    };
    let finish = |stream: &mut Stream| {
        if let Some((blocks, scans)) = before {
            stream.finish(blocks, scans);
        }
    };
    if jobs == 1 {
        finish(stream);
        work();
        return;
    }
    std::thread::scope(|s| {
        for _ in 1..jobs {
            s.spawn(work);
        }
        finish(stream);
        work();
    });
}
