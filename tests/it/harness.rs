//! Tests of the test harness itself: the registry, the pushed images and the engines are real.

use std::process::Output;

use serde_json::Value;

use crate::support::engine::{Dockerd, Podman, PushedBusybox};
use crate::support::registry::{
    busybox_labels, host_platform, sha256_digest, Registry, DOCKER_MANIFEST, MANIFEST_ACCEPT,
    OCI_INDEX, OCI_MANIFEST,
};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

#[test]
fn registry_answers_v2_and_stops_on_drop() {
    let registry = Registry::start();
    let addr = registry.addr();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let resp = ureq::get(&registry.url("/v2/")).call().expect("GET /v2/");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.header("Docker-Distribution-Api-Version"),
        Some("registry/2.0")
    );
    drop(registry);
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "registry still listening on {addr} after drop"
    );
}

#[test]
fn pushed_busybox_digest_is_what_the_registry_serves() {
    let registry = Registry::start();
    let digest = registry.push_busybox("team/app", "v1");

    let head = ureq::head(&registry.url("/v2/team/app/manifests/v1"))
        .set("Accept", MANIFEST_ACCEPT)
        .call()
        .expect("HEAD manifest");
    assert_eq!(head.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert_eq!(head.header("Content-Type"), Some(OCI_MANIFEST));

    let manifest = registry.get_manifest("team/app", "v1");
    assert_eq!(manifest.digest, digest);
    assert_eq!(sha256_digest(&manifest.body), digest);

    // The labels land in the image config that the manifest names.
    let body: Value = serde_json::from_slice(&manifest.body).expect("manifest json");
    let config_digest = body["config"]["digest"].as_str().expect("config digest");
    let config: Value = ureq::get(&registry.url(&format!("/v2/team/app/blobs/{config_digest}")))
        .call()
        .expect("GET config")
        .into_json()
        .expect("config json");
    for (key, value) in busybox_labels("team/app", "v1") {
        assert_eq!(config["config"]["Labels"][&key], value.as_str(), "{key}");
    }
    assert_eq!(
        format!(
            "{}/{}",
            config["os"].as_str().unwrap(),
            config["architecture"].as_str().unwrap()
        ),
        host_platform()
    );

    // Pushing the same tag again moves it to a new, distinct image.
    let moved = registry.push_busybox("team/app", "v1");
    assert_ne!(moved, digest);
    assert_eq!(registry.get_manifest("team/app", "v1").digest, moved);
    // The old digest stays pullable by digest.
    assert_eq!(registry.get_manifest("team/app", &digest).digest, digest);
}

#[test]
fn podman_pulls_and_runs_busybox_by_digest() {
    let bb = PushedBusybox::new("team/app", "v1");
    let (digest, image, podman) = (&bb.digest, &bb.image, bb.podman());

    let out = podman
        .command()
        .args([
            "run",
            "--rm",
            image,
            "/bin/busybox",
            "sh",
            "-c",
            "echo hi; exit 3",
        ])
        .output()
        .expect("spawn podman");
    assert_eq!(text(&out.stdout), "hi\n", "{}", describe(&out));
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));

    let out = podman
        .command()
        .args(["image", "inspect", "--format", "{{.Digest}}", image])
        .output()
        .expect("spawn podman");
    assert_eq!(text(&out.stdout).trim(), digest, "{}", describe(&out));
}

