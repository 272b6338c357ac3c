//! The listening socket and the workers: each worker has its own read-only connection and
//! takes requests until told to stop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::store::Store;
use crate::ui::routes::{self, Reply, Req};
use crate::ui::{check_token, UiConfig, UiError};

/// Requests served at once (each worker holds one SQLite connection).
const WORKERS: usize = 4;

/// A bound server, not yet serving.
pub struct Ui {
    server: Arc<tiny_http::Server>,
    bound: SocketAddr,
    cfg: UiConfig,
}

impl Ui {
    /// Checks the token rules and binds `cfg.listen`.
    pub fn bind(cfg: UiConfig) -> Result<Ui, UiError> {
        check_token(cfg.listen, cfg.token.as_deref())?;
        let server = tiny_http::Server::http(cfg.listen).map_err(|e| UiError::Bind {
            addr: cfg.listen,
            why: e.to_string(),
        })?;
        let bound = server.server_addr().to_ip().ok_or_else(|| UiError::Bind {
            addr: cfg.listen,
            why: "not an IP socket".into(),
        })?;
        Ok(Ui {
            server: Arc::new(server),
            bound,
            cfg,
        })
    }

    /// The address bound (the port chosen when 0 was asked).
    pub fn bound(&self) -> SocketAddr {
        self.bound
    }

    /// The URL to open, with the token when there is one.
    pub fn url(&self) -> String {
        let host = if self.bound.ip().is_unspecified() {
            crate::capture::host::hostname()
        } else {
            match self.bound.ip() {
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                v4 => v4.to_string(),
            }
        };
        let mut url = format!("http://{host}:{}/", self.bound.port());
        if let Some(t) = &self.cfg.token {
            url.push_str(&format!("?token={t}"));
        }
        url
    }

    /// Serves until `stop` is raised; returns once every worker has finished its request.
    pub fn serve(self, stop: &'static AtomicBool) {
        let done = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for _ in 0..WORKERS {
            let server = Arc::clone(&self.server);
            let done = Arc::clone(&done);
            let cfg = self.cfg.clone();
            let bound = self.bound;
            workers.push(std::thread::spawn(move || {
                worker(&server, &cfg, bound, &done)
            }));
        }
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
        }
        done.store(true, Ordering::SeqCst);
        for _ in 0..WORKERS {
            self.server.unblock();
        }
        for w in workers {
            let _ = w.join();
        }
    }
}

fn worker(server: &tiny_http::Server, cfg: &UiConfig, bound: SocketAddr, done: &AtomicBool) {
    // Opened lazily and again after a failure (the database may be replaced, or busy).
    let mut store: Option<Store> = None;
    while !done.load(Ordering::SeqCst) {
        let request = match server.recv_timeout(Duration::from_millis(250)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(_) => break,
        };
        let req = read(&request);
        let reply = match &store {
            Some(s) => routes::handle(cfg, bound, s, &req),
            None => match Store::open_read_only(&cfg.db) {
                Ok(s) => {
                    let r = routes::handle(cfg, bound, &s, &req);
                    store = Some(s);
                    r
                }
                Err(e) => {
                    let e = crate::ui::api::ApiError::from(e);
                    let mut r = Reply {
                        status: 503,
                        content_type: "application/json",
                        body: serde_json::to_vec_pretty(&e.to_json()).expect("json"),
                        file: None,
                        headers: Vec::new(),
                    };
                    r.body.push(b'\n');
                    r
                }
            },
        };
        let _ = request.respond(response(reply));
    }
}

fn read(request: &tiny_http::Request) -> Req {
    let header = |name: &'static str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.equiv(name))
            .map(|h| h.value.as_str().to_string())
    };
    Req {
        method: request.method().as_str().to_ascii_uppercase(),
        url: request.url().to_string(),
        host: header("Host"),
        cookie: header("Cookie"),
    }
}

fn response(reply: Reply) -> tiny_http::Response<Box<dyn std::io::Read + Send>> {
    let headers: Vec<tiny_http::Header> = reply
        .all_headers()
        .iter()
        .filter_map(|(k, v)| tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).ok())
        .collect();
    // A kept output is streamed from its object file, never held in memory.
    let (data, len): (Box<dyn std::io::Read + Send>, usize) = match reply.file {
        Some((f, n)) => (f, n as usize),
        None => {
            let n = reply.body.len();
            (Box::new(std::io::Cursor::new(reply.body)), n)
        }
    };
    tiny_http::Response::new(reply.status.into(), headers, data, Some(len), None)
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM raise the returned flag instead of ending the process, so the
/// server finishes the requests in flight and exits 0.
pub fn stop_on_signals() -> &'static AtomicBool {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
    }
    &STOP
}
