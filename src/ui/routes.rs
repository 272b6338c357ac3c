//! One request in, one reply out: the security checks (method, `Host`, token), then the route.
//! Pure of the network, so the rules are tested without a socket.

use std::net::SocketAddr;

use crate::store::Store;
use crate::ui::api::{self, ApiError};
use crate::ui::assets;
use crate::ui::UiConfig;

/// The name of the cookie that carries the token after the first `?token=`.
pub const TOKEN_COOKIE: &str = "repro_ui_token";

/// The Content-Security-Policy of every reply: nothing but this server's own files, no inline
/// script or style, no framing, no plugins.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// What a request says that the checks and routes read.
#[derive(Debug, Clone, Default)]
pub struct Req {
    pub method: String,
    /// The path and query, as sent.
    pub url: String,
    pub host: Option<String>,
    pub cookie: Option<String>,
}

/// The reply: status, content type, body (or a stream, with its exact size) and extra headers.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub file: Option<(Box<dyn std::io::Read + Send>, u64)>,
    pub headers: Vec<(&'static str, String)>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("body", &self.body.len())
            .field("file", &self.file.as_ref().map(|(_, n)| n))
            .finish()
    }
}

impl Reply {
    fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            content_type,
            body: body.into(),
            file: None,
            headers: Vec::new(),
        }
    }

    fn json(v: &serde_json::Value) -> Reply {
        let mut s = serde_json::to_string_pretty(v).expect("json");
        s.push('\n');
        Reply::new(200, "application/json", s)
    }

    fn error(e: &ApiError) -> Reply {
        let mut r = Reply::json(&e.to_json());
        r.status = e.status;
        r
    }

    fn refuse(status: u16, message: &str) -> Reply {
        Reply::error(&ApiError {
            status,
            message: message.into(),
            hint: None,
        })
    }

    /// The headers every reply carries (security, caching), then its own.
    pub fn all_headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("Content-Type", self.content_type.to_string()),
            ("Content-Security-Policy", CSP.to_string()),
            ("X-Content-Type-Options", "nosniff".to_string()),
            ("X-Frame-Options", "DENY".to_string()),
            // The token may be in the URL: never sent on to another site.
            ("Referrer-Policy", "no-referrer".to_string()),
            ("Cache-Control", "no-store".to_string()),
        ];
        h.extend(self.headers.iter().cloned());
        h
    }
}

/// The `Host` values a request may carry: the bound address and the loopback names, with the
/// bound port. Off loopback the token guards every request; bound to every address
/// (`0.0.0.0`, `::`), the name a client uses cannot be known, so any is accepted there.
pub fn host_allowed(bound: SocketAddr, host: Option<&str>) -> bool {
    if bound.ip().is_unspecified() {
        return true;
    }
    let Some(host) = host else {
        return false;
    };
    let host = host.trim().to_ascii_lowercase();
    let port = bound.port();
    let ip = match bound.ip() {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    let mut names = vec![ip];
    if bound.ip().is_loopback() {
        names.extend(["localhost", "127.0.0.1", "[::1]"].map(String::from));
    }
    names
        .iter()
        .any(|n| host == format!("{n}:{port}") || (port == 80 && host == *n))
}

/// Compares in time independent of where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn cookie_token(cookie: Option<&str>) -> Option<&str> {
    cookie?.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == TOKEN_COOKIE).then_some(v)
    })
}

