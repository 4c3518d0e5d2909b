//! Session ids and resume tokens from the operating system's CSPRNG.
//!
//! Each thread keeps a small pool of the OS generator's output and hands it
//! out in order, each byte once: a login needs 40 random bytes (its 8-byte
//! id and its 32-byte token), and one `getrandom` call for every twelve
//! logins costs less than two for each. Handed-out bytes are zeroed in the
//! pool. The pool holds no more than the tokens of the next twelve logins,
//! which live in the same process's memory anyway once issued.

use std::cell::RefCell;

use session_core::Entropy;

/// Bytes of generator output each thread keeps.
const POOL_LEN: usize = 512;

thread_local! {
    static POOL: RefCell<Pool> = const {
        RefCell::new(Pool {
            bytes: [0; POOL_LEN],
            next: POOL_LEN,
        })
    };
}

/// Generator output not handed out yet: `bytes[next..]`.
struct Pool {
    bytes: [u8; POOL_LEN],
    next: usize,
}

/// The OS's cryptographically secure generator (`getrandom`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OsEntropy;

impl OsEntropy {
    /// Checks once, at start-up, that the OS generator works, so that
    /// `fill_bytes` cannot fail later.
    pub(crate) fn check() -> std::io::Result<()> {
        let mut probe = [0u8; 8];
        getrandom::fill(&mut probe).map_err(|e| std::io::Error::other(e.to_string()))
    }
}

fn os_fill(dest: &mut [u8]) {
    if let Err(error) = getrandom::fill(dest) {
        // `check` passed at start-up; a generator that fails later is a
        // broken OS, and handing out predictable tokens would be worse
        // than stopping.
        panic!("the OS random generator failed: {error}");
    }
}

impl Entropy for OsEntropy {
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        if dest.len() > POOL_LEN / 4 {
            return os_fill(dest);
        }
        POOL.with_borrow_mut(|pool| {
            if POOL_LEN - pool.next < dest.len() {
                os_fill(&mut pool.bytes);
                pool.next = 0;
            }
            let taken = &mut pool.bytes[pool.next..pool.next + dest.len()];
            dest.copy_from_slice(taken);
            taken.fill(0);
            pool.next += dest.len();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fill_is_fresh_across_refills_and_sizes() {
        let mut seen = std::collections::HashSet::new();
        // Far more than one pool's worth, in sizes that do not divide it,
        // and one larger than the pool hands out.
        for len in [16, 32, 48, 7, 200, 16, 32].into_iter().cycle().take(200) {
            let mut bytes = vec![0u8; len];
            OsEntropy.fill_bytes(&mut bytes);
            assert!(bytes.iter().any(|&b| b != 0), "{len} bytes all zero");
            assert!(seen.insert(bytes), "a fill of {len} bytes repeated");
        }
    }
}
