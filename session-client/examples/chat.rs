//! A minute's tour of the client: connect, log in, make a request, receive
//! a pushed event, log out, with the lifecycle printed as it happens.
//!
//! Start a server first (`cargo run --bin sessiond`), then:
//!
//! ```text
//! cargo run -p session-client --example chat [URL]
//! ```
//!
//! URL defaults to `tcp://127.0.0.1:7700`; `ws://127.0.0.1:7701/session`
//! works too.

use futures_util::StreamExt;
use session_client::{Client, ClientListener, ClientOptions, CloseReason, Credentials, OnlineInfo};

/// Listeners are optional; each callback has an empty default.
struct Print;

impl ClientListener for Print {
    fn on_online(&self, info: &OnlineInfo) {
        println!("online: session {}", info.session_id);
    }
    fn on_offline(&self, reason: &CloseReason) {
        println!("offline: {reason}");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or("tcp://127.0.0.1:7700".into());

    // 1. Connect (network layer), then log in (session layer).
    let client = Client::connect(&url, ClientOptions::default().with_listener(Print)).await?;
    client
        .login(Credentials {
            user_id: "alice".into(),
            credential: "alice-secret".into(),
            device: "example".into(),
            ..Default::default()
        })
        .await?;

    // 2. Requests: sessiond echoes them, and relays `to <user> <text>`.
    let echo = client.request("hello").await?;
    println!("echo: {}", String::from_utf8_lossy(&echo));
    client.request("to alice a note to myself").await?;

    // 3. Pushed events arrive on a stream, in order, exactly once.
    let mut events = client
        .take_events()
        .expect("the first call gets the stream");
    if let Some(event) = events.next().await {
        println!(
            "event {}: {}",
            event.seq,
            String::from_utf8_lossy(&event.body)
        );
    }

    // 4. Log out: sent, flushed, closed; `on_offline` says "logged out".
    client.logout().await?;
    Ok(())
}
