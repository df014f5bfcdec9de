//! What the fuzz targets share: the 64 MiB heap cap and a reader that turns the fuzzer's bytes
//! into a sequence of choices (chunk sizes, directions, gaps).
//!
//! Owns only the fuzz harness; the parsers under test live in the `bt-trace` crate and are
//! never changed from here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The most Rust heap a target may hold at once, and so the largest single allocation.
pub const HEAP_CAP: usize = 64 << 20;

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// The system allocator with a cap: an allocation that would take the live Rust heap above
/// [`HEAP_CAP`] aborts the process, which libFuzzer reports as a crash and saves the input.
/// (libFuzzer's own `-malloc_limit_mb` needs a sanitizer's malloc hooks; with
/// `--sanitizer none` this is what enforces the limit.)
pub struct CappedAlloc;

impl CappedAlloc {
    fn charge(size: usize) {
        let before = LIVE.fetch_add(size, Ordering::Relaxed);
        if before.saturating_add(size) > HEAP_CAP {
            eprintln!(
                "fuzz: heap would reach {} bytes (cap {HEAP_CAP})",
                before.saturating_add(size)
            );
            std::process::abort();
        }
    }
}

// SAFETY: every call is forwarded to `System` unchanged; only a counter is kept beside it.
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::charge(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::charge(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            Self::charge(new_size - layout.size());
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

/// Choices read from the front of the fuzzer's input; zeros once it is used up.
pub struct Ops<'a> {
    data: &'a [u8],
}

impl<'a> Ops<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Ops { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        let (&b, rest) = self.data.split_first().unwrap_or((&0, &[]));
        self.data = rest;
        b
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | (u32::from(self.u16()) << 16)
    }

    /// The next `n` bytes (fewer at the end).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }
}
