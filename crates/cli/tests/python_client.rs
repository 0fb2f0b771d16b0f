//! The official Python `kubernetes` client against `tokenwarden serve` (tests/python/client_test.py).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test
#![allow(clippy::disallowed_methods)] // end-to-end tests bound waits for real processes with the real clock

mod common;

use common::{Server, text};

#[test]
fn the_official_python_client_works_unchanged() {
    let server = Server::start();
    let out = server.python("client_test.py", &["pyclient"]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "client_test.py failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- server stderr ---\n{}",
        out.status,
        server.stderr()
    );
    assert!(stdout.trim_end().ends_with("all checks passed"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    // Every area the script covers reported ok.
    for check in [
        "ok - create_namespaced_service_account",
        "ok - list has the new SA",
        "ok - patch merged the label",
        "ok - TokenRequest echoes the spec",
        "ok - PyJWT verifies the token with the JWKS",
        "ok - review: authenticated",
        "ok - admin is tokenwarden-admin",
        "ok - the ServiceAccount sees itself",
        "ok - watch saw ADDED, MODIFIED, DELETED in order",
        "ok - delete returns the deleted ServiceAccount",
        "ok - the deleted SA's token fails review",
    ] {
        assert!(stdout.contains(check), "missing {check:?}\n{stdout}");
    }
}

#[test]
fn the_python_client_token_apis_on_the_bootstrap_serviceaccount() {
    let server = Server::start();
    let out = server.python("client_test.py", &["--tokens-only"]);
    let stdout = text(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "client_test.py --tokens-only failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{}\n--- server stderr ---\n{}",
        out.status,
        text(&out.stderr),
        server.stderr()
    );
    for check in [
        "ok - TokenRequest echoes the spec",
        "ok - PyJWT verifies the token with the JWKS",
        "ok - claims: sub, exp - iat == 600, serviceaccount uid",
        "ok - review: user",
        "ok - review: audiences",
        "ok - admin is tokenwarden-admin",
        "ok - the ServiceAccount sees itself",
        "ok - a ServiceAccount may not list ServiceAccounts (403)",
        "all checks passed",
    ] {
        assert!(stdout.contains(check), "missing {check:?}\n{stdout}");
    }
    assert!(!stdout.contains("watch"), "tokens-only mode does not watch\n{stdout}");
}
