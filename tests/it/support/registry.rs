//! A real OCI registry (Debian's `docker-registry`, distribution 2.8) on 127.0.0.1 for image tests,
//! plus helpers that push real images to it: a runnable busybox image built offline with umoci and
//! pushed with skopeo, and multi-platform OCI image indexes pushed over the distribution API.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

use super::require_tool;

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config media type.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Uncompressed OCI layer media type.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Docker schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Accept header for manifest requests: without it distribution 2.8 answers 404 for an OCI
/// index and down-converts manifests, so the digest would not be the one pushed.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// What `push_index` pushed: the index digest and, per platform ("os/arch[/variant]"), the
/// digest of that platform's image manifest, in the order the platforms were given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexInfo {
    pub index_digest: String,
    pub per_platform: Vec<(String, String)>,
}

/// A manifest as the registry serves it.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// `Docker-Content-Digest` response header.
    pub digest: String,
    /// `Content-Type` response header.
    pub media_type: String,
    pub body: Vec<u8>,
}

/// A running `docker-registry` bound to 127.0.0.1 with storage in a temp dir; killed on drop.
pub struct Registry {
    child: Child,
    addr: String,
    dir: TempDir,
    agent: ureq::Agent,
    credentials: Option<(String, String)>,
    /// The private CA, when the registry serves HTTPS (`start_tls`).
    tls: Option<Tls>,
}

/// A private CA and a server certificate for 127.0.0.1/localhost, made with the openssl CLI.
#[derive(Debug, Clone)]
pub struct Tls {
    /// PEM of the CA that signed the server certificate.
    pub ca_cert: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

impl Tls {
    /// Writes a fresh CA (`ca.crt`) and a server certificate with
    /// `subjectAltName=IP:127.0.0.1,DNS:localhost` signed by it into `dir`.
    pub fn generate(dir: &Path) -> Tls {
        require_tool("openssl");
        let p = |n: &str| dir.join(n);
        std::fs::write(
            p("ca.cnf"),
            "[req]\ndistinguished_name=dn\nprompt=no\n[dn]\nCN=repro-test-ca\n\
             [v3_ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
             subjectKeyIdentifier=hash\n",
        )
        .expect("write ca.cnf");
        std::fs::write(
            p("server.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n\
             authorityKeyIdentifier=keyid\n",
        )
        .expect("write server.ext");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run(Command::new("openssl")
            .args(["req", "-x509", "-days", "2"])
            .args(ec)
            .arg("-config")
            .arg(p("ca.cnf"))
            .args(["-extensions", "v3_ca", "-keyout"])
            .arg(p("ca.key"))
            .arg("-out")
            .arg(p("ca.crt")));
        run(Command::new("openssl")
            .args(["req", "-subj", "/CN=localhost"])
            .args(ec)
            .arg("-keyout")
            .arg(p("server.key"))
            .arg("-out")
            .arg(p("server.csr")));
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-in"])
            .arg(p("server.csr"))
            .arg("-CA")
            .arg(p("ca.crt"))
            .arg("-CAkey")
            .arg(p("ca.key"))
            .arg("-CAcreateserial")
            .arg("-extfile")
            .arg(p("server.ext"))
            .arg("-out")
            .arg(p("server.crt")));
        Tls {
            ca_cert: p("ca.crt"),
            server_cert: p("server.crt"),
            server_key: p("server.key"),
        }
    }

