//! Rebuilds the server when a migration is added, changed or removed: they are embedded at compile
//! time (`db::MIGRATIONS`), and Cargo would not otherwise see a new migration folder.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
