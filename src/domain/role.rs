//! Who may do what on the admin side: the five roles, the permissions each grants, and
//! the signed-in person (`Actor`) every audited operation names. No IO.

use super::vocab::text_enum;

text_enum!(
    /// A user's role. Each role's permissions are listed in [`Role::grants`].
    Role("role") {
        /// Reads everything, changes nothing.
        Viewer => "viewer",
        /// Uploads records (TOML) and previews them.
        Editor => "editor",
        /// Approves records or sends them back with a comment.
        Approver => "approver",
        /// Sends notices; pauses, resumes and retries; manages lists and subscribers;
        /// fires schedules.
        Operator => "operator",
        /// Everything, and manages users.
        Admin => "admin",
    }
);

/// One kind of action a role may be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Read any page or API resource.
    Read,
    /// Upload and preview records.
    EditRecords,
    /// Approve records, or send them back.
    Approve,
    /// Notices, pause/resume/retry, lists and subscribers, firing schedules.
    Operate,
    /// Add, disable and change users.
    ManageUsers,
}

impl Permission {
    /// The word an error message uses for this permission.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::EditRecords => "edit records",
            Permission::Approve => "approve records",
            Permission::Operate => "operate",
            Permission::ManageUsers => "manage users",
        }
    }
}

impl Role {
    /// Whether this role may perform actions needing `p`.
    pub fn grants(self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Viewer => p == Read,
            Role::Editor => matches!(p, Read | EditRecords),
            Role::Approver => matches!(p, Read | Approve),
            Role::Operator => matches!(p, Read | Operate),
        }
    }
}

/// The person behind a request or a command: their user name and role. Audited
/// operations record `name`; `approved_by` and a notice's `by` come from it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Actor {
    pub name: String,
    pub role: Role,
}

impl Actor {
    /// The bootstrap administrator: whoever holds `BULLETIN_ADMIN_TOKEN`.
    pub const BOOTSTRAP_NAME: &'static str = "admin-token";

    pub fn bootstrap_admin() -> Actor {
        Actor {
            name: Self::BOOTSTRAP_NAME.to_string(),
            role: Role::Admin,
        }
    }

    /// An administrator acting on the host itself (the CLI, the demo), named `name`.
    pub fn local(name: impl Into<String>) -> Actor {
        Actor {
            name: name.into(),
            role: Role::Admin,
        }
    }

    /// Whether this actor may perform actions needing `p`.
    pub fn may(&self, p: Permission) -> bool {
        self.role.grants(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_is_granted_exactly_its_permissions() {
        use Permission::*;
        let all = [Read, EditRecords, Approve, Operate, ManageUsers];
        let granted = |r: Role| {
            all.iter()
                .copied()
                .filter(|p| r.grants(*p))
                .collect::<Vec<_>>()
        };
        assert_eq!(granted(Role::Viewer), vec![Read]);
        assert_eq!(granted(Role::Editor), vec![Read, EditRecords]);
        assert_eq!(granted(Role::Approver), vec![Read, Approve]);
        assert_eq!(granted(Role::Operator), vec![Read, Operate]);
        assert_eq!(granted(Role::Admin), all.to_vec());
    }
}
