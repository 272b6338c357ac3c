//! A real MLflow tracking server (PyPI `mlflow[auth]` in a venv cached under `target/`), started
//! once per test binary on a free loopback port and stopped by process group when the tests end.
//! One of them keeps its artifacts in S3 — PyPI `moto`'s S3 server on loopback, through MLflow's
//! own S3 artifact repository (PyPI `boto3`) — so that it offers multipart uploads.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Admin account of the basic-auth server.
pub const ADMIN_USER: &str = "admin";
/// Its password (MLflow wants at least 12 characters).
pub const ADMIN_PASSWORD: &str = "repro-admin-password-1";

/// A running `mlflow server`.
pub struct MlflowServer {
    pub uri: String,
    pub dir: PathBuf,
    pub auth: Option<(String, String)>,
    agent: ureq::Agent,
}

/// The venv holding mlflow: `$REPRO_TEST_MLFLOW_VENV`, else `target/py-mlflow`, created when missing
/// (`scripts/install-deps.sh` creates it in CI).
pub fn venv() -> PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let dir = std::env::var_os("REPRO_TEST_MLFLOW_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_TARGET_TMPDIR"))
                    .parent()
                    .expect("target dir")
                    .join("py-mlflow")
            });
        if !dir.join("bin/mlflow").is_file() {
            let ok = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success())
                && Command::new(dir.join("bin/pip"))
                    .args(["install", "-q", "mlflow[auth]"])
                    .status()
                    .is_ok_and(|s| s.success());
            assert!(
                ok,
                "cannot install mlflow[auth] into {}; run scripts/install-deps.sh",
                dir.display()
            );
        }
        dir
    })
    .clone()
}

static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

extern "C" fn stop_servers() {
    let Ok(groups) = GROUPS.lock() else { return };
    // SAFETY: kill(2) on process groups this process started.
    let alive = |pgid: i32| unsafe { libc::kill(-pgid, 0) == 0 };
    for pgid in groups.iter() {
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        }
    }
    // The `mlflow` launcher does not always exit on SIGTERM once its workers are gone.
    let deadline = Instant::now() + Duration::from_secs(3);
    while groups.iter().any(|g| alive(*g)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pgid in groups.iter() {
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The plain server (no authentication), shared by the tests of this binary.
pub fn server() -> &'static MlflowServer {
    static S: OnceLock<MlflowServer> = OnceLock::new();
    S.get_or_init(|| MlflowServer::start(Kind::Plain))
}

/// The `--app-name basic-auth` server, shared by the tests of this binary.
pub fn auth_server() -> &'static MlflowServer {
    static S: OnceLock<MlflowServer> = OnceLock::new();
    S.get_or_init(|| MlflowServer::start(Kind::BasicAuth))
}

