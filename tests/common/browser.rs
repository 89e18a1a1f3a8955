//! Headless Chromium driven over WebDriver (W3C) by Debian's chromedriver:
//! just the commands the web UI tests need.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Proc, free_port, local, wait_listening};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key WebDriver names an element reference by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    session: String,
    _driver: Proc,
}

impl Browser {
    /// Starts chromedriver and one headless browser whose profile lives in
    /// `profile`; panics with the fix when Chromium is not installed.
    pub fn start(profile: &Path) -> Browser {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: run scripts/test (it installs chromium and chromium-driver)"
            );
        }
        let port = free_port();
        let mut driver = Proc::spawn(
            Command::new(CHROMEDRIVER).arg(format!("--port={port}")),
            "chromedriver",
        );
        wait_listening(local(port), &mut driver, Duration::from_secs(30));
        let base = format!("http://127.0.0.1:{port}/session");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--disable-background-networking",
                    "--disable-extensions", "--no-first-run", "--window-size=1280,860",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let r = send("POST", &base, Some(caps)).unwrap_or_else(|e| panic!("{e}"));
        let id = r["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_owned();
        Browser {
            session: format!("{base}/{id}"),
            _driver: driver,
        }
    }

    fn try_post(&self, path: &str, body: Value) -> Result<Value, String> {
        send("POST", &format!("{}/{path}", self.session), Some(body))
    }

    fn post(&self, path: &str, body: Value) -> Value {
        self.try_post(path, body).unwrap_or_else(|e| panic!("{e}"))
    }

    fn get(&self, path: &str) -> Value {
        send("GET", &format!("{}/{path}", self.session), None).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn open(&self, url: &str) {
        self.post("url", json!({ "url": url }));
    }

    /// The first element matching a CSS selector, waiting up to 20 s for it.
    pub fn find(&self, css: &str) -> Element<'_> {
        let start = Instant::now();
        loop {
            let r = self.try_post("element", json!({"using": "css selector", "value": css}));
            if let Some(id) = r.as_ref().ok().and_then(|r| r[ELEMENT].as_str()) {
                return Element {
                    browser: self,
                    id: id.to_owned(),
                };
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no element {css}: {r:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Clicks the first element matching `css`, again if the page replaced
    /// it between finding and clicking (the torrent list is redrawn every 2 s).
    pub fn click(&self, css: &str) {
        let start = Instant::now();
        loop {
            let e = self.find(css);
            match self.try_post(&format!("element/{}/click", e.id), json!({})) {
                Ok(_) => return,
                Err(why) => assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "cannot click {css}: {why}"
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `script` in the page and returns what it returns.
    pub fn eval(&self, script: &str) -> Value {
        self.post("execute/sync", json!({ "script": script, "args": [] }))
    }

    /// Polls `script` until `done` holds for its result.
    pub fn wait_for(
        &self,
        script: &str,
        limit: Duration,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let v = self.eval(script);
            if done(&v) {
                return v;
            }
            assert!(start.elapsed() < limit, "{what}: not after {limit:?}: {v}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The page as a PNG.
    pub fn screenshot(&self) -> Vec<u8> {
        let r = self.get("screenshot");
        data_encoding::BASE64
            .decode(r.as_str().expect("base64 screenshot").as_bytes())
            .expect("valid base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&self.session).call();
    }
}

pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

impl Element<'_> {
    /// Types `text`; for a file input, `text` is the path of the file to pick.
    pub fn send_keys(&self, text: &str) {
        self.browser.post(
            &format!("element/{}/value", self.id),
            json!({ "text": text }),
        );
    }
}

/// One WebDriver command; its `value`, or WebDriver's error.
fn send(method: &str, url: &str, body: Option<Value>) -> Result<Value, String> {
    let req = ureq::request(method, url).timeout(Duration::from_secs(60));
    let r = match body {
        Some(b) => req.send_string(&b.to_string()),
        None => req.call(),
    };
    let text = match r {
        Ok(r) => r.into_string().unwrap(),
        Err(ureq::Error::Status(code, r)) => {
            let why = r.into_string().unwrap_or_default();
            return Err(format!("WebDriver {method} {url}: {code} {why}"));
        }
        Err(e) => return Err(format!("WebDriver {method} {url}: {e}")),
    };
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{url}: {e}: {text}"))?;
    Ok(v["value"].clone())
}
