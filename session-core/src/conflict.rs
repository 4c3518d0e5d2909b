//! The login-conflict policy per user and device, as pure logic.
//!
//! The registry of sessions lives with the driver (the server crate, or a
//! shared registry across nodes); this module only decides.

use std::collections::BTreeMap;

/// What happens when a user logs in on a device where a session is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConflictPolicy {
    /// The new login wins; older sessions are closed with `LOGIN_CONFLICT`.
    #[default]
    ReplaceOlder,
    /// The older session wins; the new login is rejected with `LOGIN_CONFLICT`.
    RejectNewer,
    /// Any number of sessions may coexist.
    AllowMany,
}

/// What to do with a new login, given the sessions of its user and device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Admission {
    /// Admit it; nothing else changes.
    Admit,
    /// Admit it and close every existing session of the user and device
    /// with `CloseCode::LoginConflict`.
    AdmitReplacing,
    /// Reject it with `RejectCode::LoginConflict`.
    Reject,
}

/// The policy per device kind, with a default for the others.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConflictRules {
    /// The policy for devices not listed in `per_device`.
    pub default: ConflictPolicy,
    /// Policies for specific device kinds ("web", "ios", ...).
    pub per_device: BTreeMap<String, ConflictPolicy>,
}

impl ConflictRules {
    /// The same policy for every device.
    pub fn uniform(policy: ConflictPolicy) -> Self {
        Self {
            default: policy,
            per_device: BTreeMap::new(),
        }
    }

    /// The policy for `device`.
    pub fn policy_for(&self, device: &str) -> ConflictPolicy {
        self.per_device.get(device).copied().unwrap_or(self.default)
    }

    /// Decides about a new login on `device` while `existing` sessions of the
    /// same user and device are live (open or detached).
    pub fn admit(&self, device: &str, existing: usize) -> Admission {
        if existing == 0 {
            return Admission::Admit;
        }
        match self.policy_for(device) {
            ConflictPolicy::ReplaceOlder => Admission::AdmitReplacing,
            ConflictPolicy::RejectNewer => Admission::Reject,
            ConflictPolicy::AllowMany => Admission::Admit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_conflict_without_existing_sessions() {
        for policy in [
            ConflictPolicy::ReplaceOlder,
            ConflictPolicy::RejectNewer,
            ConflictPolicy::AllowMany,
        ] {
            assert_eq!(
                ConflictRules::uniform(policy).admit("web", 0),
                Admission::Admit
            );
        }
    }

    #[test]
    fn each_policy_decides_per_device() {
        let mut rules = ConflictRules::uniform(ConflictPolicy::ReplaceOlder);
        rules
            .per_device
            .insert("ios".into(), ConflictPolicy::RejectNewer);
        rules
            .per_device
            .insert("bot".into(), ConflictPolicy::AllowMany);
        assert_eq!(rules.admit("web", 1), Admission::AdmitReplacing);
        assert_eq!(rules.admit("ios", 1), Admission::Reject);
        assert_eq!(rules.admit("bot", 3), Admission::Admit);
    }
}