#[test]
fn index_has_a_distinct_manifest_per_platform() {
    let registry = Registry::start();
    let host = host_platform();
    let host_arch = host.strip_prefix("linux/").unwrap();
    let others: Vec<&str> = ["amd64", "arm64", "arm/v7"]
        .into_iter()
        .filter(|a| *a != host_arch)
        .collect();
    let mut platforms = vec![("linux", host_arch)];
    platforms.extend(others.iter().map(|a| ("linux", *a)));
    let info = registry.push_index("team/multi", "v2", &platforms);

    let index = registry.get_manifest("team/multi", "v2");
    assert_eq!(index.digest, info.index_digest);
    assert_eq!(index.media_type, OCI_INDEX);
    assert_eq!(sha256_digest(&index.body), info.index_digest);

    let body: Value = serde_json::from_slice(&index.body).expect("index json");
    let listed: Vec<(String, String)> = body["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut name = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                name = format!("{name}/{v}");
            }
            (name, m["digest"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(listed, info.per_platform);
    let expected_names: Vec<String> = platforms.iter().map(|(o, a)| format!("{o}/{a}")).collect();
    let names: Vec<String> = info.per_platform.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names, expected_names);

    let mut digests: Vec<&String> = info.per_platform.iter().map(|(_, d)| d).collect();
    digests.sort();
    digests.dedup();
    assert_eq!(
        digests.len(),
        platforms.len(),
        "platform manifests not distinct"
    );
    for (_, digest) in &info.per_platform {
        let m = registry.get_manifest("team/multi", digest);
        assert_eq!(&m.digest, digest);
        assert_eq!(&sha256_digest(&m.body), digest);
        assert_eq!(m.media_type, OCI_MANIFEST);
    }

    // The engine picks the host platform's manifest out of the index, and it runs.
    let podman = Podman::new(&[&registry.addr()]);
    let image = registry.reference("team/multi", &info.index_digest);
    let out = podman
        .command()
        .args([
            "run",
            "--rm",
            &image,
            "/bin/busybox",
            "sh",
            "-c",
            "echo hi; exit 3",
        ])
        .output()
        .expect("spawn podman");
    assert_eq!(text(&out.stdout), "hi\n", "{}", describe(&out));
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
}

#[test]
fn docker_pulls_and_runs_busybox_by_digest() {
    let Some(dockerd) = Dockerd::start() else {
        return;
    };
    let bb = PushedBusybox::in_registry("team/app", "v1");
    let image = &bb.image;

    let out = dockerd
        .command()
        .args(["pull", "--quiet", image])
        .output()
        .expect("spawn docker");
    assert!(
        out.status.success(),
        "{}\n{}",
        describe(&out),
        dockerd.log()
    );

    let out = dockerd
        .command()
        .args([
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            image,
        ])
        .output()
        .expect("spawn docker");
    let repo_digests: Vec<String> = serde_json::from_slice(&out.stdout).expect("RepoDigests json");
    assert_eq!(repo_digests, vec![image.clone()], "{}", describe(&out));

    let out = dockerd
        .command()
        .args([
            "run",
            "--rm",
            "--network=none",
            image,
            "/bin/busybox",
            "sh",
            "-c",
            "echo hi; exit 3",
        ])
        .output()
        .expect("spawn docker");
    assert_eq!(text(&out.stdout), "hi\n", "{}", describe(&out));
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
}

#[test]
fn static_busybox_check_tells_static_from_dynamic() {
    use crate::support::registry::has_interpreter;
    let ls = std::fs::read("/bin/ls").expect("read /bin/ls");
    assert!(has_interpreter(&ls), "/bin/ls should be dynamically linked");
    let busybox = std::fs::read("/bin/busybox").expect("read /bin/busybox");
    assert!(!has_interpreter(&busybox), "/bin/busybox should be static");
}

#[test]
fn docker_v2_push_keeps_its_media_type_and_digest() {
    let registry = Registry::start();
    let digest = registry.push_busybox_docker_v2("team/legacy", "v1");
    let manifest = registry.get_manifest("team/legacy", "v1");
    assert_eq!(manifest.media_type, DOCKER_MANIFEST);
    assert_eq!(manifest.digest, digest);
    assert_eq!(sha256_digest(&manifest.body), digest);
}

#[test]
fn basic_auth_registry_needs_credentials_for_api_and_engine() {
    let registry = Registry::start_with_basic_auth("ml-user", "s3cret pass");
    let anonymous = ureq::get(&registry.url("/v2/")).call();
    match anonymous {
        Err(ureq::Error::Status(401, resp)) => {
            let challenge = resp.header("WWW-Authenticate").unwrap_or_default();
            assert!(challenge.starts_with("Basic "), "{challenge}");
        }
        other => panic!("anonymous /v2/ should be 401, got {other:?}"),
    }
    let wrong = ureq::get(&registry.url("/v2/"))
        .set("Authorization", "Basic bWwtdXNlcjpub3Bl") // ml-user:nope
        .call();
    assert!(
        matches!(wrong, Err(ureq::Error::Status(401, _))),
        "{wrong:?}"
    );
    let resp = registry
        .request("GET", "/v2/")
        .call()
        .expect("authenticated /v2/");
    assert_eq!(resp.status(), 200);

    let digest = registry.push_busybox("team/private", "v1");
    assert_eq!(registry.get_manifest("team/private", "v1").digest, digest);
    let image = registry.reference("team/private", &digest);

    let podman = Podman::new(&[&registry.addr()]);
    let out = podman
        .command()
        .args(["pull", "--quiet", &image])
        .output()
        .expect("spawn podman");
    assert!(!out.status.success(), "pull without credentials succeeded");

    let auth = podman.dir().join("auth.json");
    std::fs::write(&auth, registry.auth_json()).expect("write auth.json");
    let out = podman
        .command()
        .env("REGISTRY_AUTH_FILE", &auth)
        .args([
            "run",
            "--rm",
            &image,
            "/bin/busybox",
            "sh",
            "-c",
            "echo hi; exit 3",
        ])
        .output()
        .expect("spawn podman");
    assert_eq!(text(&out.stdout), "hi\n", "{}", describe(&out));
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
}

#[test]
fn docker_pulls_from_basic_auth_registry_with_config_json() {
    let Some(dockerd) = Dockerd::start() else {
        return;
    };
    let registry = Registry::start_with_basic_auth("ml-user", "s3cret");
    let digest = registry.push_busybox("team/private", "v1");
    let image = registry.reference("team/private", &digest);
    let config_dir = tempfile::tempdir().expect("temp dir");

    let out = dockerd
        .command()
        .env("DOCKER_CONFIG", config_dir.path())
        .args(["pull", "--quiet", &image])
        .output()
        .expect("spawn docker");
    assert!(!out.status.success(), "pull without credentials succeeded");

    std::fs::write(config_dir.path().join("config.json"), registry.auth_json())
        .expect("write config.json");
    let out = dockerd
        .command()
        .env("DOCKER_CONFIG", config_dir.path())
        .args(["pull", "--quiet", &image])
        .output()
        .expect("spawn docker");
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(text(&out.stdout).trim(), image, "{}", describe(&out));
}

#[test]
fn retag_and_delete_change_what_a_tag_resolves_to() {
    let registry = Registry::start();
    let first = registry.push_busybox("team/app", "v1");
    let second = registry.push_busybox("team/app", "v2");
    assert_eq!(registry.tag("team/app", &first, "v2"), first);
    assert_eq!(registry.get_manifest("team/app", "v2").digest, first);

    registry.delete_manifest("team/app", &second);
    let gone = registry
        .request("HEAD", &format!("/v2/team/app/manifests/{second}"))
        .set("Accept", MANIFEST_ACCEPT)
        .call();
    assert!(matches!(gone, Err(ureq::Error::Status(404, _))), "{gone:?}");
}
