//! Accepting and running the HTTP connections of a listener, with the limits a server
//! reachable by strangers needs: at most `max_connections` at once (beyond that the
//! listener stops accepting until one closes, so file descriptors are never exhausted), a
//! deadline for each request's headers that also closes idle keep-alive connections, and a
//! shutdown that stops accepting, lets in-flight requests finish for at most `grace`, then
//! drops whatever is still open, so a stalled client cannot hold the process (and its
//! shutdown snapshot) hostage.
//!
//! Not here: routing and handlers (`server`), the body's read deadline (`server::read_body`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// Limits on the connections of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Time for a request's headers to arrive, counted from the end of the previous
    /// response on a kept-alive connection (so it is also the idle timeout).
    pub header_timeout: Duration,
    /// After shutdown begins, how long in-flight requests may take before their
    /// connections are dropped.
    pub grace: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            header_timeout: Duration::from_secs(30),
            grace: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then shuts down as described in
/// the module comment.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break, // never closed; here for completeness
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or the like: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let mut closing = closing_rx.clone();
        connections.spawn(async move {
            let _permit = permit;
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(limits.header_timeout)
                .keep_alive_timeout(limits.header_timeout);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let ended = tokio::select! {
                result = conn.as_mut() => Some(result),
                () = async { let _ = closing.wait_for(|c| *c).await; } => None,
            };
            let result = match ended {
                Some(result) => result,
                None => {
                    // Finish the request in progress (if any), then close.
                    conn.as_mut().graceful_shutdown();
                    conn.as_mut().await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
        // Reap finished connections so the set does not grow with the server's uptime.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let drained = tokio::time::timeout(limits.grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            grace_secs = limits.grace.as_secs_f64(),
            "connections still open after the shutdown grace period; dropping them"
        );
        connections.shutdown().await;
    }
    Ok(())
}
