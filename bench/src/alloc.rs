//! A global allocator that forwards to the system allocator and, while
//! counting is switched on, counts the bytes requested and still held.
//!
//! The binary installs it; only the core simulation switches counting on,
//! so the load generator pays one relaxed load per allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
/// Bytes requested minus bytes freed while counting (may go negative when
/// memory from before counting is freed).
static LIVE: AtomicI64 = AtomicI64::new(0);

/// The system allocator, counting when asked to.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAllocator;

/// Switches counting on or off.
pub fn set_counting(on: bool) {
    COUNTING.store(on, Ordering::Relaxed);
}

/// Allocations counted so far.
pub fn allocations() -> u64 {
    ALLOCS.load(Ordering::Relaxed)
}

/// Bytes allocated minus bytes freed while counting was on.
pub fn live_bytes() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

fn on_alloc(size: usize) {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(size as i64, Ordering::Relaxed);
    }
}

fn on_free(size: usize) {
    if COUNTING.load(Ordering::Relaxed) {
        LIVE.fetch_sub(size as i64, Ordering::Relaxed);
    }
}

// Reason: a global allocator can only be written as an `unsafe impl` of
// `GlobalAlloc`. This one forwards every call unchanged to `System` and only
// counts. (The crate denies `unsafe_code` rather than forbidding it, for this
// impl alone.)
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        // SAFETY: the caller's contract for `alloc_zeroed` is passed on unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        on_free(layout.size());
        // SAFETY: `ptr` came from `System` with this `layout` (every
        // allocation above is forwarded to it).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        on_free(layout.size());
        on_alloc(new_size);
        // SAFETY: as for `dealloc`, and the caller's contract for `realloc`
        // is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
