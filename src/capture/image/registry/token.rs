//! Bearer tokens (the distribution token protocol): where credentials may be sent, and reading
//! the token endpoint's answer. A malformed answer is a token error, never an "invalid manifest".

use serde::Deserialize;

use super::super::auth::{Challenge, Credential};
use super::super::reference::split_host_port;
use super::error::{Ctx, RegistryError};
use super::options::HostSettings;
use super::transport::{classify, describe_transport, error_detail, read_limited, Failure};
use super::RegistryClient;

/// Whether credentials may be sent to `realm` for the registry `reg`: always over HTTPS; over
/// plain HTTP only when the realm is on the registry's own host and that registry may itself
/// be spoken to over HTTP (loopback or declared insecure). `Err` says why not.
pub fn realm_allows_credentials(realm: &str, reg: &HostSettings) -> Result<(), String> {
    let lower = realm.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Ok(());
    }
    let Some(rest) = lower.strip_prefix("http://") else {
        return Err("the realm is not an http(s) URL".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let realm_host = split_host_port(authority).0;
    let reg_host = split_host_port(&reg.registry).0.to_ascii_lowercase();
    if realm_host != reg_host {
        return Err(format!(
            "the realm's host {realm_host} is not the registry's host {reg_host}"
        ));
    }
    if !reg.plain_http_allowed() {
        return Err(format!(
            "{} is neither loopback nor declared with --insecure-registry",
            reg.registry
        ));
    }
    Ok(())
}

impl RegistryClient {
    /// Fetches a bearer token for `scope` from the challenge's realm, with credentials only
    /// where [`realm_allows_credentials`] permits.
    pub(super) fn fetch_token(
        &self,
        c: &Challenge,
        scope: &str,
        creds: Option<&Credential>,
        reg: &HostSettings,
        ctx: &Ctx<'_>,
    ) -> Result<String, RegistryError> {
        let Some(realm) = c.params.get("realm") else {
            return Err(ctx.token("(none)", "the bearer challenge names no realm"));
        };
        if creds.is_some() {
            if let Err(why) = realm_allows_credentials(realm, reg) {
                return Err(RegistryError::InsecureRealm {
                    registry: ctx.registry.to_string(),
                    reference: ctx.reference.to_string(),
                    realm: realm.clone(),
                    why,
                });
            }
        }
        let realm_authority = realm.split('/').nth(2).unwrap_or(realm).to_string();
        let realm_host = self.opts.host_settings(&realm_authority);
        let agent = self.agent_for(&realm_host)?;
        let remaining = ctx.remaining();
        if remaining.is_zero() {
            return Err(ctx.deadline_passed());
        }
        let mut req = agent
            .get(realm)
            .timeout(self.opts.timeout.min(remaining))
            .query("scope", scope);
        if let Some(service) = c.params.get("service") {
            req = req.query("service", service);
        }
        if let Some(cr) = creds {
            req = req.set("Authorization", &cr.basic_header());
        }
        let resp = match req.call() {
            Ok(resp) => resp,
            Err(ureq::Error::Status(status, resp)) => {
                let detail = error_detail(resp);
                return Err(if status == 401 || status == 403 {
                    RegistryError::Unauthorized {
                        registry: ctx.registry.to_string(),
                        reference: ctx.reference.to_string(),
                        status,
                        had_credentials: creds.is_some(),
                        detail: format!("token endpoint {realm_authority}: {detail}"),
                    }
                } else {
                    RegistryError::Status {
                        registry: ctx.registry.to_string(),
                        reference: ctx.reference.to_string(),
                        status,
                        detail: format!("token endpoint {realm_authority}: {detail}"),
                    }
                });
            }
            Err(ureq::Error::Transport(t)) => {
                let mut problem = describe_transport(&t);
                if classify(&t) == Failure::Timeout {
                    problem = format!("no answer ({problem})");
                }
                return Err(ctx.transport(format!("token endpoint {realm_authority}: {problem}")));
            }
        };
        parse_token(&read_limited(resp, ctx, "token response")?)
            .map_err(|problem| ctx.token(&realm_authority, problem))
    }
}

/// The `Authorization` value from a token endpoint's JSON answer.
pub(crate) fn parse_token(body: &[u8]) -> Result<String, String> {
    #[derive(Deserialize)]
    struct Tok {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
    }
    let tok: Tok =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not token JSON: {e}"))?;
    match tok.token.or(tok.access_token).filter(|t| !t.is_empty()) {
        Some(t) if t.bytes().all(|b| b.is_ascii_graphic()) => Ok(format!("Bearer {t}")),
        Some(_) => Err("the token contains characters not allowed in a header".into()),
        None => Err("the answer holds no token".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::image::auth::AuthConfig;
    use crate::capture::image::registry::RegistryOptions;

    fn settings(registry: &str, insecure: &[&str]) -> HostSettings {
        RegistryOptions {
            insecure_registries: insecure.iter().map(|s| s.to_string()).collect(),
            certs_d: vec![],
            auth: AuthConfig::anonymous(),
            ..RegistryOptions::default()
        }
        .host_settings(registry)
    }

    #[test]
    fn credentials_go_to_https_realms_or_the_registrys_own_insecure_host() {
        let public = settings("reg.example.com", &[]);
        assert!(realm_allows_credentials("https://auth.example.com/token", &public).is_ok());
        assert!(realm_allows_credentials("http://reg.example.com/token", &public).is_err());
        assert!(realm_allows_credentials("ftp://reg.example.com/token", &public).is_err());

        let lo = settings("127.0.0.1:5000", &[]);
        assert!(realm_allows_credentials("http://127.0.0.1:5055/token", &lo).is_ok());
        let e = realm_allows_credentials("http://127.0.0.2:5055/token", &lo).unwrap_err();
        assert!(e.contains("127.0.0.2"), "{e}");
        assert!(realm_allows_credentials("http://evil@127.0.0.2/t", &lo).is_err());
        assert!(realm_allows_credentials("http://127.0.0.1.evil.com/t", &lo).is_err());

        let lan = settings("reg.lan:5000", &["reg.lan:5000"]);
        assert!(realm_allows_credentials("http://reg.lan:5001/token", &lan).is_ok());
        assert!(realm_allows_credentials("http://auth.lan/token", &lan).is_err());
    }

    #[test]
    fn token_answers() {
        assert_eq!(parse_token(br#"{"token":"abc"}"#).unwrap(), "Bearer abc");
        assert_eq!(parse_token(br#"{"access_token":"x"}"#).unwrap(), "Bearer x");
        assert!(parse_token(b"<html>")
            .unwrap_err()
            .contains("not token JSON"));
        assert!(parse_token(br#"{"token":""}"#)
            .unwrap_err()
            .contains("no token"));
        assert!(parse_token(b"{\"token\":\"a\\nb\"}").is_err());
    }
}
