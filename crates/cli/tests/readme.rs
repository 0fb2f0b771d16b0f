//! The README's walkthrough, run as written against a real server with the real kubectl.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokenwarden_testkit::free_port;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The shell block between the walkthrough markers.
fn walkthrough(readme: &str) -> String {
    let start = readme.find("<!-- walkthrough").expect("README has a walkthrough block");
    let end = readme.find("<!-- /walkthrough -->").expect("README closes the walkthrough block");
    let block = &readme[start..end];
    let body = block.split_once("```sh\n").expect("a sh code block").1;
    body.rsplit_once("```").expect("a closed code block").0.to_owned()
}

fn start(dir: &Path, port: u16, check_port: u16) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(["serve", "--data-dir", "tokenwarden-data", "--api-listen", &format!("127.0.0.1:{port}")])
        .args(["--authz-grpc-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .args(["--authz-http-listen", &format!("127.0.0.1:{check_port}")])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    let kubeconfig = dir.join("tokenwarden-data/admin.kubeconfig");
    for _ in 0..300 {
        if kubeconfig.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("tokenwarden serve did not start within 30 s");
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    // The same commands, with the HTTP check listener on a free port instead of 5001.
    let check_port = free_port();
    let script = walkthrough(&readme).replace("http://127.0.0.1:5001/", &format!("http://127.0.0.1:{check_port}/"));
    let dir = tempfile::tempdir().unwrap();
    let _server = start(dir.path(), free_port(), check_port);
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "walkthrough failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    for expected in [
        "namespace/demo created",
        "serviceaccount/api-consumer-1 created",
        "authenticated: true",
        "username: system:serviceaccount:demo:api-consumer-1",
        "- talker-api",
        "tokenwarden-admin",
        "system:serviceaccount:demo:api-consumer-1",
        r#""kty":"RSA""#,
        "authconfig.authorino.kuadrant.io/talker-api-protection created",
        "authconfig.authorino.kuadrant.io/talker-api-protection condition met",
        "401\n200\n",
        "role.rbac.authorization.k8s.io/mint-api-consumer created",
        "rolebinding.rbac.authorization.k8s.io/minter created",
        "\nyes\nno\n",
        r#"serviceaccount "api-consumer-1" deleted"#,
    ] {
        assert!(stdout.contains(expected), "walkthrough output lacks {expected:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    }
    // `kubectl get serviceaccounts` shows the server-side Table columns.
    assert!(stdout.contains("NAME") && stdout.contains("SECRETS") && stdout.contains("AGE"), "{stdout}");
}
