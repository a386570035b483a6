use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use reelrank_ingest::{BatchError, RecordError};
use reelrank_store::StoreError;
use serde::Serialize;

use crate::shared_state::SharedStateError;

/// An error answered to a client: a status and a JSON body `{"error", "errors"?}`.
#[derive(Debug)]
pub struct HttpError {
    status: StatusCode,
    body: ErrorBody,
}

#[derive(Debug, Serialize)]
struct ErrorBody {
    error: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<RecordError>,
}

impl HttpError {
    /// An error with a status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> HttpError {
        HttpError { status, body: ErrorBody { error: message.into(), errors: Vec::new() } }
    }

    /// `422` for a record with the fields at fault listed.
    pub fn invalid(message: impl Into<String>, errors: Vec<RecordError>) -> HttpError {
        HttpError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: ErrorBody { error: message.into(), errors },
        }
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// A JSON body, or `400` saying what is wrong with it.
pub(crate) fn json_body<T>(
    body: Result<axum::Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<T, HttpError> {
    body.map(|axum::Json(value)| value)
        .map_err(|rejection| HttpError::new(StatusCode::BAD_REQUEST, rejection.body_text()))
}

impl From<BatchError> for HttpError {
    fn from(err: BatchError) -> HttpError {
        let message = err.to_string();
        match err {
            BatchError::TooLarge { .. } => HttpError::new(StatusCode::PAYLOAD_TOO_LARGE, message),
            BatchError::Empty => HttpError::new(StatusCode::UNPROCESSABLE_ENTITY, message),
            BatchError::Invalid(errors) => HttpError::invalid(message, errors),
        }
    }
}

impl From<StoreError> for HttpError {
    fn from(err: StoreError) -> HttpError {
        // Every store error is ours or the database's, never the client's: the batch was validated.
        tracing::error!(error = %err, "store failure");
        HttpError::new(StatusCode::SERVICE_UNAVAILABLE, format!("store unavailable: {err}"))
    }
}

impl From<SharedStateError> for HttpError {
    fn from(err: SharedStateError) -> HttpError {
        tracing::error!(error = %err, "shared state failure");
        HttpError::new(StatusCode::SERVICE_UNAVAILABLE, format!("shared state unavailable: {err}"))
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}
