//! Big buffers with a failure path. Rust's `vec![..]` aborts the process when the allocator says
//! no, and an aborted backend makes PostgreSQL restart every session of the cluster; so the
//! buffers that grow with the data (dense n×n, factor matrices, the rows read from a source) are
//! reserved here instead: running out is `ErrorKind::OutOfMemory` (ERROR 53200) with the size
//! that was asked for.

use crate::engine::{ErrorKind, RecsysError, Result};

/// Every Rust allocation of the extension (and of the examples and benches that link it) goes to
/// mimalloc; PostgreSQL's own memory (palloc, and C's malloc) does not. Training allocates and
/// frees megabyte tensors at every step, mostly on the rayon workers: glibc gives each worker
/// thread its own arena and hands freed pages back to the kernel (madvise), so the next step
/// faults them in and zeroes them again. mimalloc keeps freed pages for reuse a little while
/// (its purge delay) before it returns them — while a training runs (`Training`); outside one
/// the delay is 0 (`settle_allocator`), so a serving call's freed buffers go back at once, as
/// with glibc (with the delay, a backend decoding a 36 MB model per call peaked at 240 MB instead
/// of 150). Measured on SASRec (ML-100K, 2 cores, `benches/neural.rs`): 3.35 → 2.40 s an epoch.
/// Built without transparent huge pages (Cargo.toml's `no_thp`): mimalloc would ask the kernel to
/// back its eagerly committed arenas with 2 MB pages, and a backend that served a model kept 4–10
/// MB more than with glibc (a fresh one 8 MB instead of 4); training pays 3–8 % an epoch for it.
/// Nothing allocated here is freed by PostgreSQL or C, nor the other way round.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay`: its index in mimalloc 3's `mi_option_e` (mimalloc.h).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// The purge delay while a training runs, milliseconds: mimalloc 3's default (mimalloc.h says 10,
/// its options.c sets 1000). Measured on two_tower: 100 ms, about 10 % slower an epoch; 10 ms, about
/// 50 % slower.
const TRAINING_PURGE_DELAY_MS: std::os::raw::c_long = 1000;
/// Trainings running in this process (one in a backend; the unit tests run several at once).
static TRAININGS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Freed memory goes back to the kernel at once: where the process starts (`_PG_init`).
pub fn settle_allocator() {
    // SAFETY: sets one of mimalloc's options; any thread may, at any time.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) }
}

/// While alive, freed memory is kept a while for reuse (see `ALLOCATOR`); when the last training
/// of the process ends, even by an error or a cancel, freed memory goes back at once again and
/// what the training's threads keep is returned.
pub struct Training<'a> {
    pool: &'a rayon::ThreadPool,
}

impl<'a> Training<'a> {
    pub fn begin(pool: &'a rayon::ThreadPool) -> Training<'a> {
        if TRAININGS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            // SAFETY: as in `settle_allocator`.
            unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, TRAINING_PURGE_DELAY_MS) }
        }
        Training { pool }
    }
}

impl Drop for Training<'_> {
    fn drop(&mut self) {
        if TRAININGS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            // SAFETY: `mi_collect` frees what the calling thread's heap holds and purges what
            // waits to be purged; plain Rust on each thread, no PostgreSQL call. Before the delay
            // goes to 0: with a delay of 0 mimalloc no longer looks at what was scheduled.
            self.pool.broadcast(|_| unsafe { libmimalloc_sys::mi_collect(true) });
            unsafe { libmimalloc_sys::mi_collect(true) }
            settle_allocator();
        }
    }
}

/// What the kernel says can still be had without swapping (`MemAvailable`), where it says.
pub fn available_bytes() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

fn out_of_memory(bytes: usize, what: &str, why: &str) -> RecsysError {
    RecsysError::new(ErrorKind::OutOfMemory, format!("out of memory for {what}"))
        .with_detail(format!("{what} needs {bytes} bytes ({} MB); {why}", bytes >> 20))
        .with_hint("train on fewer items or users (a view), or with smaller params")
}

/// Refuse, before allocating, a working set larger than the memory this machine has free now:
/// with overcommit the allocation itself could succeed and the OOM killer strike later.
pub fn check_available(bytes: usize, what: &str) -> Result<()> {
    match available_bytes() {
        Some(free) if bytes > free => Err(out_of_memory(bytes, what, &format!("the machine has {} MB available", free >> 20))),
        _ => Ok(()),
    }
}

/// `n` copies of `value`, or ERROR 53200 when the allocator refuses.
pub fn filled<T: Clone>(n: usize, value: T, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    reserve(&mut v, n, what)?;
    v.resize(n, value);
    Ok(v)
}

/// Room for `more` elements in `v`, or ERROR 53200 when the allocator refuses.
pub fn reserve<T>(v: &mut Vec<T>, more: usize, what: &str) -> Result<()> {
    v.try_reserve(more).map_err(|_| {
        let bytes = v.len().saturating_add(more).saturating_mul(std::mem::size_of::<T>().max(1));
        out_of_memory(bytes, what, "the allocator refused")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_larger_than_memory_is_an_error_not_an_abort() {
        // 2^60 bytes: no machine has them; try_reserve reports it instead of aborting.
        let e = filled(1usize << 57, 0f64, "a test matrix").unwrap_err();
        assert_eq!(e.kind, ErrorKind::OutOfMemory);
        assert!(e.detail.unwrap().contains(&(1usize << 60).to_string()));
        let mut v: Vec<u8> = vec![1, 2, 3];
        assert_eq!(reserve(&mut v, usize::MAX - 1, "rows").unwrap_err().kind, ErrorKind::OutOfMemory);
        assert_eq!(v, vec![1, 2, 3]);
    }

    #[test]
    fn small_buffers_are_filled() {
        assert_eq!(filled(3, 7u32, "x").unwrap(), vec![7, 7, 7]);
        check_available(1, "one byte").unwrap();
    }

    #[test]
    fn more_than_the_machine_has_is_refused_before_allocating() {
        if let Some(free) = available_bytes() {
            let e = check_available(free.saturating_mul(4).max(1 << 40), "EASE on a huge catalogue").unwrap_err();
            assert_eq!(e.kind, ErrorKind::OutOfMemory);
            assert!(e.message.contains("EASE on a huge catalogue"));
        }
    }
}
