//! Test support (feature `testing`), shared by the Lambdas' tests and the relay's own harness
//! (`tests/common`): the moto emulator started by the repository's
//! `scripts/dev-stack` (or `OUTBOX_RELAY_TEST_ENDPOINT`), SDK config with dummy credentials,
//! and tables with unique names.
#![allow(clippy::missing_panics_doc)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

/// The emulator's endpoint, starting it on first use.
pub fn endpoint() -> &'static str {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT.get_or_init(|| {
        if let Ok(e) = std::env::var("OUTBOX_RELAY_TEST_ENDPOINT") {
            return e;
        }
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let out = Command::new(repo.join("scripts/dev-stack"))
            .arg("up")
            .env("DEV_STACK_DIR", repo.join("target/test-stack"))
            .stderr(Stdio::inherit())
            .output()
            .expect("scripts/dev-stack runs");
        assert!(out.status.success(), "scripts/dev-stack up failed");
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned()
    })
}

/// SDK config for the emulator, with dummy credentials.
#[must_use]
pub fn sdk_config() -> SdkConfig {
    sdk_config_at(endpoint())
}

/// SDK config for an emulator-compatible endpoint (the emulator, or a proxy in front of it),
/// with dummy credentials.
#[must_use]
pub fn sdk_config_at(endpoint: &str) -> SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
        )
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "tests"),
        ))
        .build()
}

/// A unique name for a test's resource.
#[must_use]
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// Creates an on-demand table with string keys `hash` (and `range`); returns its name.
pub async fn create_table(
    ddb: &aws_sdk_dynamodb::Client,
    prefix: &str,
    hash: &str,
    range: Option<&str>,
) -> String {
    let name = unique(prefix);
    let mut create = ddb
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest);
    for (attribute, kind) in [(Some(hash), KeyType::Hash), (range, KeyType::Range)] {
        let Some(attribute) = attribute else { continue };
        create = create
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attribute)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("complete"),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(attribute)
                    .key_type(kind)
                    .build()
                    .expect("complete"),
            );
    }
    create.send().await.expect("create table");
    name
}
