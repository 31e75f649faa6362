//! Helpers shared by the integration tests.
#![allow(dead_code)]

use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use sf_emulator::{Emulator, EmulatorConfig};

pub const V: &str = "v62.0";

pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
}

pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

pub async fn start() -> (Emulator, Client) {
    start_with(EmulatorConfig::default()).await
}

pub async fn start_with(cfg: EmulatorConfig) -> (Emulator, Client) {
    let emu = sf_emulator::spawn(cfg).await.expect("emulator starts");
    let c = login(&emu).await;
    (emu, c)
}

pub async fn login(emu: &Emulator) -> Client {
    let http = reqwest::Client::new();
    let cfg = EmulatorConfig::default();
    let r = http
        .post(emu.token_url())
        .form(&[
            ("grant_type", "password"),
            ("client_id", cfg.client_id.as_str()),
            ("client_secret", cfg.client_secret.as_str()),
            ("username", cfg.username.as_str()),
            ("password", cfg.password.as_str()),
        ])
        .send()
        .await
        .expect("token call");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    Client {
        base: v["instance_url"].as_str().unwrap().to_string(),
        token: v["access_token"].as_str().unwrap().to_string(),
        http,
    }
}

impl Client {
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("/services") {
            format!("{}{}", self.base, path)
        } else {
            format!("{}/services/data/{V}/{}", self.base, path)
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut rb = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(reqwest::Method::GET, path, None, &[]).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(reqwest::Method::POST, path, Some(body), &[])
            .await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send(reqwest::Method::PATCH, path, Some(body), &[])
            .await
    }
    pub async fn delete(&self, path: &str) -> Reply {
        self.send(reqwest::Method::DELETE, path, None, &[]).await
    }
    pub async fn query(&self, soql: &str) -> Reply {
        let url = format!("query?q={}", url_encode(soql));
        self.get(&url).await
    }
}

pub fn url_encode(s: &str) -> String {
    form_urlencoded_byte_serialize(s)
}

fn form_urlencoded_byte_serialize(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Asserts `id` is an 18-character id with the given key prefix and a valid suffix.
pub fn assert_id(id: &Value, prefix: &str) {
    let s = id
        .as_str()
        .unwrap_or_else(|| panic!("id is not a string: {id}"));
    assert_eq!(s.len(), 18, "{s}");
    assert!(s.starts_with(prefix), "{s} should start with {prefix}");
    assert_eq!(sf_emulator::ids::normalize(s).as_deref(), Some(s));
}

pub fn account(name: &str) -> Value {
    json!({"Name": name})
}
