//! The session wire protocol, package `session.v1`, as prost types.
//!
//! `proto/session.proto` is the source of truth; `src/session.v1.rs` is
//! generated from it by `cargo xtask codegen` and checked in, so building this
//! crate needs no `protoc`.
//!
//! A client sends [`v1::ClientFrame`]s and a server sends
//! [`v1::ServerFrame`]s, one protobuf message per frame. `bytes` fields are
//! [`bytes::Bytes`], so decoding from a `Bytes` buffer does not copy payloads.
//!
//! ```
//! use prost::Message;
//! use session_proto::v1::{client_frame::Kind, ClientFrame, Heartbeat};
//!
//! let frame = ClientFrame {
//!     kind: Some(Kind::Heartbeat(Heartbeat { ack_event_seq: 7, ack_request_id: 0 })),
//! };
//! let bytes = frame.encode_to_vec();
//! assert!(bytes.len() <= 4, "a heartbeat is a few bytes");
//! assert_eq!(ClientFrame::decode(bytes.as_slice()).unwrap(), frame);
//! ```

pub use prost;

/// The messages of `session.v1`.
pub mod v1 {
    // Generated code: its items are documented by the comments in the .proto.
    #![allow(missing_docs, unreachable_pub, clippy::all, rust_2018_idioms)]
    include!("session.v1.rs");
}

/// The protocol version this crate speaks, sent in `Login.protocol_version`.
pub const PROTOCOL_VERSION: u32 = 1;
