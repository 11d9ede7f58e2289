//! Crash consistency of the seed file: SIGKILL at random instants while the
//! daemon refreshes it, a thousand times; the file is always one whole seed.

mod common;

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use common::*;

#[test]
fn seed_file_is_never_torn_by_sigkill() {
    let dir = temp_dir();
    let blocks: Vec<Vec<u8>> = (0..120).map(|i| good_block(1000 + i)).collect();
    let src = write(dir.path(), "source", &blocks.concat());
    let seed = dir.path().join("seed");
    let valid: HashSet<&[u8]> = blocks.iter().map(|b| b.as_slice()).collect();
    let mut rng = SplitMix(77);
    let mut seen_seeds = HashSet::new();
    for round in 0..1000 {
        let mut child = bin()
            .args([
                "run",
                "--listen-address",
                "none",
                "--source",
                src.to_str().unwrap(),
                "--sink",
                &format!("file:{}", seed.display()),
                "--interval",
                "1ms",
                "--log-level",
                "error",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.next_u64() % 15_000));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if let Ok(content) = std::fs::read(&seed) {
            assert!(
                valid.contains(content.as_slice()),
                "round {round}: torn seed of {} bytes",
                content.len()
            );
            seen_seeds.insert(content);
        }
        // Temporary files of killed runs are cleared by the next start, so
        // at most the one from this kill can be there.
        let temps = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".seed.tmp.")
            })
            .count();
        assert!(temps <= 1, "round {round}: {temps} temporary files");
    }
    // The kills landed at different points of the refresh loop.
    assert!(
        seen_seeds.len() > 5,
        "only {} distinct seeds seen",
        seen_seeds.len()
    );
}