/// Answers one request against the store (opened read-only).
pub fn handle(cfg: &UiConfig, bound: SocketAddr, store: &Store, req: &Req) -> Reply {
    if req.method != "GET" && req.method != "HEAD" {
        let mut r = Reply::refuse(405, "only GET and HEAD: this page is read-only");
        r.headers.push(("Allow", "GET, HEAD".into()));
        return r;
    }
    if !host_allowed(bound, req.host.as_deref()) {
        return Reply::refuse(403, "this Host is not the address repro ui listens on");
    }
    let (path, query) = req.url.split_once('?').unwrap_or((&req.url, ""));
    let params = api::parse_params(query);
    let mut set_cookie = None;
    if let Some(token) = &cfg.token {
        let given = params
            .iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.as_str());
        let ok = |t: Option<&str>| t.is_some_and(|t| same_secret(t.as_bytes(), token.as_bytes()));
        if ok(given) {
            set_cookie = Some(format!(
                "{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
            ));
        } else if !ok(cookie_token(req.cookie.as_deref())) {
            return Reply::refuse(
                401,
                "a token is required: open the URL repro ui printed (it ends in ?token=…)",
            );
        }
    }
    let mut reply = route(cfg, store, path, &params);
    if let Some(c) = set_cookie {
        reply.headers.push(("Set-Cookie", c));
    }
    reply
}

/// A run id from the URL as it may appear in a file name (letters and digits only).
fn file_id(id: &str) -> String {
    id.chars().filter(|c| c.is_ascii_alphanumeric()).collect()
}

