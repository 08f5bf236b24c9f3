//! Property-test settings shared by the property tiers.

use proptest::test_runner::Config as ProptestConfig;

/// `cases` test cases per property, unless `PROPTEST_CASES` says otherwise. Failures are
/// not persisted to a file: the shrunk input is in the test's output.
pub fn config(cases: u32) -> ProptestConfig {
    let default = ProptestConfig::default(); // already holds PROPTEST_CASES when set
    ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            default.cases
        } else {
            cases
        },
        failure_persistence: None,
        ..default
    }
}