    /// A rustls client config trusting only this CA.
    fn client_config(&self) -> rustls::ClientConfig {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_file_iter(&self.ca_cert).expect("ca.crt") {
            roots.add(c.expect("CA PEM")).expect("add CA");
        }
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The platform of this machine as OCI spells it, e.g. "linux/amd64".
pub fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    format!("linux/{arch}")
}

/// Labels `push_busybox` sets on the image config for `repo:tag`: an
/// `org.opencontainers.image.revision` of 40 hex characters derived from `repo:tag` and an
/// `org.opencontainers.image.source` URL.
pub fn busybox_labels(repo: &str, tag: &str) -> Vec<(String, String)> {
    let revision =
        hex::encode(Sha256::digest(format!("{repo}:{tag}").as_bytes()))[..40].to_string();
    vec![
        ("org.opencontainers.image.revision".to_string(), revision),
        (
            "org.opencontainers.image.source".to_string(),
            format!("https://git.example.com/{repo}"),
        ),
    ]
}

/// A value unique within this machine's test runs, so every pushed image has a distinct digest.
fn nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{}-{}-{}",
        std::process::id(),
        now,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl Registry {
    /// Starts a registry on a free loopback port and waits until `GET /v2/` answers.
    pub fn start() -> Registry {
        Self::start_inner(None)
    }

    /// Starts a registry that demands HTTP basic auth (htpasswd, bcrypt) for every request.
    /// The helpers of this type authenticate themselves; engines need `auth_json()`.
    pub fn start_with_basic_auth(user: &str, password: &str) -> Registry {
        Self::start_inner(Some((user.to_string(), password.to_string())))
    }

    /// Starts a registry serving HTTPS on 127.0.0.1 with a certificate from a fresh private CA
    /// (`ca_cert()`); plain HTTP is not served.
    pub fn start_tls() -> Registry {
        Self::start_inner_with(None, true)
    }

    fn start_inner(credentials: Option<(String, String)>) -> Registry {
        Self::start_inner_with(credentials, false)
    }

    fn start_inner_with(credentials: Option<(String, String)>, tls: bool) -> Registry {
        require_tool("docker-registry");
        let mut last_error = String::new();
        // A free port can be taken between probing and binding; retry with a fresh one.
        for _ in 0..5 {
            match Self::try_start(credentials.clone(), tls) {
                Ok(registry) => return registry,
                Err(e) => last_error = e,
            }
        }
        panic!("docker-registry did not start: {last_error}");
    }

    fn try_start(credentials: Option<(String, String)>, tls: bool) -> Result<Registry, String> {
        let dir = tempfile::Builder::new()
            .prefix("repro-registry-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let storage = dir.path().join("storage");
        let config = dir.path().join("config.yml");
        let mut text = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {addr}\n",
            storage.display()
        );
        let tls = tls.then(|| Tls::generate(dir.path()));
        if let Some(t) = &tls {
            text.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                t.server_cert.display(),
                t.server_key.display()
            ));
        }
        if let Some((user, password)) = &credentials {
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{}\n", bcrypt(password)))
                .map_err(|e| e.to_string())?;
            text.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: repro-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        std::fs::write(&config, text).map_err(|e| e.to_string())?;
        let log =
            std::fs::File::create(dir.path().join("registry.log")).map_err(|e| e.to_string())?;
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        kill_with_parent(&mut cmd, libc::SIGKILL);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawn docker-registry: {e}"))?;
        let mut agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .redirects(0);
        if let Some(t) = &tls {
            agent = agent.tls_config(std::sync::Arc::new(t.client_config()));
        }
        let agent = agent.build();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log =
                    std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default();
                return Err(format!("exited with {status}: {log}"));
            }
            let answer = match agent.get(&format!("{scheme}://{addr}/v2/")).call() {
                Ok(resp) | Err(ureq::Error::Status(401, resp)) => Some(resp),
                Err(_) => None,
            };
            // Only our registry sends this header; anything else on the port is a lost race.
            if answer.is_some_and(|r| {
                r.header("Docker-Distribution-Api-Version") == Some("registry/2.0")
            }) {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{addr}/v2/ did not answer within 15s"));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Ok(Registry {
            child,
            addr,
            dir,
            agent,
            credentials,
            tls,
        })
    }

    /// The private CA's certificate (PEM) when started with `start_tls`.
    pub fn ca_cert(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(|t| t.ca_cert.clone())
    }

    /// "127.0.0.1:PORT".
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// The basic-auth user and password, when started with `start_with_basic_auth`.
    pub fn credentials(&self) -> Option<(String, String)> {
        self.credentials.clone()
    }

    /// A docker `config.json` / containers `auth.json` granting access to this registry
    /// (`{"auths":{"127.0.0.1:PORT":{"auth":"<base64 user:password>"}}}`); `{"auths":{}}`
    /// without auth. Write it to `$HOME/.docker/config.json` or point `REGISTRY_AUTH_FILE` at it.
    pub fn auth_json(&self) -> String {
        let mut auths = serde_json::Map::new();
        if let Some((user, password)) = &self.credentials {
            use base64::Engine as _;
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            auths.insert(self.addr.clone(), json!({ "auth": token }));
        }
        json!({ "auths": auths }).to_string()
    }

    /// A request to `path` on this registry, authenticated when the registry demands it.
    pub fn request(&self, method: &str, path: &str) -> ureq::Request {
        self.request_url(method, &self.url(path))
    }

    fn request_url(&self, method: &str, url: &str) -> ureq::Request {
        let req = self.agent.request(method, url);
        match &self.credentials {
            Some((user, password)) => {
                use base64::Engine as _;
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                req.set("Authorization", &format!("Basic {token}"))
            }
            None => req,
        }
    }

    /// `--creds USER:PASSWORD` for skopeo when the registry demands auth.
    fn skopeo_creds(&self, flag: &str) -> Vec<String> {
        match &self.credentials {
            Some((user, password)) => vec![flag.to_string(), format!("{user}:{password}")],
            None => Vec::new(),
        }
    }

    /// An image reference in this registry: `reference("team/app", "v1")` is
    /// "127.0.0.1:PORT/team/app:v1"; a `sha256:…` digest gives "…/team/app@sha256:…".
    pub fn reference(&self, repo: &str, tag_or_digest: &str) -> String {
        let sep = if tag_or_digest.contains(':') {
            '@'
        } else {
            ':'
        };
        format!("{}/{repo}{sep}{tag_or_digest}", self.addr)
    }

    /// The registry's storage directory (for tests that corrupt stored content on purpose).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The registry's own log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Builds a fresh runnable busybox image (with `busybox_labels(repo, tag)`) and pushes it
    /// as `repo:tag`; returns the manifest digest the registry reports. Every call pushes a
    /// new image with a distinct digest, so pushing the same tag twice "moves" the tag.
    pub fn push_busybox(&self, repo: &str, tag: &str) -> String {
        let labels = busybox_labels(repo, tag);
        let labels: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.push_busybox_with_labels(repo, tag, &labels)
    }

    /// Like `push_busybox` but with exactly the given config labels (plus a nonce label
    /// `org.repro.test.nonce` that keeps digests distinct).
    pub fn push_busybox_with_labels(
        &self,
        repo: &str,
        tag: &str,
        labels: &[(&str, &str)],
    ) -> String {
        self.push_busybox_as(repo, tag, labels, None)
    }

    /// Like `push_busybox`, but as a Docker schema 2 manifest
    /// (`application/vnd.docker.distribution.manifest.v2+json`) instead of an OCI manifest.
    pub fn push_busybox_docker_v2(&self, repo: &str, tag: &str) -> String {
        let labels = busybox_labels(repo, tag);
        let labels: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.push_busybox_as(repo, tag, &labels, Some("v2s2"))
    }

    fn push_busybox_as(
        &self,
        repo: &str,
        tag: &str,
        labels: &[(&str, &str)],
        format: Option<&str>,
    ) -> String {
        require_tool("umoci");
        require_tool("skopeo");
        let base = base_layout();
        let work = tempfile::Builder::new()
            .prefix("repro-image-")
            .tempdir()
            .expect("temp dir for image");
        let layout = work.path().join("oci");
        copy_dir(base, &layout);
        let mut cmd = Command::new("umoci");
        cmd.arg("config")
            .arg("--image")
            .arg(format!("{}:{BASE_TAG}", layout.display()))
            .arg("--tag")
            .arg(tag);
        for (k, v) in labels {
            cmd.arg("--config.label").arg(format!("{k}={v}"));
        }
        cmd.arg("--config.label")
            .arg(format!("org.repro.test.nonce={}", nonce()));
        run(&mut cmd);
        let dest = format!("docker://{}/{repo}:{tag}", self.addr);
        run(Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
            ])
            .args(self.skopeo_creds("--dest-creds"))
            .args(format.map(|f| format!("--format={f}")))
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(&dest));
        let out = run(Command::new("skopeo")
            .args([
                "--insecure-policy",
                "inspect",
                "--tls-verify=false",
                "--format",
                "{{.Digest}}",
            ])
            .args(self.skopeo_creds("--creds"))
            .arg(&dest));
        let digest = out.trim().to_string();
        assert!(
            digest.starts_with("sha256:") && digest.len() == 71,
            "skopeo inspect gave no digest: {out:?}"
        );
        digest
    }

    /// Pushes a multi-platform OCI image index as `repo:tag`. Each platform ("os", "arch" or
    /// "arch/variant") gets its own distinct image manifest; the host platform's image is the
    /// runnable busybox image, the others carry one small file `/repro-platform`.
    pub fn push_index(&self, repo: &str, tag: &str, platforms: &[(&str, &str)]) -> IndexInfo {
        let host = host_platform();
        let base = base_layout();
        let base_manifest: Value = read_json(&blob_path(base, &base_manifest_digest(base)));
        let base_config: Value = read_json(&blob_path(
            base,
            base_manifest["config"]["digest"]
                .as_str()
                .expect("config digest"),
        ));
        let nonce = nonce();
        let mut entries = Vec::new();
        let mut per_platform = Vec::new();
        for (os, arch_variant) in platforms {
            let (arch, variant) = match arch_variant.split_once('/') {
                Some((a, v)) => (a, Some(v)),
                None => (*arch_variant, None),
            };
            let platform_name = format!("{os}/{arch_variant}");
            let (layer_desc, diff_id) = if platform_name == host {
                let layer = base_manifest["layers"][0].clone();
                let digest = layer["digest"].as_str().expect("layer digest").to_string();
                self.upload_blob_if_missing(
                    repo,
                    &std::fs::read(blob_path(base, &digest)).expect("read layer"),
                );
                (layer, base_config["rootfs"]["diff_ids"][0].clone())
            } else {
                let tar = tar_one_file("repro-platform", format!("{platform_name}\n").as_bytes());
                let digest = self.upload_blob_if_missing(repo, &tar);
                (
                    json!({"mediaType": OCI_LAYER_TAR, "digest": digest, "size": tar.len()}),
                    json!(digest),
                )
            };
            let mut platform = json!({"architecture": arch, "os": os});
            if let Some(v) = variant {
                platform["variant"] = json!(v);
            }
            let mut config = json!({
                "architecture": arch,
                "os": os,
                "config": {
                    "Cmd": ["/bin/sh"],
                    "Labels": {
                        "org.opencontainers.image.revision": busybox_labels(repo, tag)[0].1,
                        "org.repro.test.platform": platform_name,
                        "org.repro.test.nonce": nonce,
                    }
                },
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            });
            if let Some(v) = variant {
                config["variant"] = json!(v);
            }
            let config_bytes = serde_json::to_vec(&config).expect("config json");
            let config_digest = self.upload_blob_if_missing(repo, &config_bytes);
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_bytes.len()},
                "layers": [layer_desc],
            });
            let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest json");
            let manifest_digest = sha256_digest(&manifest_bytes);
            let pushed = self.put_manifest(repo, &manifest_digest, OCI_MANIFEST, &manifest_bytes);
            assert_eq!(pushed, manifest_digest);
            entries.push(json!({
                "mediaType": OCI_MANIFEST,
                "digest": manifest_digest,
                "size": manifest_bytes.len(),
                "platform": platform,
            }));
            per_platform.push((platform_name, manifest_digest));
        }
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
        let index_bytes = serde_json::to_vec(&index).expect("index json");
        let index_digest = self.put_manifest(repo, tag, OCI_INDEX, &index_bytes);
        IndexInfo {
            index_digest,
            per_platform,
        }
    }

    /// `http://ADDR` (`https://` for a TLS registry) + `path`.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// Uploads a blob (POST then PUT of `/v2/<repo>/blobs/uploads/`) unless the registry has it;
    /// returns its digest.
    pub fn upload_blob_if_missing(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        if self
            .request("HEAD", &format!("/v2/{repo}/blobs/{digest}"))
            .call()
            .is_ok()
        {
            return digest;
        }
        let resp = self
            .request("POST", &format!("/v2/{repo}/blobs/uploads/"))
            .send_bytes(&[])
            .unwrap_or_else(|e| panic!("start blob upload to {repo}: {e}"));
        assert_eq!(resp.status(), 202, "blob upload start");
        let location = resp
            .header("Location")
            .expect("upload Location")
            .to_string();
        let location = if location.starts_with('/') {
            self.url(&location)
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let resp = self
            .request_url("PUT", &format!("{location}{sep}digest={digest}"))
            .set("Content-Type", "application/octet-stream")
            .send_bytes(bytes)
            .unwrap_or_else(|e| panic!("finish blob upload of {digest} to {repo}: {e}"));
        assert_eq!(resp.status(), 201, "blob upload finish");
        digest
    }

    /// PUTs a manifest or index under `reference` (tag or digest); returns the
    /// `Docker-Content-Digest` the registry answered, after checking it is the body's SHA-256.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let resp = self
            .request("PUT", &format!("/v2/{repo}/manifests/{reference}"))
            .set("Content-Type", media_type)
            .send_bytes(body)
            .unwrap_or_else(|e| panic!("PUT manifest {repo}:{reference}: {}", describe(e)));
        assert_eq!(resp.status(), 201, "PUT manifest {repo}:{reference}");
        let digest = resp
            .header("Docker-Content-Digest")
            .expect("Docker-Content-Digest on PUT")
            .to_string();
        assert_eq!(
            digest,
            sha256_digest(body),
            "registry digest differs from body"
        );
        digest
    }

    /// GETs a manifest with the full Accept header; panics when the registry has none.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Manifest {
        let resp = self
            .request("GET", &format!("/v2/{repo}/manifests/{reference}"))
            .set("Accept", MANIFEST_ACCEPT)
            .call()
            .unwrap_or_else(|e| panic!("GET manifest {repo}:{reference}: {}", describe(e)));
        let digest = resp
            .header("Docker-Content-Digest")
            .unwrap_or_default()
            .to_string();
        let media_type = resp.header("Content-Type").unwrap_or_default().to_string();
        let mut body = Vec::new();
        resp.into_reader()
            .read_to_end(&mut body)
            .expect("read manifest body");
        Manifest {
            digest,
            media_type,
            body,
        }
    }

    /// Points `new_tag` at the manifest `reference` names (a tag or a digest); returns its digest.
    pub fn tag(&self, repo: &str, reference: &str, new_tag: &str) -> String {
        let m = self.get_manifest(repo, reference);
        self.put_manifest(repo, new_tag, &m.media_type, &m.body)
    }

    /// Runs `docker-registry garbage-collect` on this registry's storage: blobs no manifest
    /// references any more are removed (deletion is enabled in every test registry).
    pub fn garbage_collect(&self) {
        run(Command::new("docker-registry")
            .arg("garbage-collect")
            .arg(self.dir.path().join("config.yml")));
    }

    /// Deletes the manifest with `digest` (and so every tag pointing at it).
    pub fn delete_manifest(&self, repo: &str, digest: &str) {
        let resp = self
            .request("DELETE", &format!("/v2/{repo}/manifests/{digest}"))
            .call()
            .unwrap_or_else(|e| panic!("DELETE manifest {repo}@{digest}: {}", describe(e)));
        assert_eq!(resp.status(), 202, "DELETE manifest");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status and body of an HTTP error, for panic messages.
fn describe(e: ureq::Error) -> String {
    match e {
        ureq::Error::Status(code, resp) => {
            format!("HTTP {code}: {}", resp.into_string().unwrap_or_default())
        }
        other => other.to_string(),
    }
}

/// Asks the kernel to send `signal` to the child when the thread that spawned it dies, so a
/// test process killed outright does not leave servers behind.
pub(crate) fn kill_with_parent(cmd: &mut Command, signal: libc::c_int) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs a command, panicking with its stderr when it fails; returns stdout.
pub(crate) fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    super::assert_ok_for(&out, &format!("{cmd:?}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const BASE_TAG: &str = "base";
const BUSYBOX: &str = "/bin/busybox";

/// The base OCI layout (busybox in `/bin`, tag `base`), built once per busybox binary and
/// kept under the target dir so later test runs reuse it.
fn base_layout() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        require_tool("umoci");
        let busybox = std::fs::read(BUSYBOX)
            .unwrap_or_else(|e| panic!("{BUSYBOX}: {e}; run .ci/install.sh (busybox-static)"));
        // A dynamically linked busybox would not run in an image without a libc.
        assert!(
            !has_interpreter(&busybox),
            "{BUSYBOX} is dynamically linked; install busybox-static"
        );
        let key = &hex::encode(Sha256::digest(&busybox))[..16];
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("repro-it");
        let layout = root.join(format!("busybox-oci-{key}"));
        if layout.join("index.json").is_file() {
            return layout;
        }
        std::fs::create_dir_all(&root).expect("create target tmp dir");
        let work = tempfile::Builder::new()
            .prefix("busybox-build-")
            .tempdir_in(&root)
            .expect("temp dir");
        let oci = work.path().join("oci");
        let bundle = work.path().join("bundle");
        let image = format!("{}:{BASE_TAG}", oci.display());
        run(Command::new("umoci").arg("init").arg("--layout").arg(&oci));
        run(Command::new("umoci").args(["new", "--image", &image]));
        run(Command::new("umoci")
            .args(["unpack", "--rootless", "--image", &image])
            .arg(&bundle));
        let bin = bundle.join("rootfs/bin");
        std::fs::create_dir_all(&bin).expect("mkdir rootfs/bin");
        std::fs::write(bin.join("busybox"), &busybox).expect("copy busybox");
        set_mode(&bin.join("busybox"), 0o755);
        for applet in [
            "sh", "echo", "cat", "env", "ls", "sleep", "true", "false", "pwd", "id",
        ] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("applet symlink");
        }
        std::fs::create_dir_all(bundle.join("rootfs/tmp")).expect("mkdir tmp");
        run(Command::new("umoci")
            .args(["repack", "--image", &image])
            .arg(&bundle));
        run(Command::new("umoci").args([
            "config",
            "--image",
            &image,
            "--config.cmd",
            "/bin/sh",
            "--config.env",
            "PATH=/bin",
        ]));
        // Another test process may have won the race; either layout is equally good.
        if std::fs::rename(&oci, &layout).is_err() && !layout.join("index.json").is_file() {
            panic!("could not install base layout at {}", layout.display());
        }
        layout
    })
}

