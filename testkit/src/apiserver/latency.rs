//! An optional latency model, so that timings measured against the test API server (which
//! answers in microseconds) can be compared with a real one.
//!
//! Off by default. A model has three delays: one per TLS handshake (slept when a TLS
//! connection is accepted, before the handshake), one per read (GET, HEAD, OPTIONS) and one
//! per write (POST, PUT, PATCH, DELETE), each slept before the request is answered; a watch
//! pays the read delay once, before its response starts, and none per event.
//!
//! Turn it on from code with [`super::ApiServer::start_with_latency`] or
//! [`super::ApiServer::set_latency`], or for a whole test or bench process with the
//! environment variable [`ENV`] (`HEAL_APISERVER_LATENCY`):
//!
//! - `off` (or empty): no delays (the default);
//! - `kube-apiserver-1.36`: [`Latency::KUBE_APISERVER_1_36`];
//! - `handshake=4ms,read=2ms,write=5ms`: custom delays (any subset, the rest 0; units `s`,
//!   `ms`, `us`, `ns`; a bare number is milliseconds).
//!
//! Any other value panics, naming the variable.
//!
//! The server also records how long it spent on each TLS handshake and each request
//! ([`Served`], injected delays included), so a benchmark can take the server's share out
//! of a client's wall time ([`busy`]).

use std::fmt;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The environment variable that turns the model on for any process starting a test API
/// server with [`super::ApiServer::start`].
pub const ENV: &str = "HEAL_APISERVER_LATENCY";

/// Delays the test API server adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Latency {
    /// Per TLS handshake.
    pub handshake: Duration,
    /// Per read (GET, HEAD, OPTIONS; a watch once, before its response).
    pub read: Duration,
    /// Per write (POST, PUT, PATCH, DELETE).
    pub write: Duration,
}

impl Latency {
    /// No delays (the default).
    pub const OFF: Latency = Latency {
        handshake: Duration::ZERO,
        read: Duration::ZERO,
        write: Duration::ZERO,
    };

    /// As measured on a real kube-apiserver 1.36 (etcd, token authentication, a verified
    /// serving certificate): a TLS handshake about 4 ms, a read about 2 ms, a write about
    /// 5 ms.
    pub const KUBE_APISERVER_1_36: Latency = Latency {
        handshake: Duration::from_millis(4),
        read: Duration::from_millis(2),
        write: Duration::from_millis(5),
    };

    /// Whether every delay is zero.
    pub fn is_off(&self) -> bool {
        *self == Latency::OFF
    }

    /// The delay before answering a request with this method.
    pub fn for_method(&self, method: &str) -> Duration {
        if is_write(method) {
            self.write
        } else {
            self.read
        }
    }

    /// Parse a value of [`ENV`] (see the module documentation).
    pub fn parse(text: &str) -> Result<Latency, String> {
        let text = text.trim();
        match text.to_ascii_lowercase().as_str() {
            "" | "off" | "none" | "0" => return Ok(Latency::OFF),
            "kube-apiserver-1.36" => return Ok(Latency::KUBE_APISERVER_1_36),
            _ => {}
        }
        let mut model = Latency::OFF;
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not KEY=DURATION"))?;
            let d = parse_duration(value.trim())?;
            match key.trim().to_ascii_lowercase().as_str() {
                "handshake" | "tls" => model.handshake = d,
                "read" => model.read = d,
                "write" => model.write = d,
                other => {
                    return Err(format!(
                        "unknown delay {other:?} (known: handshake, read, write)"
                    ));
                }
            }
        }
        Ok(model)
    }

    /// The model [`ENV`] names, [`Latency::OFF`] when it is unset.
    ///
    /// # Panics
    /// When the variable is set to something [`Latency::parse`] rejects.
    pub fn from_env() -> Latency {
        match std::env::var(ENV) {
            Ok(v) => Latency::parse(&v).unwrap_or_else(|e| {
                panic!(
                    "{ENV}={v:?}: {e}; expected `off`, `kube-apiserver-1.36` or delays like \
                     `handshake=4ms,read=2ms,write=5ms`"
                )
            }),
            Err(std::env::VarError::NotPresent) => Latency::OFF,
            Err(e) => panic!("{ENV}: {e}"),
        }
    }

    /// What a figure measured against a server with this model was measured against:
    /// "test API server, no latency", or "test API server with the kube-apiserver 1.36
    /// latency model: handshake 4 ms, read 2 ms, write 5 ms".
    pub fn describe(&self) -> String {
        if self.is_off() {
            return "test API server, no latency".to_string();
        }
        let name = if *self == Latency::KUBE_APISERVER_1_36 {
            "the kube-apiserver 1.36 latency model"
        } else {
            "a custom latency model"
        };
        format!("test API server with {name}: {self}")
    }
}

impl fmt::Display for Latency {
    /// `handshake 4 ms, read 2 ms, write 5 ms` (or `off`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_off() {
            return write!(f, "off");
        }
        write!(
            f,
            "handshake {}, read {}, write {}",
            show(self.handshake),
            show(self.read),
            show(self.write)
        )
    }
}

