//! Label and field selectors (placeholder; implemented in the store work).

use crate::Object;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {}

impl LabelSelector {
    pub fn matches(&self, _object: &Object) -> bool {
        true
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {}

impl FieldSelector {
    pub fn matches(&self, _object: &Object) -> bool {
        true
    }
}
