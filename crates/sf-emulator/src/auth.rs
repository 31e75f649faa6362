//! OAuth 2.0 token endpoint (`/services/oauth2/token`: JWT bearer, client credentials,
//! refresh token, username-password) and the SOAP partner `login` call
//! (`/services/Soap/u/XX.X`), plus bearer-token checks for the REST API.
//!
//! Error bodies are OAuth-style objects (reference §1). Assumed (not in the reference):
//! the descriptions for a bad JWT signature (`invalid assertion`) and an expired JWT
//! (`expired assertion`); `invalid_client` / `invalid client credentials` for a wrong
//! secret. The JWT verification key is a PEM public key (Salesforce takes the X.509
//! certificate; the emulator takes the key inside it).

use crate::store::sf_now;
use crate::Shared;
use base64::Engine;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// One issued access token.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
    pub issued_at_ms: u128,
}

/// Issued access and refresh tokens.
#[derive(Debug, Default)]
pub struct AuthState {
    pub sessions: HashMap<String, Session>,
    pub refresh_tokens: HashMap<String, String>,
}

fn random(n: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

impl AuthState {
    fn issue(&mut self, org_id: &str, user_id: &str) -> (String, u128) {
        let token = format!("{}!AQ{}", &org_id[..15], random(96));
        let issued = now_ms();
        self.sessions.insert(
            token.clone(),
            Session {
                user_id: user_id.to_string(),
                issued_at_ms: issued,
            },
        );
        (token, issued)
    }

    /// Issues a refresh token for `username`.
    pub fn issue_refresh_token(&mut self, username: &str) -> String {
        let t = format!("5Aep861{}", random(80));
        self.refresh_tokens.insert(t.clone(), username.to_string());
        t
    }
}

/// OAuth error (always HTTP 400 here).
pub struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    fn new(error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status: 400,
            error,
            description: description.into(),
        }
    }
    pub fn body(&self) -> Value {
        json!({"error": self.error, "error_description": self.description})
    }
}

/// Inputs of a token request.
pub struct TokenRequest<'a> {
    pub form: HashMap<String, String>,
    pub basic_auth: Option<(String, String)>,
    pub instance_url: &'a str,
}

fn check_client(sh: &Shared, id: Option<&str>, secret: Option<&str>) -> Result<(), OAuthError> {
    let cfg = &sh.config;
    match id {
        Some(id) if id == cfg.client_id => {}
        _ => {
            return Err(OAuthError::new(
                "invalid_client_id",
                "client identifier invalid",
            ))
        }
    }
    match secret {
        Some(s) if s == cfg.client_secret => Ok(()),
        _ => Err(OAuthError::new(
            "invalid_client",
            "invalid client credentials",
        )),
    }
}

fn password_ok(sh: &Shared, username: &str, password: &str) -> bool {
    let cfg = &sh.config;
    username == cfg.username
        && (password == cfg.password
            || password == format!("{}{}", cfg.password, cfg.security_token))
}

