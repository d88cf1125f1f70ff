//! How a resource says that natgw made it: labels where the API has them, a marker in `description` where
//! it has not. natgw changes or deletes nothing that lacks its stack's marker.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub(crate) const LABEL_MANAGED: &str = "natgw-managed";
pub(crate) const LABEL_STACK: &str = "natgw-stack";
pub(crate) const LABEL_GATEWAY: &str = "natgw-gateway";

/// Extra facts carried in a firewall rule's description: the node-pool tag this gateway uses, and whether
/// natgw added it (only then does destroy remove it).
pub(crate) const KEY_NODE_POOL: &str = "natgw-node-pool";
pub(crate) const KEY_NODE_TAG: &str = "natgw-node-tag";
pub(crate) const KEY_TAG_ADDED: &str = "natgw-tag-added";
/// What an owned resource is for, where its kind alone does not say: a gateway has two firewall rules.
/// Absent on the gateway's main rule (written before the key existed).
pub(crate) const KEY_ROLE: &str = "natgw-role";
/// The same, as a label: the addresses of a gateway in several zones (`model::ha`).
pub(crate) const LABEL_ROLE: &str = KEY_ROLE;

/// The VM's boot image: an instance does not echo it back, so natgw records it.
pub(crate) const KEY_IMAGE: &str = "natgw-image";

const PREFIX: &str = "Managed by natgw, do not edit:";

/// Who owns a resource.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct Owner {
    pub(crate) stack: String,
    pub(crate) gateway: String,
}

impl Owner {
    pub(crate) fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_MANAGED.to_string(), "true".to_string()),
            (LABEL_STACK.to_string(), self.stack.clone()),
            (LABEL_GATEWAY.to_string(), self.gateway.clone()),
        ])
    }

    /// The description marker, with extra `key=value` facts in the given order.
    pub(crate) fn description(&self, extra: &[(&str, String)]) -> String {
        let mut s = format!(
            "{PREFIX} {LABEL_MANAGED}=true {LABEL_STACK}={} {LABEL_GATEWAY}={}",
            self.stack, self.gateway
        );
        for (k, v) in extra {
            s.push(' ');
            s.push_str(k);
            s.push('=');
            s.push_str(v);
        }
        s
    }

    pub(crate) fn from_labels(labels: &BTreeMap<String, String>) -> Option<Owner> {
        if labels.get(LABEL_MANAGED).map(String::as_str) != Some("true") {
            return None;
        }
        Some(Owner {
            stack: labels.get(LABEL_STACK)?.clone(),
            gateway: labels.get(LABEL_GATEWAY)?.clone(),
        })
    }
}

/// The facts in a description marker; `None` when the description has no natgw marker.
pub(crate) fn parse_description(description: &str) -> Option<(Owner, BTreeMap<String, String>)> {
    let rest = description.strip_prefix(PREFIX)?;
    let facts: BTreeMap<String, String> = rest
        .split_whitespace()
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if facts.get(LABEL_MANAGED).map(String::as_str) != Some("true") {
        return None;
    }
    let owner = Owner {
        stack: facts.get(LABEL_STACK)?.clone(),
        gateway: facts.get(LABEL_GATEWAY)?.clone(),
    };
    Some((owner, facts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner {
            stack: "ci".into(),
            gateway: "gitlab".into(),
        }
    }

    #[test]
    fn description_round_trip() {
        let d = owner().description(&[(KEY_NODE_TAG, "runner".into())]);
        assert_eq!(
            d,
            "Managed by natgw, do not edit: natgw-managed=true natgw-stack=ci natgw-gateway=gitlab natgw-node-tag=runner"
        );
        let (o, facts) = parse_description(&d).expect("marker");
        assert_eq!(o, owner());
        assert_eq!(facts.get(KEY_NODE_TAG).map(String::as_str), Some("runner"));
    }

    #[test]
    fn foreign_descriptions_have_no_owner() {
        assert_eq!(parse_description(""), None);
        assert_eq!(
            parse_description("natgw-managed=true natgw-stack=ci natgw-gateway=g"),
            None
        );
        assert_eq!(
            parse_description("Managed by natgw, do not edit: natgw-stack=ci natgw-gateway=g"),
            None
        );
    }

    #[test]
    fn labels_round_trip() {
        assert_eq!(Owner::from_labels(&owner().labels()), Some(owner()));
        let mut l = owner().labels();
        l.insert(LABEL_MANAGED.into(), "false".into());
        assert_eq!(Owner::from_labels(&l), None);
    }
}
