//! The vocabulary of authorization: the scopes and roles the platform defines.

/// The scopes the platform defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Read orders (`GetOrder`, `ListOrders`).
    OrdersRead,
    /// Create and cancel orders.
    OrdersWrite,
    /// Ask the issuer whether a session is active (verifiers in `stateful` mode).
    SessionsCheck,
    /// Administer users at the issuer (with role `admin`).
    UsersAdmin,
    /// Administer signing keys at the issuer (with role `admin`).
    KeysAdmin,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::OrdersRead,
        Scope::OrdersWrite,
        Scope::SessionsCheck,
        Scope::UsersAdmin,
        Scope::KeysAdmin,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::OrdersRead => "orders:read",
            Scope::OrdersWrite => "orders:write",
            Scope::SessionsCheck => "sessions:check",
            Scope::UsersAdmin => "users:admin",
            Scope::KeysAdmin => "keys:admin",
        }
    }
}

/// The roles the platform defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Sees and acts on every user's resources; administers users and keys.
    Admin,
    User,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }
}
