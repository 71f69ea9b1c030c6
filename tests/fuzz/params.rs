//! Run parameters, progress and failure reporting.

use super::*;

pub(crate) const DEFAULT_SEED: u64 = 0x6d61_6b75_6f66_757a;
pub(crate) const DEFAULT_CASES: u64 = 200_000;

pub(crate) static CASE: AtomicU64 = AtomicU64::new(0);
pub(crate) static SEED: AtomicU64 = AtomicU64::new(0);
pub(crate) static PHASE: AtomicUsize = AtomicUsize::new(0);
pub(crate) const PHASES: [&str; 4] = ["setup", "engine", "seal", "decode"];

pub(crate) fn params() -> (u64, u64) {
    let seed = match std::env::var("MAKUO_FUZZ_SEED") {
        Ok(s) if s == "random" => {
            let mut b = [0u8; 8];
            getrandom::getrandom(&mut b).unwrap();
            u64::from_le_bytes(b)
        }
        Ok(s) => match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16),
            None => s.parse(),
        }
        .expect("MAKUO_FUZZ_SEED: a number, 0x-hex, or `random`"),
        Err(_) => DEFAULT_SEED,
    };
    let cases = std::env::var("MAKUO_FUZZ_CASES")
        .map(|s| s.parse().expect("MAKUO_FUZZ_CASES: a number"))
        .unwrap_or(DEFAULT_CASES);
    (seed, cases)
}

pub(crate) fn where_() -> String {
    format!(
        "phase {} case {} (reproduce with MAKUO_FUZZ_SEED={:#x})",
        PHASES[PHASE.load(Relaxed)],
        CASE.load(Relaxed),
        SEED.load(Relaxed)
    )
}

/// Prints the seed and case before the default panic message.
pub(crate) fn install_panic_hook() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        eprintln!("fuzz: PANIC at {}", where_());
        prev(info);
    }));
}

/// Aborts the process (with the seed and case) if no case completes for `limit`.
pub(crate) fn watchdog(limit: Duration) -> Arc<AtomicBool> {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    std::thread::spawn(move || {
        let mut last = u64::MAX;
        let mut since = Instant::now();
        while !d.load(Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            let c = CASE.load(Relaxed) + ((PHASE.load(Relaxed) as u64) << 56);
            if c != last {
                last = c;
                since = Instant::now();
            } else if since.elapsed() > limit {
                eprintln!("fuzz: HANG: no progress for {limit:?} at {}", where_());
                std::process::abort();
            }
        }
    });
    done
}

pub(crate) fn check_memory() {
    let big = BIGGEST.load(Relaxed);
    assert!(
        big <= MAX_ALLOC,
        "an allocation of {big} bytes (limit {MAX_ALLOC}) at or before {}",
        where_()
    );
    let peak = PEAK.load(Relaxed);
    assert!(
        peak <= MAX_PEAK,
        "live heap reached {peak} bytes (limit {MAX_PEAK}) at or before {}",
        where_()
    );
}
