//! `session-cli` against a real server: it logs in, prints lifecycle
//! changes, events and replies as they happen, sends stdin lines as
//! requests, logs out at the end of input, and with `--resume` shows a
//! resume after a dropped connection.

mod common;

use std::process::Stdio;

use common::{Kind, SOON, TestServer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

struct Cli {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<String>,
}

impl Cli {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_session-cli"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("session-cli starts");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads output until a line starts with `prefix`; returns that line.
    async fn until(&mut self, prefix: &str) -> String {
        let read = async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                self.seen.push(line.clone());
                if line.starts_with(prefix) {
                    return line;
                }
            }
            panic!("no line starting with {prefix:?} in {:?}", self.seen);
        };
        tokio::time::timeout(SOON, read)
            .await
            .unwrap_or_else(|_| panic!("no line starting with {prefix:?}"))
    }

    async fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// Closes stdin (the tool logs out) and returns the exit status.
    async fn finish(mut self) -> (i32, Vec<String>) {
        drop(self.child.stdin.take());
        self.exit().await
    }

    /// Reads the rest of the output and returns the exit status, leaving
    /// stdin open.
    async fn exit(mut self) -> (i32, Vec<String>) {
        while let Some(line) = self.lines.next_line().await.unwrap() {
            self.seen.push(line);
        }
        let status = tokio::time::timeout(SOON, self.child.wait())
            .await
            .expect("exits")
            .unwrap();
        (status.code().unwrap_or(-1), self.seen)
    }
}

async fn requests_events_and_logout(kind: Kind) {
    let server = TestServer::start().await;
    let url = server.url(kind);
    let mut cli = Cli::start(&[&url, "alice", "alice-secret"]);
    assert_eq!(cli.until("[connected]").await, "[connected]");
    let online = cli.until("[online]").await;
    assert!(online.starts_with("[online] session "), "{online}");
    assert!(online.contains("heartbeat 1s"), "{online}");

    cli.send("hello").await;
    assert_eq!(cli.until("[reply 1]").await, "[reply 1] hello");
    cli.send("to alice hi me").await;
    assert_eq!(cli.until("[event 1]").await, "[event 1] alice: hi me");
    cli.send("/nonsense").await;
    assert!(cli.until("[error]").await.contains("/help"));

    let (status, seen) = cli.finish().await;
    assert_eq!(status, 0, "{seen:?}");
    assert!(seen.iter().any(|l| l == "[offline] logged out"), "{seen:?}");
    assert!(!seen.iter().any(|l| l.contains("alice-secret")), "{seen:?}");
}

async fn resume_shows_the_events_missed(kind: Kind) {
    let server = TestServer::start().await;
    let url = server.url(kind);
    let mut cli = Cli::start(&[
        &url,
        "alice",
        "alice-secret",
        "--resume",
        "--drop-after",
        "0",
    ]);
    cli.until("[online] session").await;
    cli.until("[disconnected] connection lost").await;
    // While alice is away, bob writes to her.
    let (bob, _, _) = common::online(&url, "bob", "web").await;
    bob.request("to alice while you were away").await.unwrap();
    cli.until("[online] resumed session").await;
    assert_eq!(
        cli.until("[event").await,
        "[event 1] bob: while you were away"
    );
    let (status, seen) = cli.finish().await;
    assert_eq!(status, 0, "{seen:?}");
}

async fn a_kicked_cli_says_why_and_exits(kind: Kind) {
    let server = TestServer::start().await;
    let mut on_server = server.handle().subscribe();
    let mut cli = Cli::start(&[&server.url(kind), "alice", "alice-secret"]);
    cli.until("[online]").await;
    let opened = tokio::time::timeout(SOON, on_server.recv())
        .await
        .unwrap()
        .unwrap();
    server
        .handle()
        .kick(opened.session.id, "maintenance")
        .unwrap();
    assert_eq!(
        cli.until("[offline]").await,
        "[offline] closed by server: kicked: maintenance"
    );
    let (status, seen) = cli.finish().await;
    assert_eq!(status, 2, "{seen:?}");
}

/// Lines piped in and closed at once are all answered before the tool
/// logs out at the end of input.
async fn the_end_of_input_waits_for_the_replies(kind: Kind) {
    let server = TestServer::start().await;
    let mut cli = Cli::start(&[&server.url(kind), "alice", "alice-secret"]);
    cli.until("[online]").await;
    cli.send("hello\nworld").await;
    let (status, seen) = cli.finish().await;
    assert_eq!(status, 0, "{seen:?}");
    for reply in ["[reply 1] hello", "[reply 2] world"] {
        assert!(seen.iter().any(|l| l == reply), "{reply}: {seen:?}");
    }
}

/// After `/logout` the tool exits, though its input is still open.
async fn it_exits_after_a_logout_with_input_still_open(kind: Kind) {
    let server = TestServer::start().await;
    let mut cli = Cli::start(&[&server.url(kind), "alice", "alice-secret"]);
    cli.until("[online]").await;
    cli.send("/logout").await;
    let (status, seen) = tokio::time::timeout(SOON, cli.exit())
        .await
        .expect("exits with its input still open");
    assert_eq!(status, 0, "{seen:?}");
}

/// Once its reader closes standard output (`session-cli ... | head -2`),
/// the tool exits quietly with 141, as a program ended by SIGPIPE, instead
/// of panicking at its next line of output.
#[tokio::test]
async fn a_closed_output_ends_the_tool_quietly() {
    let server = TestServer::start().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_session-cli"))
        .args([server.url(Kind::Tcp).as_str(), "alice", "alice-secret"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("session-cli starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let online = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("[online]") {
                return;
            }
        }
        panic!("no [online] line");
    };
    tokio::time::timeout(SOON, online).await.expect("online");
    drop(lines);
    // The reply is the next line of output, and nobody reads it.
    let stdin = child.stdin.as_mut().unwrap();
    stdin.write_all(b"hello\n").await.unwrap();
    stdin.flush().await.unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let status = tokio::time::timeout(SOON, child.wait())
        .await
        .expect("exits with its input still open")
        .unwrap();
    let mut errors = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut errors)
        .await
        .unwrap();
    assert_eq!(status.code(), Some(141), "{errors}");
    assert!(!errors.contains("panicked"), "{errors}");
}

over_tcp_and_ws!(
    the_end_of_input_waits_for_the_replies,
    it_exits_after_a_logout_with_input_still_open,
    requests_events_and_logout,
    resume_shows_the_events_missed,
    a_kicked_cli_says_why_and_exits,
);
