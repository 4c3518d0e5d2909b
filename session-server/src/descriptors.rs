//! Sizing the process's file-descriptor table before the threads start,
//! and its open-file limit.

use std::fs::File;

/// Raises this process's soft open-file limit (`RLIMIT_NOFILE`) to
/// `wanted` descriptors, or to its hard limit if that is lower; never
/// lowers it. Returns the soft limit before and after (`u64::MAX` for no
/// limit).
///
/// Many systems start processes with a soft limit of 1,024 under a hard
/// limit hundreds of times higher, which would cap a server near a
/// thousand connections. The soft limit is the process's own to raise up
/// to the hard one, as Go's runtime does for every program; the hard
/// limit is the administrator's, and stays.
///
/// ```
/// let (before, after) = session_server::raise_open_file_limit(256).unwrap();
/// assert!(after >= before);
/// ```
pub fn raise_open_file_limit(wanted: u64) -> std::io::Result<(u64, u64)> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let (soft, hard) = (current.unwrap_or(u64::MAX), maximum.unwrap_or(u64::MAX));
    let target = wanted.min(hard);
    if target <= soft {
        return Ok((soft, soft));
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum,
        },
    )?;
    Ok((soft, target))
}

/// Grows this process's file-descriptor table to hold `count` descriptors
/// (or as many as its open-file limit allows), then releases them; returns
/// how many it held at once. Call it before starting any thread, tokio's
/// runtime included, with the most connections the server will hold.
///
/// Why: Linux doubles a process's descriptor table as it fills (64, 128,
/// ..., 32,768), and in a process with several threads each doubling waits
/// for an RCU grace period, during which every thread that opens or accepts
/// a socket waits too. A server that grows from 0 to 20,000 connections
/// under a login storm stalls about ten times, some milliseconds each: in
/// S1 of `cargo xtask bench load` these stalls were the p99 login latency
/// (see `docs/server.md`, "The descriptor table"). In a process with one
/// thread the table grows without waiting, and never shrinks. Elsewhere
/// than Linux this only costs the opening and closing.
///
/// ```
/// // Enough for a few thousand connections, as a server's `main` would
/// // do before building its runtime.
/// let held = session_server::reserve_descriptors(4_000);
/// assert!(held > 0 && held <= 4_000);
/// ```
pub fn reserve_descriptors(count: usize) -> usize {
    if count == 0 {
        return 0;
    }
    let Ok(first) = File::open("/dev/null") else {
        return 0;
    };
    // Held in chunks of 16 KB: one allocation of a size malloc serves by
    // `mmap` would, once freed, raise glibc's `mmap` threshold, and the
    // server's later allocations would leave more holes in its heap (S2's
    // memory per session rose by 7 % when this was one `Vec`).
    const CHUNK: usize = 4_096;
    let mut held: Vec<Vec<File>> = Vec::new();
    let mut total = 1;
    let mut chunk = Vec::with_capacity(CHUNK);
    while total < count {
        // `dup`: the lowest free number, so the table fills in order.
        match first.try_clone() {
            Ok(file) => chunk.push(file),
            // At the open-file limit: the table is as large as it may get.
            Err(_) => break,
        }
        total += 1;
        if chunk.len() == CHUNK {
            held.push(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)));
        }
    }
    total
}
