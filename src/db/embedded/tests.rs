//! Finding binaries, socket URLs and cluster settings.

use super::setup::find_bin_dir_in;
use super::*;

#[test]
fn binaries_are_found_on_path_first_then_in_the_newest_versioned_directory() {
    let root = std::env::temp_dir().join(format!("jh-bins-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    let make = |dir: &Path| {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("initdb"), "").unwrap();
        fs::write(dir.join("postgres"), "").unwrap();
    };
    let versioned = root.join("lib");
    let empty = root.join("empty");
    fs::create_dir_all(&empty).unwrap();

    assert_eq!(
        find_bin_dir_in(Some(empty.clone().into()), &versioned),
        None
    );

    make(&versioned.join("9/bin"));
    make(&versioned.join("15/bin"));
    assert_eq!(
        find_bin_dir_in(Some(empty.clone().into()), &versioned),
        Some(versioned.join("15/bin"))
    );

    make(&root.join("onpath"));
    let path = std::env::join_paths([empty, root.join("onpath")]).unwrap();
    assert_eq!(
        find_bin_dir_in(Some(path), &versioned),
        Some(root.join("onpath"))
    );
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn socket_paths_are_percent_encoded_in_the_url() {
    assert_eq!(percent_encode("/tmp/a b&c"), "/tmp/a%20b%26c");
}

#[test]
fn throwaway_clusters_skip_fsync_and_nothing_listens_on_tcp() {
    assert!(cluster_settings(false).contains(&"fsync=off".to_owned()));
    assert!(!cluster_settings(true).contains(&"fsync=off".to_owned()));
    assert!(cluster_settings(true).contains(&"listen_addresses=".to_owned()));
}
