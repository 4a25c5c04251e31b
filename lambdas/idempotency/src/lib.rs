//! Idempotent side effects keyed by a stable id, on a DynamoDB table, using the record layout of
//! [Powertools for AWS Lambda's idempotency utility] so both can share a table:
//!
//! | attribute | meaning |
//! |---|---|
//! | `id` (partition key, string) | the idempotency key |
//! | `expiration` (number, epoch seconds) | when the record stops counting (make it the table's TTL attribute) |
//! | `status` | `INPROGRESS` while a handler runs, `COMPLETED` after |
//! | `in_progress_expiration` (number, epoch milliseconds) | when an `INPROGRESS` record is considered abandoned (its handler crashed) |
//! | `data` (string, optional) | the handler's result, returned to duplicates |
//!
//! [`Idempotency::begin`] claims the key with one conditional `PutItem` (no read-then-write
//! race): it succeeds if no record exists, the record expired, or it is `INPROGRESS` past its
//! in-progress expiry. Otherwise the existing record decides: `COMPLETED` → the caller skips
//! the side effect; `INPROGRESS` → a twin is running right now, and the caller should fail so
//! the delivery is retried later. After the side effect, [`Claim::complete`] marks the record
//! `COMPLETED`; if the side effect failed, [`Claim::release`] deletes it so a retry can run.
//!
//! [Powertools for AWS Lambda's idempotency utility]: https://docs.powertools.aws.dev/lambda/python/latest/utilities/idempotency/

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

pub const STATUS_IN_PROGRESS: &str = "INPROGRESS";
pub const STATUS_COMPLETED: &str = "COMPLETED";

/// How long records count, and how long a running handler may hold a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// A completed record dedups deliveries for this long (Powertools' default: one hour).
    pub expires_after: Duration,
    /// An `INPROGRESS` record older than this is taken over by the next delivery: set it to the
    /// handler's timeout (the Lambda's remaining time, as Powertools does).
    pub in_progress_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            expires_after: Duration::from_secs(3600),
            in_progress_timeout: Duration::from_secs(60),
        }
    }
}

/// Errors of the idempotency store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another delivery of the same key is running (or crashed less than
    /// `in_progress_timeout` ago): fail this one so it is retried later.
    #[error("idempotency key {0} is already in progress")]
    InProgress(String),
    /// The store could not be read or written.
    #[error("idempotency store ({operation} on key {key}): {code}: {message}")]
    Store {
        operation: &'static str,
        key: String,
        code: String,
        message: String,
    },
}

impl Error {
    fn store<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
        operation: &'static str,
        key: &str,
        err: &SdkError<E, R>,
    ) -> Self {
        let (code, message) = match err.as_service_error() {
            Some(e) => (
                e.code().unwrap_or("Unknown").to_owned(),
                e.message().unwrap_or_default().to_owned(),
            ),
            None => ("Transport".to_owned(), format!("{err:?}")),
        };
        Self::Store {
            operation,
            key: key.to_owned(),
            code,
            message,
        }
    }
}

/// What [`Idempotency::begin`] found.
#[derive(Debug)]
pub enum Begin {
    /// The key is ours: run the side effect, then [`Claim::complete`] (or [`Claim::release`]).
    Claimed(Claim),
    /// A delivery of this key completed before; its stored result, if any.
    AlreadyCompleted(Option<String>),
}

/// An idempotency key claimed by this delivery.
#[derive(Debug)]
#[must_use = "complete or release the claim"]
pub struct Claim {
    store: Idempotency,
    key: String,
    /// Our `in_progress_expiration`: tells our claim from a later one that took over.
    in_progress_expiration: u128,
}

/// The outcome of [`Idempotency::run`].
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome<T> {
    /// The side effect ran now and returned this.
    Ran(T),
    /// A duplicate: the side effect ran before; its stored result, if any.
    Duplicate(Option<String>),
}

/// The idempotency store: a DynamoDB table with partition key `id` (string).
#[derive(Debug, Clone)]
pub struct Idempotency {
    client: aws_sdk_dynamodb::Client,
    table: String,
    settings: Settings,
}

