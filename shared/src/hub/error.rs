//! The hub's errors and the one place they become frame codes and HTTP statuses, the way
//! `IngestError` owns its HTTP mapping.

use crate::auth::AuthError;
use crate::port::PortError;

/// A `$connect`, `$disconnect`, `$default` or push failure of the hub itself (not of one
/// client action: see [`ActionError`]).
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{0}")]
    Unauthorized(#[from] AuthError),
    #[error("{0}")]
    BadRequest(String),
    /// A backend (registry, Redis, queue) failed.
    #[error("{0}")]
    Unavailable(String),
}

impl From<PortError> for HubError {
    fn from(e: PortError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl HubError {
    /// The HTTP status the `$connect` route answers (refusing the upgrade when not 2xx).
    pub fn status(&self) -> u16 {
        match self {
            Self::Unauthorized(_) => 401,
            Self::BadRequest(_) => 400,
            Self::Unavailable(_) => 503,
        }
    }

    /// The error code clients see.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::BadRequest(_) => "bad_request",
            Self::Unavailable(_) => "unavailable",
        }
    }

    /// The message clients see: backend details stay in the logs.
    pub fn public_message(&self) -> String {
        match self {
            Self::Unavailable(_) => UNAVAILABLE.to_owned(),
            other => other.to_string(),
        }
    }
}

/// What clients read when a backend failed.
pub const UNAVAILABLE: &str = "the service is unavailable; retry shortly";

/// Why one client action was refused: becomes `error {code, message, action, ref}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// The policy does not allow it (joining a group, watching a region, leaving an
    /// automatic group).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotMember(String),
    #[error("{0}")]
    RateLimited(String),
    /// The frame is well formed but cannot be served as it is (e.g. a `heartbeat` without a
    /// session on a socket that carries none).
    #[error("{0}")]
    BadRequest(String),
    /// The connection's token expired: send `auth` with a fresh one.
    #[error("{0}")]
    TokenExpired(String),
    /// `auth` with a token that does not verify.
    #[error("{0}")]
    Unauthorized(String),
    /// `join` of a group the user is banned from.
    #[error("{0}")]
    Banned(String),
    /// A backend failed; the detail is logged, never sent.
    #[error("{}", UNAVAILABLE)]
    Unavailable,
}

impl ActionError {
    /// The frame's `code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Forbidden(_) => "forbidden",
            Self::NotMember(_) => "not_member",
            Self::RateLimited(_) => "rate_limited",
            Self::BadRequest(_) => "bad_request",
            Self::TokenExpired(_) => "token_expired",
            Self::Unauthorized(_) => "unauthorized",
            Self::Banned(_) => "banned",
            Self::Unavailable => "unavailable",
        }
    }

    /// Logs a backend failure and hides it from the client.
    pub fn backend(e: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %e, "backend failure in a WebSocket action");
        Self::Unavailable
    }
}

impl From<PortError> for ActionError {
    fn from(e: PortError) -> Self {
        Self::backend(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_details_never_reach_clients() {
        let e = HubError::from(PortError::Refused("AccessDeniedException: arn:...".into()));
        assert_eq!((e.status(), e.code()), (503, "unavailable"));
        assert_eq!(e.public_message(), UNAVAILABLE);
        let a = ActionError::from(PortError::Throttled("x".into()));
        assert_eq!(
            (a.code(), a.to_string()),
            ("unavailable", UNAVAILABLE.to_owned())
        );
        assert_eq!(HubError::BadRequest("no".into()).code(), "bad_request");
        assert_eq!(HubError::Unauthorized(AuthError::Expired).status(), 401);
    }
}
