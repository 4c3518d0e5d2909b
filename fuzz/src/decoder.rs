//! The `frame_decoder` target: a byte stream cut into arbitrary chunks and fed
//! to `FrameDecoder::decode`, checked against a textbook varint reader.
//!
//! Input: a [`DecoderSetup`] (the limit, an optional change of limit after
//! some frames, four chunk sizes used in turn), then the stream itself.
//!
//! Invariants, after every `decode` call:
//! - no panic;
//! - a frame is never longer than the limit in force;
//! - the answer agrees with [`read_prefix`]: a frame exactly when a complete
//!   prefix declares a length within the limit and all its bytes are there,
//!   and then the frame is those bytes; "need more" only when that is true;
//!   `FrameTooLarge` only when the prefix declares more than the limit (the
//!   reported length is a lower bound of the declared one); `BadLengthPrefix`
//!   only for an invalid varint;
//! - the buffer holds exactly the bytes fed and not yet taken as frames;
//! - the buffer's capacity stays within `2 × (bytes fed + limit + 10) + 64`:
//!   whatever a prefix declares, the decoder reserves at most one frame
//!   within the limit (the factor 2 is `BytesMut`'s amortised doubling);
//! - at the end, re-encoding the frames with minimal varint prefixes gives
//!   back the consumed part of the stream, when its prefixes were minimal.

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Bytes, BytesMut};
use session_core::{
    DEFAULT_MAX_FRAME_LEN, DEFAULT_PRE_LOGIN_MAX_FRAME_LEN, FrameDecoder, ProtocolError,
};
use session_proto::prost;

use crate::wire::{Encode, variant};

/// A frame limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum Limit {
    /// 0 to 255 bytes.
    Tiny(u8),
    /// 0 to 65,535 bytes.
    Small(u16),
    /// The pre-login default, 4 KiB.
    PreLogin,
    /// The post-login default, 1 MiB.
    Default,
}

impl Limit {
    /// The limit in bytes.
    pub fn bytes(self) -> usize {
        match self {
            Self::Tiny(n) => usize::from(n),
            Self::Small(n) => usize::from(n),
            Self::PreLogin => DEFAULT_PRE_LOGIN_MAX_FRAME_LEN,
            Self::Default => DEFAULT_MAX_FRAME_LEN,
        }
    }
}

impl Encode for Limit {
    fn write_arbitrary(&self, out: &mut Vec<u8>) {
        match self {
            Self::Tiny(n) => {
                variant(out, 0, 4);
                n.write_arbitrary(out);
            }
            Self::Small(n) => {
                variant(out, 1, 4);
                n.write_arbitrary(out);
            }
            Self::PreLogin => variant(out, 2, 4),
            Self::Default => variant(out, 3, 4),
        }
    }
}

/// How the stream is fed.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub struct DecoderSetup {
    /// The limit at the start.
    pub limit: Limit,
    /// After this many frames, switch to this limit (as a server does after
    /// login).
    pub change: Option<(u8, Limit)>,
    /// Chunk sizes, used in turn; 0 feeds all the rest at once.
    pub chunks: [u8; 4],
}

impl Encode for DecoderSetup {
    fn write_arbitrary(&self, out: &mut Vec<u8>) {
        self.limit.write_arbitrary(out);
        self.change.write_arbitrary(out);
        out.extend_from_slice(&self.chunks);
    }
}

/// Encodes a setup and a stream into a `frame_decoder` input.
pub fn encode_input(setup: &DecoderSetup, stream: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    setup.write_arbitrary(&mut out);
    out.extend_from_slice(stream);
    out
}

/// Splits an input into its setup and stream.
pub fn parse_input(data: &[u8]) -> Option<(DecoderSetup, &[u8])> {
    let mut u = Unstructured::new(data);
    let setup = DecoderSetup::arbitrary(&mut u).ok()?;
    Some((setup, u.take_rest()))
}

/// What a textbook protobuf varint reader makes of the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// A complete varint of `prefix` bytes declaring `len`.
    Complete {
        /// The declared length.
        len: u64,
        /// The prefix's own length.
        prefix: usize,
    },
    /// The bytes so far are the start of a varint worth at least `so_far`.
    Incomplete {
        /// The value of the bits read so far.
        so_far: u64,
    },
    /// Not a valid varint (more than 10 bytes, or over `u64::MAX`); its bits
    /// are worth at least `so_far` (saturating).
    Invalid {
        /// The value of the bits read before it became invalid.
        so_far: u64,
    },
}

/// Reads a varint the plain way: little-endian groups of 7 bits, the high
/// bit saying "more", at most 10 bytes, at most `u64::MAX`.
pub fn read_prefix(bytes: &[u8]) -> Prefix {
    let mut value: u128 = 0;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        let before = value;
        value |= u128::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return match u64::try_from(value) {
                Ok(len) => Prefix::Complete { len, prefix: i + 1 },
                Err(_) => Prefix::Invalid {
                    so_far: saturate(before),
                },
            };
        }
    }
    if bytes.len() >= 10 {
        Prefix::Invalid {
            so_far: saturate(value),
        }
    } else {
        Prefix::Incomplete {
            so_far: saturate(value),
        }
    }
}

