//! The registry client against real registries on 127.0.0.1: Debian's docker-registry (plain,
//! behind htpasswd basic auth, and behind bearer tokens from a token endpoint run here), plus a
//! tiny fake registry that lies about the digest.
use crate::support::{assert_ok, assert_ok_for};

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use repro::capture::image::auth::AuthConfig;
use repro::capture::image::reference::parse_normalized;
use repro::capture::image::registry::{Platform, RegistryClient, RegistryError, RegistryOptions};
use repro::capture::image::{self, ImageError, ResolveMode, ResolveOptions};
use repro::cli::image::{cmd_inspect, InspectArgs};
use repro::record::ResolvedBy;

use crate::support::registry::{busybox_labels, host_platform, kill_with_parent, Registry};
use crate::support::require_tool;

const USER: &str = "trainer";
const PASSWORD: &str = "s3cr3t-Pa55-w0rd";

fn anonymous() -> RegistryOptions {
    RegistryOptions {
        auth: AuthConfig::anonymous(),
        timeout: Duration::from_secs(20),
        ..RegistryOptions::default()
    }
}

fn client(opts: RegistryOptions) -> RegistryClient {
    RegistryClient::new(opts).expect("registry client")
}

fn skopeo_digest(reference: &str, creds: Option<&str>) -> String {
    let mut cmd = Command::new("skopeo");
    cmd.args(["--insecure-policy", "inspect", "--tls-verify=false"]);
    if let Some(c) = creds {
        cmd.arg("--creds").arg(c);
    }
    let out = cmd
        .args(["--format", "{{.Digest}}"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo");
    assert_ok_for(&out, "skopeo inspect");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn inspect_args(reference: &str, platform: Option<&str>) -> InspectArgs {
    InspectArgs {
        reference: reference.to_string(),
        offline: false,
        platform: platform.map(str::to_string),
        json: true,
        registry: Default::default(),
    }
}

#[test]
fn every_tag_resolves_to_the_digest_skopeo_reports() {
    let registry = Registry::start();
    let c = client(anonymous());
    for (repo, tag) in [("team/app", "v1"), ("team/app", "v2"), ("solo", "1.0")] {
        let pushed = registry.push_busybox(repo, tag);
        let reference = registry.reference(repo, tag);
        assert_eq!(skopeo_digest(&reference, None), pushed);
        let r = parse_normalized(&reference).unwrap();
        let remote = c.resolve(&r, &Platform::host()).expect("resolve");
        assert_eq!(remote.digest, pushed, "{reference}");
        assert_eq!(remote.platform_digest, pushed);
        assert!(!remote.is_index);
        for (k, v) in busybox_labels(repo, tag) {
            assert_eq!(remote.labels.get(&k), Some(&v), "label {k} of {reference}");
        }

        let opts = ResolveOptions {
            mode: ResolveMode::Registry,
            registry: anonymous(),
            ..ResolveOptions::default()
        };
        let (img, warnings) = image::resolve(&reference, &opts).expect("policy resolve");
        assert_eq!(img.digest.as_deref(), Some(pushed.as_str()));
        assert_eq!(img.resolved_by, ResolvedBy::Registry);
        assert_eq!(img.reference, reference);
        assert!(img.index_digest.is_none());
        assert!(warnings.is_empty(), "{warnings:?}");
    }
    // A moved tag resolves to the new digest.
    let moved = registry.push_busybox("team/app", "v1");
    let r = parse_normalized(&registry.reference("team/app", "v1")).unwrap();
    assert_eq!(c.resolve(&r, &Platform::host()).unwrap().digest, moved);
}

#[test]
fn latest_and_unknown_tags_follow_the_policy() {
    let registry = Registry::start();
    registry.push_busybox("team/app", "latest");
    let mut opts = ResolveOptions {
        mode: ResolveMode::Registry,
        registry: anonymous(),
        ..ResolveOptions::default()
    };
    let implied = format!("{}/team/app", registry.addr());
    assert!(matches!(
        image::resolve(&implied, &opts),
        Err(ImageError::Latest { .. })
    ));
    opts.allow_latest = true;
    let (img, _) = image::resolve(&implied, &opts).unwrap();
    assert_eq!(
        img.digest,
        Some(skopeo_digest(
            &registry.reference("team/app", "latest"),
            None
        ))
    );

    let missing = registry.reference("team/app", "nope");
    let e = image::resolve(&missing, &opts).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(&registry.addr()) && text.contains("nope") && text.contains("404"),
        "{text}"
    );
    opts.allow_unpinned = true;
    let (img, warnings) = image::resolve(&missing, &opts).unwrap();
    assert_eq!(img.resolved_by, ResolvedBy::Unpinned);
    assert!(img.digest.is_none());
    assert!(
        warnings.iter().any(|w| w.contains("UNPINNED")),
        "{warnings:?}"
    );
}

#[test]
fn pinned_digest_unknown_to_the_registry_is_a_warning() {
    let registry = Registry::start();
    let known = registry.push_busybox("team/app", "v1");
    let opts = ResolveOptions {
        mode: ResolveMode::Registry,
        registry: anonymous(),
        ..ResolveOptions::default()
    };
    let pinned = registry.reference("team/app", &known);
    let (img, warnings) = image::resolve(&pinned, &opts).unwrap();
    assert_eq!(
        (img.digest.as_deref(), img.resolved_by),
        (Some(known.as_str()), ResolvedBy::Pinned)
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(
        !img.labels.is_empty(),
        "labels read for a pinned digest online"
    );

    let unknown = format!("sha256:{}", "ab".repeat(32));
    let pinned = registry.reference("team/app", &unknown);
    let (img, warnings) = image::resolve(&pinned, &opts).unwrap();
    assert_eq!(img.digest.as_deref(), Some(unknown.as_str()));
    assert_eq!(img.resolved_by, ResolvedBy::Pinned);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("does not know the pinned digest"),
        "{warnings:?}"
    );

    let offline = ResolveOptions {
        offline: true,
        ..opts
    };
    let (_, warnings) = image::resolve(&pinned, &offline).unwrap();
    assert!(warnings.is_empty(), "offline pins are fine: {warnings:?}");
}

#[test]
fn index_resolves_to_the_platform_entry() {
    let registry = Registry::start();
    let host = host_platform();
    let host_arch = host.split_once('/').unwrap().1.to_string();
    let other = if host_arch == "arm64" {
        "amd64"
    } else {
        "arm64/v8"
    };
    let info = registry.push_index(
        "team/multi",
        "v1",
        &[("linux", &host_arch), ("linux", other)],
    );
    let reference = registry.reference("team/multi", "v1");
    assert_eq!(skopeo_digest(&reference, None), info.index_digest);
    let r = parse_normalized(&reference).unwrap();
    let c = client(anonymous());
    for (platform, want) in &info.per_platform {
        let remote = c.resolve(&r, &Platform::parse(platform).unwrap()).unwrap();
        assert!(remote.is_index);
        assert_eq!(remote.digest, info.index_digest);
        assert_eq!(&remote.platform_digest, want, "{platform}");
        assert_eq!(remote.platforms.len(), info.per_platform.len());
    }
    // The policy resolver records both digests, the host platform's by default.
    let opts = ResolveOptions {
        mode: ResolveMode::Registry,
        registry: anonymous(),
        ..ResolveOptions::default()
    };
    let (img, _) = image::resolve(&reference, &opts).unwrap();
    assert_eq!(
        img.index_digest.as_deref(),
        Some(info.index_digest.as_str())
    );
    assert_eq!(img.digest.as_ref(), Some(&info.per_platform[0].1));
    assert_eq!(img.platform.as_deref(), Some(host.as_str()));
    // Unknown platform: a clear error listing what there is.
    let e = c
        .resolve(&r, &Platform::parse("windows/s390x").unwrap())
        .unwrap_err();
    assert!(
        matches!(e, RegistryError::NoPlatform { .. }) && e.to_string().contains(&host),
        "{e}"
    );

    // `repro image inspect --json` shows the same facts.
    let out = cmd_inspect(
        &inspect_args(&reference, Some(&info.per_platform[1].0)),
        anonymous(),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["registry"]["digest"], info.index_digest.as_str());
    assert_eq!(v["registry"]["is_index"], true);
    assert_eq!(
        v["registry"]["platform_digest"],
        info.per_platform[1].1.as_str()
    );
    assert_eq!(
        v["registry"]["media_type"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(v["registry"]["platforms"].as_array().unwrap().len(), 2);
    assert_eq!(v["tag"], "v1");
    assert_eq!(v["digest"], serde_json::Value::Null);
}

// ---- a tiny HTTP server for fakes and the token endpoint ----------------------------------

struct Request {
    path: String,
    headers: BTreeMap<String, String>,
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

struct Server {
    addr: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(handler: impl Fn(&Request) -> Response + Send + 'static) -> Server {
        Self::start_on("127.0.0.1", handler)
    }

    /// A server on another loopback address (127.0.0.0/8 is all local on Linux).
    fn start_on(ip: &str, handler: impl Fn(&Request) -> Response + Send + 'static) -> Server {
        let listener = TcpListener::bind(format!("{ip}:0")).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = serve_one(stream, &handler);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_one(stream: TcpStream, handler: &impl Fn(&Request) -> Response) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    // A TLS ClientHello (repro probes HTTPS first on loopback): this server speaks plain HTTP,
    // so hang up at once, as a plain HTTP server's garbled answer would.
    let mut first = [0u8; 1];
    if stream.peek(&mut first)? == 1 && first[0] == 0x16 {
        return Ok(());
    }
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let method = line.split(' ').next().unwrap_or("").to_string();
    let path = line.split(' ').nth(1).unwrap_or("").to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let resp = handler(&Request { path, headers });
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        resp.status,
        resp.body.len()
    )?;
    for (k, v) in &resp.headers {
        write!(out, "{k}: {v}\r\n")?;
    }
    write!(out, "\r\n")?;
    if method != "HEAD" {
        out.write_all(&resp.body)?;
    }
    out.flush()
}

#[test]
fn a_body_that_does_not_match_docker_content_digest_is_rejected() {
    let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#.to_vec();
    let lie = format!("sha256:{}", "0".repeat(64));
    let (b, l) = (body.clone(), lie.clone());
    let fake = Server::start(move |req| {
        if req.path.starts_with("/v2/team/app/manifests/") {
            Response {
                status: 200,
                headers: vec![
                    (
                        "Content-Type".into(),
                        "application/vnd.oci.image.manifest.v1+json".into(),
                    ),
                    ("Docker-Content-Digest".into(), l.clone()),
                ],
                body: b.clone(),
            }
        } else {
            Response {
                status: 404,
                headers: vec![],
                body: b"{}".to_vec(),
            }
        }
    });
    let reference = format!("{}/team/app:v1", fake.addr);
    let r = parse_normalized(&reference).unwrap();
    let e = client(anonymous())
        .resolve(&r, &Platform::host())
        .unwrap_err();
    match &e {
        RegistryError::DigestMismatch {
            claimed, computed, ..
        } => {
            assert_eq!(claimed, &lie);
            assert_eq!(computed, &format!("sha256:{}", sha256_hex(&body)));
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(e.to_string().contains(&fake.addr), "{e}");
    // And the policy resolver refuses it rather than recording the claimed digest.
    let opts = ResolveOptions {
        mode: ResolveMode::Registry,
        registry: anonymous(),
        ..ResolveOptions::default()
    };
    assert!(matches!(
        image::resolve(&reference, &opts),
        Err(ImageError::Unresolvable { .. })
    ));
}

#[test]
fn oversized_manifests_are_refused() {
    let fake = Server::start(|_| Response {
        status: 200,
        headers: vec![(
            "Content-Type".into(),
            "application/vnd.oci.image.manifest.v1+json".into(),
        )],
        body: vec![b' '; 4 * 1024 * 1024 + 1],
    });
    let r = parse_normalized(&format!("{}/team/app:v1", fake.addr)).unwrap();
    let e = client(anonymous())
        .resolve(&r, &Platform::host())
        .unwrap_err();
    assert!(matches!(e, RegistryError::TooLarge { .. }), "{e:?}");
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(b))
}

// ---- registries behind auth --------------------------------------------------------------

/// A docker-registry with an `auth:` section; killed on drop.
struct AuthRegistry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl AuthRegistry {
    fn start(auth_yaml: impl Fn(&Path) -> String) -> AuthRegistry {
        require_tool("docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n{}",
                dir.path().join("storage").display(),
                auth_yaml(dir.path())
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        kill_with_parent(&mut cmd, libc::SIGKILL);
        let child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(&addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "auth registry did not start: {}",
                std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        AuthRegistry {
            child,
            addr,
            _dir: dir,
        }
    }

    /// Copies `src` (a reference in an open registry) here as `repo:tag` with our credentials.
    fn copy_in(&self, src: &str, repo: &str, tag: &str) -> String {
        let dest = format!("{}/{repo}:{tag}", self.addr);
        let out = Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
            ])
            .arg("--dest-creds")
            .arg(format!("{USER}:{PASSWORD}"))
            .arg(format!("docker://{src}"))
            .arg(format!("docker://{dest}"))
            .output()
            .unwrap();
        assert_ok_for(&out, "skopeo copy");
        dest
    }
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, json: &str) -> PathBuf {
    let p = dir.join("config.json");
    std::fs::write(&p, json).unwrap();
    p
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The credential flows every auth test checks: none → clear refusal; config.json `auths`;
/// a `docker-credential-test` helper; a wrong password; no secret in any output.
fn check_credential_sources(addr: &str, reference: &str, want: &str) {
    let r = parse_normalized(reference).unwrap();
    let host = Platform::host();

    // No credentials: refused, naming registry and reference, with a login hint.
    let e = client(anonymous()).resolve(&r, &host).unwrap_err();
    assert!(
        matches!(
            e,
            RegistryError::Unauthorized {
                had_credentials: false,
                ..
            }
        ),
        "{e:?}"
    );
    let text = repro::error::CliError::from(e).to_string();
    assert!(
        text.contains(addr) && text.contains(reference) && text.contains("login"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    // config.json `auths`
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"{{"auths":{{"{addr}":{{"auth":"{}"}}}}}}"#,
            b64(&format!("{USER}:{PASSWORD}"))
        ),
    );
    let opts = RegistryOptions {
        auth: AuthConfig {
            docker_config: Some(cfg),
            helper_path: Some(OsString::from("/nonexistent")),
            ..AuthConfig::default()
        },
        ..anonymous()
    };
    assert_eq!(
        client(opts.clone()).resolve(&r, &host).unwrap().digest,
        want
    );
    let out = cmd_inspect(&inspect_args(reference, None), opts.clone()).unwrap();
    assert!(out.contains(want));
    assert_no_secret(&out);
    let policy = ResolveOptions {
        mode: ResolveMode::Registry,
        registry: opts,
        ..ResolveOptions::default()
    };
    let (img, warnings) = image::resolve(reference, &policy).unwrap();
    assert_eq!(img.digest.as_deref(), Some(want));
    assert_no_secret(&serde_json::to_string(&img).unwrap());
    assert_no_secret(&format!("{warnings:?}"));

    // credHelpers → docker-credential-test on the helper PATH
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let helper = bin.join("docker-credential-test");
    std::fs::write(
        &helper,
        format!("#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread -r server\n[ \"$server\" = \"{addr}\" ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let helper_dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        helper_dir.path(),
        &format!(r#"{{"credHelpers":{{"{addr}":"test"}}}}"#),
    );
    let opts = RegistryOptions {
        auth: AuthConfig {
            docker_config: Some(cfg),
            helper_path: Some(bin.clone().into_os_string()),
            ..AuthConfig::default()
        },
        ..anonymous()
    };
    assert_eq!(client(opts).resolve(&r, &host).unwrap().digest, want);

    // podman/REGISTRY_AUTH_FILE-style auth.json wins over a docker config without an entry.
    let auth_json = dir.path().join("auth.json");
    std::fs::write(
        &auth_json,
        format!(
            r#"{{"auths":{{"{addr}":{{"auth":"{}"}}}}}}"#,
            b64(&format!("{USER}:{PASSWORD}"))
        ),
    )
    .unwrap();
    let opts = RegistryOptions {
        auth: AuthConfig {
            auth_files: vec![auth_json],
            docker_config: None,
            helper_path: None,
        },
        ..anonymous()
    };
    assert_eq!(client(opts).resolve(&r, &host).unwrap().digest, want);

    // Wrong password: refused, credentials were sent, the secret is not echoed.
    let wrong = "wr0ng-Secret-zz";
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"{{"auths":{{"{addr}":{{"auth":"{}"}}}}}}"#,
            b64(&format!("{USER}:{wrong}"))
        ),
    );
    let opts = RegistryOptions {
        auth: AuthConfig {
            docker_config: Some(cfg),
            ..AuthConfig::default()
        },
        ..anonymous()
    };
    let e = client(opts).resolve(&r, &host).unwrap_err();
    assert!(
        matches!(
            e,
            RegistryError::Unauthorized {
                had_credentials: true,
                ..
            }
        ),
        "{e:?}"
    );
    let text = format!("{e} {e:?}");
    assert!(
        !text.contains(wrong) && !text.contains(&b64(&format!("{USER}:{wrong}"))),
        "{text}"
    );
}

fn assert_no_secret(text: &str) {
    assert!(!text.contains(PASSWORD), "password leaked: {text}");
    assert!(
        !text.contains(&b64(&format!("{USER}:{PASSWORD}"))),
        "basic auth leaked: {text}"
    );
}

#[test]
fn basic_auth_registry_with_htpasswd() {
    let open = Registry::start();
    let src = open.push_busybox("team/app", "v1");
    let hash = bcrypt::hash(PASSWORD, 5).unwrap();
    let reg = AuthRegistry::start(|dir| {
        let htpasswd = dir.join("htpasswd");
        std::fs::write(&htpasswd, format!("{USER}:{hash}\n")).unwrap();
        format!(
            "auth:\n  htpasswd:\n    realm: repro-test\n    path: {}\n",
            htpasswd.display()
        )
    });
    let reference = reg.copy_in(&open.reference("team/app", "v1"), "team/app", "v1");
    let want = skopeo_digest(&reference, Some(&format!("{USER}:{PASSWORD}")));
    assert_eq!(want, src);
    check_credential_sources(&reg.addr, &reference, &want);
}

/// A token endpoint that issues RS256 JWTs (signed with the openssl CLI, certificate in `x5c`)
/// for the requested scope to the right basic credentials.
fn token_server(key: PathBuf, cert_der_b64: String, service: &'static str) -> Server {
    Server::start(move |req| {
        let ok = req.headers.get("authorization").map(String::as_str)
            == Some(&*format!("Basic {}", b64(&format!("{USER}:{PASSWORD}"))));
        if !ok {
            return Response {
                status: 401,
                headers: vec![],
                body: br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#
                    .to_vec(),
            };
        }
        let query = req.path.split_once('?').map(|(_, q)| q).unwrap_or("");
        let mut access = Vec::new();
        for pair in query.split('&') {
            if let Some(v) = pair.strip_prefix("scope=") {
                let v = percent_decode(v);
                let parts: Vec<&str> = v.split(':').collect();
                if parts.len() == 3 {
                    access.push(serde_json::json!({"type": parts[0], "name": parts[1], "actions": parts[2].split(',').collect::<Vec<_>>()}));
                }
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [cert_der_b64]});
        let claims = serde_json::json!({"iss": "repro-test-issuer", "sub": USER, "aud": service, "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", access.len()), "access": access});
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let signing_input = format!(
            "{}.{}",
            url.encode(header.to_string()),
            url.encode(claims.to_string())
        );
        let mut child = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(signing_input.as_bytes())
            .unwrap();
        let mut sig = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut sig).unwrap();
        assert!(child.wait().unwrap().success());
        let token = format!("{signing_input}.{}", url.encode(sig));
        Response {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: serde_json::json!({"token": token, "expires_in": 300})
                .to_string()
                .into_bytes(),
        }
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn bearer_token_registry() {
    require_tool("openssl");
    let open = Registry::start();
    let src = open.push_busybox("team/app", "v1");
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("key.pem");
    let cert = keys.path().join("cert.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=repro-test-token",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert_ok_for(&out, "openssl req");
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    assert_ok(&der);
    let tokens = token_server(
        key,
        base64::engine::general_purpose::STANDARD.encode(&der.stdout),
        "repro-test-registry",
    );
    let realm = format!("http://{}/token", tokens.addr);
    let reg = AuthRegistry::start(|_| {
        format!(
            "auth:\n  token:\n    realm: {realm}\n    service: repro-test-registry\n    issuer: repro-test-issuer\n    rootcertbundle: {}\n",
            cert.display()
        )
    });
    let reference = reg.copy_in(&open.reference("team/app", "v1"), "team/app", "v1");
    let want = skopeo_digest(&reference, Some(&format!("{USER}:{PASSWORD}")));
    assert_eq!(want, src);
    check_credential_sources(&reg.addr, &reference, &want);
    drop(reg);
    drop(tokens);
}

// ---- TLS on loopback, certs.d, configured insecure registries ----------------------------

use crate::support::TestEnv;

/// `repro image inspect --json ARGS REF` with `REPRO_CERTS_D` set; (exit code, stdout, stderr).
fn cli_inspect(
    env: &TestEnv,
    certs_d: &Path,
    args: &[&str],
    reference: &str,
) -> (i32, serde_json::Value, String) {
    cli_inspect_with(env, certs_d, &[], args, reference)
}

/// `cli_inspect` with extra environment variables.
fn cli_inspect_with(
    env: &TestEnv,
    certs_d: &Path,
    vars: &[(&str, &str)],
    args: &[&str],
    reference: &str,
) -> (i32, serde_json::Value, String) {
    let out = env
        .repro()
        .env("REPRO_CERTS_D", certs_d)
        .envs(vars.iter().copied())
        .args(["image", "inspect", "--json"])
        .args(args)
        .arg(reference)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tls_registry_on_loopback_resolves_with_ca_cert_or_certs_d() {
    let registry = Registry::start_tls();
    let pushed = registry.push_busybox("team/trainer", "2.0");
    let reference = registry.reference("team/trainer", "2.0");
    assert_eq!(skopeo_digest(&reference, None), pushed);
    let ca = registry.ca_cert().expect("TLS registry has a CA");
    let ca_arg = ca.to_str().unwrap();
    let env = TestEnv::new();
    let no_certs_d = env.root().join("empty-certs.d");

    // --ca-cert: the right digest, by IP and by the name `localhost`.
    let (code, v, err) = cli_inspect(&env, &no_certs_d, &["--ca-cert", ca_arg], &reference);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["registry"]["digest"], pushed.as_str());
    let by_name = reference.replace("127.0.0.1", "localhost");
    let (code, v, err) = cli_inspect(&env, &no_certs_d, &["--ca-cert", ca_arg], &by_name);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["registry"]["digest"], pushed.as_str());

    // Without the CA: a certificate error with the fixes named, never a silent HTTP downgrade.
    let (code, _, err) = cli_inspect(&env, &no_certs_d, &[], &reference);
    eprintln!("without the CA: {err}");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("certificate"), "{err}");
    assert!(
        err.contains("--ca-cert") && err.contains("certs.d"),
        "{err}"
    );
    assert!(!err.contains("answered 400"), "{err}");

    // The same CA in certs.d/127.0.0.1:PORT/ca.crt, as podman and docker read it.
    let certs_d = env.root().join("certs.d");
    let host_dir = certs_d.join(registry.addr());
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::copy(&ca, host_dir.join("ca.crt")).unwrap();
    let (code, v, err) = cli_inspect(&env, &certs_d, &[], &reference);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["registry"]["digest"], pushed.as_str());

    // The library view the engine plan maps to --cert-dir.
    let opts = RegistryOptions {
        certs_d: vec![certs_d.clone()],
        ..anonymous()
    };
    let s = opts.host_settings(&registry.addr());
    assert!(s.loopback && s.plain_http_allowed());
    assert_eq!(s.cert_dirs, vec![host_dir.clone()]);
    assert_eq!(s.ca_files, vec![host_dir.join("ca.crt")]);
}

#[test]
fn plain_http_loopback_registry_still_works_after_the_https_probe() {
    let registry = Registry::start();
    let pushed = registry.push_busybox("team/app", "v1");
    let env = TestEnv::new();
    let empty = env.root().join("empty");
    let (code, v, err) = cli_inspect(&env, &empty, &[], &registry.reference("team/app", "v1"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["registry"]["digest"], pushed.as_str());
}

/// A name other than `localhost` that resolves to 127.0.0.1 (the machine's host name on this
/// kind of machine), so a registry there is not loopback by name.
fn loopback_alias() -> Option<String> {
    use std::net::ToSocketAddrs;
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim().to_string();
    let addrs: Vec<_> = (name.as_str(), 80).to_socket_addrs().ok()?.collect();
    (!name.is_empty()
        && name != "localhost"
        && addrs.iter().any(|a| a.ip().to_string() == "127.0.0.1"))
    .then_some(name)
}

#[test]
fn image_inspect_honours_configured_insecure_registries() {
    let Some(alias) = loopback_alias() else {
        eprintln!("SKIPPED: the host name does not resolve to 127.0.0.1 here");
        return;
    };
    let registry = Registry::start();
    let pushed = registry.push_busybox("team/app", "v1");
    let port = registry.addr().rsplit(':').next().unwrap().to_string();
    let host = format!("{alias}:{port}");
    let reference = format!("{host}/team/app:v1");
    let env = TestEnv::new();
    let empty = env.root().join("empty");
    // Not loopback by name and not declared: HTTPS only, which this registry does not speak.
    let (code, _, err) = cli_inspect(&env, &empty, &[], &reference);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("--insecure-registry {host}")),
        "{err}"
    );
    // Declared in the configuration (here its environment form): plain HTTP after HTTPS failed.
    let (code, v, err) = cli_inspect_with(
        &env,
        &empty,
        &[("REPRO_INSECURE_REGISTRIES", &host)],
        &[],
        &reference,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["registry"]["digest"], pushed.as_str());
    // And in a user config file.
    let cfg_dir = env.home().join(".config/repro");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    std::fs::write(
        cfg_dir.join("config.toml"),
        format!("insecure_registries = [\"{host}\"]\n"),
    )
    .unwrap();
    let (code, v, err) = cli_inspect(&env, &empty, &[], &reference);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["registry"]["digest"], pushed.as_str());
}

// ---- credentials and token realms (issue 12.3) ---------------------------------------------

const EMPTY_MANIFEST: &str =
    r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;

/// A fake registry that wants `Bearer good-token` and names `realm` in its challenge.
fn bearer_registry(realm: String) -> Server {
    Server::start(move |req| {
        if req.headers.get("authorization").map(String::as_str) == Some("Bearer good-token") {
            return Response {
                status: 200,
                headers: vec![(
                    "Content-Type".into(),
                    "application/vnd.oci.image.manifest.v1+json".into(),
                )],
                body: EMPTY_MANIFEST.as_bytes().to_vec(),
            };
        }
        Response {
            status: 401,
            headers: vec![(
                "WWW-Authenticate".into(),
                format!(r#"Bearer realm="{realm}",service="fake""#),
            )],
            body: br#"{"errors":[{"code":"UNAUTHORIZED","message":"token needed"}]}"#.to_vec(),
        }
    })
}

/// A token endpoint that records the Authorization header of every request and answers `body`.
fn recording_token_server(
    ip: &str,
    body: &'static str,
) -> (Server, Arc<std::sync::Mutex<Vec<Option<String>>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let server = Server::start_on(ip, move |req| {
        log.lock()
            .unwrap()
            .push(req.headers.get("authorization").cloned());
        Response {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    });
    (server, seen)
}

fn with_credentials_for(addr: &str, dir: &Path) -> RegistryOptions {
    let cfg = write_config(
        dir,
        &format!(
            r#"{{"auths":{{"{addr}":{{"auth":"{}"}}}}}}"#,
            b64(&format!("{USER}:{PASSWORD}"))
        ),
    );
    RegistryOptions {
        auth: AuthConfig {
            docker_config: Some(cfg),
            helper_path: Some(OsString::from("/nonexistent")),
            ..AuthConfig::default()
        },
        certs_d: vec![],
        ..anonymous()
    }
}

#[test]
fn credentials_never_go_to_a_plain_http_realm_on_another_host() {
    let (tokens, seen) = recording_token_server("127.0.0.2", r#"{"token":"good-token"}"#);
    let reg = bearer_registry(format!("http://{}/token", tokens.addr));
    let r = parse_normalized(&format!("{}/team/app:v1", reg.addr)).unwrap();
    let dir = tempfile::tempdir().unwrap();

    // With credentials: refused before anything is sent to 127.0.0.2.
    let e = client(with_credentials_for(&reg.addr, dir.path()))
        .resolve(&r, &Platform::host())
        .unwrap_err();
    assert!(matches!(e, RegistryError::InsecureRealm { .. }), "{e:?}");
    let text = repro::error::CliError::from(e).to_string();
    assert!(
        text.contains(&tokens.addr) && text.contains("plain HTTP") && text.contains("HTTPS"),
        "{text}"
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "a request reached the realm"
    );

    // Without credentials there is no secret to leak: an anonymous token is fetched.
    let remote = client(RegistryOptions {
        certs_d: vec![],
        ..anonymous()
    })
    .resolve(&r, &Platform::host())
    .unwrap();
    assert_eq!(
        remote.digest,
        format!("sha256:{}", sha256_hex(EMPTY_MANIFEST.as_bytes()))
    );
    assert_eq!(seen.lock().unwrap().as_slice(), &[None]);
}

#[test]
fn credentials_go_to_a_plain_http_realm_on_the_loopback_registrys_own_host() {
    let (tokens, seen) = recording_token_server("127.0.0.1", r#"{"token":"good-token"}"#);
    let reg = bearer_registry(format!("http://{}/token", tokens.addr));
    let r = parse_normalized(&format!("{}/team/app:v1", reg.addr)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    client(with_credentials_for(&reg.addr, dir.path()))
        .resolve(&r, &Platform::host())
        .expect("same-host realm of a loopback registry");
    let basic = format!("Basic {}", b64(&format!("{USER}:{PASSWORD}")));
    assert_eq!(seen.lock().unwrap().as_slice(), &[Some(basic)]);
}

#[test]
fn a_malformed_token_answer_is_a_token_error_not_an_invalid_manifest() {
    let (tokens, _) = recording_token_server("127.0.0.1", "<html>gateway</html>");
    let reg = bearer_registry(format!("http://{}/token", tokens.addr));
    let r = parse_normalized(&format!("{}/team/app:v1", reg.addr)).unwrap();
    let e = client(RegistryOptions {
        certs_d: vec![],
        ..anonymous()
    })
    .resolve(&r, &Platform::host())
    .unwrap_err();
    assert!(matches!(e, RegistryError::Token { .. }), "{e:?}");
    let text = e.to_string();
    assert!(!text.contains("invalid manifest"), "{text}");
    assert!(
        text.contains("token endpoint") && text.contains(&tokens.addr),
        "{text}"
    );
}

// ---- a hanging or throttling registry (issue 12.10) --------------------------------------

/// Accepts connections on 127.0.0.1 and never answers; stops itself after 60 s or on drop.
struct Hang {
    addr: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Hang {
    fn start() -> Hang {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(60);
            let mut held = Vec::new();
            while !flag.load(Ordering::SeqCst) && Instant::now() < until {
                if let Ok((s, _)) = listener.accept() {
                    held.push(s);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Hang {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Hang {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// No cause is said twice in a row ("Network Error: Network Error: …").
fn assert_no_doubled_text(text: &str) {
    let parts: Vec<&str> = text.split(": ").map(str::trim).collect();
    for w in parts.windows(2) {
        assert!(
            !w[0].eq_ignore_ascii_case(w[1]),
            "doubled {:?} in {text}",
            w[0]
        );
    }
    assert!(!text.contains("Network Error: Network Error"), "{text}");
}

#[test]
fn a_hanging_registry_is_bounded_by_the_deadline() {
    let hang = Hang::start();
    let r = parse_normalized(&format!("{}/team/app:v1", hang.addr)).unwrap();
    let opts = RegistryOptions {
        deadline: Duration::from_secs(3),
        certs_d: vec![],
        ..anonymous()
    };
    let started = Instant::now();
    let e = client(opts).resolve(&r, &Platform::host()).unwrap_err();
    let took = started.elapsed();
    // The old client waited 30 s × 3 tries plus back-off (~95 s).
    assert!(took < Duration::from_secs(20), "took {took:?}: {e}");
    assert!(
        matches!(
            e,
            RegistryError::Deadline { .. } | RegistryError::Transport { .. }
        ),
        "{e:?}"
    );
    let text = repro::error::CliError::from(e).to_string();
    assert!(text.contains(&hang.addr), "{text}");
    assert!(text.contains("REPRO_REGISTRY_TIMEOUT"), "{text}");
    assert_no_doubled_text(&text);
}

#[test]
fn a_pinned_digest_check_against_a_hanging_registry_is_only_a_short_warning() {
    let hang = Hang::start();
    let digest = format!("sha256:{}", "ab".repeat(32));
    let reference = format!("{}/team/app@{digest}", hang.addr);
    let opts = ResolveOptions {
        mode: ResolveMode::Registry,
        registry: RegistryOptions {
            certs_d: vec![],
            ..anonymous()
        },
        ..ResolveOptions::default()
    };
    let started = Instant::now();
    let (img, warnings) = image::resolve(&reference, &opts).unwrap();
    let took = started.elapsed();
    assert!(
        took < image::PINNED_CHECK_BUDGET + Duration::from_secs(5),
        "the warning-only check took {took:?}"
    );
    assert_eq!(img.digest.as_deref(), Some(digest.as_str()));
    assert_eq!(img.resolved_by, ResolvedBy::Pinned);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("could not check the pinned digest"),
        "{warnings:?}"
    );
    assert_no_doubled_text(&warnings[0]);
}

/// A registry that answers `status` with `Retry-After: after` to the first `n` manifest
/// requests, then the manifest.
fn throttling_registry(
    status: u16,
    after: &'static str,
    n: usize,
) -> (Server, Arc<std::sync::Mutex<usize>>) {
    let count = Arc::new(std::sync::Mutex::new(0usize));
    let c = count.clone();
    let server = Server::start(move |_| {
        let mut k = c.lock().unwrap();
        *k += 1;
        if *k <= n {
            return Response {
                status,
                headers: vec![("Retry-After".into(), after.into())],
                body: b"{}".to_vec(),
            };
        }
        Response {
            status: 200,
            headers: vec![(
                "Content-Type".into(),
                "application/vnd.oci.image.manifest.v1+json".into(),
            )],
            body: EMPTY_MANIFEST.as_bytes().to_vec(),
        }
    });
    (server, count)
}

#[test]
fn retry_after_is_honoured_within_a_cap() {
    let opts = || RegistryOptions {
        certs_d: vec![],
        ..anonymous()
    };
    // 429 then 503 with a short Retry-After: waited for, then the manifest.
    for status in [429, 503] {
        let (reg, count) = throttling_registry(status, "1", 1);
        let r = parse_normalized(&format!("{}/team/app:v1", reg.addr)).unwrap();
        let started = Instant::now();
        let remote = client(opts()).resolve(&r, &Platform::host()).unwrap();
        assert!(started.elapsed() >= Duration::from_secs(1), "did not wait");
        assert_eq!(
            remote.digest,
            format!("sha256:{}", sha256_hex(EMPTY_MANIFEST.as_bytes()))
        );
        assert_eq!(*count.lock().unwrap(), 2);
    }
    // An hour: not waited for; a clear error at once.
    let (reg, count) = throttling_registry(429, "3600", 10);
    let r = parse_normalized(&format!("{}/team/app:v1", reg.addr)).unwrap();
    let started = Instant::now();
    let e = client(opts()).resolve(&r, &Platform::host()).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    let text = e.to_string();
    assert!(text.contains("429") && text.contains("3600"), "{text}");
    assert_eq!(*count.lock().unwrap(), 1);
}

/// `registry_timeout` in the user configuration bounds a resolution like
/// `REPRO_REGISTRY_TIMEOUT` does (the deadline the error names is the configured one).
#[test]
fn registry_timeout_in_the_configuration_sets_the_deadline() {
    let hang = Hang::start();
    let env = TestEnv::new();
    let cfg = env.home().join(".config/repro/config.toml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(&cfg, "registry_timeout = 2\n").unwrap();
    let (code, _, stderr) = cli_inspect(
        &env,
        &env.root().join("no-certs.d"),
        &[],
        &format!("{}/team/app:v1", hang.addr),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("within 2s"), "{stderr}");
    // The environment variable is the layer above the file.
    let (_, _, stderr) = cli_inspect_with(
        &env,
        &env.root().join("no-certs.d"),
        &[("REPRO_REGISTRY_TIMEOUT", "1")],
        &[],
        &format!("{}/team/app:v1", hang.addr),
    );
    assert!(stderr.contains("within 1s"), "{stderr}");
}
