//! AWS SDK configuration: region, optional emulator endpoint, and an HTTPS client on rustls
//! with the `ring` provider (so the build needs no C toolchain for aws-lc).

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

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

/// Counts every request attempt an SDK client makes (`outbox_relay_aws_requests_total`), by
/// service and operation as the SDK names them and by outcome: `ok` for a 2xx answer, `error`
/// for any other answer, `no_response` when none came (timeout, connection failure). Each
/// attempt of a retried call counts: AWS bills requests, not calls.
#[derive(Debug, Clone)]
pub struct RequestCounter(pub prometheus::IntCounterVec);

impl RequestCounter {
    fn outcome(status: Option<u16>) -> &'static str {
        match status {
            Some(200..=299) => "ok",
            Some(_) => "error",
            None => "no_response",
        }
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, operation) = cfg
            .load::<Metadata>()
            .map_or(("unknown", "unknown"), |m| (m.service(), m.name()));
        let status = context.response().map(|r| r.status().as_u16());
        self.0
            .with_label_values(&[service, operation, Self::outcome(status)])
            .inc();
        Ok(())
    }
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
        Self::counted(config, endpoints, None)
    }

    /// Like [`Clients::new`], each client counting its requests into `counter` if given.
    #[must_use]
    pub fn counted(
        config: &SdkConfig,
        endpoints: &EndpointsConfig,
        counter: Option<&RequestCounter>,
    ) -> Self {
        // Each service's builder starts from the shared config; an override replaces only
        // that service's endpoint.
        macro_rules! client {
            ($krate:ident, $endpoint:expr) => {{
                let mut builder = $krate::config::Builder::from(config);
                if let Some(url) = $endpoint {
                    builder = builder.endpoint_url(url);
                }
                if let Some(counter) = counter {
                    builder = builder.interceptor(counter.clone());
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

/// Longest [`describe_error`] line: the service's message is kept whole up to this.
const MAX_DESCRIPTION_CHARS: usize = 400;

/// One readable line for a failed SDK call: what failed (the error and its causes, each
/// `Display`ed once, never the `Debug` dump of headers and body bytes that the SDK's
/// `DisplayErrorContext` appends) and what to check.
// NOTE: every aws-sdk-* crate re-exports the same smithy `SdkError`, so one function serves all.
pub fn describe_error<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let mut line = match err {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            match (inner.code(), inner.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_owned(),
                _ => causes(inner),
            }
        }
        other => causes(other),
    };
    // One line: the credentials chain's answer lists every provider it tried, one per line;
    // the hint below says what to do instead.
    if let Some((first, _)) = line.split_once(" Attempted:") {
        line = first.trim_end_matches('.').to_owned();
    }
    line = line.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > MAX_DESCRIPTION_CHARS {
        line = line.chars().take(MAX_DESCRIPTION_CHARS).collect::<String>() + "…";
    }
    match hint(err, &line) {
        Some(hint) => format!("{line} ({hint})"),
        None => line,
    }
}

/// An error and its sources, `: `-separated, each message once.
fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// What to check, by the kind of failure.
fn hint<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>, line: &str) -> Option<&'static str> {
    let lower = line.to_lowercase();
    if lower.contains("credential") || lower.contains("identity") {
        return Some(
            "no usable AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY, or run with a role (ECS task role, EKS Pod Identity or IRSA, \
             EC2 instance profile)",
        );
    }
    Some(match (err, error_code(err)) {
        (
            SdkError::ServiceError(_),
            "AccessDeniedException" | "AccessDenied" | "UnauthorizedOperation",
        ) => "the role lacks a permission: compare it with deploy/iam/relay-policy.json",
        (
            SdkError::ServiceError(_),
            "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "ExpiredTokenException"
            | "InvalidClientTokenId",
        ) => "the credentials were refused: check they are current and for this account",
        (SdkError::ServiceError(_), "ResourceNotFoundException") => {
            "check the name and the region (aws.region, AWS_REGION)"
        }
        (SdkError::DispatchFailure(_), _) => {
            "the request was not sent or got no answer: check the network path to AWS, \
             aws.region and aws.endpoint_url"
        }
        (SdkError::TimeoutError(_), _) => {
            "no answer in time: check the network path to AWS (VPC endpoints, NAT, proxies)"
        }
        (SdkError::ResponseError(_), _) => {
            "the answer could not be read: is aws.endpoint_url an AWS API endpoint?"
        }
        (SdkError::ConstructionFailure(_), _) => {
            "the request could not be built: check aws.region and the config's names"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;

    #[derive(Debug, thiserror::Error)]
    #[error("connection refused (os error 111)")]
    struct Refused;

    #[derive(Debug, thiserror::Error)]
    #[error("error trying to connect")]
    struct Connect(#[source] Refused);

    #[test]
    fn an_sdk_error_is_one_line_with_what_to_check() {
        let denied: SdkError<DescribeTableError, ()> = SdkError::service_error(
            DescribeTableError::generic(
                ErrorMetadata::builder()
                    .code("AccessDeniedException")
                    .message("User: arn:aws:sts::1:assumed-role/relay is not authorized to perform: dynamodb:DescribeTable")
                    .build(),
            ),
            (),
        );
        let line = describe_error(&denied);
        assert_eq!(
            line,
            "AccessDeniedException: User: arn:aws:sts::1:assumed-role/relay is not authorized \
             to perform: dynamodb:DescribeTable (the role lacks a permission: compare it with \
             deploy/iam/relay-policy.json)"
        );
        let timeout: SdkError<DescribeTableError, ()> = SdkError::timeout_error(Connect(Refused));
        let line = describe_error(&timeout);
        assert!(
            line.starts_with(
                "request has timed out: error trying to connect: connection refused (os error 111)"
            ) && line.contains("check the network path to AWS"),
            "{line}"
        );
        assert!(!line.contains('\n') && !line.contains("Debug"), "{line}");
        let no_credentials: SdkError<DescribeTableError, ()> = SdkError::construction_failure(
            "the credential provider was not enabled: no credentials found in chain. Attempted:\n  \
             Environment: the credential provider was not enabled: environment variable not set\n  \
             Profile: the credential provider was not enabled",
        );
        let line = describe_error(&no_credentials);
        assert_eq!(
            line,
            "failed to construct request: the credential provider was not enabled: no \
             credentials found in chain (no usable AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
             run with a role (ECS task role, EKS Pod Identity or IRSA, EC2 instance profile))"
        );
    }

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
