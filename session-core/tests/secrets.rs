//! `Debug` output never carries a credential or a resume token: not the
//! sessions' (which an application may log whole), not their events, at
//! any point of a login and a resume.

mod common;

use bytes::Bytes;
use common::{SECRET, World};

/// Every way `Debug` could print `secret`: as `Bytes`, as a slice of
/// numbers, as text.
fn leaks(text: &str, secret: &[u8]) -> bool {
    let numbers = format!("{secret:?}");
    text.contains(&format!("{:?}", Bytes::copy_from_slice(secret)))
        || text.contains(&numbers[1..numbers.len() - 1])
        || std::str::from_utf8(secret).is_ok_and(|s| text.contains(s))
}

/// The `Debug` text of everything either side holds or reported.
fn everything(world: &World, c: usize) -> String {
    let client = &world.clients[c];
    let mut text = format!("{:?}\n{:?}\n", client.session, client.events);
    for slot in &world.slots {
        text += &format!("{:?}\n{:?}\n", slot.session, slot.events);
    }
    text
}

#[test]
fn debug_output_never_shows_a_credential_or_a_resume_token() {
    let mut world = World::standard();
    let c = world.add_client();
    world.connect(c);
    let now = world.now;
    world.clients[c]
        .session
        .login(now, World::credentials("alice", "web", SECRET))
        .unwrap();
    // The login frame waits in the client's outbox.
    let pending = everything(&world, c);
    assert!(!leaks(&pending, SECRET), "{pending}");

    world.settle();
    let first_token = world.clients[c].last_token.clone().expect("logged in");
    let online = everything(&world, c);
    assert!(!leaks(&online, SECRET), "{online}");
    assert!(!leaks(&online, &first_token), "{online}");
    // The server kept the request it authenticated, and it shows.
    assert!(online.contains("LoginRequested"), "{online}");

    // A resume: the old token travels in the `Login`, the server keeps it
    // as the previous one, and a new one is issued.
    world.reset(c);
    world.connect(c);
    let now = world.now;
    world.clients[c].session.resume(now).unwrap();
    let resuming = everything(&world, c);
    assert!(!leaks(&resuming, &first_token), "{resuming}");
    world.settle();
    let second_token = world.clients[c].last_token.clone().unwrap();
    assert_ne!(first_token, second_token);
    let resumed = everything(&world, c);
    for secret in [SECRET, &first_token[..], &second_token[..]] {
        assert!(!leaks(&resumed, secret), "{resumed}");
    }
    assert!(resumed.contains("<redacted>"), "{resumed}");
}
