//! `tokenwarden review`: asks the API server's TokenReview whether a token is valid, as an API
//! protected by it would; `tokenwarden whoami`: `kubectl auth whoami`.

use serde_json::{Value, json};

use crate::Failure;
use crate::client::{CallError, ClientArgs, token_argument};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Json,
    Yaml,
}

#[derive(Debug, clap::Args)]
pub struct ReviewArgs {
    /// The token, or `-` (or nothing) to read it from stdin.
    #[arg(value_name = "TOKEN")]
    pub reviewed: Option<String>,
    /// An audience the token must carry (repeatable); default: the API server's audiences.
    #[arg(long)]
    pub audience: Vec<String>,
    /// Print the review's status as JSON or YAML instead of a summary.
    #[arg(short, long, value_enum)]
    pub output: Option<Output>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: ReviewArgs) -> Result<(), Failure> {
    let token = token_argument(args.reviewed.as_deref())?;
    let api = args.client.api()?;
    let body = json!({
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "spec": {"token": token, "audiences": args.audience},
    });
    let answer = api.post("/apis/authentication.k8s.io/v1/tokenreviews", &body).await.map_err(|e| Failure::Runtime(format!("TokenReview failed: {e}")))?;
    // Only the status: the answer also echoes the token.
    let status = answer.get("status").cloned().unwrap_or_else(|| json!({}));
    match args.output {
        Some(Output::Json) => println!("{}", serde_json::to_string_pretty(&status).unwrap_or_default()),
        Some(Output::Yaml) => print!("{}", serde_saphyr::to_string(&status).unwrap_or_default()),
        None => print!("{}", summary(&status)),
    }
    if status.get("authenticated").and_then(Value::as_bool) == Some(true) {
        Ok(())
    } else {
        Err(Failure::Silent(1))
    }
}

/// `authenticated`, then the user or the error, one fact a line.
fn summary(status: &Value) -> String {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
    let list = |v: Option<&Value>| {
        v.and_then(Value::as_array).map(|items| items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default()
    };
    let authenticated = status.get("authenticated").and_then(Value::as_bool) == Some(true);
    let mut out = format!("authenticated: {authenticated}\n");
    if authenticated {
        let user = status.get("user");
        out.push_str(&format!("user: {}\n", text(user.and_then(|u| u.get("username")))));
        out.push_str(&format!("uid: {}\n", text(user.and_then(|u| u.get("uid")))));
        out.push_str(&format!("groups: {}\n", list(user.and_then(|u| u.get("groups")))));
        if let Some(extra) = user.and_then(|u| u.get("extra")).and_then(Value::as_object) {
            for (key, values) in extra {
                out.push_str(&format!("extra: {key}={}\n", list(Some(values))));
            }
        }
        out.push_str(&format!("audiences: {}\n", list(status.get("audiences"))));
    } else {
        let error = text(status.get("error"));
        out.push_str(&format!("error: {}\n", if error.is_empty() { "the token is not valid" } else { &error }));
    }
    out
}

#[derive(Debug, clap::Args)]
pub struct WhoamiArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn whoami(args: WhoamiArgs) -> Result<(), Failure> {
    let api = args.client.api()?;
    let body = json!({
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "status": {"userInfo": {}},
    });
    let answer = match api.post("/apis/authentication.k8s.io/v1/selfsubjectreviews", &body).await {
        Ok(answer) => answer,
        Err(CallError::Server { code: 403, .. }) => {
            return Err(Failure::Runtime("the selfsubjectreviews API is not enabled in the cluster or you do not have permission to call it".into()));
        }
        Err(e) => return Err(Failure::Runtime(e.to_string())),
    };
    print!("{}", whoami_table(answer.pointer("/status/userInfo").unwrap_or(&Value::Null)));
    Ok(())
}

/// kubectl's table: `ATTRIBUTE VALUE` rows for the username, uid, groups and each extra,
/// lists printed as Go prints a slice (`[a b]`).
fn whoami_table(user: &Value) -> String {
    let go_list = |v: &Value| format!("[{}]", v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ")).unwrap_or_default());
    let mut rows = vec![("ATTRIBUTE".to_owned(), "VALUE".to_owned())];
    for (label, field) in [("Username", "username"), ("UID", "uid")] {
        if let Some(value) = user.get(field).and_then(Value::as_str).filter(|v| !v.is_empty()) {
            rows.push((label.to_owned(), value.to_owned()));
        }
    }
    if let Some(groups) = user.get("groups").filter(|g| g.as_array().is_some_and(|a| !a.is_empty())) {
        rows.push(("Groups".to_owned(), go_list(groups)));
    }
    if let Some(extra) = user.get("extra").and_then(Value::as_object) {
        for (key, values) in extra {
            rows.push((format!("Extra: {key}"), go_list(values)));
        }
    }
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    rows.iter().map(|(label, value)| format!("{label:<width$}   {value}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_say_who_or_why() {
        let ok = json!({"authenticated": true, "user": {"username": "system:serviceaccount:demo:bot", "uid": "u1", "groups": ["g1", "g2"], "extra": {"k": ["v"]}}, "audiences": ["api"]});
        let text = summary(&ok);
        assert!(text.starts_with("authenticated: true\nuser: system:serviceaccount:demo:bot\nuid: u1\ngroups: g1, g2\nextra: k=v\naudiences: api\n"), "{text}");
        let denied = summary(&json!({"authenticated": false, "error": "token has expired"}));
        assert_eq!(denied, "authenticated: false\nerror: token has expired\n");
        assert_eq!(summary(&json!({})), "authenticated: false\nerror: the token is not valid\n");
    }

    #[test]
    fn the_whoami_table_is_kubectls() {
        let table = whoami_table(&json!({"username": "admin", "groups": ["system:masters", "system:authenticated"]}));
        assert_eq!(table, "ATTRIBUTE   VALUE\nUsername    admin\nGroups      [system:masters system:authenticated]\n");
    }
}
