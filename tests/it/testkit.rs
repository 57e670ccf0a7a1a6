//! The test kit's own pieces that can be tested alone.

use tessera_testkit::pg::with_database;

#[test]
fn the_database_name_is_replaced_and_the_rest_kept() {
    for (url, expected) in [
        (
            "postgres://127.0.0.1:5432/test",
            "postgres://127.0.0.1:5432/x",
        ),
        (
            "postgres://u:p@h/test?sslmode=disable",
            "postgres://u:p@h/x?sslmode=disable",
        ),
        ("postgresql://h:5432", "postgresql://h:5432/x"),
        (
            "postgres://h?application_name=a",
            "postgres://h/x?application_name=a",
        ),
    ] {
        assert_eq!(with_database(url, "x").as_deref(), Some(expected), "{url}");
    }
    assert_eq!(with_database("no scheme", "x"), None);
}
