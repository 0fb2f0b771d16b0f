//! Authorino-compatible authorization (`authorino.kuadrant.io/v1beta3` AuthConfig), sans-IO.
//!
//! - [`spec`]: the typed AuthConfig and its validation ([`AuthConfig::parse`]).
//! - [`hosts`]: the host index (exact, `*.` wildcards, port fallback, collisions refused).
//! - [`path`]: gjson-lite selectors into the authorization JSON.
//! - [`eval`]: the evaluation state machine and Authorino's allow / deny results.
//!
//! Identity verification (TokenReview, JWT, API keys) and SubjectAccessReviews are the
//! caller's: the evaluation asks for them ([`Step`]) or calls [`IdentityVerifier`] /
//! [`SubjectAccessReviewer`].

pub mod eval;
pub mod hosts;
pub mod path;
pub mod spec;

pub use eval::{
    AccessAttributes, AuthRequest, Decision, Evaluation, IdentityOutcome, IdentityRequest, IdentityVerifier, NoSubjectAccessReviewer,
    Peer, ReviewOutcome, Step, SubjectAccessReviewRequest, SubjectAccessReviewer, check, evaluate,
};
pub use hosts::{HostConflict, HostIndex, HostStatus};
pub use path::JsonSelector;
pub use spec::{
    AuthConfig, Authentication, Authorization, AuthorizationMethod, Credentials, DenyWith, IdentityMethod, JwtSource, Operator,
    Pattern, PatternRule, Response, SubjectAccessReviewSpec, SuccessItem, SuccessValue, ValueOrSelector,
};
