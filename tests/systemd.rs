//! systemd's service protocol, with a real notification socket: READY=1
//! only after the first tested batch is delivered, and the watchdog fed
//! while the loop waits between cycles.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn ready_after_the_first_delivery_and_the_watchdog_fed_while_waiting() {
    let dir = temp_dir();
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let src = good_file(dir.path(), 4000, 50);
    let mut cmd = bin();
    cmd.args([
        "run",
        "--listen-address",
        "127.0.0.1:0",
        "--source",
        &src,
        "--sink",
        "stdout",
    ])
    .args(["--interval", "3s"])
    .env("NOTIFY_SOCKET", &socket_path)
    // A watchdog of 400 ms: fed about every 100 ms.
    .env("WATCHDOG_USEC", "400000")
    .stdout(std::process::Stdio::null());
    let d = Daemon::start_with(&mut cmd);
    let mut messages = Vec::new();
    let until = Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 1024];
    while Instant::now() < until {
        if let Ok(n) = socket.recv(&mut buf) {
            messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    let ready = messages.iter().position(|m| m.contains("READY=1"));
    assert!(ready.is_some(), "no READY=1 in {messages:?}: {}", d.log());
    assert!(
        d.log().contains("first tested batch delivered"),
        "ready before a delivery: {}",
        d.log()
    );
    assert!(
        !messages[..ready.unwrap()]
            .iter()
            .any(|m| m.contains("READY"))
    );
    // The first cycle is over within the first moments, so most of the two
    // seconds are spent waiting for the next: the watchdog is fed meanwhile.
    let pings = messages.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(pings >= 5, "{pings} watchdog pings in 2 s: {messages:?}");
}
