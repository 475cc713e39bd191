//! The README's catalogue table stays true: it names every scenario in
//! topologies/ by its id, and no id that is not there.

use std::collections::BTreeSet;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_readme_lists_every_scenario_by_family_and_nothing_else() {
    let mut ids = BTreeSet::new();
    for f in glob::glob(&root().join("topologies/*.yaml").to_string_lossy()).unwrap() {
        let text = std::fs::read_to_string(f.unwrap()).unwrap();
        let id = text.lines().find_map(|l| l.strip_prefix("id:")).expect("a scenario without an id");
        ids.insert(id.trim().trim_matches('"').to_string());
    }
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let table = readme.split("| family | scenarios | what they show |").nth(1).expect("the catalogue table");
    let listed: BTreeSet<String> = table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split('|').nth(2))
        .flat_map(|cell| cell.split(',').map(|s| s.trim().to_string()))
        .filter(|s| !s.is_empty())
        .collect();
    let missing: Vec<_> = ids.difference(&listed).collect();
    let unknown: Vec<_> = listed.difference(&ids).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "not in the README: {missing:?}; not in topologies/: {unknown:?}"
    );
}
