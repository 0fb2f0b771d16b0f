//! `kubernetesSubjectAccessReview` authorization: a SubjectAccessReview
//! (`authorization.k8s.io/v1`) against an API server that serves it.

use std::time::Duration;

use axum::http::Method;
use serde_json::{Value, json};
use tokenwarden_core::authconfig::{AccessAttributes, ReviewOutcome, SubjectAccessReviewRequest};

use crate::remote::ApiClient;

pub const SUBJECT_ACCESS_REVIEW_PATH: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

/// Answers SubjectAccessReviews for the authorizer.
#[async_trait::async_trait]
pub trait AccessReviewer: Send + Sync {
    async fn review(&self, request: &SubjectAccessReviewRequest) -> ReviewOutcome;
}

/// For deployments without one: every review is unavailable, so the check fails closed (503).
pub struct NoAccessReviewer;

#[async_trait::async_trait]
impl AccessReviewer for NoAccessReviewer {
    async fn review(&self, _request: &SubjectAccessReviewRequest) -> ReviewOutcome {
        ReviewOutcome::Unavailable("no SubjectAccessReview backend configured".to_owned())
    }
}

/// SubjectAccessReviews posted to an API server.
pub struct RemoteAccessReviewer {
    api: ApiClient,
    timeout: Duration,
}

impl RemoteAccessReviewer {
    pub fn new(api: ApiClient) -> Self {
        Self { api, timeout: Duration::from_secs(5) }
    }
}

/// The SubjectAccessReview object Authorino sends.
pub fn review_body(request: &SubjectAccessReviewRequest) -> Value {
    let mut spec = json!({"user": request.user, "groups": request.groups});
    match &request.attributes {
        AccessAttributes::Resource { namespace, group, resource, name, subresource, verb } => {
            spec["resourceAttributes"] = json!({
                "namespace": namespace, "group": group, "resource": resource,
                "name": name, "subresource": subresource, "verb": verb,
            });
        }
        AccessAttributes::NonResource { path, verb } => {
            spec["nonResourceAttributes"] = json!({"path": path, "verb": verb});
        }
    }
    json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec})
}

#[async_trait::async_trait]
impl AccessReviewer for RemoteAccessReviewer {
    async fn review(&self, request: &SubjectAccessReviewRequest) -> ReviewOutcome {
        let body = review_body(request).to_string().into_bytes();
        let (status, bytes) = match self.api.fetch(Method::POST, SUBJECT_ACCESS_REVIEW_PATH, Some(body), self.timeout).await {
            Ok(answer) => answer,
            Err(e) => return ReviewOutcome::Unavailable(format!("SubjectAccessReview failed: {e}")),
        };
        if !status.is_success() {
            return ReviewOutcome::Unavailable(format!("SubjectAccessReview failed: HTTP {}", status.as_u16()));
        }
        let Ok(answer) = serde_json::from_slice::<Value>(&bytes) else {
            return ReviewOutcome::Unavailable("SubjectAccessReview failed: malformed response".to_owned());
        };
        if answer["status"]["allowed"] == true {
            ReviewOutcome::Allowed
        } else {
            ReviewOutcome::Denied(answer["status"]["reason"].as_str().unwrap_or_default().to_owned())
        }
    }
}

/// SubjectAccessReviews answered in process from the authority's RBAC policy (`serve`).
pub struct LocalAccessReviewer(pub std::sync::Arc<tokenwarden_store::Authority>);

#[async_trait::async_trait]
impl AccessReviewer for LocalAccessReviewer {
    async fn review(&self, request: &SubjectAccessReviewRequest) -> ReviewOutcome {
        let user = tokenwarden_core::review::UserInfo { username: request.user.clone(), groups: request.groups.clone(), ..Default::default() };
        let attributes = match &request.attributes {
            AccessAttributes::Resource { namespace, group, resource, name, subresource, verb } => tokenwarden_core::rbac::Request {
                verb,
                is_resource: true,
                namespace,
                api_group: group,
                resource,
                subresource,
                name,
                path: "",
            },
            AccessAttributes::NonResource { path, verb } => tokenwarden_core::rbac::Request { verb, path, ..Default::default() },
        };
        match self.0.index().authorize(&user, &attributes) {
            Ok(_) => ReviewOutcome::Allowed,
            Err(denial) => ReviewOutcome::Denied(denial),
        }
    }
}
