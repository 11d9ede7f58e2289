//! The SP 800-90B non-IID min-entropy assessment (§6.3): all ten
//! estimators, on the samples as they are and on their bits, combined as
//! the standard and NIST's reference tool (`ea_non_iid`) combine them.
//!
//! Two tracks are assessed, as `ea_non_iid` does for a first assessment:
//! - the **literal** track: the samples, translated to `0..k` where `k` is
//!   the number of distinct values seen (NIST's "symbol translation");
//! - the **bitstring** track: every sample as `bits_per_sample` bits, the
//!   most significant first, from the untranslated values. It is assessed
//!   only when the samples take more than two values.
//!
//! H_original is the lowest literal estimate (at most `bits_per_sample`),
//! H_bitstring the lowest bitstring estimate (at most 1), and the assessed
//! value is `min(H_original, bits_per_sample × H_bitstring)`. The collision,
//! Markov and compression estimates apply to binary data only, so on the
//! literal track they run only when it holds two symbols.
//!
//! Every estimator equals `ea_non_iid`'s figure to within 1e-6 bits per
//! sample on the inputs pinned in `tests/reference/` (their provenance is
//! there). Nothing here reads, logs or counts: a window of samples goes in,
//! an [`Assessment`] comes out.

mod collision;
mod compression;
mod lag;
mod lz78y;
mod markov;
mod mcv;
mod multi_mcw;
mod multi_mmc;
mod prediction;
mod suffix;
mod support;
#[cfg(test)]
mod test_inputs;
mod tuple;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use support::Track;
pub use support::Z_ALPHA;

named_enum! {
    /// The ten estimators of SP 800-90B §6.3, in the standard's order.
    pub enum Estimator {
        /// §6.3.1 Most Common Value.
        MostCommonValue => "mcv",
        /// §6.3.2 Collision (binary data only).
        Collision => "collision",
        /// §6.3.3 Markov (binary data only).
        Markov => "markov",
        /// §6.3.4 Compression (binary data only).
        Compression => "compression",
        /// §6.3.5 t-Tuple.
        TTuple => "t_tuple",
        /// §6.3.6 Longest Repeated Substring.
        Lrs => "lrs",
        /// §6.3.7 Multi Most Common in Window prediction.
        MultiMcw => "multi_mcw",
        /// §6.3.8 Lag prediction.
        Lag => "lag",
        /// §6.3.9 Multi Markov Model with Counting prediction.
        MultiMmc => "multi_mmc",
        /// §6.3.10 LZ78Y prediction.
        Lz78y => "lz78y",
    }
}

named_enum! {
    /// The two views of the samples that are assessed.
    pub enum TrackKind {
        Literal => "literal",
        Bitstring => "bitstring",
    }
}

/// One track's estimates, in bits per symbol of that track (per sample on
/// the literal track, per bit on the bitstring); `None` where an estimator
/// does not apply or had too few samples to say anything.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Estimates([Option<f64>; 10]);

impl Estimates {
    pub fn get(&self, e: Estimator) -> Option<f64> {
        self.0[e as usize]
    }

    fn set(&mut self, e: Estimator, value: Option<f64>) {
        self.0[e as usize] = value;
    }

    /// The lowest estimate, at most `ceiling`.
    fn lowest(&self, ceiling: f64) -> f64 {
        self.0.iter().flatten().fold(ceiling, |low, &v| low.min(v))
    }

    /// The estimates that apply, in the standard's order.
    pub fn iter(&self) -> impl Iterator<Item = (Estimator, f64)> + '_ {
        Estimator::ALL
            .iter()
            .filter_map(|&e| self.get(e).map(|v| (e, v)))
    }
}

impl serde::Serialize for Estimates {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        for (e, v) in self.iter() {
            map.serialize_entry(e.name(), &v)?;
        }
        map.end()
    }
}

/// One window's assessment.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Assessment {
    pub samples: u64,
    pub bits_per_sample: u8,
    /// Distinct values among the samples: NIST's alphabet size.
    pub alphabet: usize,
    pub literal: Estimates,
    /// Absent when the samples take two values or fewer.
    pub bitstring: Option<Estimates>,
    /// The lowest literal estimate, in bits per sample.
    pub h_original: f64,
    /// The lowest bitstring estimate, in bits per bit.
    pub h_bitstring: Option<f64>,
    /// `min(H_original, bits_per_sample × H_bitstring)`, in bits per
    /// sample: the figure to credit by.
    pub assessed: f64,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AssessError {
    #[error("no samples to assess")]
    Empty,
    #[error("bits per sample must be 1 to 8, not {0}")]
    BitsPerSample(u8),
    #[error("a sample holds {found} significant bits, wider than the {bits} bits per sample given")]
    TooWide { bits: u8, found: u8 },
}

