//! A real browser to drive: headless Chromium through ChromeDriver (Debian's `chromium` and
//! `chromium-driver`), spoken to over the W3C WebDriver protocol. The browser may reach loopback only.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser session; the driver and the browser end with it.
pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
}

impl Browser {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start chromedriver (apt-get install chromium-driver): {e}")
            });
        let http = reqwest::Client::new();
        let root = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while http.get(format!("{root}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-default-apps", "--disable-domain-reliability",
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                    "--window-size=1100,900"
                ]
            }
        } } });
        let session: Value = http
            .post(format!("{root}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("a session")
            .json()
            .await
            .expect("a session's answer");
        let id = session["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {session}"));
        Self {
            driver,
            base: format!("{root}/session/{id}"),
            http,
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request
            .send()
            .await
            .expect("the driver answers")
            .json()
            .await
            .expect("JSON from the driver");
        assert!(
            answer["value"]["error"].is_null(),
            "{path}: {}",
            answer["value"]
        );
        answer["value"].clone()
    }

    pub async fn open(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Runs `script` in the page (its `arguments` are `args`) and returns what it returns.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Waits up to ten seconds for an element matching `css` whose text contains `text`.
    pub async fn wait_for(&self, css: &str, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self
                .run(
                    "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent).find(t => t.includes(arguments[1])) ?? null",
                    json!([css, text]),
                )
                .await;
            if let Some(found) = found.as_str() {
                return found.to_owned();
            }
            if Instant::now() > deadline {
                let page = self.run("return document.body.innerText", json!([])).await;
                panic!("no {css} with {text:?} within ten seconds; the page shows:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn element(&self, css: &str) -> String {
        self.wait_for(css, "").await;
        let found = self
            .command(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("an element id in {found}"))
            .to_owned()
    }

    /// Types `text` into the element matching `css` (after clearing it).
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/clear"),
            Some(json!({})),
        )
        .await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Clicks the button (else the link) whose text is `text` (exactly, once trimmed).
    pub async fn click(&self, text: &str) {
        self.wait_for("button, a", text).await;
        let clicked = self
            .run(
                "const named = s => [...document.querySelectorAll(s)].find(e => e.textContent.trim() === arguments[0]); const e = named('button') ?? named('a'); if (!e) return false; e.click(); return true;",
                json!([text]),
            )
            .await;
        assert_eq!(clicked, json!(true), "no button or link {text:?}");
    }

    /// Resizes the window (a phone: 390 × 844).
    pub async fn resize(&self, width: u32, height: u32) {
        self.command(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }

    /// What the page gets wrong of the basics a screen reader and a keyboard need, and of fitting the
    /// window: controls without a label, buttons and links without text, content wider than the window.
    pub async fn accessibility_problems(&self) -> Vec<String> {
        let found = self
            .run(
                "const problems = [];
                 for (const c of document.querySelectorAll('input, select, textarea')) {
                   if (c.type === 'hidden') continue;
                   if (!(c.labels?.length || c.getAttribute('aria-label'))) problems.push(`unlabelled ${c.outerHTML}`);
                 }
                 for (const b of document.querySelectorAll('button, a')) {
                   if (!(b.textContent.trim() || b.getAttribute('aria-label'))) problems.push(`no text: ${b.outerHTML}`);
                 }
                 if (document.documentElement.scrollWidth > window.innerWidth + 1)
                   problems.push(`wider than the window: ${document.documentElement.scrollWidth} > ${window.innerWidth}`);
                 return problems;",
                json!([]),
            )
            .await;
        serde_json::from_value(found).expect("a list of problems")
    }

    /// Saves a screenshot of the page as `name.png` under the tests' target directory, for a person to
    /// look at (not compared by the tests).
    pub async fn screenshot(&self, name: &str) {
        let png = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
        std::fs::create_dir_all(&dir).expect("a screenshot directory");
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64"))
            .expect("a PNG");
        std::fs::write(dir.join(format!("{name}.png")), bytes).expect("the screenshot");
    }
}

impl Drop for Browser {
    /// Ends the session (the driver closes the browser), then stops the driver.
    fn drop(&mut self) {
        use std::io::{Read as _, Write as _};
        if let Some((authority, path)) = self
            .base
            .strip_prefix("http://")
            .and_then(|rest| rest.split_once('/'))
            && let Ok(mut stream) = std::net::TcpStream::connect(authority)
        {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let request = format!(
                "DELETE /{path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                let _ = stream.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
