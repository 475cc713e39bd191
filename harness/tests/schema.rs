//! The JSON Schema in docs/ describes the same format the loader accepts:
//! every seed scenario is valid against it, and it refuses what the
//! loader refuses for shape (unknown keys, wrong types).

use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("docs/scenario.schema.json")).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn as_json(yaml: &str) -> serde_json::Value {
    serde_saphyr::from_str(yaml).unwrap()
}

#[test]
fn every_seed_scenario_is_valid_against_the_schema() {
    let v = validator();
    let pattern = root().join("topologies/**/*.yaml");
    let mut n = 0;
    for f in glob::glob(&pattern.to_string_lossy()).unwrap().filter_map(Result::ok) {
        let doc = as_json(&std::fs::read_to_string(&f).unwrap());
        let errors: Vec<String> = v.iter_errors(&doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{}: {}", f.display(), errors.join("; "));
        n += 1;
    }
    assert!(n >= 10);
}

#[test]
fn the_schema_refuses_what_the_loader_refuses_for_shape() {
    let v = validator();
    let base = "id: T\ntitle: t\nnodes:\n  lma: { role: lma }\n  mag1: { role: mag }\nsteps: []\n";
    assert!(v.is_valid(&as_json(base)));
    for bad in [
        base.replace("title: t", "title: t\ncolour: blue"),
        base.replace("role: mag", "role: router"),
        base.replace("steps: []", "steps:\n  - teleport: x"),
        base.replace("steps: []", "steps:\n  - wait: soon"),
        base.replace("title: t\n", ""),
    ] {
        assert!(!v.is_valid(&as_json(&bad)), "the schema accepts:\n{bad}");
        assert!(pmiplab::scenario::parse(std::path::Path::new("x.yaml"), &bad).is_err(), "the loader accepts:\n{bad}");
    }
}
