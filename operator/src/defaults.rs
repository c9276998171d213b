//! Operator-wide defaults that a CR may override.

/// Default images and other operator-level settings used by the desired-state builders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Defaults {
    /// Image of `netstream-probe` when a NetProbe does not set `spec.image`.
    pub probe_image: String,
    /// Image of `netstream-processor` when a StreamAnalysis does not set `spec.image`.
    pub processor_image: String,
}

impl Default for Defaults {
    fn default() -> Self {
        let version = env!("CARGO_PKG_VERSION");
        Self {
            probe_image: format!("ghcr.io/netstream-dev/netstream-probe:{version}"),
            processor_image: format!("ghcr.io/netstream-dev/netstream-processor:{version}"),
        }
    }
}
