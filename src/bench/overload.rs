//! `imgsearch bench overload`: a running server under more image requests than it can
//! serve. `--clients` signed SearchImage calls are kept in flight for `--seconds`, each
//! uploading the same photo (ImageContent); the run reports answers per second, how many
//! were 503 and how fast those came back, the latency of the successful ones, and the
//! server's peak resident memory (`VmHWM` of `--server-pid`, read from /proc, so the client
//! must run on the same machine). Start the server yourself, with the settings to measure.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine as _;
use serde_json::json;

use super::round1;
use crate::remote::client::{Client, Endpoint};
use crate::signing::SignatureStyle;

#[derive(Debug, clap::Args)]
pub struct OverloadBench {
    /// The server, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    endpoint: String,
    #[arg(long, env = "IMGSEARCH_ACCESS_KEY_ID")]
    access_key_id: String,
    #[arg(long, env = "IMGSEARCH_ACCESS_KEY_SECRET")]
    access_key_secret: String,
    /// The server's process id, for its peak RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The photo every request uploads (JPEG/PNG within the API's limits).
    #[arg(long)]
    image: PathBuf,
    /// Requests kept in flight.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Database searched (created when missing).
    #[arg(long, default_value = "overload")]
    db: String,
}

#[derive(Default)]
struct Tally {
    ok: Vec<f64>,
    busy: Vec<f64>,
    other: Vec<String>,
}

pub fn run(b: OverloadBench) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(&b.image).with_context(|| format!("reading {}", b.image.display()))?;
    let content = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let endpoint = Endpoint::parse(&b.endpoint)?;
    let client = Client::new(
        endpoint,
        &b.access_key_id,
        &b.access_key_secret,
        SignatureStyle::V3,
    )?
    .with_timeout(Duration::from_secs(120));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let rss_before = b.server_pid.and_then(|p| status_kib(p, "VmRSS:"));
    let (tally, wall) = runtime.block_on(async {
        // Fails harmlessly when the database exists; a real problem shows in the searches.
        let _ = client.call("CreateImageDb", &[("Name", &b.db)]).await;
        let (client, content) = (Arc::new(client), Arc::new(content));
        let deadline = Instant::now() + Duration::from_secs_f64(b.seconds);
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..b.clients {
            let (client, content, db) = (client.clone(), content.clone(), b.db.clone());
            tasks.spawn(async move {
                let mut t = Tally::default();
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    let r = client
                        .call(
                            "SearchImage",
                            &[("DbName", &db), ("ImageContent", &content), ("Limit", "5")],
                        )
                        .await;
                    let ms = sent.elapsed().as_secs_f64() * 1e3;
                    match r {
                        Ok(_) => t.ok.push(ms),
                        Err(e) if e.code() == Some("ServiceUnavailable") => t.busy.push(ms),
                        Err(e) => t.other.push(e.to_string()),
                    }
                }
                t
            });
        }
        let mut all = Tally::default();
        while let Some(t) = tasks.join_next().await {
            let t = t.unwrap_or_default();
            all.ok.extend(t.ok);
            all.busy.extend(t.busy);
            all.other.extend(t.other);
        }
        (all, started.elapsed().as_secs_f64())
    });
    let peak = b.server_pid.and_then(|p| status_kib(p, "VmHWM:"));
    let report = json!({
        "bench": "overload",
        "clients": b.clients,
        "seconds": round1(wall),
        "image_bytes": bytes.len(),
        "ok": tally.ok.len(),
        "ok_per_s": round1(tally.ok.len() as f64 / wall),
        "ok_latency_ms": percentiles(&mut tally.ok.clone()),
        "busy_503": tally.busy.len(),
        "busy_latency_ms": percentiles(&mut tally.busy.clone()),
        "other_errors": tally.other.len(),
        "first_other_error": tally.other.first(),
        "server_rss_mib_before": rss_before.map(|k| round1(k as f64 / 1024.0)),
        "server_peak_rss_mib": peak.map(|k| round1(k as f64 / 1024.0)),
    });
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// p50 / p90 / p99 of `v` (milliseconds), or null when empty.
fn percentiles(v: &mut [f64]) -> serde_json::Value {
    if v.is_empty() {
        return serde_json::Value::Null;
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| round1(v[((v.len() - 1) as f64 * q) as usize]);
    json!({"p50": at(0.5), "p90": at(0.9), "p99": at(0.99)})
}

/// A `kB` field of `/proc/PID/status` (e.g. `VmHWM:`, the peak resident set).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
