//! The check's pipeline: one thread reads the source into a few large
//! buffers (so reading overlaps testing), `jobs` threads scan each chunk's
//! blocks (the per-block tests, the bulk of the work), and the calling one
//! first takes the chunk before through the tests that look across blocks,
//! in stream order. Scans are pure functions of a block, so the counts are
//! those of a single thread whatever `jobs` is.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

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
        let mut crew = Crew::start(s, scanner, jobs - 1);

        let mut outcome = Outcome {
            bytes: 0,
            ended: None,
        };
        let mut pending: Option<(Chunk, Vec<BlockScan>)> = None;
        while let Ok(chunk) = full_rx.recv() {
            outcome.bytes += chunk.got as u64;
            if chunk.ended.is_some() {
                outcome.ended.clone_from(&chunk.ended);
            }
            let (chunk, scans) = crew.scan_while_finishing(chunk, pending.take(), stream);
            if let Some(done) = scans.1 {
                let _ = empty_tx.send(done);
            }
            pending = Some((chunk, scans.0));
        }
        if let Some((chunk, scans)) = pending {
            stream.finish(chunk.blocks(), &scans);
        }
        outcome
    })
}

/// One chunk handed to the scanning threads: they claim its pieces in
/// turn, so a thread that starts late just takes fewer.
struct Round {
    chunk: Chunk,
    next_piece: AtomicUsize,
}

impl Round {
    fn pieces(&self) -> usize {
        self.chunk.blocks().len().div_ceil(PIECE_BLOCKS)
    }

    /// Claims and scans pieces until none is left; each result goes to
    /// `done`. False if the receiver is gone.
    fn scan_pieces(
        &self,
        scanner: &Scanner,
        mut done: impl FnMut(usize, Vec<BlockScan>) -> bool,
    ) -> bool {
        let blocks = self.chunk.blocks();
        loop {
            let piece = self.next_piece.fetch_add(1, Ordering::Relaxed);
            if piece >= self.pieces() {
                return true;
            }
            let from = piece * PIECE_BLOCKS;
            let piece_blocks = &blocks[from..(from + PIECE_BLOCKS).min(blocks.len())];
            let mut scans = vec![BlockScan::default(); piece_blocks.len()];
            scanner.scan_all(piece_blocks, &mut scans);
            if !done(piece, scans) {
                return false;
            }
        }
    }
}

enum Report {
    Piece(usize, Vec<BlockScan>),
    /// The thread is done with the round and holds no reference to it.
    Idle,
}

/// The scanning threads besides the calling one, started once and fed a
/// round per chunk (starting threads per chunk costs more than a chunk's
/// scan on a busy machine).
struct Crew {
    rounds: Vec<Sender<Arc<Round>>>,
    reports: Receiver<Report>,
    scanner: Scanner,
}

impl Crew {
    fn start<'scope>(
        s: &'scope std::thread::Scope<'scope, '_>,
        scanner: Scanner,
        helpers: usize,
    ) -> Self {
        let (report_tx, reports) = channel();
        let rounds = (0..helpers)
            .map(|_| {
                let (tx, rx) = channel::<Arc<Round>>();
                let report = report_tx.clone();
                s.spawn(move || {
                    while let Ok(round) = rx.recv() {
                        let sent = round.scan_pieces(&scanner, |p, scans| {
                            report.send(Report::Piece(p, scans)).is_ok()
                        });
                        drop(round);
                        if !sent || report.send(Report::Idle).is_err() {
                            return;
                        }
                    }
                });
                tx
            })
            .collect();
        Self {
            rounds,
            reports,
            scanner,
        }
    }

    /// Scans `next` on every thread while this one first finishes `before`
    /// (the previous chunk and its scans) in stream order. Gives back the
    /// chunk with its scans, and the finished chunk's buffer for reuse.
    fn scan_while_finishing(
        &mut self,
        next: Chunk,
        before: Option<(Chunk, Vec<BlockScan>)>,
        stream: &mut Stream,
    ) -> (Chunk, (Vec<BlockScan>, Option<Vec<u8>>)) {
        let round = Arc::new(Round {
            chunk: next,
            next_piece: AtomicUsize::new(0),
        });
        let helpers = self
            .rounds
            .iter()
            .filter(|tx| tx.send(Arc::clone(&round)).is_ok())
            .count();
        let freed = before.map(|(chunk, scans)| {
            stream.finish(chunk.blocks(), &scans);
            chunk.buf
        });
        let mut pieces: Vec<Option<Vec<BlockScan>>> = vec![None; round.pieces()];
        round.scan_pieces(&self.scanner, |p, scans| {
            pieces[p] = Some(scans);
            true
        });
        let mut idle = 0;
        while idle < helpers {
            match self.reports.recv() {
                Ok(Report::Piece(p, scans)) => pieces[p] = Some(scans),
                Ok(Report::Idle) => idle += 1,
                Err(_) => break,
            }
        }
        let scans = pieces.into_iter().flatten().flatten().collect();
        let chunk = match Arc::try_unwrap(round) {
            Ok(round) => round.chunk,
            // Only if a helper died mid-round: keep a copy and go on.
            Err(shared) => Chunk {
                buf: shared.chunk.buf.clone(),
                got: shared.chunk.got,
                ended: shared.chunk.ended.clone(),
            },
        };
        (chunk, (scans, freed))
    }
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
