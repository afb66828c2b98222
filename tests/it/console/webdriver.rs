//! Just enough of the W3C WebDriver protocol (JSON over HTTP) to drive a headless
//! Chromium through its chromedriver: open a page, find elements by CSS selector, click,
//! type, read text and attributes, run a script, read the browser's log, take a
//! screenshot. Written over reqwest (already a dependency) rather than pulling in a
//! WebDriver crate and its HTTP stack for a dozen commands.
//!
//! Both programs come from Debian (`chromium`, `chromium-driver`; `.ci/run` installs
//! them). When either is missing the test fails saying so: a browser test that cannot
//! run must not pass. `CHROMEDRIVER` and `CHROME_BIN` name other binaries.

use std::{
    net::TcpListener,
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use base64::Engine;
use serde_json::{Value, json};

/// W3C's key for an element reference in a JSON answer.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

const INSTALL: &str = "the console's browser test needs Debian's `chromium` and \
     `chromium-driver` (apt-get install -y chromium chromium-driver; .ci/run installs them)";

/// A chromedriver process on a free local port, in a process group of its own with the
/// browsers it starts, and a temporary folder for everything they write (profiles, sockets:
/// `TMPDIR`). Dropped, it ends the group (asking first) and removes the folder, so a
/// failed test leaves no browser running and nothing in `/tmp`.
pub struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
    _scratch: tempfile::TempDir,
}

/// One browser (a WebDriver session), closed by [`Session::close`].
pub struct Session {
    http: reqwest::Client,
    url: String,
}

/// What [`Session::read_all`] reads of each element.
#[derive(Clone, Copy, Debug)]
pub enum Read<'a> {
    Text,
    Attribute(&'a str),
}

/// An element of the page, by its WebDriver reference.
#[derive(Clone, Debug)]
pub struct Element(String);

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

fn binary(variable: &str, names: &[&str]) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        return PathBuf::from(path);
    }
    names
        .iter()
        .find_map(|name| on_path(name))
        .unwrap_or_else(|| panic!("no {} on PATH (or ${variable}): {INSTALL}", names[0]))
}

