//! Session ids and resume tokens from the operating system's CSPRNG.

use session_core::Entropy;

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

impl Entropy for OsEntropy {
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        if let Err(error) = getrandom::fill(dest) {
            // `check` passed at start-up; a generator that fails later is a
            // broken OS, and handing out predictable tokens would be worse
            // than stopping.
            panic!("the OS random generator failed: {error}");
        }
    }
}