fn saturate(value: u128) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// Runs one `frame_decoder` input.
pub fn run(data: &[u8]) {
    if let Some((setup, stream)) = parse_input(data) {
        check(&setup, stream);
    }
}

/// Feeds `stream` as `setup` says and checks every answer.
pub fn check(setup: &DecoderSetup, stream: &[u8]) {
    let mut limit = setup.limit.bytes();
    let mut max_limit = limit;
    let mut decoder = FrameDecoder::new(limit);
    let mut buf = BytesMut::new();
    let mut frames: Vec<Bytes> = Vec::new();
    let mut minimal_prefixes = true;
    // Bytes of `stream` fed so far, and taken off as frames so far.
    let (mut fed, mut consumed) = (0usize, 0usize);
    let mut turn = 0usize;
    while fed < stream.len() {
        let rest = stream.len() - fed;
        let size = match setup.chunks[turn % setup.chunks.len()] {
            0 => rest,
            n => usize::from(n).min(rest),
        };
        turn += 1;
        buf.extend_from_slice(&stream[fed..fed + size]);
        fed += size;
        loop {
            if let Some((after, new_limit)) = setup.change
                && frames.len() == usize::from(after)
                && limit != new_limit.bytes()
            {
                limit = new_limit.bytes();
                max_limit = max_limit.max(limit);
                decoder.set_max_frame_len(limit);
            }
            let pending = &stream[consumed..fed];
            let expected = read_prefix(pending);
            let result = decoder.decode(&mut buf);
            let cap_bound = 2 * (fed + max_limit + 10) + 64;
            assert!(
                buf.capacity() <= cap_bound,
                "capacity {} over {cap_bound} (fed {fed}, limit {max_limit}, prefix {expected:?})",
                buf.capacity()
            );
            let lim = limit as u64;
            match result {
                Ok(Some(frame)) => {
                    let Prefix::Complete { len, prefix } = expected else {
                        panic!("frame {frame:?} from an incomplete or invalid prefix {expected:?}");
                    };
                    assert!(
                        frame.len() <= limit,
                        "frame of {} over limit {limit}",
                        frame.len()
                    );
                    assert!(len <= lim, "frame declared {len} over limit {limit}");
                    let end = prefix + len as usize;
                    assert!(end <= pending.len(), "frame past the bytes fed");
                    assert_eq!(
                        &frame[..],
                        &pending[prefix..end],
                        "frame bytes differ from the stream"
                    );
                    minimal_prefixes &= prefix == prost::length_delimiter_len(len as usize);
                    consumed += end;
                    frames.push(frame);
                    assert_eq!(
                        &buf[..],
                        &stream[consumed..fed],
                        "buffer lost or kept bytes"
                    );
                }
                Ok(None) => {
                    match expected {
                        Prefix::Incomplete { so_far } => {
                            assert!(
                                so_far <= lim,
                                "waited on a prefix already over the limit ({so_far} > {limit})"
                            );
                        }
                        Prefix::Complete { len, prefix } => {
                            assert!(
                                len <= lim,
                                "waited on a frame declared over the limit ({len} > {limit})"
                            );
                            assert!(
                                prefix + len as usize > pending.len(),
                                "a complete frame was left in the buffer"
                            );
                        }
                        Prefix::Invalid { .. } => panic!("waited on an invalid prefix"),
                    }
                    assert_eq!(&buf[..], pending, "buffer changed without a frame");
                    break;
                }
                Err(ProtocolError::FrameTooLarge { len, max }) => {
                    assert_eq!(max, limit, "reported limit");
                    assert!(len > lim, "too large at {len}, within limit {limit}");
                    let declared = match expected {
                        Prefix::Complete { len, .. } => len,
                        Prefix::Incomplete { so_far } | Prefix::Invalid { so_far } => so_far,
                    };
                    assert!(
                        len <= declared,
                        "reported {len}, but the prefix says {declared}"
                    );
                    assert_eq!(&buf[..], pending, "buffer changed on an error");
                    return;
                }
                Err(ProtocolError::BadLengthPrefix) => {
                    assert!(
                        matches!(expected, Prefix::Invalid { .. }),
                        "bad length prefix reported for {expected:?}"
                    );
                    assert_eq!(&buf[..], pending, "buffer changed on an error");
                    return;
                }
                Err(other) => panic!("unexpected error from the decoder: {other:?}"),
            }
        }
    }
    if minimal_prefixes {
        let mut again = BytesMut::new();
        for frame in &frames {
            prost::encode_length_delimiter(frame.len(), &mut again).expect("BytesMut grows");
            again.extend_from_slice(frame);
        }
        assert_eq!(
            &again[..],
            &stream[..consumed],
            "frames re-encoded differ from the stream"
        );
    }
}
