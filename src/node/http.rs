//! The node's HTTP endpoint for operators: `GET /metrics` (the Prometheus
//! text format) and `GET /health` (`ready`, `lagging` or `stalled`; 200 when
//! ready, 503 otherwise).
//!
//! It reads at most [`MAX_REQUEST_BYTES`] of a request within
//! [`REQUEST_TIMEOUT`], serves at most [`MAX_CONNECTIONS`] connections at
//! once (more are closed at once), answers one request per connection and
//! closes it: a scraper cannot make it hold more than that.

use super::watch::{Health, Watch};
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::debug;

/// The most bytes of a request read (its request line and headers).
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// How long a client has to send its request, and to take the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// How often the recorder's histograms are maintained.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// What the endpoint serves.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) metrics: PrometheusHandle,
    pub(crate) watch: Arc<Watch>,
}

/// Serves `listener` until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, endpoint: Endpoint) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let upkeep = endpoint.metrics.clone();
    let _upkeep = AbortOnDrop(tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    }));
    loop {
        let Ok((stream, from)) = listener.accept().await else {
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%from, "metrics endpoint busy: connection closed");
            continue;
        };
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &endpoint)).await;
            drop(slot);
        });
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads one request from `stream` and answers it.
async fn answer(mut stream: TcpStream, endpoint: &Endpoint) -> std::io::Result<()> {
    let mut buf = vec![0; MAX_REQUEST_BYTES];
    let mut len = 0;
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        if len == buf.len() {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"too large\n",
            )
            .await;
        }
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(());
        }
        len += n;
    }
    let (status, kind, body) = route(&buf[..len], endpoint);
    respond(&mut stream, status, kind, body.as_bytes()).await
}

/// The answer to a request: status line, content type, body.
fn route(request: &[u8], endpoint: &Endpoint) -> (&'static str, &'static str, String) {
    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    let text = "text/plain; charset=utf-8";
    match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            endpoint.metrics.render(),
        ),
        (Some(b"GET"), Some(b"/health")) => {
            let health = endpoint.watch.health();
            let status = match health {
                Health::Ready => "200 OK",
                _ => "503 Service Unavailable",
            };
            (status, text, format!("{}\n", health.as_str()))
        }
        (Some(b"GET"), _) => ("404 Not Found", text, "/metrics or /health\n".into()),
        _ => ("405 Method Not Allowed", text, "GET only\n".into()),
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    kind: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use hologram_lattice::NodeId;
    use metrics_exporter_prometheus::PrometheusBuilder;
    use std::path::Path;

    fn endpoint() -> Endpoint {
        let recorder = PrometheusBuilder::new().build_recorder();
        let metrics = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("hologram_test_total").increment(3);
        });
        let watch = Watch::new(
            &[NodeId::from_bytes([1; 32])],
            0,
            Arc::default(),
            Path::new("."),
        );
        Endpoint { metrics, watch }
    }

    #[test]
    fn requests_are_routed_and_refused() {
        let e = endpoint();
        let (status, _, body) = route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &e);
        assert_eq!(status, "200 OK");
        assert!(body.contains("hologram_test_total 3"), "{body}");
        let (status, _, body) = route(b"GET /health HTTP/1.1\r\n\r\n", &e);
        assert_eq!((status, body.as_str()), ("200 OK", "ready\n"));
        assert_eq!(route(b"GET /nope HTTP/1.1\r\n\r\n", &e).0, "404 Not Found");
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n", &e).0,
            "405 Method Not Allowed"
        );
        assert_eq!(route(b"\x00\xff garbage", &e).0, "405 Method Not Allowed");
    }

    #[tokio::test]
    async fn an_oversized_request_is_refused_without_reading_on() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, endpoint()));
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(&vec![b'a'; MAX_REQUEST_BYTES + 100])
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = client.read_to_end(&mut answer).await;
        assert!(
            answer.starts_with(b"HTTP/1.1 431"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
        server.abort();
    }
}
