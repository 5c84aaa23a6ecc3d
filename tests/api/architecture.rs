//! The layering and table ownership that `docs/architecture.md` describes, read from the source: imports
//! point down, modules import each other in no circle, and only a table's owner writes it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const KERNELS: &[&str] = &["error", "config", "clock", "secrets", "telemetry"];

/// Files allowed to write tables they do not own, and why.
const OWNERSHIP_EXCEPTIONS: &[(&str, &str)] = &[(
    "dev/generate.rs",
    "bulk synthetic rows for the benchmark; never runs inside the server",
)];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `src/` with the given ending, as (path relative to `src/`, text).
fn sources(ending: &str) -> Vec<(String, String)> {
    fn walk(dir: &Path, base: &Path, ending: &str, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, base, ending, out);
            } else if path.to_string_lossy().ends_with(ending) {
                let relative = path
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((relative, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let base = root().join("src");
    let mut out = Vec::new();
    walk(&base, &base, ending, &mut out);
    out.sort();
    out
}

/// `billing/service.rs` → `billing::service`; `db/mod.rs` → `db`.
fn module_of(path: &str) -> String {
    let path = path.trim_end_matches(".rs");
    let path = path.strip_suffix("/mod").unwrap_or(path);
    path.replace('/', "::")
}

/// The code without comments and without the unit tests at the end.
fn code_of(text: &str) -> String {
    let text = match text.rfind("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident(s: &[u8], at: &mut usize) -> String {
    let start = *at;
    while *at < s.len() && (s[*at].is_ascii_alphanumeric() || s[*at] == b'_') {
        *at += 1;
    }
    String::from_utf8_lossy(&s[start..*at]).into_owned()
}

fn skip_space(s: &[u8], at: &mut usize) {
    while *at < s.len() && s[*at].is_ascii_whitespace() {
        *at += 1;
    }
}

/// The paths of a use tree (or an inline path) starting at `at`, each prefixed with `prefix`.
fn use_tree(s: &[u8], at: &mut usize, prefix: &str, out: &mut Vec<String>) {
    skip_space(s, at);
    if s.get(*at) == Some(&b'{') {
        *at += 1;
        loop {
            skip_space(s, at);
            match s.get(*at) {
                Some(b'}') => {
                    *at += 1;
                    return;
                }
                Some(b',') => *at += 1,
                None => return,
                _ => {
                    let before = *at;
                    use_tree(s, at, prefix, out);
                    if *at == before {
                        *at += 1;
                    }
                }
            }
        }
    }
    let name = ident(s, at);
    if name.is_empty() {
        return;
    }
    let path = if prefix.is_empty() {
        name
    } else {
        format!("{prefix}::{name}")
    };
    if s.get(*at..*at + 2) == Some(b"::") {
        *at += 2;
        use_tree(s, at, &path, out);
    } else {
        out.push(path);
    }
}

/// The modules a module's code refers to (`crate::…` and `super::…`).
fn references(module: &str, code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let bytes = code.as_bytes();
    let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
    let mut paths = Vec::new();
    for (marker, prefix) in [("crate::", String::new()), ("super::", parent.to_owned())] {
        for (at, _) in code.match_indices(marker) {
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            let mut cursor = at + marker.len();
            use_tree(bytes, &mut cursor, &prefix, &mut paths);
        }
    }
    paths
        .iter()
        .filter_map(|path| {
            let parts: Vec<&str> = path.split("::").collect();
            (1..=parts.len())
                .rev()
                .map(|n| parts[..n].join("::"))
                .find(|candidate| modules.contains(candidate))
        })
        .filter(|target| target != module)
        .collect()
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let files = sources(".rs");
    let modules: BTreeSet<String> = files.iter().map(|(p, _)| module_of(p)).collect();
    files
        .iter()
        .map(|(path, text)| {
            let module = module_of(path);
            let refs = references(&module, &code_of(text), &modules);
            (module, refs)
        })
        .collect()
}

fn is_presentation(module: &str) -> bool {
    let first = module.split("::").next().unwrap_or_default();
    matches!(first, "http" | "graphql" | "admin") || module.ends_with("::graphql")
}

fn is_kernel(module: &str) -> bool {
    KERNELS.contains(&module.split("::").next().unwrap_or_default())
}

fn is_db(module: &str) -> bool {
    module == "db" || module.starts_with("db::")
}

fn is_low(module: &str) -> bool {
    module.ends_with("::model") || module.ends_with("::repo")
}

#[test]
fn the_module_graph_has_no_cycle() {
    let graph = graph();
    let mut done = BTreeSet::new();
    let mut cycles = Vec::new();
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        cycles: &mut Vec<String>,
    ) {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            cycles.push(cycle.join(" → "));
            return;
        }
        if done.contains(node) {
            return;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, stack, done, cycles);
        }
        stack.pop();
        done.insert(node.to_owned());
    }
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(
        cycles.is_empty(),
        "modules import each other in a circle:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn imports_point_down_the_layers() {
    let mut wrong = Vec::new();
    for (module, refs) in graph() {
        for target in refs {
            let allowed = if matches!(module.as_str(), "lib" | "main") || is_presentation(&module) {
                true
            } else if is_kernel(&module) {
                is_kernel(&target)
            } else if is_db(&module) {
                is_db(&target) || is_kernel(&target)
            } else if is_low(&module) {
                let domain = module.split("::").next().unwrap_or_default();
                is_db(&target)
                    || is_kernel(&target)
                    || target.ends_with("::model")
                    || target == format!("{domain}::repo")
            } else {
                !is_presentation(&target)
            };
            if !allowed {
                wrong.push(format!("{module} imports {target}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that point up a layer (see docs/architecture.md):\n{}",
        wrong.join("\n")
    );
}

/// `table → owner`, read from the owners table of `docs/architecture.md`.
fn owners() -> BTreeMap<String, String> {
    let doc = std::fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    let section = doc
        .split("## Table owners")
        .nth(1)
        .expect("docs/architecture.md has a `## Table owners` section");
    let mut owners = BTreeMap::new();
    for line in section.lines().take_while(|l| !l.starts_with("## ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || cells[1] == "owner" || cells[1].starts_with("---") {
            continue;
        }
        for table in cells[2].split(',') {
            let table = table.trim().trim_matches('`');
            let previous = owners.insert(table.to_owned(), cells[1].to_owned());
            assert!(previous.is_none(), "{table} has two owners");
        }
    }
    owners
}

/// The tables `db/schema.rs` declares.
fn tables() -> BTreeSet<String> {
    let schema = std::fs::read_to_string(root().join("src/db/schema.rs")).unwrap();
    let mut tables = BTreeSet::new();
    let mut lines = schema.lines();
    while let Some(line) = lines.next() {
        if line.trim_start().starts_with("diesel::table!") {
            for line in lines.by_ref() {
                let line = line.trim();
                if line.starts_with("#[") || line.is_empty() {
                    continue;
                }
                if let Some((name, _)) = line.split_once(" (") {
                    tables.insert(name.to_owned());
                }
                break;
            }
        }
    }
    tables
}

/// The tables a file writes: SQL `INSERT INTO`, `UPDATE`, `DELETE FROM`, `TRUNCATE`, and Diesel's
/// `insert_into(t::…)`, `update(t::…)`, `delete(t::…)`.
fn writes(code: &str, tables: &BTreeSet<String>) -> BTreeSet<String> {
    let lower = code.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    let mut written = BTreeSet::new();
    for (i, word) in words.iter().enumerate() {
        let next = |n: usize| words.get(i + n).copied().unwrap_or_default();
        let target = match *word {
            "insert" if next(1) == "into" => next(2),
            "delete" if next(1) == "from" => next(2),
            "update" if next(1) == "only" => next(2),
            "update" | "truncate" => next(1),
            _ => continue,
        };
        if tables.contains(target) {
            written.insert(target.to_owned());
        }
    }
    for call in ["insert_into(", "update(", "delete("] {
        for (at, _) in lower.match_indices(call) {
            let rest = lower[at + call.len()..].trim_start();
            let table: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if rest[table.len()..].starts_with("::") && tables.contains(&table) {
                written.insert(table);
            }
        }
    }
    written
}

#[test]
fn every_table_has_one_owner_and_only_its_owner_writes_it() {
    let owners = owners();
    let tables = tables();
    assert!(tables.len() > 10, "schema.rs was not read: {tables:?}");
    let unlisted: Vec<_> = tables.iter().filter(|t| !owners.contains_key(*t)).collect();
    assert!(
        unlisted.is_empty(),
        "tables with no owner in docs/architecture.md: {unlisted:?}"
    );

    let mut files = sources(".rs");
    files.extend(sources(".sql"));
    let mut wrong = Vec::new();
    let mut seen_writes = 0;
    for (path, text) in files {
        if path == "db/schema.rs" || OWNERSHIP_EXCEPTIONS.iter().any(|(p, _)| *p == path) {
            continue;
        }
        let code = if path.ends_with(".rs") {
            code_of(&text)
        } else {
            text.lines()
                .map(|l| l.split("--").next().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n")
        };
        let domain = path.split('/').next().unwrap_or_default();
        for table in writes(&code, &tables) {
            seen_writes += 1;
            let owner = &owners[&table];
            if owner != domain {
                wrong.push(format!("{path} writes {table}, which {owner} owns"));
            }
        }
    }
    assert!(
        seen_writes > 15,
        "the scan found too few writes to be working"
    );
    assert!(
        wrong.is_empty(),
        "writes outside the owner (call the owner's service instead):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_checks_see_what_they_are_meant_to_see() {
    let tables: BTreeSet<String> = ["subscriptions", "users"].map(String::from).into();
    let sql = "WITH x AS (UPDATE subscriptions SET a = 1) SELECT 1 FOR UPDATE OF s";
    assert_eq!(writes(sql, &tables), ["subscriptions".to_owned()].into());
    let diesel = "diesel::delete(users::table.find(id))";
    assert_eq!(writes(diesel, &tables), ["users".to_owned()].into());

    let modules: BTreeSet<String> = ["a", "a::repo", "b::service", "b"].map(String::from).into();
    let code = "use crate::{a::repo::{X, Y}, b::service};\nfn f() { super::repo::z(); }";
    assert_eq!(
        references("a::service", code, &modules),
        ["a::repo".to_owned(), "b::service".to_owned()].into()
    );
}
