//! librdkafka's error and log callbacks, the same in every binary: rate-limited, since
//! librdkafka repeats connection failures many times a second while a broker is down (one
//! line per interval is enough; the error callback says the same).

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

use crate::ratelimit::RateLimit;
use crate::warn_limited;

/// Forward a `ClientContext`'s `error` and `log` here.
#[derive(Debug, Default)]
pub struct KafkaLog {
    errors: RateLimit,
    lib: RateLimit,
}

impl KafkaLog {
    /// A client-level error (librdkafka retries on its own).
    pub fn error(&self, error: KafkaError, reason: &str) {
        warn_limited!(self.errors, %error, reason, "kafka client error (librdkafka retries on its own)");
    }

    /// One of librdkafka's log lines: warnings and worse as rate-limited warnings, the rest at
    /// debug.
    pub fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        use RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error | L::Warning => {
                warn_limited!(self.lib, facility = fac, detail = message, "librdkafka");
            }
            _ => tracing::debug!(facility = fac, detail = message, "librdkafka"),
        }
    }
}
