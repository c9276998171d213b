//! Errors of a reconcile pass. Problems with the user's spec are not errors: they become
//! status conditions. Errors here are transient (API failures) and are retried with backoff.

/// Reconcile error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API call failed ({action}): {source}")]
    Kube {
        /// What the operator was doing.
        action: String,
        /// Underlying client error.
        #[source]
        source: kube::Error,
    },
    /// The object has no namespace or uid, which only happens with malformed input.
    #[error("{0} is missing metadata.{1}; it cannot own child objects")]
    MissingMetadata(String, &'static str),
    /// kube-runtime's finalizer helper could not build its JSON patch (malformed object).
    #[error("the finalizer of {0} could not be patched: invalid finalizer path")]
    InvalidFinalizer(String),
}

impl Error {
    /// Wraps a client error with what was being attempted.
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Kube { action, source }
    }

    /// Low-cardinality label for the failures metric.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Error::Kube {
                source: kube::Error::Api(s),
                ..
            } => match s.code {
                409 => "Conflict",
                403 => "Forbidden",
                404 => "NotFound",
                422 => "Invalid",
                429 => "TooManyRequests",
                500..=599 => "ServerError",
                _ => "ApiError",
            },
            Error::Kube { .. } => "ClientError",
            Error::MissingMetadata(..) => "MissingMetadata",
            Error::InvalidFinalizer(..) => "InvalidFinalizer",
        }
    }
}

impl Error {
    /// Unwraps kube-runtime's finalizer error into ours, keeping the API status (and so the
    /// metric reason) of add/remove failures.
    pub fn from_finalizer(what: &str, e: kube::runtime::finalizer::Error<Error>) -> Error {
        use kube::runtime::finalizer::Error as F;
        match e {
            F::ApplyFailed(e) | F::CleanupFailed(e) => e,
            F::AddFinalizer(source) => Error::Kube {
                action: format!("adding the finalizer to {what}"),
                source,
            },
            F::RemoveFinalizer(source) => Error::Kube {
                action: format!("removing the finalizer from {what}"),
                source,
            },
            F::UnnamedObject => Error::MissingMetadata(what.to_string(), "name"),
            F::InvalidFinalizer => Error::InvalidFinalizer(what.to_string()),
        }
    }
}

/// Result of a reconcile step.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// True for any 404, whatever its body. A real API server answers a group/version it does not
/// serve (a CRD that is not installed) with `text/plain` `404 page not found`, which kube-client
/// turns into a `Status` with reason "Failed to parse error data"; `Status::is_not_found` (and
/// so `Api::get_opt`) does not count that as not found, this does.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}
