//! docs/tutorial.md, run as written: every ```sh block in order, in one bash, in an empty
//! directory, with the real tokenwarden, kubectl, curl, python3 and nginx. Only the fixed
//! ports are swapped for free ones so tests can run side by side.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use std::path::Path;
use std::process::Command;

use common::{BIN, describe, logs_in, text, workspace};
use tokenwarden_testkit::free_ports;

/// A document's script that hangs (a server that never comes up, say) fails the test after
/// this long instead of hanging CI; bash's EXIT trap still stops what it started.
const BASH_WITH_TIMEOUT: [&str; 3] = ["--kill-after=10", "300", "bash"];

/// The ```sh blocks of a Markdown document, in order.
fn shell_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut rest = markdown;
    while let Some(start) = rest.find("```sh\n") {
        let body = &rest[start + "```sh\n".len()..];
        let end = body.find("\n```").expect("an sh block is closed");
        blocks.push(body[..=end].to_owned());
        rest = &body[end..];
    }
    blocks
}

#[test]
fn the_tutorial_runs_as_written() {
    let tutorial = std::fs::read_to_string(workspace().join("docs/tutorial.md")).unwrap();
    let blocks = shell_blocks(&tutorial);
    assert!(blocks.len() >= 10, "the tutorial's commands: {} blocks", blocks.len());
    let [api, check, proxy, talker, nginx, public] = free_ports(6)[..] else { unreachable!("six ports asked for") };
    let script = blocks
        .join("")
        .replace(
            "tokenwarden serve ",
            &format!(
                "tokenwarden serve --api-listen 127.0.0.1:{api} --authz-http-listen 127.0.0.1:{check} --authz-grpc-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 "
            ),
        )
        .replace("127.0.0.1:5001", &format!("127.0.0.1:{check}"))
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{proxy}"))
        .replace("127.0.0.1:3000", &format!("127.0.0.1:{talker}"))
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{nginx}"))
        .replace("127.0.0.1:8443", &format!("127.0.0.1:{public}"));
    // Whatever happens, nothing the script started outlives it.
    let script = format!("trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{script}");
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!("{}:/usr/sbin:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("timeout")
        .args(BASH_WITH_TIMEOUT)
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("HOME", dir.path())
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert!(out.status.success(), "the tutorial failed\n{}", describe(&out));
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);

    // What the document shows is what a user sees.
    for expected in [
        "authconfig.authorino.kuadrant.io/talker-api-protection created",
        "authconfig.authorino.kuadrant.io/talker-api-protection condition met",
        "serviceaccount/api-consumer-1 created",
        "NOT VERIFIED: decoded without checking the signature",
        "  sub: system:serviceaccount:default:api-consumer-1\n",
        "authenticated: true\nuser: system:serviceaccount:default:api-consumer-1\n",
        "\"path\":\"/hello\"",
        "www-authenticate: Bearer realm=\"authorized-service-accounts\"",
        "x-ext-auth-reason: credential not found",
        "x-ext-auth-reason: not authenticated",
        "error: [invalid bearer token, token audiences [\"other-api\"] is invalid for the target audiences [\"talker-api\"]]",
        "error: [invalid bearer token, service account token has expired]",
        "export KUBERNETES_SERVICE_HOST=127.0.0.1\n",
        &format!("export KUBERNETES_SERVICE_PORT={api}\n"),
        "serviceaccount \"api-consumer-1\" deleted",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?}\n{}", describe(&out));
    }
    assert_eq!(stdout.matches("HTTP/1.1 401 Unauthorized").count(), 3, "{stdout}");
    assert!(stderr.contains("tokenwarden: wrote a token for serviceaccount default/api-consumer-1 to ./api-consumer-1/token"), "{stderr}");
    // The in-cluster consumer: 200s while the ServiceAccount exists, then 401.
    let statuses: Vec<&str> = stdout.lines().filter(|l| l.len() > 21 && l.as_bytes()[20] == b' ' && l.ends_with(|c: char| c.is_ascii_digit())).map(|l| &l[21..]).collect();
    assert!(statuses.contains(&"200"), "{statuses:?}\n{stdout}");
    assert_eq!(statuses.last(), Some(&"401"), "{statuses:?}\n{stdout}");
    // nginx in front: 401 without a token, 200 with one.
    assert!(stdout.contains("\n401\n200\n"), "{stdout}");
    // Clients outside the cluster: the bot mints for api-consumer-1 through the public prefix,
    // and nothing else.
    assert!(stdout.contains("rolebinding.rbac.authorization.k8s.io/ci-bot-mints created"), "{stdout}");
    assert_eq!(stdout.matches("authenticated: true\nuser: system:serviceaccount:default:api-consumer-1\n").count(), 2, "{stdout}");
    assert!(
        stderr.contains(r#"error: failed to create token: serviceaccounts "ci-bot" is forbidden: User "system:serviceaccount:default:ci-bot" cannot create resource "serviceaccounts/token""#),
        "{stderr}"
    );
    assert!(stdout.contains(r#""code":404"#), "{stdout}");
    assert!(stdout.contains(r#"User \"system:anonymous\" cannot create resource \"serviceaccounts/token\""#), "{stdout}");
    // Nothing is left behind but what the user made.
    let left: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(left.iter().all(|name| name.starts_with('.')), "left behind: {left:?}");
}

#[test]
fn the_cluster_guide_runs_as_written() {
    let guide = std::fs::read_to_string(workspace().join("docs/cluster.md")).unwrap();
    let blocks = shell_blocks(&guide);
    assert!(blocks.len() >= 8, "the guide's commands: {} blocks", blocks.len());
    // etcd, the two replicas, their metrics and the load balancer on free ports.
    let mut script = blocks.join("");
    for (fixed, port) in ["2379", "2380", "6441", "6442", "6443", "9091", "9092"].into_iter().zip(free_ports(7)) {
        script = script.replace(&format!("127.0.0.1:{fixed}"), &format!("127.0.0.1:{port}"));
    }
    let script = format!("trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{script}");
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(BIN).parent().unwrap();
    let etcd_dir = tokenwarden_testkit::etcd::etcd_binary();
    let etcd_dir = etcd_dir.parent().unwrap();
    let path = format!("{}:{}:/usr/sbin:{}", bin_dir.display(), etcd_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("timeout")
        .args(BASH_WITH_TIMEOUT)
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("HOME", dir.path())
        .env_remove("KUBECONFIG")
        .env_remove("TOKENWARDEN_KEY_ENCRYPTION_KEY")
        .output()
        .unwrap();
    // The guide's processes log to files in its directory: they say why it failed.
    assert!(out.status.success(), "the cluster guide failed\n{}\n{}", describe(&out), logs_in(dir.path()));
    let stdout = text(&out.stdout);
    for expected in [
        "namespace/demo created",
        "serviceaccount/bot created",
        "serviceaccount \"bot\" deleted",
        "tokenwarden_cluster_leader 0\ntokenwarden_cluster_leader 1\n",
        "[+]ping ok\n[+]etcd ok\nreadyz check passed\n",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?}\n{}", describe(&out));
    }
    // Both replicas accept the token minted through the load balancer; after the delete
    // through replica 1, replica 2 refuses it.
    assert_eq!(stdout.matches("authenticated: true\nuser: system:serviceaccount:demo:bot\n").count(), 2, "{stdout}");
    assert!(stdout.contains("error: [invalid bearer token, serviceaccounts \"bot\" not found]"), "{stdout}");
    let left: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(left.iter().all(|name| name.starts_with('.')), "left behind: {left:?}");
}
