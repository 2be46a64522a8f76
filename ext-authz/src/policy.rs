//! Deny-by-default policy: identity selector × bucket × key prefix × operation class →
//! credential profile. What a rule permits is [`s3mesh_access::rules`], shared with the filter;
//! which callers a rule applies to is decided here only.

use s3mesh_access::rules::{Permission, Rule};

use crate::config::{RuleSpec, SelectorSpec};
use crate::identity::Identity;

/// The compiled rules, in policy order, each with the selector that says whom it applies to.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<(SelectorSpec, Permission, Rule)>,
}

/// Whether `spec` selects `id`: every field given must match (lists: any entry).
fn selects(spec: &SelectorSpec, id: &Identity) -> bool {
    let any = |list: &[String], value: Option<&str>| {
        list.is_empty() || value.is_some_and(|v| list.iter().any(|l| l == v))
    };
    let service_account = match (&id.namespace, &id.service_account) {
        (Some(ns), Some(sa)) => Some(format!("{ns}/{sa}")),
        _ => None,
    };
    any(&spec.identities, Some(&id.name))
        && any(&spec.namespaces, id.namespace.as_deref())
        && any(&spec.service_accounts, service_account.as_deref())
        && any(&spec.principals, id.principal.as_deref())
        && spec.labels.iter().all(|(k, v)| id.labels.get(k) == Some(v))
}

impl Policy {
    /// Compiles validated rules; a rule that does not compile (impossible after validation)
    /// is left out, which can only deny.
    pub fn new(specs: &[RuleSpec]) -> Self {
        let rules = specs
            .iter()
            .filter_map(|s| {
                let permission = s.permission();
                let rule = Rule::compile(&permission).ok()?;
                Some((s.selector.clone(), permission, rule))
            })
            .collect();
        Self { rules }
    }

    /// The rules that select `identity`, in policy order.
    pub fn rules_for<'p, 'i>(
        &'p self,
        identity: &'i Identity,
    ) -> impl Iterator<Item = &'p Rule> + Clone + use<'p, 'i> {
        self.rules
            .iter()
            .filter(move |(selector, _, _)| selects(selector, identity))
            .map(|(_, _, rule)| rule)
    }

    /// The permissions of the rules that select `identity`, in policy order: a grant's rules.
    pub fn permissions_for(&self, identity: &Identity) -> Vec<Permission> {
        self.rules
            .iter()
            .filter(|(selector, _, _)| selects(selector, identity))
            .map(|(_, permission, _)| permission.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests;
