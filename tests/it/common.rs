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
    /// Removed when the server is dropped, unless the caller supplied the directory.
    _data: Option<tempfile::TempDir>,
}

/// The test key pair used when a test does not bring its own.
pub const TEST_KEY: (&str, &str) = ("AKIDtest", "secret-test-0123456789");

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server with `extra` serve flags and, when given, `IMGSEARCH_ACCESS_KEYS`
/// (else [`TEST_KEY`]), on a fresh data directory.
pub fn start_server(extra: &[&str], keys: Option<&str>) -> Server {
    let data = tempfile::tempdir().unwrap();
    let mut server = start_server_in(data.path(), extra, keys);
    server._data = Some(data);
    server
}

/// As [`start_server`], on the data directory `data` (kept afterwards).
pub fn start_server_in(data: &std::path::Path, extra: &[&str], keys: Option<&str>) -> Server {
    let default_keys = format!("{}:{}", TEST_KEY.0, TEST_KEY.1);
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
        .arg(data)
        .env("IMGSEARCH_ACCESS_KEYS", keys.unwrap_or(&default_keys))
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
        _data: None,
    }
}

impl Server {
    /// SIGTERM, then waits up to 30 s for a successful exit.
    pub fn stop(&mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{status}\n{}", self.log.lock().unwrap());
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still running 30 s after SIGTERM:\n{}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
