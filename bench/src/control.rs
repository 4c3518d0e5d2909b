//! The line protocol between the coordinator and its worker processes: one
//! JSON object per line, commands on the worker's stdin, replies on its
//! stdout. Every command gets exactly one reply with the same `id`;
//! progress lines carry no `id`.

use serde::{Deserialize, Serialize};

use crate::stats::Counts;

/// How a worker's sessions reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Carrier {
    /// Varint-delimited frames over TCP.
    Tcp,
    /// One binary WebSocket message per frame, subprotocol `session.v1`.
    Ws,
}

/// What a worker's sessions speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Ours, to `sessiond`.
    #[default]
    Session,
    /// MQTT 3.1.1 at QoS 0, to an MQTT broker ([`crate::client::mqtt`]).
    Mqtt0,
    /// MQTT 3.1.1 at QoS 1.
    Mqtt1,
    /// NATS's client protocol, to `nats-server` ([`crate::client::nats`]).
    Nats,
}

/// What the coordinator asks of a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Log in `count` receiving sessions as users `load-<first>` to
    /// `load-<first + count - 1>`, at most `in_flight` handshakes at a time.
    /// Answered with [`Reply::Connected`] once every one is online or failed.
    Connect {
        /// TCP or WebSocket.
        carrier: Carrier,
        /// The first user number.
        first: u64,
        /// How many sessions.
        count: u64,
        /// Connects and logins under way at once.
        in_flight: usize,
        /// The heartbeat to ask for (`None`: the server's default).
        heartbeat_ms: Option<u32>,
        /// Give up after this long.
        timeout_ms: u64,
    },
    /// Answer with [`Reply::Received`] once the sessions have received
    /// `total` events since they were created (or after `timeout_ms`).
    Expect {
        /// Events to wait for.
        total: u64,
        /// Give up after this long.
        timeout_ms: u64,
    },
    /// Log in `sessions` publishing sessions and push `total` messages
    /// `to load-<i mod targets> <body>`, each body `body_len` bytes starting
    /// with the send time; answered with [`Reply::Published`].
    Publish {
        /// Publishing sessions.
        sessions: usize,
        /// Messages in all.
        total: u64,
        /// Receiving users `load-0` to `load-<targets - 1>`.
        targets: u64,
        /// Bytes of each message body.
        body_len: usize,
        /// Messages per second over all publishers (`None`: as fast as the
        /// request windows allow).
        rate: Option<f64>,
        /// Requests outstanding per publishing session.
        window: usize,
        /// Give up after this long.
        timeout_ms: u64,
    },
    /// Counters now.
    Stats,
    /// Answer [`Reply::Closed`] and exit the process at once, so that the
    /// kernel closes every socket with no per-session work in user space.
    Exit,
}

/// A command with its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Echoed in the reply.
    pub id: u64,
    /// What to do.
    #[serde(flatten)]
    pub command: Command,
}

/// Counters a worker keeps for its receiving sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Sessions online now.
    pub online: u64,
    /// Sessions that failed to connect or log in, or went offline.
    pub failed: u64,
    /// Events received.
    pub received: u64,
}

/// What a worker answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// Every session of a `Connect` is online or failed.
    Connected {
        /// Sessions that went online.
        online: u64,
        /// Sessions that failed.
        failed: u64,
        /// Wall clock (Unix ns) when the first connect started.
        start_ns: u64,
        /// Wall clock (Unix ns) when the last session went online or failed.
        end_ns: u64,
        /// Connect start to `Online`, microseconds.
        latency: Counts,
        /// Failures by kind.
        errors: Vec<(String, u64)>,
    },
    /// Events received.
    Received {
        /// Events received in all.
        received: u64,
        /// Wall clock (Unix ns) of the first and the last event.
        first_ns: u64,
        /// See `first_ns`.
        last_ns: u64,
        /// Send (by the publisher) to receipt, microseconds; paced, from
        /// when each message was due.
        latency: Counts,
        /// Paced: from when the publisher took each message to send.
        taken_latency: Counts,
    },
    /// A `Publish` is over.
    Published {
        /// Requests sent.
        sent: u64,
        /// Responses `delivered to 1 sessions`.
        delivered_ok: u64,
        /// Other responses and failures.
        failed: u64,
        /// Wall clock (Unix ns) of the first request.
        start_ns: u64,
        /// Wall clock (Unix ns) of the last response.
        end_ns: u64,
        /// Failures by kind.
        errors: Vec<(String, u64)>,
    },
    /// Counters.
    Stats(Counters),
    /// The worker is exiting.
    Closed {
        /// Wall clock (Unix ns) just before the exit.
        end_ns: u64,
    },
    /// Unsolicited, a few times a second: counters for progress bars.
    Progress(Counters),
    /// The command failed.
    Error {
        /// Why.
        message: String,
    },
}

/// A reply with the id of its command (`None` for progress).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The command's id.
    pub id: Option<u64>,
    /// The answer.
    #[serde(flatten)]
    pub reply: Reply,
}

/// Unix time in nanoseconds: the clock every process on the machine shares.
pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_replies_are_one_json_line() {
        let request = Request {
            id: 7,
            command: Command::Connect {
                carrier: Carrier::Ws,
                first: 10,
                count: 5,
                in_flight: 2,
                heartbeat_ms: None,
                timeout_ms: 1000,
            },
        };
        let line = serde_json::to_string(&request).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), request);
        let response = Response {
            id: None,
            reply: Reply::Progress(Counters {
                online: 1,
                failed: 0,
                received: 2,
            }),
        };
        let line = serde_json::to_string(&response).unwrap();
        assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), response);
    }
}