/// Assesses `samples` (one per byte, `bits_per_sample` significant bits)
/// on one thread.
pub fn assess(samples: &[u8], bits_per_sample: u8) -> Result<Assessment, AssessError> {
    assess_with(samples, bits_per_sample, 1)
}

/// As [`assess`], with the estimators spread over `jobs` threads. The
/// result does not depend on `jobs`: each estimator runs whole on one
/// thread.
pub fn assess_with(
    samples: &[u8],
    bits_per_sample: u8,
    jobs: usize,
) -> Result<Assessment, AssessError> {
    let tracks = Tracks::new(samples, bits_per_sample)?;
    let mut literal = Estimates::default();
    let mut bitstring = tracks.bits.as_ref().map(|_| Estimates::default());
    if tracks.alphabet <= 1 {
        // One value only: NIST's tool awards no entropy at all.
        literal.set(Estimator::MostCommonValue, Some(0.0));
    } else {
        let results = run_tasks(&tracks.tasks(), jobs);
        for (track, e, value) in results {
            match track {
                TrackKind::Literal => literal.set(e, value),
                TrackKind::Bitstring => bitstring.as_mut().map_or((), |b| b.set(e, value)),
            }
        }
    }
    let ceiling = f64::from(bits_per_sample);
    let h_original = literal.lowest(ceiling);
    let h_bitstring = bitstring.as_ref().map(|b| b.lowest(1.0));
    let assessed = h_bitstring.map_or(h_original, |h| h_original.min(ceiling * h));
    Ok(Assessment {
        samples: samples.len() as u64,
        bits_per_sample,
        alphabet: tracks.alphabet,
        literal,
        bitstring,
        h_original,
        h_bitstring,
        assessed,
    })
}

/// The samples in both of NIST's forms.
struct Tracks {
    literal: Vec<u8>,
    alphabet: usize,
    /// One bit per byte; `None` when the alphabet has two symbols or fewer.
    bits: Option<Vec<u8>>,
}

impl Tracks {
    fn new(samples: &[u8], bits_per_sample: u8) -> Result<Self, AssessError> {
        if !(1..=8).contains(&bits_per_sample) {
            return Err(AssessError::BitsPerSample(bits_per_sample));
        }
        if samples.is_empty() {
            return Err(AssessError::Empty);
        }
        let mut seen = [false; 256];
        let mut mask = 0u8;
        for &s in samples {
            seen[s as usize] = true;
            mask |= s;
        }
        let found = (8 - mask.leading_zeros()) as u8;
        if found > bits_per_sample {
            return Err(AssessError::TooWide {
                bits: bits_per_sample,
                found,
            });
        }
        // Distinct values in increasing order become 0, 1, 2, ...
        let mut rank = [0u8; 256];
        let mut alphabet = 0usize;
        for (value, &s) in seen.iter().enumerate() {
            if s {
                rank[value] = alphabet as u8;
                alphabet += 1;
            }
        }
        let literal = samples.iter().map(|&s| rank[s as usize]).collect();
        let bits = (alphabet > 2).then(|| bitstring(samples, bits_per_sample));
        Ok(Self {
            literal,
            alphabet,
            bits,
        })
    }

    /// Every estimator to run, the costliest first so that the threads
    /// finish together.
    fn tasks(&self) -> Vec<Task<'_>> {
        let literal = Track {
            symbols: &self.literal,
            alphabet: self.alphabet,
        };
        let mut tasks = Vec::new();
        if let Some(bits) = &self.bits {
            let track = Track {
                symbols: bits,
                alphabet: 2,
            };
            tasks.extend(track_tasks(TrackKind::Bitstring, track));
        }
        tasks.extend(track_tasks(TrackKind::Literal, literal));
        tasks
    }
}

/// Each sample as `bits` bits, the most significant first.
fn bitstring(samples: &[u8], bits: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() * usize::from(bits));
    for &s in samples {
        out.extend((0..bits).rev().map(|j| (s >> j) & 1));
    }
    out
}

