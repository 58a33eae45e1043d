//! prunus-fuzz: a small mutation fuzzer for the parsers of everything prunus reads from the
//! outside world, on stable Rust and inside the normal test suite (std only, so that xtask,
//! which links no prunus crate, can use it too).
//!
//! A target is a function from bytes to anything (an `Err` is a correct answer to bad input;
//! a panic is a crash) with seed inputs (small valid files). Each input is a seed, or a splice
//! of two, mutated one to eight times: bit flips, bytes overwritten with boundary values
//! (0, 0x7f, 0x80, 0xff), little-endian integers overwritten with boundary values (so length
//! and offset fields of binary headers go to 0, 2^31, 2^63, ...), runs deleted, duplicated or
//! inserted, the input truncated, and, in text, digit runs replaced with huge or negative
//! numbers. The generator is SplitMix64 from a fixed seed, so a run is reproducible.
//!
//! [`run`] first replays the target's regression corpus (`<dir>/*`: inputs that once
//! crashed, kept in the repository), then mutates for a budget: `PRUNUS_FUZZ_SECONDS`
//! (default [`DEFAULT_SECONDS`], for the test suite; a campaign sets 600). A crash writes its
//! input into the corpus directory as `crash-<hash>` and fails with the panic message; fix
//! the parser and commit the file as a regression case. A process-killing crash (an abort on
//! a huge allocation, a stack overflow) cannot be caught: in a campaign
//! (`PRUNUS_FUZZ_SECONDS` over [`DEFAULT_SECONDS`]) every input is first written to
//! `<dir>/.current`, which then holds the culprit.

use prunus_rng::SplitMix64;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Seconds of mutation per target in the test suite.
pub const DEFAULT_SECONDS: f64 = 1.0;

/// What a fuzzing run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Regression inputs replayed.
    pub replayed: usize,
    /// Mutated inputs executed.
    pub executions: u64,
    /// Of those, how many the target accepted (returned `Ok`), as a sanity check that the
    /// mutations do not only produce garbage.
    pub accepted: u64,
    /// Wall seconds of the replay and the mutation (not waiting for another run to finish).
    pub seconds: f64,
}

const BOUNDARY_BYTES: [u8; 6] = [0, 1, 0x7f, 0x80, 0xfe, 0xff];
const BOUNDARY_INTS: [u64; 9] = [0, 1, 0xff, 0xffff, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 1 << 40, u64::MAX];
const HUGE_NUMBERS: [&str; 6] = ["0", "-1", "4294967296", "18446744073709551615", "99999999999999999999999", "1e308"];