/// Handles `POST /services/oauth2/token`; returns the success JSON or an OAuth error.
pub fn token(sh: &Shared, req: TokenRequest<'_>) -> Result<Value, OAuthError> {
    let form = &req.form;
    let grant = form.get("grant_type").ok_or_else(|| {
        OAuthError::new("invalid_request", "missing required parameter: grant_type")
    })?;
    let (client_id, client_secret) = match &req.basic_auth {
        Some((i, s)) => (Some(i.as_str()), Some(s.as_str())),
        None => (
            form.get("client_id").map(String::as_str),
            form.get("client_secret").map(String::as_str),
        ),
    };
    let mut scope = None;
    match grant.as_str() {
        "password" => {
            check_client(sh, client_id, client_secret)?;
            let u = form.get("username").map(String::as_str).unwrap_or("");
            let p = form.get("password").map(String::as_str).unwrap_or("");
            if !password_ok(sh, u, p) {
                return Err(OAuthError::new("invalid_grant", "authentication failure"));
            }
        }
        "client_credentials" => {
            check_client(sh, client_id, client_secret)?;
            scope = Some("api");
        }
        "refresh_token" => {
            if let Some(id) = client_id {
                if id != sh.config.client_id {
                    return Err(OAuthError::new(
                        "invalid_client_id",
                        "client identifier invalid",
                    ));
                }
            }
            if let Some(s) = client_secret {
                if s != sh.config.client_secret {
                    return Err(OAuthError::new(
                        "invalid_client",
                        "invalid client credentials",
                    ));
                }
            }
            let t = form.get("refresh_token").cloned().unwrap_or_default();
            if !sh.auth.lock().refresh_tokens.contains_key(&t) {
                return Err(OAuthError::new(
                    "invalid_grant",
                    "expired access/refresh token",
                ));
            }
            scope = Some("api refresh_token");
        }
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
            let assertion = form.get("assertion").cloned().unwrap_or_default();
            verify_jwt(sh, &assertion, req.instance_url)?;
            scope = Some("api");
        }
        "authorization_code" => {
            return Err(OAuthError::new(
                "invalid_grant",
                "invalid authorization code",
            ));
        }
        _ => {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                "grant type not supported",
            ))
        }
    }
    let (org_id, user_id) = {
        let st = sh.state.lock();
        (st.org_id.clone(), st.integration_user_id.clone())
    };
    let (access_token, issued) = sh.auth.lock().issue(&org_id, &user_id);
    let id_url = format!(
        "{}/id/{}/{}",
        req.instance_url,
        &org_id[..18.min(org_id.len())],
        user_id
    );
    let issued_s = issued.to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(sh.config.client_secret.as_bytes())
        .expect("HMAC accepts any key length");
    mac.update(id_url.as_bytes());
    mac.update(issued_s.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let mut out = json!({
        "access_token": access_token,
        "instance_url": req.instance_url,
        "id": id_url,
        "token_type": "Bearer",
        "issued_at": issued_s,
        "signature": signature,
    });
    if let Some(s) = scope {
        out["scope"] = json!(s);
    }
    tracing::debug!(grant = %grant, user_id = %user_id, "issued access token");
    Ok(out)
}

fn verify_jwt(sh: &Shared, assertion: &str, instance_url: &str) -> Result<(), OAuthError> {
    let cfg = &sh.config;
    let Some(pem) = &cfg.jwt_public_key_pem else {
        tracing::warn!("JWT bearer request but no jwt_public_key_pem configured");
        return Err(OAuthError::new("invalid_grant", "invalid assertion"));
    };
    let key = DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| {
        tracing::warn!(error = %e, "configured JWT public key is not a usable RSA PEM key");
        OAuthError::new("invalid_grant", "invalid assertion")
    })?;
    let mut v = Validation::new(Algorithm::RS256);
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<Value>(assertion, &key, &v)
        .map_err(|_| OAuthError::new("invalid_grant", "invalid assertion"))?;
    let c = data.claims;
    let consumer = cfg.jwt_consumer_key.as_deref().unwrap_or(&cfg.client_id);
    if c.get("iss").and_then(Value::as_str) != Some(consumer) {
        return Err(OAuthError::new(
            "invalid_client_id",
            "client identifier invalid",
        ));
    }
    let auds: Vec<String> = match c.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    let trim = |s: &str| s.trim_end_matches('/').to_string();
    let mut allowed = vec![
        "https://login.salesforce.com".to_string(),
        "https://test.salesforce.com".to_string(),
        trim(instance_url),
    ];
    if let Some(p) = &cfg.public_url {
        allowed.push(trim(p));
    }
    if !auds.iter().any(|a| allowed.contains(&trim(a))) {
        return Err(OAuthError::new("invalid_grant", "audience is invalid"));
    }
    let exp = match c.get("exp") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.parse::<f64>().ok(),
        _ => None,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    match exp {
        Some(e) if e > now => {}
        _ => return Err(OAuthError::new("invalid_grant", "expired assertion")),
    }
    if c.get("sub").and_then(Value::as_str) != Some(cfg.username.as_str()) {
        return Err(OAuthError::new(
            "invalid_grant",
            "user hasn't approved this consumer",
        ));
    }
    Ok(())
}

