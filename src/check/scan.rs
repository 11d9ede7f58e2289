//! The check's pipeline. `jobs` threads take pieces of the stream in turn:
//! a thread scans its piece (the per-block tests, the bulk of the work, in
//! parallel), then waits for the pieces before it to be finished and
//! finishes its own, so the tests that look across blocks see every block
//! in stream order while the piece is still in the cache of the core that
//! scanned it. Scans are pure functions of a block, so the counts are those
//! of a single thread whatever `jobs` is.
//!
//! A regular file is read by the testing threads themselves, each its own
//! pieces with positioned reads. Any other source (a device, a FIFO,
//! standard input) is read in order by one more thread into a few large
//! buffers, so that reading overlaps testing.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{Plan, Stream};
use crate::health::{BLOCK_BYTES, Block, BlockScan, Scanner};
use crate::source::{ReadLimits, Source, SourceError};

/// Blocks read per job and chunk (1 MB): big reads, few thread hand-overs,
/// and a resident set of a few chunks whatever the input's size.
const BLOCKS_PER_JOB: usize = 400;
/// Chunks in memory at once: one being read, one being tested, one ready.
const BUFFERS: usize = 3;
/// Blocks a thread takes at a time (62.5 KB: stays in its core's cache
/// between the scan and the finish).
const PIECE_BLOCKS: usize = 100;

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
    let turn = Turn::new(stream);
    std::thread::scope(|s| {
        let (full_tx, full_rx) = sync_channel::<Chunk>(1);
        let (empty_tx, empty_rx) = channel::<Vec<u8>>();
        for _ in 0..BUFFERS {
            let _ = empty_tx.send(vec![0u8; chunk_bytes]);
        }
        let stop = &*limits.stop;
        let blocks = plan.blocks;
        s.spawn(move || read_chunks(source, blocks, stop, empty_rx, full_tx));
        let crew = Crew::start(s, scanner, &turn, jobs - 1);

        let mut outcome = Outcome {
            bytes: 0,
            ended: None,
        };
        let mut base = 0;
        while let Ok(chunk) = full_rx.recv() {
            outcome.bytes += chunk.got as u64;
            if chunk.ended.is_some() {
                outcome.ended.clone_from(&chunk.ended);
            }
            // The start of a block the stream ended in: not tested, but
            // assessed, as the tail of a regular file is.
            let tail = chunk.buf[chunk.blocks().len() * BLOCK_BYTES..chunk.got].to_vec();
            let round = Round {
                chunk,
                base,
                next_piece: AtomicUsize::new(0),
            };
            base += round.pieces();
            if let Some(buf) = crew.test(round, &scanner, &turn) {
                let _ = empty_tx.send(buf);
            }
            if !tail.is_empty() {
                turn.lock().stream.untested(&tail);
            }
        }
        outcome
    })
}

/// Whose turn it is to finish: pieces are numbered across the whole
/// stream, and piece n is finished only after pieces 0..n.
struct Turn<'a> {
    state: Mutex<InTurn<'a>>,
    changed: Condvar,
}

struct InTurn<'a> {
    stream: &'a mut Stream,
    finished: usize,
    /// Reading a file: bytes read by the finished pieces, and why reading
    /// stopped (no piece after that one is tested).
    bytes: u64,
    ended: Option<String>,
}

