//! AWS SDK configuration: region, optional emulator endpoint, and an HTTPS client on rustls
//! with the `ring` provider (so the build needs no C toolchain for aws-lc).

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

use crate::config::{AwsConfig, EndpointsConfig};

/// Connect timeout for every AWS call: an unreachable endpoint fails fast and is retried by
/// the relay's own backoff.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Per-attempt timeout. GetRecords answers within a few seconds even when empty.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);

/// Who retries a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retries {
    /// The SDK's standard retries (3 attempts): one-shot commands (`status`, `redrive`, ...).
    Sdk,
    /// None in the SDK: the running relay retries every call itself, with its own backoff and
    /// classification (`publish::retry`), and counts and logs each failure. SDK retries on top
    /// would multiply the load on a struggling dependency, and re-send a PutEvents whose slow
    /// attempt may already have been accepted, without a trace.
    Relay,
}

/// Loads the shared SDK config from the default provider chain plus `aws`.
pub async fn sdk_config(aws: &AwsConfig, retries: Retries) -> SdkConfig {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        );
    if retries == Retries::Relay {
        loader = loader.retry_config(aws_config::retry::RetryConfig::disabled());
    }
    if let Some(region) = &aws.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &aws.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

/// The clients the relay uses, built from one SDK config.
#[derive(Debug, Clone)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub streams: aws_sdk_dynamodbstreams::Client,
    pub eventbridge: aws_sdk_eventbridge::Client,
    /// The Custom Event Bus API (`eventsv2`).
    pub eventbridgev2: aws_sdk_eventbridgev2::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl Clients {
    /// Every client from `config`, each at its `[aws.endpoints]` override if set.
    #[must_use]
    pub fn new(config: &SdkConfig, endpoints: &EndpointsConfig) -> Self {
        // Each service's builder starts from the shared config; an override replaces only
        // that service's endpoint.
        macro_rules! client {
            ($krate:ident, $endpoint:expr) => {{
                let mut builder = $krate::config::Builder::from(config);
                if let Some(url) = $endpoint {
                    builder = builder.endpoint_url(url);
                }
                $krate::Client::from_conf(builder.build())
            }};
        }
        Self {
            dynamodb: client!(aws_sdk_dynamodb, &endpoints.dynamodb),
            streams: client!(aws_sdk_dynamodbstreams, &endpoints.dynamodbstreams),
            eventbridge: client!(aws_sdk_eventbridge, &endpoints.eventbridge),
            eventbridgev2: client!(aws_sdk_eventbridgev2, &endpoints.eventbridgev2),
            sqs: client!(aws_sdk_sqs, &endpoints.sqs),
        }
    }

    /// The SDK config of `aws` (see [`sdk_config`]) and every client from it.
    pub async fn load(aws: &AwsConfig, retries: Retries) -> Self {
        Self::new(&sdk_config(aws, retries).await, &aws.endpoints)
    }
}

/// The error code of a failed SDK call: the service's code (`ThrottlingException`, ...) or,
/// when the call got no service answer, the kind of failure (`DispatchFailure`, `Timeout`,
/// `ResponseError`, ...). The set is bounded, so it can be a metric label.
// NOTE: every aws-sdk-* crate re-exports the same smithy `SdkError`, so one function serves all.
pub fn error_code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> &str {
    err.code().unwrap_or(match err {
        SdkError::DispatchFailure(_) => "DispatchFailure",
        SdkError::TimeoutError(_) => "Timeout",
        SdkError::ResponseError(_) => "ResponseError",
        SdkError::ConstructionFailure(_) => "ConstructionFailure",
        _ => "Unknown",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running relay makes one attempt per call (it retries itself); commands keep the
    /// SDK's standard three.
    #[tokio::test]
    async fn the_relay_turns_the_sdk_retries_off_and_commands_keep_them() {
        let aws = AwsConfig {
            region: Some("us-east-1".into()),
            ..AwsConfig::default()
        };
        let attempts = |c: &SdkConfig| c.retry_config().map(|r| r.max_attempts());
        assert_eq!(attempts(&sdk_config(&aws, Retries::Relay).await), Some(1));
        assert_eq!(attempts(&sdk_config(&aws, Retries::Sdk).await), Some(3));
    }
}
