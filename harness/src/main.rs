//! The `pmiplab` CLI. The lab itself is issues #4 and #5.

fn main() -> std::process::ExitCode {
    eprintln!(
        "pmiplab: the namespace lab is not built yet (issues #4 and #5); \
         run ci/test.sh to exercise what exists"
    );
    std::process::ExitCode::from(2)
}
