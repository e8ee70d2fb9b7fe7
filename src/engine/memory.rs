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
/// faults them in and zeroes them again. mimalloc keeps the pages for reuse a little while before
/// it returns them. Measured on SASRec (ML-100K, 2 cores, `benches/neural.rs`): 3.35 → 2.40 s
/// an epoch. Nothing allocated here is freed by PostgreSQL or C, nor the other way round.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
