//! Building blocks of fuzz inputs: byte strings, text and numbers picked near
//! a value the harness tracks, and [`Encode`], the inverse of their
//! `arbitrary` decoding, used to write seed inputs.
//!
//! `arbitrary` 1.x reads integers as little-endian bytes (zero-padded when the
//! input runs out), `bool` as the low bit of a byte, `Option<T>` as a `bool`
//! then `T`, struct fields in order, and an enum's variant `i` of `n` from a
//! `u32` `x` with `(x * n) >> 32 == i`. [`Encode`] writes the same layout, and
//! `tests/seeds.rs` checks that decoding an encoded script gives it back.

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;

/// Appends the bytes that `arbitrary` decodes back into `self`.
pub trait Encode {
    /// Appends `self`'s encoding to `out`.
    fn write_arbitrary(&self, out: &mut Vec<u8>);
}

macro_rules! encode_int {
    ($($ty:ty),*) => {$(
        impl Encode for $ty {
            fn write_arbitrary(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
encode_int!(u8, u16, u32, u64, i8, i32);

impl Encode for bool {
    fn write_arbitrary(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl<T: Encode> Encode for Option<T> {
    fn write_arbitrary(&self, out: &mut Vec<u8>) {
        self.is_some().write_arbitrary(out);
        if let Some(value) = self {
            value.write_arbitrary(out);
        }
    }
}

impl<A: Encode, B: Encode> Encode for (A, B) {
    fn write_arbitrary(&self, out: &mut Vec<u8>) {
        self.0.write_arbitrary(out);
        self.1.write_arbitrary(out);
    }
}

/// Writes the tag of variant `index` of an enum with `count` variants, as
/// `#[derive(Arbitrary)]` reads it.
pub fn variant(out: &mut Vec<u8>, index: u32, count: u32) {
    assert!(index < count, "variant {index} of {count}");
    let x = (u64::from(index) << 32).div_ceil(u64::from(count));
    u32::try_from(x)
        .expect("a variant tag fits in u32")
        .write_arbitrary(out);
}

/// A byte string of at most 255 bytes: a length byte, then the bytes (fewer
/// if the input ends first).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Blob(pub Bytes);

impl<'a> Arbitrary<'a> for Blob {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let len = usize::from(u8::arbitrary(u)?).min(u.len());
        Ok(Self(Bytes::copy_from_slice(u.bytes(len)?)))
    }
}

impl Encode for Blob {
    fn write_arbitrary(&self, out: &mut Vec<u8>) {
        let len = u8::try_from(self.0.len()).expect("a blob holds at most 255 bytes");
        out.push(len);
        out.extend_from_slice(&self.0);
    }
}

impl Blob {
    /// A blob of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Bytes::copy_from_slice(bytes))
    }
}

/// Text of at most 255 bytes, laid out as a [`Blob`] and read as lossy UTF-8
/// (protobuf `string` fields must be valid UTF-8).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text(pub String);

impl<'a> Arbitrary<'a> for Text {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let Blob(bytes) = Blob::arbitrary(u)?;
        Ok(Self(String::from_utf8_lossy(&bytes).into_owned()))
    }
}

impl Encode for Text {
    fn write_arbitrary(&self, out: &mut Vec<u8>) {
        Blob::of(self.0.as_bytes()).write_arbitrary(out);
    }
}

impl Text {
    /// Text of `s`.
    pub fn of(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// A number: near a reference the harness tracks (the last event seen, the
/// last request sent, ...), so that acks and ids are often plausible and the
/// fuzzer gets past the first check; or any `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum Pick {
    /// `reference + delta`, saturating.
    Near(i8),
    /// Exactly this.
    Raw(u64),
}

impl Pick {
    /// The number this picks, given the reference.
    pub fn resolve(self, reference: u64) -> u64 {
        match self {
            Self::Near(delta) => reference.saturating_add_signed(i64::from(delta)),
            Self::Raw(x) => x,
        }
    }
}

impl Encode for Pick {
    fn write_arbitrary(&self, out: &mut Vec<u8>) {
        match self {
            Self::Near(delta) => {
                variant(out, 0, 2);
                delta.write_arbitrary(out);
            }
            Self::Raw(x) => {
                variant(out, 1, 2);
                x.write_arbitrary(out);
            }
        }
    }
}

/// A protocol error a transport could report through
/// `handle_protocol_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum TransportError {
    /// A declared length over the limit.
    FrameTooLarge(u64),
    /// An invalid varint prefix.
    BadLengthPrefix,
    /// A frame of unknown kind (a text WebSocket message, say).
    UnknownFrameKind,
}

impl TransportError {
    /// The core's error for this report, given the limit in force.
    pub fn to_error(self, max: usize) -> session_core::ProtocolError {
        use session_core::ProtocolError;
        match self {
            Self::FrameTooLarge(len) => ProtocolError::FrameTooLarge { len, max },
            Self::BadLengthPrefix => ProtocolError::BadLengthPrefix,
            Self::UnknownFrameKind => ProtocolError::UnknownFrameKind,
        }
    }
}

impl Encode for TransportError {
    fn write_arbitrary(&self, out: &mut Vec<u8>) {
        match self {
            Self::FrameTooLarge(len) => {
                variant(out, 0, 3);
                len.write_arbitrary(out);
            }
            Self::BadLengthPrefix => variant(out, 1, 3),
            Self::UnknownFrameKind => variant(out, 2, 3),
        }
    }
}

/// How far to move the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum Step {
    /// Forward by this many milliseconds, then `handle_timeout` if a deadline
    /// passed.
    Millis(u16),
    /// Forward by this many seconds, then `handle_timeout` if due.
    Seconds(u16),
    /// Straight to the next deadline (if any), then `handle_timeout`.
    ToDeadline,
    /// `handle_timeout` now, due or not (a spurious wake-up).
    Spurious,
}

impl Encode for Step {
    fn write_arbitrary(&self, out: &mut Vec<u8>) {
        match self {
            Self::Millis(ms) => {
                variant(out, 0, 4);
                ms.write_arbitrary(out);
            }
            Self::Seconds(s) => {
                variant(out, 1, 4);
                s.write_arbitrary(out);
            }
            Self::ToDeadline => variant(out, 2, 4),
            Self::Spurious => variant(out, 3, 4),
        }
    }
}

/// The most operations one input runs, so that every execution stays short.
pub const MAX_OPS: usize = 256;

/// The most repetitions in one burst operation, for the same reason. (Long
/// bursts found a stack overflow in a debug build only: the optimised fuzz
/// build turned that recursion into a loop. `session-core`'s tests keep it.)
pub const MAX_BURST: u16 = 64;

/// Decodes a setup followed by operations until the input ends (at most
/// [`MAX_OPS`]). `None` when the setup cannot be read.
pub fn parse_script<'a, S: Arbitrary<'a>, O: Arbitrary<'a>>(data: &'a [u8]) -> Option<(S, Vec<O>)> {
    let mut u = Unstructured::new(data);
    let setup = S::arbitrary(&mut u).ok()?;
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        match O::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    Some((setup, ops))
}

/// Encodes a setup and operations, the inverse of [`parse_script`].
pub fn encode_script<S: Encode, O: Encode>(setup: &S, ops: &[O]) -> Vec<u8> {
    let mut out = Vec::new();
    setup.write_arbitrary(&mut out);
    for op in ops {
        op.write_arbitrary(&mut out);
    }
    out
}

/// Whether `SESSION_FUZZ_TRACE` is set: the harnesses then print every
/// operation and output to stderr (for reading a crash input).
pub fn tracing() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("SESSION_FUZZ_TRACE").is_some())
}

