//! A `redis-server` for a bench, on a free loopback port, with no persistence; it must
//! be on PATH.

use std::process::{Child, Command};

/// The server; stopped when dropped.
pub struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

/// Starts a server and waits for it; returns it and its `redis://` URL.
pub fn start() -> (Redis, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server on PATH");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    (Redis(child), format!("redis://127.0.0.1:{port}/"))
}
