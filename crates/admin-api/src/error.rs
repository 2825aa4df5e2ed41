//! One error shape for every refusal: `{"error": {"code", "message", "problems"?}}`, with the
//! HTTP status each variant stands for.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// One problem of a refused change, with its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProblemDto {
    /// The key (`max_size`, `adaptive.enabled`, ...), empty for the body as a whole.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl From<&pgtide_config::Problem> for ProblemDto {
    fn from(p: &pgtide_config::Problem) -> Self {
        ProblemDto {
            key: p.path.clone(),
            message: p.message.clone(),
        }
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 401: no token, or not a valid one.
    Unauthorized(&'static str),
    /// 403: a viewer token on a write.
    Forbidden {
        /// The token's name.
        name: String,
    },
    /// 404: no such pool, client, override or route.
    NotFound {
        /// `not_found`, `no_route`.
        code: &'static str,
        /// What is missing.
        message: String,
    },
    /// 405: the path exists, not with this method.
    MethodNotAllowed,
    /// 400: the body or a parameter is malformed.
    BadRequest(String),
    /// 422: well-formed but refused; every problem.
    Invalid {
        /// `invalid_limits`, `reload_rejected`.
        code: &'static str,
        /// A summary.
        message: String,
        /// Each problem.
        problems: Vec<ProblemDto>,
    },
    /// 409: not possible in the current state.
    Conflict(String),
    /// 501: pgtide cannot do this yet.
    NotImplemented(String),
}

impl ApiError {
    /// A 404 for something that does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::NotFound {
            code: "not_found",
            message: message.into(),
        }
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
        }
    }

    /// The stable `code` of the body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::NotFound { code, .. } => code,
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Invalid { code, .. } => code,
            ApiError::Conflict(_) => "conflict",
            ApiError::NotImplemented(_) => "not_implemented",
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::Unauthorized(m) => (*m).to_owned(),
            ApiError::Forbidden { name } => {
                format!("token {name:?} has the viewer role; this request needs an operator token")
            }
            ApiError::NotFound { message, .. } => message.clone(),
            ApiError::MethodNotAllowed => "this path does not take this method".to_owned(),
            ApiError::BadRequest(m) | ApiError::Conflict(m) | ApiError::NotImplemented(m) => {
                m.clone()
            }
            ApiError::Invalid { message, .. } => message.clone(),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    problems: Option<&'a [ProblemDto]>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problems = match &self {
            ApiError::Invalid { problems, .. } => Some(problems.as_slice()),
            _ => None,
        };
        let body = Body {
            error: Inner {
                code: self.code(),
                message: self.message(),
                problems,
            },
        };
        let mut response = (self.status(), Json(body)).into_response();
        if self.status() == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"pgtide\""),
            );
        }
        response
    }
}
