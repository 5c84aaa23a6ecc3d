//! `--update-readme`: the run's table replaces the one between README's two markers, with the date and
//! the scenarios that produced it, so the published figures are always a whole run's.

use std::path::Path;

/// Opens the section the bench owns.
pub const START: &str = "<!-- bench:results:start -->";
/// Closes it.
pub const END: &str = "<!-- bench:results:end -->";

/// `readme` with the text between the markers replaced by `section`; an error when the markers are
/// missing or out of order.
pub fn replace_section(readme: &str, section: &str) -> anyhow::Result<String> {
    let start = readme
        .find(START)
        .ok_or_else(|| anyhow::anyhow!("README has no `{START}` marker"))?;
    let body = start + START.len();
    let end = readme
        .get(body..)
        .and_then(|rest| rest.find(END))
        .map(|at| body + at)
        .ok_or_else(|| anyhow::anyhow!("README has no `{END}` after `{START}`"))?;
    let (before, after) = (
        readme.get(..body).unwrap_or_default(),
        readme.get(end..).unwrap_or_default(),
    );
    Ok(format!("{before}\n{}\n{after}", section.trim()))
}

/// Writes `table` into the README at `path`, headed by the date and the scenarios run.
pub fn update(path: &Path, table: &str, scenarios: &[String]) -> anyhow::Result<()> {
    let readme = std::fs::read_to_string(path)?;
    let date = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|date| date.trim().to_owned())
        .unwrap_or_default();
    let section = format!(
        "Last run {date}, scenarios {} (`cargo run --release -p joyfull-bench -- --scenarios {} --update-readme`):\n\n{table}",
        scenarios.join(", "),
        scenarios.join(",")
    );
    std::fs::write(path, replace_section(&readme, &section)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_marked_section_is_replaced() {
        let readme = format!("# Title\n\nbefore\n{START}\nold table\n{END}\nafter\n");
        let updated = replace_section(&readme, "| new | table |\n").unwrap();
        assert_eq!(
            updated,
            format!("# Title\n\nbefore\n{START}\n| new | table |\n{END}\nafter\n")
        );
        assert_eq!(
            replace_section(&updated, "| new | table |").unwrap(),
            updated
        );
    }

    #[test]
    fn missing_or_swapped_markers_are_refused() {
        assert!(replace_section("no markers", "x").is_err());
        assert!(replace_section(&format!("{END}\n{START}\n"), "x").is_err());
    }
}