/// What one estimator run gives: the track, the estimator and its value.
type Outcome = (TrackKind, Estimator, Option<f64>);

/// Runs one estimator (or the t-tuple/LRS pair) on a track.
type Run = fn(Track<'_>) -> Vec<(Estimator, Option<f64>)>;

/// One unit of work: an estimator (or the t-tuple/LRS pair, which share
/// their suffix structure) on one track.
struct Task<'a> {
    track: TrackKind,
    samples: Track<'a>,
    run: Run,
}

fn track_tasks(kind: TrackKind, t: Track<'_>) -> Vec<Task<'_>> {
    let mut runs: Vec<Run> = vec![
        |t| {
            let r = tuple::tuple_and_lrs(t);
            vec![(Estimator::TTuple, r.t_tuple), (Estimator::Lrs, r.lrs)]
        },
        |t| vec![(Estimator::MultiMmc, multi_mmc::multi_mmc(t))],
        |t| vec![(Estimator::Lz78y, lz78y::lz78y(t))],
        |t| vec![(Estimator::MultiMcw, multi_mcw::multi_mcw(t))],
        |t| vec![(Estimator::Lag, lag::lag(t))],
        |t| vec![(Estimator::MostCommonValue, mcv::most_common_value(t))],
    ];
    if t.alphabet == 2 {
        runs.push(|t| vec![(Estimator::Compression, compression::compression(t.symbols))]);
        runs.push(|t| vec![(Estimator::Collision, collision::collision(t.symbols))]);
        runs.push(|t| vec![(Estimator::Markov, markov::markov(t.symbols))]);
    }
    runs.into_iter()
        .map(|run| Task {
            track: kind,
            samples: t,
            run,
        })
        .collect()
}

/// Runs the tasks on up to `jobs` threads, each taking the next task not
/// yet taken.
fn run_tasks(tasks: &[Task<'_>], jobs: usize) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    let work = || {
        while let Some(task) = tasks.get(next.fetch_add(1, Ordering::Relaxed)) {
            let found: Vec<Outcome> = (task.run)(task.samples)
                .into_iter()
                .map(|(e, v)| (task.track, e, v))
                .collect();
            results
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(found);
        }
    };
    let threads = jobs.clamp(1, tasks.len().max(1));
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(work);
        }
        work();
    });
    results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_follow_nist_translation_and_bit_order() {
        let t = Tracks::new(&[5, 9, 5, 200], 8).unwrap();
        assert_eq!(t.alphabet, 3);
        assert_eq!(t.literal, [0, 1, 0, 2]);
        let bits = t.bits.unwrap();
        assert_eq!(&bits[..8], &[0, 0, 0, 0, 0, 1, 0, 1]);
        assert_eq!(&bits[24..], &[1, 1, 0, 0, 1, 0, 0, 0]);
        // Two values: no bitstring track, as in NIST's tool.
        assert!(Tracks::new(&[0, 255, 0], 8).unwrap().bits.is_none());
        let narrow = Tracks::new(&[1, 2, 3], 2).unwrap();
        assert_eq!(narrow.bits.unwrap(), [0, 1, 1, 0, 1, 1]);
    }

    #[test]
    fn samples_wider_than_declared_are_refused() {
        assert_eq!(
            assess(&[0, 1, 17], 4),
            Err(AssessError::TooWide { bits: 4, found: 5 })
        );
        assert_eq!(assess(&[], 8), Err(AssessError::Empty));
        assert_eq!(assess(&[1], 0), Err(AssessError::BitsPerSample(0)));
        assert_eq!(assess(&[1], 9), Err(AssessError::BitsPerSample(9)));
    }

    #[test]
    fn one_value_is_assessed_at_zero() {
        let a = assess(&[7; 5000], 8).unwrap();
        assert_eq!(a.assessed, 0.0);
        assert_eq!(a.alphabet, 1);
    }

    #[test]
    fn the_result_does_not_depend_on_the_number_of_threads() {
        let mut x = crate::test_support::XorShift(0x9e37_79b9_7f4a_7c15);
        let data: Vec<u8> = (0..20_000).map(|_| x.top_byte() & 0x3f).collect();
        let one = assess_with(&data, 6, 1).unwrap();
        for jobs in [2, 3, 8] {
            assert_eq!(assess_with(&data, 6, jobs).unwrap(), one);
        }
    }
}