/// A server whose artifacts live in S3 (moto's server on loopback): it offers multipart
/// uploads. `None` when moto or boto3 cannot be had ([`super::skip_or_fail`] said so).
pub fn s3_server() -> Option<&'static MlflowServer> {
    static S: OnceLock<Option<MlflowServer>> = OnceLock::new();
    S.get_or_init(|| {
        let python = moto_python()?;
        let deps = s3_deps()?;
        let port = free_port();
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("moto-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("moto dir");
        let log = std::fs::File::create(dir.join("moto.log")).expect("log");
        let mut cmd = Command::new(python);
        cmd.args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
        spawn_grouped(&mut cmd);
        let endpoint = format!("http://127.0.0.1:{port}");
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(10))
            .build();
        let deadline = Instant::now() + Duration::from_secs(60);
        // The bucket (moto checks no signature); answering means the server is up.
        while agent.put(&format!("{endpoint}/repro-test")).call().is_err() {
            assert!(
                Instant::now() < deadline,
                "moto's S3 server did not start: {}",
                std::fs::read_to_string(dir.join("moto.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(MlflowServer::start(Kind::S3 { endpoint, deps }))
    })
    .as_ref()
}

/// A Python that can run moto's S3 server: the system's `python3` when it has `moto[server]`,
/// else a venv under `target/` made for it.
fn moto_python() -> Option<PathBuf> {
    let can = |py: &Path| {
        Command::new(py)
            .args(["-c", "import moto.server, flask"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let system = PathBuf::from("python3");
    if can(&system) {
        return Some(system);
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("py-moto");
    let py = venv.join("bin/python");
    if !can(&py) {
        let _ = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status();
        let _ = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "moto[server]"])
            .status();
    }
    if can(&py) {
        return Some(py);
    }
    super::skip_or_fail(
        "PyPI moto[server] cannot be installed (the S3 store behind MLflow's multipart uploads)",
    );
    None
}

/// boto3 for the MLflow server's S3 artifact repository, installed without dependencies into
/// a directory of its own under `target/` (put on the server's `PYTHONPATH`), so the shared
/// MLflow venv is left as it is.
fn s3_deps() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("py-mlflow-s3deps");
    let done = dir.join(".complete");
    if !done.is_file() {
        let _ = std::fs::remove_dir_all(&dir);
        let ok = Command::new(venv().join("bin/pip"))
            .args(["install", "-q", "--no-deps", "--target"])
            .arg(&dir)
            .args(["boto3", "botocore", "s3transfer", "jmespath"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok || std::fs::write(&done, "").is_err() {
            super::skip_or_fail("PyPI boto3 cannot be installed (MLflow's S3 artifact store)");
            return None;
        }
    }
    Some(dir)
}

/// Which server.
enum Kind {
    Plain,
    BasicAuth,
    /// Artifacts in the bucket `repro-test` of the S3 server at `endpoint`, boto3 from `deps`.
    S3 {
        endpoint: String,
        deps: PathBuf,
    },
}

/// Spawns `cmd` in a process group of its own that is stopped when the test binary exits
/// (`stop_servers` at exit; a watchdog in the group should the binary die without it).
fn spawn_grouped(cmd: &mut Command) -> i32 {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    // Lives until the test binary exits; stopped by process group (`stop_servers`).
    #[allow(clippy::zombie_processes)]
    let child = cmd.spawn().expect("spawn a test server");
    let pgid = child.id() as i32;
    {
        let mut g = GROUPS.lock().expect("groups");
        if g.is_empty() {
            // SAFETY: registers a plain extern "C" function.
            unsafe {
                libc::atexit(stop_servers);
            }
        }
        g.push(pgid);
    }
    let _ = Command::new("sh")
        .args([
            "-c",
            "while kill -0 \"$1\" 2>/dev/null; do sleep 1; done; kill -TERM -- -\"$2\"; sleep 3; kill -KILL -- -\"$2\"",
            "sh",
            &std::process::id().to_string(),
            &pgid.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(pgid)
        .spawn();
    pgid
}

impl MlflowServer {
    fn start(kind: Kind) -> MlflowServer {
        let venv = venv();
        let basic_auth = matches!(kind, Kind::BasicAuth);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "mlflow-{}-{}",
            std::process::id(),
            match kind {
                Kind::Plain => "plain",
                Kind::BasicAuth => "auth",
                Kind::S3 { .. } => "s3",
            }
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("server dir");
        let port = free_port();
        let mut cmd = Command::new(venv.join("bin/mlflow"));
        cmd.arg("server")
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--artifacts-destination");
        match &kind {
            Kind::S3 { endpoint, deps } => {
                cmd.arg("s3://repro-test/artifacts")
                    .env("MLFLOW_S3_ENDPOINT_URL", endpoint)
                    .env("AWS_ACCESS_KEY_ID", "testing")
                    .env("AWS_SECRET_ACCESS_KEY", "testing")
                    .env("AWS_DEFAULT_REGION", "us-east-1")
                    .env("PYTHONPATH", deps);
            }
            _ => {
                cmd.arg(dir.join("artifacts"));
            }
        }
        cmd.arg("--serve-artifacts")
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--workers",
                "1",
            ])
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .env("MLFLOW_TRUNCATE_LONG_VALUES", "false")
            .env_remove("MLFLOW_TRACKING_URI")
            .current_dir(&dir)
            .stdin(Stdio::null());
        let auth = basic_auth.then(|| (ADMIN_USER.to_string(), ADMIN_PASSWORD.to_string()));
        if basic_auth {
            let ini = dir.join("basic_auth.ini");
            std::fs::write(
                &ini,
                format!(
                    "[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{}\nadmin_username = {ADMIN_USER}\nadmin_password = {ADMIN_PASSWORD}\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n",
                    dir.join("basic_auth.db").display()
                ),
            )
            .expect("auth ini");
            cmd.args(["--app-name", "basic-auth"])
                .env("MLFLOW_AUTH_CONFIG_PATH", &ini)
                .env("MLFLOW_AUTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
                .env("MLFLOW_FLASK_SERVER_SECRET_KEY", "repro-test-secret-key");
        }
        let log = std::fs::File::create(dir.join("server.log")).expect("log");
        cmd.stdout(log.try_clone().expect("log")).stderr(log);
        spawn_grouped(&mut cmd);
        let server = MlflowServer {
            uri: format!("http://127.0.0.1:{port}"),
            dir: dir.clone(),
            auth,
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(60))
                .build(),
        };
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if server
                .agent
                .get(&format!("{}/health", server.uri))
                .call()
                .is_ok()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "mlflow server did not answer /health in 300 s: {}",
                std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        server
    }

    fn req(&self, method: &str, path: &str) -> ureq::Request {
        let r = self.agent.request(method, &format!("{}{path}", self.uri));
        match &self.auth {
            Some((u, p)) => {
                use base64::Engine as _;
                let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                r.set("Authorization", &format!("Basic {token}"))
            }
            None => r,
        }
    }

    /// POST to `/api/2.0/mlflow/ENDPOINT`, the answer parsed (panics on an HTTP error).
    pub fn post(&self, endpoint: &str, body: Value) -> Value {
        match self
            .req("POST", &format!("/api/2.0/mlflow/{endpoint}"))
            .send_json(body)
        {
            Ok(r) => r.into_json().expect("json"),
            Err(e) => panic!("{endpoint}: {e}"),
        }
    }

    /// GET `/api/2.0/mlflow/ENDPOINT?query`, the answer parsed.
    pub fn get(&self, endpoint: &str, query: &[(&str, &str)]) -> Value {
        let mut r = self.req("GET", &format!("/api/2.0/mlflow/{endpoint}"));
        for (k, v) in query {
            r = r.query(k, v);
        }
        match r.call() {
            Ok(r) => r.into_json().expect("json"),
            Err(e) => panic!("{endpoint}: {e}"),
        }
    }

    /// The id of an experiment, if it exists.
    pub fn experiment_id(&self, name: &str) -> Option<String> {
        let r = self
            .req("GET", "/api/2.0/mlflow/experiments/get-by-name")
            .query("experiment_name", name)
            .call();
        match r {
            Ok(r) => r.into_json::<Value>().ok()?["experiment"]["experiment_id"]
                .as_str()
                .map(str::to_string),
            Err(_) => None,
        }
    }

    /// Every run of an experiment (`runs/search`), as returned.
    pub fn runs(&self, experiment: &str) -> Vec<Value> {
        let Some(id) = self.experiment_id(experiment) else {
            return Vec::new();
        };
        let v = self.post(
            "runs/search",
            json!({"experiment_ids": [id], "max_results": 1000}),
        );
        v["runs"].as_array().cloned().unwrap_or_default()
    }

    /// The run tagged `repro.run_id = ID` in an experiment, found with `runs/search`.
    pub fn run_by_repro_id(&self, experiment: &str, id: &str) -> Option<Value> {
        let exp = self.experiment_id(experiment)?;
        let v = self.post(
            "runs/search",
            json!({"experiment_ids": [exp], "filter": format!("tags.`repro.run_id` = '{id}'")}),
        );
        let runs = v["runs"].as_array().cloned().unwrap_or_default();
        assert!(runs.len() <= 1, "{id} pushed {} times", runs.len());
        let run_id = runs.first()?["info"]["run_id"].as_str()?.to_string();
        Some(self.get("runs/get", &[("run_id", &run_id)])["run"].clone())
    }

    /// Artifact paths of a run under `path` (`artifacts/list`).
    pub fn artifacts(&self, run_id: &str, path: &str) -> Vec<String> {
        let v = self.get("artifacts/list", &[("run_id", run_id), ("path", path)]);
        v["files"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|f| f["path"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Downloads one artifact through the server's artifact proxy.
    pub fn download(&self, experiment_id: &str, run_id: &str, path: &str) -> Vec<u8> {
        let r = self
            .req(
                "GET",
                &format!(
                    "/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/{path}"
                ),
            )
            .call()
            .unwrap_or_else(|e| panic!("download {path}: {e}"));
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut r.into_reader(), &mut out).expect("read artifact");
        out
    }
}

impl MlflowServer {
    /// Where this server's local artifact store keeps a run's artifacts.
    pub fn artifact_dir(&self, experiment_id: &str, run_id: &str) -> PathBuf {
        self.dir
            .join("artifacts")
            .join(experiment_id)
            .join(run_id)
            .join("artifacts")
    }

    /// Downloads `artifact_path` of a run into `dst` with MLflow's own Python client
    /// (`mlflow.artifacts.download_artifacts`, the venv's `mlflow`); returns the local path.
    pub fn client_download(&self, run_id: &str, artifact_path: &str, dst: &Path) -> PathBuf {
        std::fs::create_dir_all(dst).expect("download dir");
        let mut cmd = Command::new(venv().join("bin/python"));
        for (k, _) in std::env::vars() {
            if k.starts_with("MLFLOW_") {
                cmd.env_remove(&k);
            }
        }
        if let Some((u, p)) = &self.auth {
            cmd.env("MLFLOW_TRACKING_USERNAME", u)
                .env("MLFLOW_TRACKING_PASSWORD", p);
        }
        let out = cmd
            .args([
                "-c",
                "import sys, mlflow\n\
                 mlflow.set_tracking_uri(sys.argv[1])\n\
                 print(mlflow.artifacts.download_artifacts(run_id=sys.argv[2], artifact_path=sys.argv[3], dst_path=sys.argv[4]))",
                &self.uri,
                run_id,
                artifact_path,
            ])
            .arg(dst)
            .stdin(Stdio::null())
            .output()
            .expect("run the mlflow client");
        assert!(
            out.status.success(),
            "mlflow.artifacts.download_artifacts failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    }
}

/// `{key: value}` of a list of MLflow `{key, value}` objects.
pub fn kv(list: &Value) -> std::collections::BTreeMap<String, String> {
    list.as_array()
        .map(|l| {
            l.iter()
                .map(|e| {
                    (
                        e["key"].as_str().unwrap_or("").to_string(),
                        e["value"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A TLS-terminating proxy in front of a server (Python's ssl + http.server, forwarding every
/// request to `upstream`), with a CA and a certificate for 127.0.0.1 made by openssl. It logs
/// each request's Authorization header to `auth.log`. Stopped (by pid) when dropped.
pub struct TlsProxy {
    pub uri: String,
    pub ca: PathBuf,
    pub auth_log: PathBuf,
    child: std::process::Child,
}

const PROXY_PY: &str = r#"
import http.client, http.server, ssl, sys
upstream, port, cert, key, log = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
host, uport = upstream.split(':')
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def fwd(self):
        n = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(n) if n else None
        with open(log, 'a') as f:
            f.write((self.headers.get('Authorization') or '-') + '\n')
        c = http.client.HTTPConnection(host, int(uport), timeout=60)
        hs = {k: v for k, v in self.headers.items() if k.lower() not in ('host', 'connection')}
        c.request(self.command, self.path, body=body, headers=hs)
        r = c.getresponse(); data = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ('transfer-encoding', 'connection', 'content-length'):
                self.send_header(k, v)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers(); self.wfile.write(data)
    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = fwd
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(('127.0.0.1', port), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print('ready', flush=True)
s.serve_forever()
"#;

impl TlsProxy {
    /// Starts a proxy for `upstream` (`http://127.0.0.1:PORT`) with files under `dir`.
    pub fn start(upstream: &str, dir: &Path) -> TlsProxy {
        std::fs::create_dir_all(dir).expect("proxy dir");
        let sh = |script: &str| {
            let out = Command::new("sh")
                .args(["-c", script])
                .current_dir(dir)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=repro-test-ca \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>&1 && \
            openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 2>&1 && \
            printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext.cnf && \
            openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext.cnf 2>&1");
        let port = free_port();
        let auth_log = dir.join("auth.log");
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(PROXY_PY)
            .arg(upstream.trim_start_matches("http://"))
            .arg(port.to_string())
            .arg(dir.join("srv.pem"))
            .arg(dir.join("srv.key"))
            .arg(&auth_log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tls proxy");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("proxy ready");
        assert_eq!(line.trim(), "ready");
        TlsProxy {
            uri: format!("https://127.0.0.1:{port}"),
            ca: dir.join("ca.pem"),
            auth_log,
            child,
        }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
