//! The first administrator: `create-admin`, and the `HUB_ADMIN_EMAIL`/`HUB_ADMIN_PASSWORD` seed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{TestApp, error_code};

const ADMIN_PASSWORD: &str = "Adm1n-Passw0rd!";

fn hub(app: &TestApp) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_joyfull-hub"));
    command
        .env("DATABASE_URL", &app.db.url)
        .env("HUB_DATA_DIR", &app.data_dir)
        .env("HUB_ARGON2_MEMORY_KIB", "4096")
        .env("HUB_ARGON2_ITERATIONS", "1")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_admin_makes_an_administrator_once_and_never_overwrites() {
    let app = TestApp::spawn().await;

    let created = hub(&app)
        .args([
            "create-admin",
            "--email",
            "Root@Example.com",
            "--password",
            ADMIN_PASSWORD,
            "--name",
            "Root",
        ])
        .output()
        .unwrap();
    let again = hub(&app)
        .args([
            "create-admin",
            "--email",
            "root@example.com",
            "--password",
            "Other-Passw0rd!",
        ])
        .output()
        .unwrap();
    let weak = hub(&app)
        .args([
            "create-admin",
            "--email",
            "weak@example.com",
            "--password",
            "weak",
        ])
        .output()
        .unwrap();

    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("8 characters"));
    let login = app.login("root@example.com", ADMIN_PASSWORD).await;
    assert_eq!(login["data"]["login"]["user"]["role"], "ADMIN");
    let token = login["data"]["login"]["accessToken"].as_str().unwrap();
    let me = app
        .graphql_as(token, "{ me { name emailVerified } }", json!({}))
        .await;
    assert_eq!(me["data"]["me"]["name"], "Root");
    assert_eq!(me["data"]["me"]["emailVerified"], true);
    assert_eq!(
        error_code(&app.login("root@example.com", "Other-Passw0rd!").await),
        "UNAUTHENTICATED"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_seed_creates_the_account_at_start_and_leaves_it_alone_afterwards() {
    let app = TestApp::spawn().await;
    let serve_with_seed = |password: &str| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = hub(&app)
            .env("HUB_LISTEN", format!("127.0.0.1:{port}"))
            .env("HUB_ADMIN_EMAIL", "seed@example.com")
            .env("HUB_ADMIN_PASSWORD", password)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        (child, port)
    };
    let wait_ready = |port: u16| async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        while reqwest::get(format!("http://127.0.0.1:{port}/ready"))
            .await
            .map(|r| r.status())
            .ok()
            != Some(reqwest::StatusCode::OK)
        {
            assert!(Instant::now() < deadline, "the hub did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };

    let (mut first, port) = serve_with_seed(ADMIN_PASSWORD);
    wait_ready(port).await;
    first.kill().unwrap();
    first.wait().unwrap();
    let (mut second, port) = serve_with_seed("Changed-Passw0rd!");
    wait_ready(port).await;
    second.kill().unwrap();
    second.wait().unwrap();

    let login = app.login("seed@example.com", ADMIN_PASSWORD).await;
    assert_eq!(login["data"]["login"]["user"]["role"], "ADMIN", "{login}");
    assert_eq!(
        error_code(&app.login("seed@example.com", "Changed-Passw0rd!").await),
        "UNAUTHENTICATED"
    );
}
