//! Server metrics in the Prometheus text exposition format (version 0.0.4), served at
//! `/metrics`: API requests and their latency per action and HTTP status, the embedding
//! queue (depth, batches, batch sizes, images) and database and image totals (never a tenant
//! or database name: the endpoint is unauthenticated).
//!
//! A small registry of our own: a fixed set of metric families, so no general-purpose
//! metrics crate is needed. Label values are bounded: the action label is one of the known
//! actions or `unknown`, so a client cannot grow the registry with invented names.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use crate::rules::{is_known_action, AUTHORIZE_FILE_UPLOAD, EXTENSION_ACTIONS, KNOWN_ACTIONS};
use crate::vision::embedder::{BatcherStats, BATCH_SIZE_BOUNDS};

/// Upper bounds (seconds) of the request latency buckets.
pub const LATENCY_BOUNDS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Content type of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Non-cumulative counts per bucket; the last one is `+Inf`.
    buckets: [u64; LATENCY_BOUNDS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        let i = LATENCY_BOUNDS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.buckets[i] += 1;
        self.sum += secs;
        self.count += 1;
    }
}

/// Request counters and latency histograms, keyed by (action, HTTP status).
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), Histogram>>,
}

/// The label for an action name: itself when known, else `unknown` (bounded cardinality).
pub fn action_label(action: Option<&str>) -> &'static str {
    match action {
        Some(a) if is_known_action(a) => KNOWN_ACTIONS
            .iter()
            .chain(EXTENSION_ACTIONS.iter())
            .find(|k| **k == a)
            .copied()
            .unwrap_or("unknown"),
        Some(AUTHORIZE_FILE_UPLOAD) => AUTHORIZE_FILE_UPLOAD,
        Some(POST_OBJECT_LABEL) => POST_OBJECT_LABEL,
        _ => "unknown",
    }
}

/// The label of a file upload to the bucket (`api::upload`), an OSS PostObject.
pub const POST_OBJECT_LABEL: &str = "PostObject";

/// A snapshot of everything outside the request path that `/metrics` shows.
pub struct Gauges<'a> {
    pub queue_depth: usize,
    pub batcher: &'a BatcherStats,
    /// (tenant, database, images).
    pub databases: Vec<(String, String, usize)>,
}

