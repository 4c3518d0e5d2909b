//! The `sessiond` binary itself: what it writes to its log.

mod common;

use std::process::Stdio;
use std::time::Instant;

use common::{SOON, TestClient};
use session_core::{ClientEvent, Credentials};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

/// Even at `--log trace`, a login's password (and so any frame) stays out
/// of the log: tungstenite, which logs every message it reads at TRACE,
/// is held to DEBUG.
#[tokio::test]
async fn the_log_at_trace_carries_no_password() {
    const PASSWORD: &str = "hunter2-never-logged";
    let users = std::env::temp_dir().join(format!("sessiond-log-{}.users", std::process::id()));
    std::fs::write(&users, format!("dave:{PASSWORD}\n")).unwrap();
    let mut sessiond = Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args([
            "--tcp",
            "127.0.0.1:0",
            "--ws",
            "127.0.0.1:0",
            "--log",
            "trace",
        ])
        .arg("--users")
        .arg(&users)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sessiond starts");
    let mut out = BufReader::new(sessiond.stdout.take().unwrap());
    let mut log = String::new();
    let url = tokio::time::timeout(SOON, async {
        loop {
            let mut line = String::new();
            assert!(out.read_line(&mut line).await.unwrap() > 0, "{log}");
            log += &line;
            if let Some(url) = line.trim().strip_prefix("listening on ws://") {
                return format!("ws://{url}");
            }
        }
    })
    .await
    .expect("sessiond says where it listens");

    let mut client = TestClient::connect(&url, Default::default()).await;
    let credentials = Credentials {
        user_id: "dave".into(),
        credential: PASSWORD.into(),
        device: "web".into(),
        ..Default::default()
    };
    client.session.login(Instant::now(), credentials).unwrap();
    let answer = client
        .until(|e| matches!(e, ClientEvent::Online(_) | ClientEvent::LoginFailed(_)))
        .await;
    assert!(matches!(answer, ClientEvent::Online(_)), "{answer:?}");
    drop(client);

    sessiond.start_kill().unwrap();
    out.read_to_string(&mut log).await.unwrap();
    let _ = std::fs::remove_file(&users);
    // The filter took: DEBUG lines are there (nothing of sessiond's own
    // logs at TRACE).
    assert!(log.contains("DEBUG"), "{log}");
    assert!(!log.contains("hunter2"), "{log}");
}

/// A users file with nobody in it stops `sessiond` at start, with the
/// file's name, instead of a server nobody can log in to.
#[tokio::test]
async fn an_empty_users_file_stops_it_at_start() {
    let users = std::env::temp_dir().join(format!("sessiond-empty-{}.users", std::process::id()));
    std::fs::write(&users, "# nobody yet\n").unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args(["--tcp", "127.0.0.1:0", "--ws", "off"])
        .arg("--users")
        .arg(&users)
        .output();
    let output = tokio::time::timeout(SOON, run).await.unwrap().unwrap();
    let _ = std::fs::remove_file(&users);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("has no users"), "{stderr}");
    assert!(stderr.contains(&*users.to_string_lossy()), "{stderr}");
}

/// Starts `sessiond` for 1,000 connections (1,064 descriptors) under
/// `ulimit`, a shell's `ulimit` arguments; returns its open-file limits
/// (`/proc/PID/limits`' line: soft, hard) and its log up to "sessiond is
/// up", then stops it.
async fn start_under(ulimit: &str) -> ((String, String), String) {
    let sessiond = env!("CARGO_BIN_EXE_sessiond");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit {ulimit} && exec '{sessiond}' --tcp 127.0.0.1:0 --ws off --max-connections 1000"
        ))
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut log = String::new();
    tokio::time::timeout(SOON, async {
        while !log.contains("sessiond is up") {
            assert!(out.read_line(&mut log).await.unwrap() > 0, "{log}");
        }
    })
    .await
    .expect("sessiond starts");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    child.start_kill().unwrap();
    (open_files(&limits), log)
}

/// The soft and hard limits of "Max open files  <soft>  <hard>  files".
fn open_files(limits: &str) -> (String, String) {
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("{limits}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_owned(), fields[4].to_owned())
}

/// A soft open-file limit below what `max_connections` needs, under a
/// hard one that allows it, is raised as far as needed: `sessiond` says so,
/// has no cap to report, and the process's limit is the new one.
#[tokio::test]
async fn a_low_soft_open_file_limit_is_raised() {
    // Only the soft limit: the hard one (20,000 here, far more on most
    // machines) stays above the 1,064 descriptors asked for.
    let ((soft, hard), log) = start_under("-Sn 256").await;
    assert!(log.contains("raised the open-file limit"), "{log}");
    // As far as needed, not to the hard limit; unless the hard limit is
    // lower (not on this project's machines), when the cap is reported.
    let (_, own_hard) = open_files(&std::fs::read_to_string("/proc/self/limits").unwrap());
    if own_hard.parse::<u64>().is_ok_and(|hard| hard < 1064) {
        assert_eq!(soft, hard, "{log}");
        assert!(log.contains("caps connections"), "{log}");
    } else {
        assert_eq!(soft, "1064", "{log}");
        assert!(!log.contains("caps connections"), "{log}");
    }
}

/// Under an open-file limit below what `max_connections` needs, it says so
/// at start (it used to say nothing, then log "accept failed" every 50 ms
/// once the limit was reached).
#[tokio::test]
async fn an_open_file_limit_below_max_connections_is_reported() {
    // Soft and hard: there is nothing to raise.
    let ((soft, hard), log) = start_under("-n 256").await;
    assert_eq!((soft.as_str(), hard.as_str()), ("256", "256"), "{log}");
    assert!(log.contains("open-file limit"), "{log}");
    assert!(!log.contains("raised"), "{log}");
}