fn show(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms.fract() == 0.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms} ms")
    }
}

fn is_write(method: &str) -> bool {
    ["POST", "PUT", "PATCH", "DELETE"]
        .iter()
        .any(|m| m.eq_ignore_ascii_case(method))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 4ms"))?;
    let scale = match unit.trim() {
        "" | "ms" => 1e-3,
        "s" => 1.0,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        other => return Err(format!("{text:?}: unknown unit {other:?} (s, ms, us, ns)")),
    };
    Duration::try_from_secs_f64(n * scale).map_err(|e| format!("{text:?}: {e}"))
}

/// What the server spent time on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// A TLS handshake: the injected delay and the server's part (from reading the
    /// ClientHello to sending its first flight; the client's certificate check is not in it).
    Handshake,
    /// A read (GET, HEAD, OPTIONS), a watch until its response started.
    Read,
    /// A write (POST, PUT, PATCH, DELETE).
    Write,
}

/// One stretch of server time, injected delay included.
#[derive(Debug, Clone, Copy)]
pub struct Served {
    /// What it was.
    pub work: Work,
    /// When the server started on it.
    pub start: Instant,
    /// When its answer (or, for a handshake, the server's first flight) was ready.
    pub end: Instant,
    /// The model's delay within it.
    pub injected: Duration,
}

impl Served {
    /// `end - start`.
    pub fn took(&self) -> Duration {
        self.end.saturating_duration_since(self.start)
    }
}

/// The time during which the server was working on at least one of `served` (the union of
/// their stretches, so that concurrent requests count once): what a client that waited for
/// all of them spent waiting for the server.
pub fn busy(served: &[Served]) -> Duration {
    let mut spans: Vec<(Instant, Instant)> = served.iter().map(|s| (s.start, s.end)).collect();
    spans.sort();
    let mut total = Duration::ZERO;
    let mut current: Option<(Instant, Instant)> = None;
    for (start, end) in spans {
        match &mut current {
            Some((_, e)) if start <= *e => *e = (*e).max(end),
            _ => {
                if let Some((s, e)) = current.take() {
                    total += e.saturating_duration_since(s);
                }
                current = Some((start, end));
            }
        }
    }
    if let Some((s, e)) = current {
        total += e.saturating_duration_since(s);
    }
    total
}

/// The model in force and the server time recorded so far (one per server).
#[derive(Debug, Default)]
pub struct Timing {
    model: Mutex<Latency>,
    served: Mutex<Vec<Served>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Timing {
    /// Timing with `model` in force.
    pub fn new(model: Latency) -> Timing {
        Timing {
            model: Mutex::new(model),
            served: Mutex::new(Vec::new()),
        }
    }

    /// The model in force.
    pub fn model(&self) -> Latency {
        *locked(&self.model)
    }

    /// Put `model` in force (for connections and requests from now on).
    pub fn set_model(&self, model: Latency) {
        *locked(&self.model) = model;
    }

    /// Note one stretch of server time.
    pub fn record(&self, served: Served) {
        locked(&self.served).push(served);
    }

    /// Everything recorded so far, in the order the stretches ended.
    pub fn served(&self) -> Vec<Served> {
        locked(&self.served).clone()
    }

    /// Everything recorded so far, forgetting it.
    pub fn take(&self) -> Vec<Served> {
        std::mem::take(&mut *locked(&self.served))
    }

    /// Sleep for the request's delay, run `answer`, and record the time it all took.
    pub async fn request<T>(&self, method: &str, answer: impl Future<Output = T>) -> T {
        let start = Instant::now();
        let delay = self.model().for_method(method);
        pause(delay).await;
        let out = answer.await;
        self.record(Served {
            work: if is_write(method) {
                Work::Write
            } else {
                Work::Read
            },
            start,
            end: Instant::now(),
            injected: delay,
        });
        out
    }
}

/// Sleep for `d`, to within a few tens of microseconds: tokio's timer rounds up to the next
/// millisecond, which would add about half a millisecond to every delay, so the sleep is a
/// thread's, on the blocking pool.
pub async fn pause(d: Duration) {
    if d.is_zero() {
        return;
    }
    if tokio::task::spawn_blocking(move || std::thread::sleep(d))
        .await
        .is_err()
    {
        tokio::time::sleep(d).await;
    }
}

/// A stream that notes when it first delivered data and first accepted data, to time the
/// server's part of a TLS handshake.
pub(crate) struct Timed<S> {
    inner: S,
    pub(crate) first_read: Option<Instant>,
    pub(crate) first_write: Option<Instant>,
}

impl<S> Timed<S> {
    pub(crate) fn new(inner: S) -> Timed<S> {
        Timed {
            inner,
            first_read: None,
            first_write: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.first_read.is_none() && buf.filled().len() > before {
            self.first_read = Some(Instant::now());
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Timed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.first_write.is_none() {
            self.first_write = Some(Instant::now());
        }
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.first_write.is_none() {
            self.first_write = Some(Instant::now());
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