impl Metrics {
    /// Records one finished request.
    pub fn observe(&self, action: &'static str, status: u16, elapsed: Duration) {
        let mut map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((action, status))
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// Renders every family in the text exposition format.
    pub fn render(&self, gauges: &Gauges<'_>) -> String {
        let mut out = String::with_capacity(4096);
        let requests = {
            let map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            map.clone()
        };

        family(
            &mut out,
            "imgsearch_requests_total",
            "counter",
            "API requests answered, by action and HTTP status.",
        );
        for ((action, status), h) in &requests {
            let _ = writeln!(
                out,
                "imgsearch_requests_total{{action=\"{action}\",status=\"{status}\"}} {}",
                h.count
            );
        }

        family(
            &mut out,
            "imgsearch_request_duration_seconds",
            "histogram",
            "Time from request received to response ready, by action and HTTP status.",
        );
        for ((action, status), h) in &requests {
            let labels = format!("action=\"{action}\",status=\"{status}\"");
            let mut cumulative = 0;
            for (i, n) in h.buckets.iter().enumerate() {
                cumulative += n;
                let le = LATENCY_BOUNDS
                    .get(i)
                    .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
                let _ = writeln!(
                    out,
                    "imgsearch_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "imgsearch_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "imgsearch_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }

        family(
            &mut out,
            "imgsearch_embedding_queue_depth",
            "gauge",
            "Images waiting for the network right now.",
        );
        let _ = writeln!(
            out,
            "imgsearch_embedding_queue_depth {}",
            gauges.queue_depth
        );

        let b = gauges.batcher;
        family(
            &mut out,
            "imgsearch_embedding_images_total",
            "counter",
            "Images run through the network.",
        );
        let _ = writeln!(
            out,
            "imgsearch_embedding_images_total {}",
            b.images.load(Ordering::Relaxed)
        );
        family(
            &mut out,
            "imgsearch_embedding_batch_size",
            "histogram",
            "Images per inference batch.",
        );
        let mut cumulative = 0;
        for (i, n) in b.batch_sizes.iter().enumerate() {
            cumulative += n.load(Ordering::Relaxed);
            let le = BATCH_SIZE_BOUNDS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(
                out,
                "imgsearch_embedding_batch_size_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "imgsearch_embedding_batch_size_sum {}",
            b.images.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "imgsearch_embedding_batch_size_count {}",
            b.batches.load(Ordering::Relaxed)
        );

        // Totals only: a per-database series would name every tenant (access key id) and
        // its databases to anyone who can reach /metrics, which is unauthenticated.
        let dbs = &gauges.databases;
        family(
            &mut out,
            "imgsearch_databases",
            "gauge",
            "Image databases, all tenants together.",
        );
        let _ = writeln!(out, "imgsearch_databases {}", dbs.len());
        family(
            &mut out,
            "imgsearch_images",
            "gauge",
            "Images held, all databases together.",
        );
        let total: usize = dbs.iter().map(|(_, _, n)| n).sum();
        let _ = writeln!(out, "imgsearch_images {total}");
        family(
            &mut out,
            "imgsearch_database_images_max",
            "gauge",
            "Images in the largest database (how close one is to the ANN threshold or a cap).",
        );
        let largest = dbs.iter().map(|(_, _, n)| *n).max().unwrap_or(0);
        let _ = writeln!(out, "imgsearch_database_images_max {largest}");
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::default();
        m.observe("AddImage", 200, Duration::from_millis(30));
        m.observe("AddImage", 200, Duration::from_millis(3));
        m.observe("unknown", 404, Duration::from_secs(60));
        let stats = BatcherStats::default();
        stats.images.store(5, Ordering::Relaxed);
        stats.batches.store(2, Ordering::Relaxed);
        stats.batch_sizes[0].store(1, Ordering::Relaxed);
        stats.batch_sizes[2].store(1, Ordering::Relaxed);
        let text = m.render(&Gauges {
            queue_depth: 3,
            batcher: &stats,
            databases: vec![
                ("AKIDsecretive".into(), "db_private".into(), 7),
                ("AKIDother".into(), "other".into(), 2),
            ],
        });
        for line in [
            "imgsearch_requests_total{action=\"AddImage\",status=\"200\"} 2",
            "imgsearch_requests_total{action=\"unknown\",status=\"404\"} 1",
            "imgsearch_request_duration_seconds_bucket{action=\"AddImage\",status=\"200\",le=\"0.005\"} 1",
            "imgsearch_request_duration_seconds_bucket{action=\"AddImage\",status=\"200\",le=\"0.05\"} 2",
            "imgsearch_request_duration_seconds_bucket{action=\"unknown\",status=\"404\",le=\"30\"} 0",
            "imgsearch_request_duration_seconds_bucket{action=\"unknown\",status=\"404\",le=\"+Inf\"} 1",
            "imgsearch_request_duration_seconds_count{action=\"AddImage\",status=\"200\"} 2",
            "imgsearch_embedding_queue_depth 3",
            "imgsearch_embedding_batch_size_bucket{le=\"1\"} 1",
            "imgsearch_embedding_batch_size_bucket{le=\"2\"} 1",
            "imgsearch_embedding_batch_size_bucket{le=\"4\"} 2",
            "imgsearch_embedding_batch_size_bucket{le=\"+Inf\"} 2",
            "imgsearch_embedding_batch_size_count 2",
            "imgsearch_databases 2",
            "imgsearch_images 9",
            "imgsearch_database_images_max 7",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        // No tenant (access key id) and no database name: /metrics is unauthenticated.
        for secret in ["AKIDsecretive", "AKIDother", "db_private", "tenant="] {
            assert!(!text.contains(secret), "/metrics leaks {secret}\n{text}");
        }
        // Every sample line belongs to a declared family.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap_or("");
            let base = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                text.contains(&format!("# TYPE {name} "))
                    || text.contains(&format!("# TYPE {base} ")),
                "{l}"
            );
        }
    }

    #[test]
    fn action_labels_are_bounded() {
        assert_eq!(action_label(Some("SearchImage")), "SearchImage");
        assert_eq!(action_label(Some("GetThumbnail")), "GetThumbnail");
        assert_eq!(action_label(Some("Whatever123")), "unknown");
        assert_eq!(action_label(None), "unknown");
    }
}