fn route(cfg: &UiConfig, store: &Store, path: &str, params: &api::Params) -> Reply {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let result = match segments.as_slice() {
        [""] | ["runs"] | ["run", _] | ["compare"] | ["images"] | ["datasets"] => {
            return Reply::new(200, assets::INDEX.content_type, assets::INDEX.body)
        }
        ["assets", name] => {
            return match assets::get(name) {
                Some(a) => Reply::new(200, a.content_type, a.body),
                None => Reply::refuse(404, "no such file"),
            }
        }
        ["api", "runs"] => api::runs_request(params)
            .and_then(|r| api::runs(store, &r))
            .map(|v| Reply::json(&v)),
        ["api", "runs", id] => api::run(store, id, params).map(|v| Reply::json(&v)),
        ["api", "runs", id, "script"] => api::script(store, id, &cfg.script).map(|s| {
            let mut r = Reply::new(200, "text/plain; charset=utf-8", s);
            r.headers.push((
                "Content-Disposition",
                format!("inline; filename=\"rerun-{}.sh\"", file_id(id)),
            ));
            r
        }),
        ["api", "runs", id, "patch"] => api::patch(store, id).map(|p| {
            let mut r = Reply::new(200, "text/plain; charset=utf-8", p);
            r.headers.push((
                "Content-Disposition",
                format!("inline; filename=\"{}.patch\"", file_id(id)),
            ));
            r
        }),
        ["api", "runs", id, "provenance"] => api::provenance(store, id).map(|v| Reply::json(&v)),
        ["api", "runs", id, "outputs", n] => api::output(store, id, n).map(|d| {
            let kind = if d.reader_is_tar {
                "application/x-tar"
            } else {
                "application/octet-stream"
            };
            let mut r = Reply::new(200, kind, Vec::new());
            let safe: String = d
                .name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' })
                .collect();
            r.headers.push((
                "Content-Disposition",
                format!("attachment; filename=\"{safe}\""),
            ));
            r.file = Some((d.reader, d.bytes));
            r
        }),
        ["api", "chart.svg"] => {
            api::chart(store, params).map(|s| Reply::new(200, "image/svg+xml", s))
        }
        ["api", "images"] => api::images(store).map(|v| Reply::json(&v)),
        ["api", "audit"] => api::audit(store, params, cfg).map(|v| Reply::json(&v)),
        ["api", "datasets"] => api::datasets(store).map(|v| Reply::json(&v)),
        ["api", "metric-keys"] => api::metric_keys(&cfg.db).map(|v| Reply::json(&v)),
        _ => Err(ApiError {
            status: 404,
            message: format!("no page at {}", crate::sanitize::escape(path)),
            hint: Some("the pages: /, /run/ID, /compare?id=A&id=B, /images, /datasets; the API: /api/runs, /api/runs/ID, /api/images, /api/datasets (docs/ui.md)".into()),
        }),
    };
    match result {
        Ok(r) => r,
        Err(e) => Reply::error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(token: Option<&str>) -> UiConfig {
        UiConfig {
            listen: "127.0.0.1:8123".parse().unwrap(),
            token: token.map(String::from),
            db: ":memory:".into(),
            script: Default::default(),
        }
    }

    fn get(url: &str, host: &str) -> Req {
        Req {
            method: "GET".into(),
            url: url.into(),
            host: Some(host.into()),
            cookie: None,
        }
    }

    #[test]
    fn hosts_are_the_bound_address_or_loopback_names() {
        let lo: SocketAddr = "127.0.0.1:8123".parse().unwrap();
        for ok in [
            "127.0.0.1:8123",
            "localhost:8123",
            "LOCALHOST:8123",
            "[::1]:8123",
        ] {
            assert!(host_allowed(lo, Some(ok)), "{ok}");
        }
        for bad in [
            "evil.example:8123",
            "127.0.0.1:80",
            "localhost",
            "",
            "127.0.0.1:81234",
        ] {
            assert!(!host_allowed(lo, Some(bad)), "{bad}");
        }
        assert!(!host_allowed(lo, None));
        let lan: SocketAddr = "10.1.2.3:9000".parse().unwrap();
        assert!(host_allowed(lan, Some("10.1.2.3:9000")));
        assert!(!host_allowed(lan, Some("localhost:9000")));
    }

    #[test]
    fn only_get_and_head_from_the_right_host_with_the_token() {
        let store = Store::open_in_memory().unwrap();
        let c = cfg(None);
        let bound = c.listen;
        let mut post = get("/api/runs", "127.0.0.1:8123");
        post.method = "POST".into();
        assert_eq!(handle(&c, bound, &store, &post).status, 405);
        assert_eq!(
            handle(&c, bound, &store, &get("/", "rebind.example:8123")).status,
            403
        );
        let ok = handle(&c, bound, &store, &get("/", "localhost:8123"));
        assert_eq!(ok.status, 200);
        let h = ok.all_headers();
        assert!(h.contains(&("Content-Security-Policy", CSP.to_string())));
        assert!(h.contains(&("X-Content-Type-Options", "nosniff".to_string())));

        let c = cfg(Some("0123456789abcdef"));
        assert_eq!(
            handle(&c, bound, &store, &get("/api/runs", "localhost:8123")).status,
            401
        );
        let bad = get("/api/runs?token=0123456789abcdeX", "localhost:8123");
        assert_eq!(handle(&c, bound, &store, &bad).status, 401);
        let first = handle(
            &c,
            bound,
            &store,
            &get("/?token=0123456789abcdef", "localhost:8123"),
        );
        assert_eq!(first.status, 200);
        let cookie = first
            .headers
            .iter()
            .find(|(k, _)| *k == "Set-Cookie")
            .map(|(_, v)| v.split(';').next().unwrap().to_string())
            .unwrap();
        let mut next = get("/api/runs", "localhost:8123");
        next.cookie = Some(format!("other=1; {cookie}"));
        assert_eq!(handle(&c, bound, &store, &next).status, 200);
    }

    #[test]
    fn bad_parameters_are_400_naming_them() {
        let store = Store::open_in_memory().unwrap();
        let c = cfg(None);
        for (url, says) in [
            ("/api/runs?sort=size", "'size'"),
            ("/api/runs?status=done", "'done'"),
            ("/api/runs?limit=0", "limit=0"),
            ("/api/runs?bogus=1", "'bogus'"),
            ("/api/runs?offset=x", "offset=x"),
        ] {
            let r = handle(&c, c.listen, &store, &get(url, "localhost:8123"));
            assert_eq!(r.status, 400, "{url}");
            let body = String::from_utf8(r.body).unwrap();
            assert!(body.contains(says), "{url}: {body}");
        }
        let r = handle(
            &c,
            c.listen,
            &store,
            &get("/api/runs/01zzzzzzzz", "localhost:8123"),
        );
        assert_eq!(r.status, 404);
    }
}
