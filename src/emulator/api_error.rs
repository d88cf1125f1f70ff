//! Google's error answers: the HTTP body `{"error": {"code", "message", "status", "errors": [...]}}` and the
//! error carried by a finished operation.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An error answered synchronously with an HTTP error status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    /// `errors[].domain`: `global` for most, `usageLimits` for quotas.
    pub(crate) domain: &'static str,
    /// `error.details`: `google.rpc` messages (ErrorInfo, Help, ...) as JSON.
    pub(crate) details: Vec<Value>,
    /// More `errors[]` entries with the same reason (Compute lists every violated constraint).
    pub(crate) more: Vec<String>,
}

impl ApiError {
    pub(crate) fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            domain: "global",
            details: Vec::new(),
            more: Vec::new(),
        }
    }

    pub(crate) fn with_more_errors(self, more: Vec<String>) -> Self {
        Self { more, ..self }
    }

    pub(crate) fn with_domain(self, domain: &'static str) -> Self {
        Self { domain, ..self }
    }

    pub(crate) fn with_details(self, details: Vec<Value>) -> Self {
        Self { details, ..self }
    }

    pub(crate) fn not_found(resource: &str) -> Self {
        Self::new(
            404,
            "notFound",
            format!("The resource '{resource}' was not found"),
        )
    }

    pub(crate) fn already_exists(resource: &str) -> Self {
        Self::new(
            409,
            "alreadyExists",
            format!("The resource '{resource}' already exists"),
        )
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "invalid", message)
    }

    pub(crate) fn invalid_field(field: &str, value: &str, why: &str) -> Self {
        Self::invalid(format!(
            "Invalid value for field '{field}': '{value}'. {why}"
        ))
    }

    pub(crate) fn bad_json(message: impl Into<String>) -> Self {
        Self::new(400, "invalid", message)
    }

    pub(crate) fn required(field: &str) -> Self {
        Self::new(
            400,
            "required",
            format!("Required field '{field}' not specified"),
        )
    }

    pub(crate) fn in_use(message: impl Into<String>) -> Self {
        Self::new(400, "resourceInUseByAnotherResource", message)
    }

    pub(crate) fn condition_not_met(message: impl Into<String>) -> Self {
        Self::new(412, "conditionNotMet", message)
    }

    pub(crate) fn aborted(message: impl Into<String>) -> Self {
        Self::new(409, "aborted", message)
    }

    pub(crate) fn rate_limited() -> Self {
        Self::new(
            429,
            "rateLimitExceeded",
            "Rate Limit Exceeded (emulated fault)",
        )
    }

    pub(crate) fn backend_error() -> Self {
        Self::new(
            503,
            "backendError",
            "Internal error. Please try again or contact Google Support. (emulated fault)",
        )
    }

    pub(crate) fn method_not_found(method: &str, path: &str) -> Self {
        Self::new(
            404,
            "notFound",
            format!("The requested URL {path} was not found on this server (method {method})."),
        )
    }

    /// The canonical status name Google puts in `error.status`.
    pub(crate) fn status(&self) -> &'static str {
        match (self.code, self.reason) {
            (409, "aborted") => "ABORTED",
            (400, "failedPrecondition") => "FAILED_PRECONDITION",
            (400, _) => "INVALID_ARGUMENT",
            (401, _) => "UNAUTHENTICATED",
            (403, _) => "PERMISSION_DENIED",
            (404, _) => "NOT_FOUND",
            (409, _) => "ALREADY_EXISTS",
            (412, _) => "FAILED_PRECONDITION",
            (429, _) => "RESOURCE_EXHAUSTED",
            (503, _) => "UNAVAILABLE",
            _ => "INTERNAL",
        }
    }

    pub(crate) fn body(&self) -> Value {
        let mut body = json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "status": self.status(),
                "errors": [{
                    "domain": self.domain,
                    "reason": self.reason,
                    "message": self.message,
                }],
            }
        });
        let Some(e) = body.get_mut("error").and_then(Value::as_object_mut) else {
            return body;
        };
        if !self.details.is_empty() {
            e.insert("details".into(), Value::Array(self.details.clone()));
        }
        if let Some(Value::Array(errors)) = e.get_mut("errors") {
            for m in &self.more {
                errors.push(json!({"domain": self.domain, "reason": self.reason, "message": m}));
            }
        }
        body
    }
}

/// The failure of a change that was accepted: it comes back in the DONE operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OpError {
    pub(crate) http: u16,
    /// Compute's operation error code, e.g. `RESOURCE_IN_USE_BY_ANOTHER_RESOURCE`.
    pub(crate) code: String,
    pub(crate) message: String,
}

impl OpError {
    pub(crate) fn new(http: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            http,
            code: code.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn in_use(message: impl Into<String>) -> Self {
        Self::new(400, "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE", message)
    }

    pub(crate) fn ip_in_use(message: impl Into<String>) -> Self {
        Self::new(400, "IP_IN_USE_BY_ANOTHER_RESOURCE", message)
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "INVALID_FIELD_VALUE", message)
    }

    pub(crate) fn http_message(&self) -> &'static str {
        match self.http {
            400 => "BAD REQUEST",
            404 => "NOT FOUND",
            409 => "CONFLICT",
            412 => "PRECONDITION FAILED",
            _ => "INTERNAL SERVER ERROR",
        }
    }
}
