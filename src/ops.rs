//! The operations listener (`--metrics-listen`): Prometheus `/metrics`, `/healthz` (the
//! process answers) and `/readyz` (listening, not draining, the sink can deliver, and no
//! Kafka client of the command flow is being rebuilt).
//!
//! HTTP/1.1 via hyper 1 (already in the tree through the Prometheus exporter): a hand-written
//! parser would be smaller, but hyper gives keep-alive, pipelining and header limits that a
//! scraper or a kubelet may exercise, with a header-read timeout and a bounded buffer. The
//! listener also caps its own connections: it shares the pod with 100k devices.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::metrics as m;
use crate::sink::Sink;

/// Connections to the operations listener at once; more are closed at once.
const MAX_CONNECTIONS: usize = 64;
/// A client must send its request head within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Histogram upkeep (draining recorded samples into buckets) interval.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Something else readiness depends on (the command flow's Kafka clients).
pub trait Check: Send + Sync + 'static {
    /// `Ok` when ready, else why not.
    fn check(&self) -> Result<(), &'static str>;
}

/// What `/readyz` looks at.
pub struct Readiness {
    listening: AtomicBool,
    draining: AtomicBool,
    sink: Arc<dyn Sink>,
    others: Mutex<Vec<Arc<dyn Check>>>,
}

impl Readiness {
    pub fn new(sink: Arc<dyn Sink>) -> Self {
        Readiness {
            listening: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            sink,
            others: Mutex::new(Vec::new()),
        }
    }

    /// Readiness also requires `check` from now on.
    pub fn require(&self, check: Arc<dyn Check>) {
        self.others
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(check);
    }

    /// The device listeners are serving.
    pub fn set_listening(&self) {
        self.listening.store(true, Ordering::SeqCst);
    }

    /// The drain started: take the pod out of the load balancer.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// `Ok` when ready, else why not.
    pub fn check(&self) -> Result<(), &'static str> {
        let r = if self.draining.load(Ordering::SeqCst) {
            Err("draining")
        } else if !self.listening.load(Ordering::SeqCst) {
            Err("not listening yet")
        } else if let Err(why) = self.sink.ready() {
            Err(why)
        } else {
            self.others
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .try_for_each(|c| c.check())
        };
        metrics::gauge!(m::READY).set(if r.is_ok() { 1.0 } else { 0.0 });
        r
    }
}

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle).
pub fn install_prometheus() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut slot = HANDLE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(h) = slot.as_ref() {
        return Ok(h.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(m::SINK_DELIVERY_SECONDS.to_string()),
            m::DELIVERY_BUCKETS,
        )?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|e| anyhow::anyhow!("installing the metrics recorder: {e}"))?;
    *slot = Some(handle.clone());
    Ok(handle)
}

/// Serves the operations endpoints on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    prometheus: PrometheusHandle,
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
) {
    if let Ok(a) = listener.local_addr() {
        info!(addr = %a, "serving /metrics, /healthz, /readyz");
    }
    let upkeep = prometheus.clone();
    let upkeep_stop = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        loop {
            tokio::select! {
                _ = upkeep_stop.cancelled() => return,
                _ = tick.tick() => upkeep.run_upkeep(),
            }
        }
    });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => match a {
                Ok(v) => v,
                Err(e) => {
                    debug!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let prometheus = prometheus.clone();
        let readiness = readiness.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let r = respond(&req, &prometheus, &readiness);
                async move { Ok::<_, Infallible>(r) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = stop.cancelled() => {}
                r = conn => if let Err(e) = r { debug!(error = %e, "metrics connection"); }
            }
            drop(slot);
        });
    }
}

fn respond(
    req: &Request<Incoming>,
    prometheus: &PrometheusHandle,
    readiness: &Readiness,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            // Refresh the readiness gauge for the scrape.
            let _ = readiness.check();
            let mut r = text(StatusCode::OK, prometheus.render());
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match readiness.check() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::memory::MemorySink;

    #[test]
    fn readiness_needs_listening_and_not_draining() {
        let r = Readiness::new(Arc::new(MemorySink::new()));
        assert_eq!(r.check(), Err("not listening yet"));
        r.set_listening();
        assert_eq!(r.check(), Ok(()));
        r.set_draining();
        assert_eq!(r.check(), Err("draining"));
    }
}