impl Driver {
    pub async fn start() -> Driver {
        let program = binary("CHROMEDRIVER", &["chromedriver"]);
        // A free port: bind, read it, let it go (chromedriver binds it a moment later).
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let scratch = tempfile::Builder::new()
            .prefix("console-browser-")
            .tempdir()
            .expect("a temporary folder for the browser");
        let child = Command::new(&program)
            .arg(format!("--port={port}"))
            .env("TMPDIR", scratch.path())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}; {INSTALL}", program.display()));
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _scratch: scratch,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .await
                .ok();
            if let Some(resp) = ready {
                let body: Value = resp.json().await.unwrap_or_default();
                if body["value"]["ready"] == true {
                    return driver;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A new headless browser window of 1280 x 1320 pixels.
    pub async fn session(&self) -> Session {
        let chrome = binary("CHROME_BIN", &["chromium", "chromium-browser"]);
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chrome,
                "args": [
                    "--headless=new",
                    // CI runs as root, where Chromium's sandbox cannot start.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,1320",
                    "--hide-scrollbars",
                    "--lang=en-GB",
                ],
            },
        }}});
        let resp = self
            .http
            .post(format!("{}/session", self.base))
            .json(&capabilities)
            .send()
            .await
            .expect("ask chromedriver for a session");
        let body: Value = resp.json().await.expect("session answer");
        let id = body["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session ({body}): {INSTALL}"));
        Session {
            http: self.http.clone(),
            url: format!("{}/session/{id}", self.base),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        use nix::{sys::signal::Signal, unistd::Pid};
        let group = Pid::from_raw(i32::try_from(self.child.id()).expect("a pid"));
        let _ = nix::sys::signal::killpg(group, Signal::SIGTERM);
        // A browser takes a moment to close; its folder is removed once it has.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let _ = self.child.try_wait();
            if nix::sys::signal::killpg(group, None).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = nix::sys::signal::killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A WebDriver error answer: its `error` code (`no such element`, ...) and message.
#[derive(Debug)]
pub struct WebDriverError {
    pub error: String,
    pub message: String,
}

impl Session {
    async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WebDriverError> {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("chromedriver answers");
        let ok = resp.status().is_success();
        let mut body: Value = resp.json().await.expect("a JSON answer");
        let value = body["value"].take();
        if ok {
            Ok(value)
        } else {
            Err(WebDriverError {
                error: value["error"].as_str().unwrap_or_default().to_owned(),
                message: value["message"].as_str().unwrap_or_default().to_owned(),
            })
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body))
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {} {}", e.error, e.message))
    }

    async fn get(&self, path: &str) -> Value {
        self.command(reqwest::Method::GET, path, None)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {} {}", e.error, e.message))
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    /// The elements that match `css` now (none is not an error).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self
            .post("/elements", json!({"using": "css selector", "value": css}))
            .await;
        found
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| Element(e[ELEMENT].as_str().expect("element reference").to_owned()))
            .collect()
    }

    /// Waits up to 10 s for an element matching `css`.
    pub async fn wait(&self, css: &str) -> Element {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.find_all(css).await.into_iter().next() {
                return e;
            }
            if Instant::now() > deadline {
                let shown = self.text_of("body").await;
                panic!("no element {css:?} after 10 s; the page shows:\n{shown}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits up to 10 s until `read` (the texts or an attribute of the elements matching
    /// `css`) answers `expected`; re-rendered pages are read afresh each time.
    pub async fn wait_until(&self, css: &str, read: Read<'_>, expected: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let shown = self.read_all(css, read).await;
            if shown == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{css:?} shows {shown:?}, not {expected:?}, after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits up to 10 s until the first element matching `css` shows a text that starts
    /// with `prefix`; returns it.
    pub async fn wait_text_starting(&self, css: &str, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let shown = self.text_of(css).await;
            if shown.starts_with(prefix) {
                return shown;
            }
            assert!(
                Instant::now() < deadline,
                "{css:?} shows {shown:?}, not {prefix:?}..., after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for `css`, clicks it (again if the page was drawn anew in between).
    pub async fn click(&self, css: &str) {
        for _ in 0..5 {
            let e = self.wait(css).await;
            let path = format!("/element/{}/click", e.0);
            match self
                .command(reqwest::Method::POST, &path, Some(json!({})))
                .await
            {
                Ok(_) => return,
                Err(e) if e.error == "stale element reference" => continue,
                Err(e) => panic!("click {css}: {} {}", e.error, e.message),
            }
        }
        panic!("{css} kept being drawn anew");
    }

    /// Waits for `css`, types `text` into it.
    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.wait(css).await;
        self.post(&format!("/element/{}/value", e.0), json!({"text": text}))
            .await;
    }

    /// The rendered text, or an attribute, of every element matching `css`, read in one
    /// script (so a page drawn anew meanwhile cannot leave a stale reference).
    pub async fn read_all(&self, css: &str, read: Read<'_>) -> Vec<String> {
        let (script, name) = match read {
            Read::Text => (
                "return Array.from(document.querySelectorAll(arguments[0]), e => e.innerText)",
                "",
            ),
            Read::Attribute(name) => (
                "return Array.from(document.querySelectorAll(arguments[0]), \
                   e => e.getAttribute(arguments[1]))",
                name,
            ),
        };
        let v = self
            .post(
                "/execute/sync",
                json!({"script": script, "args": [css, name]}),
            )
            .await;
        v.as_array()
            .into_iter()
            .flatten()
            .map(|x| x.as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The rendered text of the first element matching `css` ("" when none does).
    pub async fn text_of(&self, css: &str) -> String {
        self.read_all(css, Read::Text)
            .await
            .into_iter()
            .next()
            .unwrap_or_default()
    }

    /// Runs `script` (a function body; `return` gives the answer) in the page.
    pub async fn execute(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
            .await
    }

    /// The browser console's entries since the last call (Chromium's log endpoint).
    pub async fn browser_log(&self) -> Vec<String> {
        let v = self.post("/se/log", json!({"type": "browser"})).await;
        v.as_array()
            .into_iter()
            .flatten()
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The window as a PNG.
    pub async fn screenshot(&self) -> Vec<u8> {
        let v = self.get("/screenshot").await;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 PNG"))
            .expect("a base64 screenshot")
    }

    pub async fn close(self) {
        let _ = self.command(reqwest::Method::DELETE, "", None).await;
    }
}
