//! Load generator and measurement harness for `sessiond`, and a simulation
//! of the session core without sockets.
//!
//! `session-bench run` is a coordinator. For each run of a scenario it
//! starts a fresh `sessiond` (file limit 20,000, ephemeral loopback ports),
//! starts worker processes (this same binary, `session-bench worker`), each
//! holding at most 9,000 connections bound to its own source address in
//! 127.0.0.0/8, and steers them over JSON lines on their stdin and stdout
//! ([`control`]). The workers drive [`session_core::ClientSession`]
//! directly over TCP or WebSocket ([`client`]). The coordinator reads the
//! server's memory, CPU time and open descriptors from `/proc`
//! ([`procfs`]), and reports each figure's median, min and max over the
//! runs next to the issue's target ([`suite`]), as a table, as `load.json`
//! and as SVG plots of the latency distributions ([`plot`]).
//!
//! | scenario | what |
//! |---|---|
//! | `s1` | connect and log in 19,500 sessions, 200 handshakes in flight: logins/s, latency, SYN drops |
//! | `s2`, `s2ws` | server RSS growth per idle session at 10,000 and 19,500 sessions, TCP and WebSocket |
//! | `s2cpu` | server CPU to keep 10,000 idle sessions alive for 35 s (30 s heartbeats) |
//! | `s3` | 200,000 64-byte messages to 10,000 sessions round-robin, as fast as possible |
//! | `s3lat` | the same at an offered 50,000 msg/s: end-to-end latency |
//! | `s4` | every session disconnects: time until the server closed every socket |
//! | `sim` | 10k, 100k and 1M core sessions through login, heartbeats and expiry ([`sim`]) |
//!
//! With `--mosquitto <binary>` or `--nats-server <binary>`, the same
//! scenarios measure that broker in `sessiond`'s place, its workers speaking
//! MQTT ([`client::mqtt`]) or NATS ([`client::nats`]), so that the
//! servers people would otherwise choose are measured on the same machine
//! by the same load generator. `session-bench compare` runs `sessiond` and
//! the brokers in interleaved rounds and reports them side by side
//! ([`suite::compare`]).
//!
//! The pieces are plain functions where they can be, so they are tested
//! without a server:
//!
//! ```
//! use session_bench::stats::Summary;
//! use session_bench::suite::{Goal, human};
//!
//! let logins_per_s = Summary::of(&[24_100.0, 26_900.0, 25_300.0]).unwrap();
//! assert_eq!(human(logins_per_s.median), "25,300");
//! assert_eq!(Goal::AtLeast(25_000.0).met(logins_per_s.median), Some(true));
//! ```

pub mod alloc;
pub mod client;
pub mod control;
pub mod coord;
pub mod plot;
pub mod procfs;
pub mod scenario;
pub mod server;
pub mod sim;
pub mod stats;
pub mod suite;
pub mod worker;
pub mod yardstick;
