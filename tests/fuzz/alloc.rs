//! Memory accounting: a counting global allocator.

use super::*;

/// No single allocation may be larger than this.
pub(crate) const MAX_ALLOC: usize = 64 << 20;
/// Live heap may never exceed this.
pub(crate) const MAX_PEAK: usize = 512 << 20;
/// Allocations above this are refused outright (the process aborts with a message) rather
/// than risk taking the shared machine down.
pub(crate) const HARD_ALLOC: usize = 1 << 30;

pub(crate) static LIVE: AtomicUsize = AtomicUsize::new(0);
pub(crate) static PEAK: AtomicUsize = AtomicUsize::new(0);
pub(crate) static BIGGEST: AtomicUsize = AtomicUsize::new(0);

pub(crate) struct Counting;

thread_local! {
    static IN_REPORT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

pub(crate) fn note_alloc(n: usize) {
    if n > MAX_ALLOC && BIGGEST.load(Relaxed) <= MAX_ALLOC && !IN_REPORT.get() {
        // The first oversized allocation: say where it came from (the report allocates,
        // hence the guard).
        IN_REPORT.set(true);
        let bt = std::backtrace::Backtrace::force_capture();
        eprintln!("fuzz: allocation of {n} bytes at {}:\n{bt}", where_());
        IN_REPORT.set(false);
    }
    BIGGEST.fetch_max(n, Relaxed);
    let live = LIVE.fetch_add(n, Relaxed) + n;
    PEAK.fetch_max(live, Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if l.size() > HARD_ALLOC {
            BIGGEST.fetch_max(l.size(), Relaxed);
            return std::ptr::null_mut();
        }
        let p = System.alloc(l);
        if !p.is_null() {
            note_alloc(l.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if l.size() > HARD_ALLOC {
            BIGGEST.fetch_max(l.size(), Relaxed);
            return std::ptr::null_mut();
        }
        let p = System.alloc_zeroed(l);
        if !p.is_null() {
            note_alloc(l.size());
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        LIVE.fetch_sub(l.size(), Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new > HARD_ALLOC {
            BIGGEST.fetch_max(new, Relaxed);
            return std::ptr::null_mut();
        }
        let q = System.realloc(p, l, new);
        if !q.is_null() {
            LIVE.fetch_sub(l.size(), Relaxed);
            note_alloc(new);
        }
        q
    }
}

#[global_allocator]
pub(crate) static ALLOC: Counting = Counting;
