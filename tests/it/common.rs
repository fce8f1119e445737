//! Helpers shared by the integration tests: the binary under test and the shared data.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `imgsearch` binary cargo built for these tests.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_imgsearch"))
}

/// The shared data checkout beside the repository.
pub fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

/// One of the 1,000 ImageNet sample photos.
pub fn sample(name: &str) -> PathBuf {
    shared().join("datasets/imagenet-samples").join(name)
}

/// A running `imgsearch serve` on a free port with a temporary data directory; killed
/// when dropped. `log` collects its stderr.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub log: Arc<Mutex<String>>,
    _data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server with `extra` serve flags and, when given, `IMGSEARCH_ACCESS_KEYS`.
pub fn start_server(extra: &[&str], keys: Option<&str>) -> Server {
    let data = tempfile::tempdir().unwrap();
    let mut child = bin()
        .args([
            "--inference-workers",
            "1",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .arg("--data")
        .arg(data.path())
        .env(
            "IMGSEARCH_ACCESS_KEYS",
            keys.unwrap_or("AKIDtest:secret-test-0123456789"),
        )
        .env("IMGSEARCH_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let log = log.clone();
        // Drain stderr for the whole run so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("imgsearch listening on http://") {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(addr);
                }
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
    }
    let addr = rx
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| panic!("server did not start:\n{}", log.lock().unwrap()));
    Server {
        child,
        addr,
        log,
        _data: data,
    }
}