/// Whether an ELF64 little-endian binary names a program interpreter (is dynamically linked).
pub(crate) fn has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return false;
    }
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let at = phoff + i * phentsize;
        elf.get(at..at + 4)
            .is_some_and(|t| u32::from_le_bytes(t.try_into().expect("4 bytes")) == PT_INTERP)
    })
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn base_manifest_digest(layout: &Path) -> String {
    let index: Value = read_json(&layout.join("index.json"));
    index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == BASE_TAG)
        .and_then(|m| m["digest"].as_str())
        .expect("base tag in layout")
        .to_string()
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// A ustar archive holding one regular file, so non-host images have a real, tiny layer.
fn tar_one_file(name: &str, data: &[u8]) -> Vec<u8> {
    fn field(header: &mut [u8], at: usize, value: &[u8]) {
        header[at..at + value.len()].copy_from_slice(value);
    }
    let mut header = [0u8; 512];
    field(&mut header, 0, name.as_bytes());
    field(&mut header, 100, b"0000644\0");
    field(&mut header, 108, b"0000000\0");
    field(&mut header, 116, b"0000000\0");
    field(
        &mut header,
        124,
        format!("{:011o}\0", data.len()).as_bytes(),
    );
    field(&mut header, 136, b"00000000000\0");
    field(&mut header, 148, b"        ");
    header[156] = b'0';
    field(&mut header, 257, b"ustar\0");
    field(&mut header, 263, b"00");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    field(&mut header, 148, format!("{sum:06o}\0 ").as_bytes());
    let mut out = header.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// A bcrypt hash of `password` for htpasswd, from the system's libcrypt (libxcrypt on Debian),
/// so the harness needs no extra crate or `htpasswd` binary.
fn bcrypt(password: &str) -> String {
    use std::ffi::{CStr, CString};
    use std::sync::Mutex;
    #[link(name = "crypt")]
    extern "C" {
        fn crypt(phrase: *const libc::c_char, setting: *const libc::c_char) -> *mut libc::c_char;
    }
    // crypt() returns a static buffer.
    static LOCK: Mutex<()> = Mutex::new(());
    const ALPHABET: &[u8] = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let seed = Sha256::digest(nonce().as_bytes());
    let salt: String = seed[..22]
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % 64] as char)
        .collect();
    // Cost 5 (Go accepts 4..31) keeps registry logins fast.
    let setting = CString::new(format!("$2b$05${salt}")).expect("setting");
    let phrase = CString::new(password).expect("password without NUL");
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: both arguments are valid C strings; the result is copied before the lock drops.
    let hashed = unsafe { crypt(phrase.as_ptr(), setting.as_ptr()) };
    assert!(!hashed.is_null(), "crypt() failed for bcrypt");
    // SAFETY: crypt returned a non-null NUL-terminated string.
    let hashed = unsafe { CStr::from_ptr(hashed) }
        .to_string_lossy()
        .into_owned();
    assert!(
        hashed.starts_with("$2b$05$"),
        "libcrypt has no bcrypt: {hashed}"
    );
    hashed
}