fn epoch(at: SystemTime) -> Duration {
    at.duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn n(value: u128) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

impl Idempotency {
    #[must_use]
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        settings: Settings,
    ) -> Self {
        Self {
            client,
            table: table.into(),
            settings,
        }
    }

    /// Claims `key` with one conditional write, or reports why it cannot.
    ///
    /// # Errors
    /// [`Error::InProgress`] when a twin holds the key; [`Error::Store`] when DynamoDB fails.
    pub async fn begin(&self, key: &str) -> Result<Begin, Error> {
        let now = epoch(SystemTime::now());
        let expiration = (now + self.settings.expires_after).as_secs();
        let in_progress_expiration = (now + self.settings.in_progress_timeout).as_millis();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("id", AttributeValue::S(key.to_owned()))
            .item("expiration", n(u128::from(expiration)))
            .item("status", AttributeValue::S(STATUS_IN_PROGRESS.to_owned()))
            .item("in_progress_expiration", n(in_progress_expiration))
            // Powertools' condition: no record, an expired one, or an abandoned INPROGRESS one.
            .condition_expression(
                "attribute_not_exists(#id) OR #expiration < :now OR \
                 (#status = :inprogress AND attribute_exists(#in_progress_expiration) \
                 AND #in_progress_expiration < :now_ms)",
            )
            .expression_attribute_names("#id", "id")
            .expression_attribute_names("#expiration", "expiration")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#in_progress_expiration", "in_progress_expiration")
            .expression_attribute_values(":now", n(u128::from(now.as_secs())))
            .expression_attribute_values(":now_ms", n(now.as_millis()))
            .expression_attribute_values(
                ":inprogress",
                AttributeValue::S(STATUS_IN_PROGRESS.into()),
            )
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Begin::Claimed(Claim {
                store: self.clone(),
                key: key.to_owned(),
                in_progress_expiration,
            })),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(e)) => {
                    let existing = match e.item() {
                        Some(item) => Some(item.clone()),
                        // Not every DynamoDB-compatible store returns the old item.
                        None => self.get(key).await?,
                    };
                    self.existing(key, existing.as_ref())
                }
                _ => Err(Error::store("PutItem", key, &err)),
            },
        }
    }

    fn existing(
        &self,
        key: &str,
        item: Option<&HashMap<String, AttributeValue>>,
    ) -> Result<Begin, Error> {
        let status = item
            .and_then(|i| i.get("status"))
            .and_then(|s| s.as_s().ok());
        match status.map(String::as_str) {
            Some(STATUS_COMPLETED) => Ok(Begin::AlreadyCompleted(
                item.and_then(|i| i.get("data"))
                    .and_then(|d| d.as_s().ok())
                    .cloned(),
            )),
            // INPROGRESS, or the record vanished between the put and the read (a twin released
            // it): either way, retry later.
            _ => Err(Error::InProgress(key.to_owned())),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<HashMap<String, AttributeValue>>, Error> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map(|out| out.item)
            .map_err(|e| Error::store("GetItem", key, &e))
    }

    /// Runs `effect` at most once per `key` (while the record lasts): claims the key, runs the
    /// effect, stores its result (`to_data`) and completes; releases the key if the effect
    /// fails, so a retry can run it.
    ///
    /// # Errors
    /// The effect's own error, or the store's ([`Error::InProgress`] for a running twin).
    pub async fn run<T, E, F, Fut>(
        &self,
        key: &str,
        effect: F,
        to_data: impl FnOnce(&T) -> Option<String>,
    ) -> Result<Outcome<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<Error>,
    {
        let claim = match self.begin(key).await? {
            Begin::AlreadyCompleted(data) => return Ok(Outcome::Duplicate(data)),
            Begin::Claimed(claim) => claim,
        };
        match effect().await {
            Ok(value) => {
                claim.complete(to_data(&value)).await?;
                Ok(Outcome::Ran(value))
            }
            Err(err) => {
                if let Err(release) = claim.release().await {
                    // The record stays INPROGRESS until in_progress_timeout: retries wait for it.
                    tracing::warn!(error = %release, "could not release the idempotency key");
                }
                Err(err)
            }
        }
    }
}

impl Claim {
    /// The claimed key.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Marks the key `COMPLETED` (with the result `data`, if any): later deliveries skip it.
    ///
    /// # Errors
    /// [`Error::Store`] when DynamoDB fails (the record stays `INPROGRESS` until it expires).
    pub async fn complete(self, data: Option<String>) -> Result<(), Error> {
        let store = &self.store;
        let expiration = (epoch(SystemTime::now()) + store.settings.expires_after).as_secs();
        let mut update = store
            .client
            .update_item()
            .table_name(&store.table)
            .key("id", AttributeValue::S(self.key.clone()))
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#expiration", "expiration")
            .expression_attribute_values(":completed", AttributeValue::S(STATUS_COMPLETED.into()))
            .expression_attribute_values(":expiration", n(u128::from(expiration)));
        update = match data {
            Some(data) => update
                .update_expression(
                    "SET #status = :completed, #expiration = :expiration, #data = :data",
                )
                .expression_attribute_names("#data", "data")
                .expression_attribute_values(":data", AttributeValue::S(data)),
            None => update.update_expression("SET #status = :completed, #expiration = :expiration"),
        };
        update
            .send()
            .await
            .map(|_| ())
            .map_err(|e| Error::store("UpdateItem", &self.key, &e))
    }

    /// Deletes the claim after a failed side effect, so the next delivery runs it. A claim
    /// that another delivery took over in the meantime (ours was abandoned) is left alone.
    ///
    /// # Errors
    /// [`Error::Store`] when DynamoDB fails.
    pub async fn release(self) -> Result<(), Error> {
        let result = self
            .store
            .client
            .delete_item()
            .table_name(&self.store.table)
            .key("id", AttributeValue::S(self.key.clone()))
            .condition_expression("#status = :inprogress AND #in_progress_expiration = :ours")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#in_progress_expiration", "in_progress_expiration")
            .expression_attribute_values(
                ":inprogress",
                AttributeValue::S(STATUS_IN_PROGRESS.into()),
            )
            .expression_attribute_values(":ours", n(self.in_progress_expiration))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(Error::store("DeleteItem", &self.key, &e)),
        }
    }
}