/// One mutation of `data` in place (`other` is a second seed for splices).
fn mutate_once(data: &mut Vec<u8>, other: &[u8], rng: &mut SplitMix64) {
    if data.is_empty() {
        data.push(BOUNDARY_BYTES[rng.index(BOUNDARY_BYTES.len())]);
        return;
    }
    let len = data.len();
    match rng.index(9) {
        0 => {
            let i = rng.index(len);
            data[i] ^= 1 << rng.index(8);
        }
        1 => {
            let i = rng.index(len);
            data[i] = BOUNDARY_BYTES[rng.index(BOUNDARY_BYTES.len())];
        }
        2 => {
            // A little-endian integer of 2, 4 or 8 bytes set to a boundary value.
            let width = [2usize, 4, 8][rng.index(3)];
            if len >= width {
                let i = rng.index(len - width + 1);
                let v = BOUNDARY_INTS[rng.index(BOUNDARY_INTS.len())].to_le_bytes();
                data[i..i + width].copy_from_slice(&v[..width]);
            }
        }
        3 => {
            let i = rng.index(len);
            let n = 1 + rng.index((len - i).min(64));
            data.drain(i..i + n);
        }
        4 => {
            let i = rng.index(len);
            let n = 1 + rng.index((len - i).min(64));
            let run: Vec<u8> = data[i..i + n].to_vec();
            let at = rng.index(len + 1);
            data.splice(at..at, run);
        }
        5 => {
            let at = rng.index(len + 1);
            let n = 1 + rng.index(16);
            let run: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            data.splice(at..at, run);
        }
        6 => data.truncate(rng.index(len)),
        7 => {
            if !other.is_empty() {
                let cut = rng.index(len);
                let from = rng.index(other.len());
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
        }
        _ => {
            // Text: a run of ASCII digits replaced by a huge or negative number.
            let starts: Vec<usize> = (0..len).filter(|&i| data[i].is_ascii_digit() && (i == 0 || !data[i - 1].is_ascii_digit())).collect();
            if !starts.is_empty() {
                let s = starts[rng.index(starts.len())];
                let e = (s..len).find(|&i| !data[i].is_ascii_digit()).unwrap_or(len);
                let n = HUGE_NUMBERS[rng.index(HUGE_NUMBERS.len())];
                data.splice(s..e, n.bytes());
            }
        }
    }
}

/// The `i`-th input from `seeds`.
pub fn input(seeds: &[Vec<u8>], rng: &mut SplitMix64) -> Vec<u8> {
    let mut data = seeds[rng.index(seeds.len())].clone();
    let other = &seeds[rng.index(seeds.len())];
    for _ in 0..1 + rng.index(8) {
        mutate_once(&mut data, other, rng);
    }
    data
}

fn seconds_budget() -> f64 {
    std::env::var("PRUNUS_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).filter(|s: &f64| *s >= 0.0).unwrap_or(DEFAULT_SECONDS)
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// Runs `target` on the regression corpus in `dir`, then on mutated `seeds` for the budget.
/// Panics (failing the test) on the first crash, naming the file its input was saved to.
pub fn run<T, E>(name: &str, dir: &Path, seeds: &[Vec<u8>], mut target: impl FnMut(&[u8]) -> Result<T, E>) -> Outcome {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    let mut regressions: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| Some(e.ok()?.path())).filter(|p| p.file_name().is_some_and(|n| !n.to_string_lossy().starts_with('.'))).collect())
        .unwrap_or_default();
    regressions.sort();
    let budget = Duration::from_secs_f64(seconds_budget());
    let campaign = budget.as_secs_f64() > DEFAULT_SECONDS;
    // One run at a time per process: the panic hook (silenced while fuzzing) is global.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let start = Instant::now(); // the budget counts from here, not from waiting for the lock
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    // Runs one input; `Some(message)` when the target panicked.
    let mut exec = |data: &[u8], accepted: &mut u64| -> Option<String> {
        if campaign {
            let _ = std::fs::create_dir_all(dir);
            let _ = std::fs::write(dir.join(".current"), data);
        }
        match catch_unwind(AssertUnwindSafe(|| target(data))) {
            Ok(Ok(_)) => {
                *accepted += 1;
                None
            }
            Ok(Err(_)) => None,
            Err(payload) => Some(
                payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a panic".into()),
            ),
        }
    };
    let mut crash: Option<(Vec<u8>, String)> = None;
    let mut accepted = 0u64;
    let mut replayed = 0;
    for path in &regressions {
        let data = std::fs::read(path).unwrap_or_default();
        replayed += 1;
        if let Some(msg) = exec(&data, &mut accepted) {
            crash = Some((data, msg));
            break;
        }
    }
    let mut executions = 0u64;
    for seed in seeds {
        if crash.is_some() {
            break;
        }
        if let Some(msg) = exec(seed, &mut accepted) {
            crash = Some((seed.clone(), msg));
        }
    }
    let mut rng = SplitMix64::new(fnv(name.as_bytes()));
    while crash.is_none() && start.elapsed() < budget {
        let data = input(seeds, &mut rng);
        executions += 1;
        if let Some(msg) = exec(&data, &mut accepted) {
            crash = Some((data, msg));
        }
    }
    std::panic::set_hook(previous_hook);
    drop(_guard);
    if campaign {
        let _ = std::fs::remove_file(dir.join(".current"));
    }
    if let Some((data, msg)) = crash {
        let _ = std::fs::create_dir_all(dir);
        let path = dir.join(format!("crash-{:016x}", fnv(&data)));
        let _ = std::fs::write(&path, &data);
        panic!("fuzz target {name} crashed ({msg}); input saved to {}", path.display());
    }
    let outcome = Outcome { replayed, executions, accepted, seconds: start.elapsed().as_secs_f64() };
    eprintln!(
        "fuzz {name}: {} regression inputs replayed, {} executions in {:.1} s ({} accepted)",
        outcome.replayed, outcome.executions, outcome.seconds, outcome.accepted
    );
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_deterministic_and_varied() {
        let seeds = vec![b"{\"a\": 12, \"b\": [1, 2, 3]}".to_vec(), vec![0u8; 32]];
        let (mut a, mut b) = (SplitMix64::new(5), SplitMix64::new(5));
        let xs: Vec<Vec<u8>> = (0..200).map(|_| input(&seeds, &mut a)).collect();
        let ys: Vec<Vec<u8>> = (0..200).map(|_| input(&seeds, &mut b)).collect();
        assert_eq!(xs, ys);
        let distinct: std::collections::BTreeSet<&Vec<u8>> = xs.iter().collect();
        assert!(distinct.len() > 150, "{}", distinct.len());
    }

    #[test]
    fn a_crash_is_saved_and_reported_and_then_replayed() {
        let dir = std::env::temp_dir().join(format!("prunus-fuzz-selftest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let seeds = vec![b"abc".to_vec()];
        let target = |d: &[u8]| -> Result<(), ()> {
            if d.len() > 6 {
                panic!("too long");
            }
            Ok(())
        };
        let err = catch_unwind(AssertUnwindSafe(|| run("selftest", &dir, &seeds, target))).unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(msg.contains("crashed (too long)"), "{msg}");
        let saved: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(saved.len(), 1);
        // The saved input is replayed first next time, so the crash reproduces at once.
        let err = catch_unwind(AssertUnwindSafe(|| run("selftest", &dir, &seeds, target))).unwrap_err();
        assert!(err.downcast_ref::<String>().unwrap().contains("too long"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
