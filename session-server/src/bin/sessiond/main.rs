//! `sessiond`: the session server on embedded defaults (TCP on
//! 127.0.0.1:7700, WebSocket on 127.0.0.1:7701 at `/session`, the demo users
//! and the demo application), configurable by flags and a TOML file.

mod settings;

use std::process::ExitCode;

use session_server::demo::{DEMO_USERS, DemoApp, LOAD_PASSWORD, UserTable};
use session_server::{Server, ServerOptions};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let settings = match settings::Settings::load() {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("sessiond: {message}");
            return ExitCode::from(2);
        }
    };
    init_log(settings.log.as_deref().unwrap_or("info"));
    // Built once; an error is reported by `run`, as any other setting's.
    let options = settings.options();
    // Before any thread starts: see `reserve_descriptors`. A few more than
    // the connections, for the listeners and the log.
    if let Ok(options) = &options {
        let wanted = options.max_connections.saturating_add(64);
        // First the soft open-file limit, up to the hard one: it is often
        // 1,024, which would cap the server near a thousand connections.
        match session_server::raise_open_file_limit(wanted as u64) {
            Ok((before, after)) if after > before => {
                tracing::info!(from = before, to = after, "raised the open-file limit");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
        }
        let held = session_server::reserve_descriptors(wanted);
        tracing::debug!(held, "descriptor table grown");
        if held < wanted {
            // Past the open-file limit, accepting fails until a
            // connection closes: better said now than found in the log.
            // A warning when the operator chose `max_connections`; a note
            // when it is the default, which few machines' limits reach.
            let connections = held.saturating_sub(64);
            if settings.max_connections.is_some() {
                tracing::warn!(
                    held,
                    max_connections = options.max_connections,
                    "the open-file limit allows fewer descriptors than max_connections needs; \
                     raise it (ulimit -n) or lower --max-connections"
                );
            } else {
                tracing::info!(
                    connections,
                    "the open-file limit (ulimit -n) caps connections below max_connections"
                );
            }
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("sessiond: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings, options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sessiond: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stdout at the level `filter` asks for (an `EnvFilter`
/// directive; `info` if it does not parse, with a word on stderr).
///
/// Whatever the filter, nothing of tungstenite's below DEBUG is written:
/// at TRACE it logs every WebSocket message it reads, bytes and all, and
/// a login's message carries the password, a resume's the token.
fn init_log(filter: &str) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::{FilterExt, filter_fn};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let env = EnvFilter::try_new(filter).unwrap_or_else(|error| {
        eprintln!("sessiond: ignoring the log filter {filter:?} ({error}); logging at info");
        EnvFilter::new("info")
    });
    let no_frames = filter_fn(|meta| {
        let tungstenite = meta.target().starts_with("tungstenite")
            || meta.target().starts_with("tokio_tungstenite");
        !(tungstenite && *meta.level() == tracing::Level::TRACE)
    });
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_filter(env.and(no_frames)),
        )
        .init();
}

async fn run(
    settings: settings::Settings,
    options: Result<ServerOptions, String>,
) -> Result<(), String> {
    let options = options?;
    let listeners = settings.listeners()?;
    let users = match &settings.users {
        Some(path) => {
            let mut table = UserTable::from_file(path)
                .map_err(|e| format!("cannot read the users file {}: {e}", path.display()))?;
            table.set_load_users(settings.load_users.unwrap_or(false));
            if table.is_empty() && !settings.load_users.unwrap_or(false) {
                return Err(format!(
                    "the users file {} has no users: nobody could log in",
                    path.display()
                ));
            }
            table
        }
        None => {
            let mut table = UserTable::demo();
            table.set_load_users(settings.load_users.unwrap_or(true));
            table
        }
    };
    let demo_users = settings.users.is_none();
    let load_users = settings.load_users.unwrap_or(demo_users);

    let mut builder = Server::builder()
        .options(options)
        .authenticator(users)
        .request_handler(DemoApp);
    for listen in listeners {
        builder = builder.listen(listen);
    }
    let server = builder.start().await.map_err(|e| e.to_string())?;

    println!("sessiond is up.");
    for (scheme, addr) in server.local_addrs() {
        let path = if scheme.starts_with("ws") {
            "/session"
        } else {
            ""
        };
        let path = settings
            .ws_path
            .as_deref()
            .filter(|_| !path.is_empty())
            .unwrap_or(path);
        println!("  listening on {scheme}://{addr}{path}");
    }
    if demo_users {
        let users: Vec<String> = DEMO_USERS.iter().map(|(u, p)| format!("{u}/{p}")).collect();
        println!("  demo users (user/password): {}", users.join(", "));
    }
    if load_users {
        println!("  load users: any `load-<n>` with password `{LOAD_PASSWORD}`");
    }
    println!("  requests are echoed; `to <user> <text>` relays <text> to that user's sessions");
    if let (true, Some((scheme, addr))) = (demo_users, server.local_addrs().first()) {
        println!("  try: cargo run --bin session-cli -- {scheme}://{addr} alice alice-secret");
    }
    println!("  Ctrl-C (or SIGTERM) shuts down gracefully.");

    stop_signal().await?;
    println!("sessiond: shutting down");
    let report = server.shutdown().await;
    println!(
        "sessiond: closed {} sessions, {} connections left",
        report.sessions_closed, report.connections_left
    );
    Ok(())
}

/// Waits for Ctrl-C, or SIGTERM (what service managers send) on Unix.
async fn stop_signal() -> Result<(), String> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term =
            signal(SignalKind::terminate()).map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.map_err(|e| format!("cannot wait for Ctrl-C: {e}")),
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .map_err(|e| format!("cannot wait for Ctrl-C: {e}"))
    }
}