impl<'a> Turn<'a> {
    fn new(stream: &'a mut Stream) -> Self {
        Self {
            state: Mutex::new(InTurn {
                stream,
                finished: 0,
                bytes: 0,
                ended: None,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, InTurn<'a>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until every piece before `piece` is finished, then finishes it.
    fn finish(&self, piece: usize, blocks: &[Block], scans: &[BlockScan]) {
        self.finish_read(piece, blocks, scans, None);
    }

    /// As `finish`, for a piece read by its own thread: `read` is the bytes
    /// it got and why reading stopped, if it did. Nothing after the piece
    /// where reading stopped is tested.
    fn finish_read(
        &self,
        piece: usize,
        blocks: &[Block],
        scans: &[BlockScan],
        read: Option<(usize, Option<String>)>,
    ) {
        let mut state = self.wait_for(piece);
        if state.ended.is_none() {
            state.stream.finish(blocks, scans);
            if let Some((got, ended)) = read {
                state.bytes += got as u64;
                state.ended = ended;
            }
        }
        state.finished += 1;
        drop(state);
        self.changed.notify_all();
    }

    fn has_ended(&self) -> bool {
        self.lock().ended.is_some()
    }

    /// Waits until pieces 0..end are finished; the state stays locked.
    fn wait_for(&self, end: usize) -> MutexGuard<'_, InTurn<'a>> {
        let mut state = self.lock();
        while state.finished < end {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state
    }
}

/// One chunk handed to the testing threads: they claim its pieces in
/// order, so a thread that starts late just takes fewer.
struct Round {
    chunk: Chunk,
    /// The stream-wide number of the chunk's first piece.
    base: usize,
    next_piece: AtomicUsize,
}

impl Round {
    fn pieces(&self) -> usize {
        self.chunk.blocks().len().div_ceil(PIECE_BLOCKS)
    }

    /// Claims pieces until none is left: scans each, then finishes it in
    /// its turn.
    fn test_pieces(&self, scanner: &Scanner, turn: &Turn<'_>) {
        let blocks = self.chunk.blocks();
        let mut scans = [BlockScan::default(); PIECE_BLOCKS];
        loop {
            let piece = self.next_piece.fetch_add(1, Ordering::Relaxed);
            if piece >= self.pieces() {
                return;
            }
            let from = piece * PIECE_BLOCKS;
            let piece_blocks = &blocks[from..(from + PIECE_BLOCKS).min(blocks.len())];
            let scans = &mut scans[..piece_blocks.len()];
            scanner.scan_all(piece_blocks, scans);
            turn.finish(self.base + piece, piece_blocks, scans);
        }
    }
}

/// The testing threads besides the calling one, started once and given
/// each chunk in turn (a thread started per chunk begins too late to help
/// on a busy machine).
struct Crew {
    rounds: Vec<Sender<Arc<Round>>>,
    idle: Receiver<()>,
}

impl Crew {
    fn start<'scope, 'env>(
        s: &'scope std::thread::Scope<'scope, 'env>,
        scanner: Scanner,
        turn: &'scope Turn<'env>,
        helpers: usize,
    ) -> Self {
        let (idle_tx, idle) = channel();
        let rounds = (0..helpers)
            .map(|_| {
                let (tx, rx) = channel::<Arc<Round>>();
                let idle = idle_tx.clone();
                s.spawn(move || {
                    while let Ok(round) = rx.recv() {
                        round.test_pieces(&scanner, turn);
                        drop(round);
                        if idle.send(()).is_err() {
                            return;
                        }
                    }
                });
                tx
            })
            .collect();
        Self { rounds, idle }
    }

    /// Tests every block of the round on every thread, this one included;
    /// gives the chunk's buffer back once no thread holds it.
    fn test(&self, round: Round, scanner: &Scanner, turn: &Turn<'_>) -> Option<Vec<u8>> {
        let end = round.base + round.pieces();
        let round = Arc::new(round);
        let helpers = self
            .rounds
            .iter()
            .filter(|tx| tx.send(Arc::clone(&round)).is_ok())
            .count();
        round.test_pieces(scanner, turn);
        drop(turn.wait_for(end));
        for _ in 0..helpers {
            if self.idle.recv().is_err() {
                break;
            }
        }
        Arc::try_unwrap(round).ok().map(|r| r.chunk.buf)
    }
}

/// A regular file: every thread reads its own pieces (positioned reads,
/// `offset` bytes in), scans them while they are in its core's cache, and
/// finishes them in turn. Reading is spread over the threads like the rest,
/// and one thread (`--jobs 1`) reads and tests in turn.
pub(super) fn run_file(
    file: &File,
    path: &Path,
    offset: u64,
    (plan, limits): (&Plan, &ReadLimits),
    stream: &mut Stream,
) -> Outcome {
    let scanner = stream.tests.scanner();
    let turn = Turn::new(stream);
    let pieces = match plan.blocks {
        0 => usize::MAX,
        n => usize::try_from(n.div_ceil(PIECE_BLOCKS as u64)).unwrap_or(usize::MAX),
    };
    let reader = PieceReader {
        file,
        path,
        offset,
        blocks: plan.blocks,
        pieces,
        next: AtomicUsize::new(0),
        stop: &limits.stop,
    };
    std::thread::scope(|s| {
        for _ in 1..plan.jobs.max(1) {
            s.spawn(|| reader.test_pieces(&scanner, &turn));
        }
        reader.test_pieces(&scanner, &turn);
    });
    let state = turn.lock();
    Outcome {
        bytes: state.bytes,
        ended: state.ended.clone(),
    }
}

/// The pieces of a regular file, claimed in order by the testing threads.
struct PieceReader<'a> {
    file: &'a File,
    path: &'a Path,
    offset: u64,
    /// Blocks asked for; 0: to the end of the file.
    blocks: u64,
    pieces: usize,
    next: AtomicUsize,
    stop: &'a AtomicBool,
}

impl PieceReader<'_> {
    fn test_pieces(&self, scanner: &Scanner, turn: &Turn<'_>) {
        let mut buf = vec![0u8; PIECE_BLOCKS * BLOCK_BYTES];
        let mut scans = [BlockScan::default(); PIECE_BLOCKS];
        loop {
            // Looked at before a piece is claimed: a claimed piece must be
            // finished in its turn (if only to count it), or the thread
            // with the next piece would wait for it for ever.
            if turn.has_ended() {
                return;
            }
            let piece = self.next.fetch_add(1, Ordering::Relaxed);
            if piece >= self.pieces {
                return;
            }
            let (got, ended) = self.read(piece, &mut buf);
            let blocks = buf[..got].as_chunks::<BLOCK_BYTES>().0;
            let scans = &mut scans[..blocks.len()];
            scanner.scan_all(blocks, scans);
            turn.finish_read(piece, blocks, scans, Some((got, ended)));
        }
    }

    /// Reads piece `piece` into `buf`: the bytes got, and why reading
    /// stops here if it does.
    fn read(&self, piece: usize, buf: &mut [u8]) -> (usize, Option<String>) {
        if self.stop.load(Ordering::Relaxed) {
            return (0, Some(crate::source::stopped_by()));
        }
        let first = (piece * PIECE_BLOCKS) as u64;
        let mut want = PIECE_BLOCKS as u64;
        if self.blocks > 0 {
            want = want.min(self.blocks - first);
        }
        let want = want as usize * BLOCK_BYTES;
        let at = self.offset + first * BLOCK_BYTES as u64;
        let mut got = 0;
        while got < want {
            match self.file.read_at(&mut buf[got..want], at + got as u64) {
                Ok(0) => {
                    let eof = SourceError::Eof {
                        path: self.path.into(),
                    };
                    return (got, Some(eof.to_string()));
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    let path = self.path.into();
                    return (got, Some(SourceError::Io { path, source }.to_string()));
                }
            }
        }
        (got, None)
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
            let ended = Some(crate::source::stopped_by());
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
