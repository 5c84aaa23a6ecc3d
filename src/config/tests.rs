//! The configuration's parsing and validation rules.

use std::collections::HashMap;

use super::load::read_env_file;
use super::*;

fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned())
}

#[test]
fn defaults_are_a_development_server_on_port_8000() {
    let config = config(&[]).unwrap();
    assert_eq!(config.environment, Environment::Development);
    assert_eq!(config.listen.to_string(), "127.0.0.1:8000");
    assert!(config.introspection);
    assert_eq!(config.cors_origins, Some(CorsOrigins::Any));
    assert_eq!(config.request_timeout, Duration::from_secs(30));
}

#[test]
fn production_refuses_missing_secrets_and_names_both() {
    let err = config(&[("HUB_ENV", "production")]).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("HUB_JWT_SECRET is required"), "{text}");
    assert!(text.contains("HUB_ENCRYPTION_KEY is required"), "{text}");
}

#[test]
fn production_refuses_a_weak_jwt_secret() {
    let key = "ab".repeat(32);
    let err = config(&[
        ("HUB_ENV", "production"),
        (
            "HUB_JWT_SECRET",
            "changeme-changeme-changeme-changeme-123456789",
        ),
        ("HUB_ENCRYPTION_KEY", &key),
    ])
    .unwrap_err();
    assert!(err.to_string().contains("too weak"), "{err}");
    let err = config(&[
        ("HUB_ENV", "production"),
        ("HUB_JWT_SECRET", "short"),
        ("HUB_ENCRYPTION_KEY", &key),
    ])
    .unwrap_err();
    assert!(err.to_string().contains("shorter than 32"), "{err}");
}

#[test]
fn production_with_strong_secrets_turns_conveniences_off() {
    let config = config(&[
        ("HUB_ENV", "production"),
        ("HUB_JWT_SECRET", "k3J9x2Qw8Zr5Tn1Vb7Mc4Ld6Fs0Gh2Pj9Ya5Ue"),
        (
            "HUB_ENCRYPTION_KEY",
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        ),
    ])
    .unwrap();
    assert!(!config.introspection);
    assert_eq!(config.cors_origins, None);
    assert_eq!(config.log_format, LogFormat::Json);
    assert!(format!("{config:?}").contains("[redacted]"));
    assert!(!format!("{config:?}").contains("k3J9x2Qw8"));
}

#[test]
fn requests_run_on_a_thread_per_core_unless_set() {
    assert_eq!(worker_threads(2), 2);
    assert_eq!(worker_threads(0), 1);
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let external = config(&[("DATABASE_URL", "postgres://h/db")]).unwrap();
    let owned = config(&[]).unwrap();
    assert_eq!(external.worker_threads, cores);
    assert_eq!(owned.worker_threads, cores);
    let set = config(&[("HUB_WORKER_THREADS", "3")]).unwrap();
    assert_eq!(set.worker_threads, 3);
    assert!(config(&[("HUB_WORKER_THREADS", "0")]).is_err());
}

#[test]
fn every_bad_value_is_reported_at_once() {
    let err = config(&[
        ("HUB_LISTEN", "nowhere"),
        ("HUB_DB_POOL_SIZE", "0"),
        ("HUB_INTROSPECTION", "maybe"),
        ("HUB_CORS_ORIGINS", "https://ok.example, ftp://bad/"),
        ("DATABASE_URL", "mysql://x"),
    ])
    .unwrap_err();
    assert_eq!(err.0.len(), 5, "{err}");
}

#[test]
fn a_config_file_is_parsed_with_quotes_and_comments() {
    let dir = std::env::temp_dir().join(format!("jh-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hub.env");
    std::fs::write(
        &path,
        "# comment\nHUB_LISTEN=\"0.0.0.0:9000\"\nexport HUB_ENV='development'\n",
    )
    .unwrap();
    let values = read_env_file(&path).unwrap();
    assert_eq!(values.get("HUB_LISTEN").unwrap(), "0.0.0.0:9000");
    assert_eq!(values.get("HUB_ENV").unwrap(), "development");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn trusted_proxies_are_address_blocks() {
    let block = Cidr::parse("10.0.0.0/8").unwrap();
    assert!(block.contains("10.200.3.4".parse().unwrap()));
    assert!(!block.contains("11.0.0.1".parse().unwrap()));
    assert!(!block.contains("::1".parse().unwrap()));
    let one = Cidr::parse("127.0.0.1").unwrap();
    assert!(one.contains("127.0.0.1".parse().unwrap()));
    assert!(!one.contains("127.0.0.2".parse().unwrap()));
    let v6 = Cidr::parse("2001:db8::/32").unwrap();
    assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
    assert!(
        Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap())
    );
    assert!(Cidr::parse("10.0.0.0/33").is_none());
    assert!(Cidr::parse("proxy.internal").is_none());
    let bad = config(&[("HUB_TRUSTED_PROXIES", "10.0.0.0/8, nonsense")]).unwrap_err();
    assert!(bad.0.iter().any(|e| e.contains("nonsense")), "{bad:?}");
}

#[test]
fn urls_for_pages_traces_and_replicas_are_checked() {
    let err = config(&[
        ("HUB_IDE_ASSETS_URL", "https://cdn.example/\"><script>"),
        ("HUB_OTLP_ENDPOINT", "collector:4318"),
        ("DATABASE_READ_URL", "mysql://replica"),
        ("HUB_LIVENESS_DB_SECS", "0"),
    ])
    .unwrap_err();
    assert_eq!(err.0.len(), 4, "{err}");

    let ok = config(&[
        ("HUB_IDE_ASSETS_URL", "https://mirror.example/npm/"),
        ("HUB_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
    ])
    .unwrap();
    assert_eq!(ok.ide_assets_url, "https://mirror.example/npm");
    assert_eq!(ok.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4318"));
}
