//! The admin credential and `admin.kubeconfig`.
//!
//! The bearer token lives only in `admin.kubeconfig` (mode 0600, as kubeadm's admin.conf);
//! the server keeps its SHA-256 (`admin-token.sha256`). A restart reuses the token; a lost
//! kubeconfig gets a new token, which revokes the old one.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use tokenwarden_apiserver::auth::sha256;
use tokenwarden_store::files;

pub const KUBECONFIG: &str = "admin.kubeconfig";
const DIGEST: &str = "admin-token.sha256";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The token written in an existing kubeconfig of ours.
fn token_in(kubeconfig: &str) -> Option<&str> {
    kubeconfig.lines().find_map(|line| line.trim().strip_prefix("token: ")).map(str::trim)
}

/// Loads the admin token if the kubeconfig still holds the one whose digest is on record;
/// otherwise makes a new one and records its digest. Returns the token.
pub fn load_or_create_token(dir: &Path) -> std::io::Result<String> {
    let recorded = std::fs::read_to_string(dir.join(DIGEST)).ok();
    let existing = std::fs::read_to_string(dir.join(KUBECONFIG)).ok();
    if let (Some(recorded), Some(existing)) = (&recorded, &existing)
        && let Some(token) = token_in(existing)
        && hex(&sha256(token.as_bytes())) == recorded.trim()
    {
        return Ok(token.to_owned());
    }
    let token = new_token();
    files::write_private(&dir.join(DIGEST), hex(&sha256(token.as_bytes())).as_bytes())?;
    Ok(token)
}

/// A fresh admin bearer token: 32 random bytes, base64url.
pub fn new_token() -> String {
    let secret: [u8; 32] = tokenwarden_store::clock::random_bytes();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
}

/// Writes `DIR/admin.kubeconfig` for `server` (with the CA when serving TLS).
pub fn write_kubeconfig(dir: &Path, server: &str, ca_pem: Option<&str>, token: &str) -> std::io::Result<PathBuf> {
    let ca = ca_pem
        .map(|pem| format!("    certificate-authority-data: {}\n", base64::engine::general_purpose::STANDARD.encode(pem)))
        .unwrap_or_default();
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: tokenwarden\n  cluster:\n    server: {server}\n{ca}users:\n- name: tokenwarden-admin\n  user:\n    token: {token}\ncontexts:\n- name: tokenwarden\n  context:\n    cluster: tokenwarden\n    user: tokenwarden-admin\n    namespace: default\ncurrent-context: tokenwarden\n"
    );
    let path = dir.join(KUBECONFIG);
    files::write_private(&path, text.as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_reuses_the_token_and_a_lost_kubeconfig_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_token(dir.path()).unwrap();
        write_kubeconfig(dir.path(), "https://127.0.0.1:6443", Some("PEM"), &first).unwrap();
        assert_eq!(load_or_create_token(dir.path()).unwrap(), first);
        std::fs::remove_file(dir.path().join(KUBECONFIG)).unwrap();
        assert_ne!(load_or_create_token(dir.path()).unwrap(), first);
        let digest = std::fs::read_to_string(dir.path().join(DIGEST)).unwrap();
        assert!(!digest.contains(&first), "only a digest is stored");
    }
}
