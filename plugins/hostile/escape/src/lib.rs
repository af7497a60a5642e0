//! Reaches for everything a sandboxed plugin must not have: files, environment,
//! arguments, sockets, the real clock and real randomness, stdin, and an hour's sleep
//! holding its host thread. It logs what it got, one `name: result` line each, so tests
//! can check that nothing useful came back.
use std::hash::BuildHasher;

use offerhost_sdk::{Bid, Features, OfferPlugin, PluginError, PluginInfo, export_plugin, info};

/// Tries to break out; reports what it saw.
pub struct Escapee;

impl OfferPlugin for Escapee {
    fn describe() -> PluginInfo {
        PluginInfo::new("hostile-escape", "0.1.0", &["general"])
    }

    fn bid(_: &Features) -> Result<Vec<Bid>, PluginError> {
        info(&format!(
            "file: {:?}",
            std::fs::read_to_string("/etc/passwd").map(|s| s.len())
        ));
        info(&format!(
            "dir: {:?}",
            std::fs::read_dir(".").map(|d| d.count())
        ));
        info(&format!(
            "write: {:?}",
            std::fs::write("/tmp/offerhost-escape", b"pwned")
        ));
        info(&format!("env: {}", std::env::vars().count()));
        info(&format!("home: {:?}", std::env::var("HOME")));
        info(&format!("args: {}", std::env::args().count()));
        info(&format!(
            "socket: {:?}",
            std::net::TcpStream::connect("127.0.0.1:22").map(|_| "connected")
        ));
        info(&format!(
            "udp: {:?}",
            std::net::UdpSocket::bind("0.0.0.0:0").map(|_| "bound")
        ));
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs());
        info(&format!("clock: {unix:?}"));
        let t0 = std::time::Instant::now();
        info(&format!("elapsed: {:?}", t0.elapsed().as_nanos()));
        std::thread::sleep(std::time::Duration::from_secs(3600));
        info(&format!("slept: {:?}", t0.elapsed().as_nanos()));
        let mut line = String::new();
        info(&format!(
            "stdin: {:?}",
            std::io::stdin().read_line(&mut line)
        ));
        println!("to stdout, which goes nowhere");
        let seed = std::collections::hash_map::RandomState::new();
        info(&format!("hash-seed: {}", seed.hash_one(1u8)));
        Ok(vec![])
    }
}

export_plugin!(Escapee);