/// Checks an `Authorization` header value; returns the session.
pub fn check_bearer(sh: &Shared, header: Option<&str>) -> Option<Session> {
    let h = header?;
    let token = h
        .strip_prefix("Bearer ")
        .or_else(|| h.strip_prefix("OAuth "))
        .or_else(|| h.strip_prefix("bearer "))?
        .trim();
    sh.auth.lock().sessions.get(token).cloned()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Text content of the first element whose local name is `name`.
fn xml_element(body: &str, name: &str) -> Option<String> {
    let mut from = 0;
    while let Some(rel) = body[from..].find('<') {
        let start = from + rel + 1;
        let end = body[start..].find('>')? + start;
        let tag = &body[start..end];
        let tag_name = tag.split_whitespace().next().unwrap_or("");
        let local = tag_name.rsplit(':').next().unwrap_or("");
        if local == name && !tag.starts_with('/') {
            let close = body[end + 1..].find("</")? + end + 1;
            return Some(xml_unescape(&body[end + 1..close]));
        }
        from = end;
    }
    None
}

/// SOAP login outcome: status and XML body.
pub fn soap_login(sh: &Shared, body: &str, instance_url: &str, version: &str) -> (u16, String) {
    let username = xml_element(body, "username").unwrap_or_default();
    let password = xml_element(body, "password").unwrap_or_default();
    if !password_ok(sh, &username, &password) {
        let msg = "Invalid username, password, security token; or user locked out.";
        let xml = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>sf:INVALID_LOGIN</faultcode><faultstring>INVALID_LOGIN: {msg}</faultstring><detail><sf:LoginFault xsi:type="sf:LoginFault"><sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode><sf:exceptionMessage>{msg}</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#
        );
        return (500, xml);
    }
    let (org_id, user_id) = {
        let st = sh.state.lock();
        (st.org_id.clone(), st.integration_user_id.clone())
    };
    let (token, _) = sh.auth.lock().issue(&org_id, &user_id);
    let org15 = &org_id[..15];
    let xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><loginResponse><result><metadataServerUrl>{base}/services/Soap/m/{version}/{org15}</metadataServerUrl><passwordExpired>false</passwordExpired><sandbox>false</sandbox><serverUrl>{base}/services/Soap/u/{version}/{org15}</serverUrl><sessionId>{token}</sessionId><userId>{user_id}</userId><userInfo><currencySymbol>$</currencySymbol><orgDefaultCurrencyIsoCode>{cur}</orgDefaultCurrencyIsoCode><orgId>{org_id}</orgId><organizationMultiCurrency>{mc}</organizationMultiCurrency><organizationName>revsync emulator</organizationName><userEmail>{email}</userEmail><userFullName>Integration User</userFullName><userId>{user_id}</userId><userName>{email}</userName><userTimeZone>GMT</userTimeZone></userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>"#,
        base = xml_escape(instance_url),
        token = xml_escape(&token),
        cur = xml_escape(&sh.config.corporate_currency),
        mc = sh.config.multi_currency,
        email = xml_escape(&sh.config.username),
    );
    tracing::debug!(user_id = %user_id, at = %sf_now(), "SOAP login");
    (200, xml)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_element_finds_prefixed_and_plain_tags() {
        let body = r#"<env:Body><n1:login xmlns:n1="urn:partner.soap.sforce.com"><n1:username>a&amp;b@x.com</n1:username><n1:password>pw</n1:password></n1:login></env:Body>"#;
        assert_eq!(xml_element(body, "username").as_deref(), Some("a&b@x.com"));
        assert_eq!(xml_element(body, "password").as_deref(), Some("pw"));
        assert_eq!(
            xml_element(
                "<urn:login><urn:username>u</urn:username></urn:login>",
                "username"
            )
            .as_deref(),
            Some("u")
        );
        assert_eq!(xml_element("<a>b</a>", "username"), None);
    }
}
