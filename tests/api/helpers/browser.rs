//! A real browser for the pages the hub serves: headless Chromium, which prints the page's DOM once its
//! scripts have run; and a local mirror of the npm files those pages load, filled by `npm pack`.
//!
//! The browser may reach loopback only: every host name is left unresolved and background services
//! (updates, sync, metrics) are off.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const BROWSER: &str = "chromium";

/// The DOM of `url` after its scripts have run (up to `budget_ms` of virtual time).
pub fn rendered_dom(url: &str, budget_ms: u32) -> String {
    let profile = tempfile_dir("chromium-profile");
    let output = Command::new(BROWSER)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            &format!("--user-data-dir={}", profile.display()),
            &format!("--virtual-time-budget={budget_ms}"),
            "--dump-dom",
            url,
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot start {BROWSER} (apt-get install chromium): {e}"));
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        output.status.success(),
        "{BROWSER} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn tempfile_dir(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// The unpacked files of an npm package, fetched once with `npm pack` and kept under the target dir.
pub fn npm_package(name: &str, version: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("npm-packages");
    let unpacked = root.join(format!("{name}@{version}"));
    if unpacked.join("package").join("package.json").exists() {
        return unpacked.join("package");
    }
    let staging = tempfile_dir("npm-pack");
    let packed = Command::new("npm")
        .args(["pack", "--silent", &format!("{name}@{version}")])
        .current_dir(&staging)
        .output()
        .unwrap_or_else(|e| panic!("cannot run npm (install Node.js and npm): {e}"));
    assert!(
        packed.status.success(),
        "npm pack {name}@{version}: {}",
        String::from_utf8_lossy(&packed.stderr)
    );
    let tarball = String::from_utf8_lossy(&packed.stdout).trim().to_owned();
    let extracted = staging.join("x");
    std::fs::create_dir_all(&extracted).expect("a directory");
    let untar = Command::new("tar")
        .args(["xzf", &tarball, "-C", "x"])
        .current_dir(&staging)
        .status()
        .expect("tar");
    assert!(untar.success(), "tar xzf {tarball}");
    std::fs::create_dir_all(&root).expect("a directory");
    // Another test may have finished first; either copy is the same package.
    let _ = std::fs::rename(&extracted, &unpacked);
    let _ = std::fs::remove_dir_all(&staging);
    unpacked.join("package")
}

/// A local CDN in the npm layout (`/<package>@<version>/<file>`), answering with CORS headers.
pub struct Mirror {
    pub base: String,
}

#[derive(Clone)]
struct Files {
    packages: Arc<HashMap<String, PathBuf>>,
    tampered: Option<String>,
}

impl Mirror {
    /// Serves `packages` (`name@version` → unpacked directory). A request for `tampered`
    /// (`name@version/file`) gets the file with one byte more, as a compromised mirror would send.
    pub async fn start(packages: HashMap<String, PathBuf>, tampered: Option<String>) -> Self {
        let files = Files {
            packages: Arc::new(packages),
            tampered,
        };
        let router = Router::new()
            .route("/npm/{package}/{*file}", get(serve))
            .with_state(files);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the mirror");
        let address = listener.local_addr().expect("mirror address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            base: format!("http://{address}/npm"),
        }
    }
}

async fn serve(
    State(files): State<Files>,
    UrlPath((package, file)): UrlPath<(String, String)>,
) -> Response {
    let Some(dir) = files.packages.get(&package) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if file.split('/').any(|part| part == "..") {
        return StatusCode::NOT_FOUND.into_response();
    }
    let Ok(mut bytes) = std::fs::read(dir.join(&file)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if files.tampered.as_deref() == Some(&format!("{package}/{file}")) {
        bytes.extend_from_slice(b"\n");
    }
    let content_type = if file.ends_with(".css") {
        "text/css"
    } else {
        "application/javascript"
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        bytes,
    )
        .into_response()
}