/// Prints to stderr when [`tracing`].
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => {
        if $crate::wire::tracing() {
            eprintln!($($arg)*);
        }
    };
}

/// The framing a harness drains with on `turn`: both, alternately, so that
/// each output path is exercised.
pub fn framing_for(turn: usize) -> session_core::Framing {
    if turn.is_multiple_of(2) {
        session_core::Framing::Delimited
    } else {
        session_core::Framing::Bare
    }
}

/// Decodes one frame a session wrote in `framing`; a frame that does not
/// decode, or leaves bytes behind, breaks an invariant.
pub fn decode_written<M: session_core::proto::prost::Message + Default>(
    bytes: bytes::Bytes,
    framing: session_core::Framing,
) -> M {
    let frame = match framing {
        session_core::Framing::Bare => M::decode(bytes),
        session_core::Framing::Delimited => {
            let mut rest = bytes;
            let frame = M::decode_length_delimited(&mut rest);
            assert!(rest.is_empty(), "bytes after the delimited frame");
            frame
        }
    };
    frame.expect("a frame the session wrote does not decode")
}

/// A session with deadlines: both sides of the core.
pub trait Timed {
    /// The next deadline.
    fn poll_timeout(&self) -> Option<std::time::Instant>;
    /// Fires what is due at `now`.
    fn handle_timeout(&mut self, now: std::time::Instant);
}

impl Timed for session_core::ClientSession {
    fn poll_timeout(&self) -> Option<std::time::Instant> {
        session_core::ClientSession::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: std::time::Instant) {
        session_core::ClientSession::handle_timeout(self, now);
    }
}

impl Timed for session_core::ServerSession {
    fn poll_timeout(&self) -> Option<std::time::Instant> {
        session_core::ServerSession::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: std::time::Instant) {
        session_core::ServerSession::handle_timeout(self, now);
    }
}

/// Moves `now` by `step` and fires `session`'s timers when due (always, for
/// a spurious wake-up); after that, no deadline may still be due.
pub fn step_time(session: &mut impl Timed, now: &mut std::time::Instant, step: Step) {
    match step {
        Step::Millis(ms) => *now += std::time::Duration::from_millis(u64::from(ms)),
        Step::Seconds(s) => *now += std::time::Duration::from_secs(u64::from(s)),
        Step::ToDeadline => {
            if let Some(at) = session.poll_timeout() {
                *now = (*now).max(at);
            }
        }
        Step::Spurious => {}
    }
    let due = session.poll_timeout().is_some_and(|at| at <= *now);
    if due || step == Step::Spurious {
        session.handle_timeout(*now);
        if let Some(at) = session.poll_timeout() {
            assert!(at > *now, "a deadline is still due after handle_timeout");
        }
    }
}
