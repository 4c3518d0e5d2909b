//! What peers put in the server's log: user ids, device names and logout
//! reasons are cut and escaped, so a client can neither flood the log nor
//! forge lines in it.

mod common;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use common::{Recorder, Seen, TestClient, fast_options, start, url};
use session_core::{ClientEvent, CloseCode, CloseReason, Credentials};

/// Everything the server logs, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// The subscriber is the process's: this file holds this one test.
#[tokio::test]
async fn peer_strings_are_cut_and_escaped_in_log_lines() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .expect("the only subscriber");
    let recorder = Recorder::default();
    let server = start(fast_options(), recorder.clone()).await;
    let url = url(&server, "tcp");

    // Demo users named `load-<anything>` log in, newlines and all.
    let user = "load-1\nforged user line";
    let mut client = TestClient::connect(&url, Default::default()).await;
    client.login(user, "web\nforged device line").await;
    assert!(matches!(client.events.last(), Some(ClientEvent::Online(_))));
    // A logout's reason is the client's: here 100 KB of it.
    let reason = format!("bye\nforged reason line{}", "x".repeat(100_000));
    client.session.logout(Instant::now(), &reason).unwrap();
    assert_eq!(client.offline().await, CloseReason::LoggedOut);
    recorder
        .wait_for(|s| s.contains(&Seen::Close(user.into(), CloseCode::LoggedOut)))
        .await;

    // A rejected login logs the user id it claimed.
    let mut mallory = TestClient::connect(&url, Default::default()).await;
    let credentials = Credentials {
        user_id: "mallory\nforged rejected line".into(),
        credential: Bytes::from_static(b"guess"),
        ..Default::default()
    };
    mallory.session.login(Instant::now(), credentials).unwrap();
    mallory
        .until(|e| matches!(e, ClientEvent::LoginFailed(_)))
        .await;
    common::close_and_shut_down(server, (client, mallory)).await;

    let log = captured.text();
    // Failures show the start of the log only: it may be megabytes.
    let start = |text: &str| text.chars().take(2000).collect::<String>();
    for line in log.lines() {
        assert!(
            !line.starts_with("forged"),
            "a forged line: {:?}",
            start(line)
        );
    }
    for wanted in [
        "session opened",
        r#"user="load-1\nforged user line""#,
        r#"device="web\nforged device line""#,
        "session closed",
        r#"reason="bye\nforged reason line"#,
        &format!("... ({} bytes)", reason.len()),
        "login rejected",
        r#"user="mallory\nforged rejected line""#,
    ] {
        assert!(
            log.contains(wanted),
            "{wanted:?} not in the log:\n{}",
            start(&log)
        );
    }
    // A few lines' worth, not the reason's 100 KB.
    assert!(log.len() < 8 * 1024, "{} bytes logged", log.len());
}
