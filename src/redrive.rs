//! `outbox-relay redrive`: re-publish what the dead-letter queue holds, with the *current*
//! config (so a fixed template or bus applies), deleting each message only after EventBridge
//! accepted its event. Messages that still cannot be delivered stay in the queue, with the
//! reason printed.

use std::time::Instant;

use aws_sdk_sqs::types::{Message, QueueAttributeName};
use serde_json::Value;

use crate::aws::{Clients, Retries};
use crate::config::{Config, StreamSelector};
use crate::pipeline::{Entry, ImageTexts, Router};
use crate::publish::{DeadLetter, EventBridgePublisher, EventPublisher};

/// What became of the messages seen.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RedriveReport {
    /// Published (or, with `--dry-run`, would be) and deleted from the queue.
    pub redriven: usize,
    /// Left in the queue, each with why.
    pub left: Vec<(String, String)>,
}

/// Why a redrive could not run (a message that cannot be redriven is not an error: it stays
/// in the queue and is reported in [`RedriveReport::left`]).
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    /// The config names no dead-letter queue.
    #[error("redrive needs dead_letter.queue_url or dead_letter.queue_name")]
    NoQueue,
    /// `dead_letter.queue_name` could not be resolved to a URL.
    #[error("cannot find queue {name:?}: {detail}")]
    QueueNotFound { name: String, detail: String },
    /// Receiving from, or reading the attributes of, the queue failed.
    #[error("cannot read {queue_url}: {detail}")]
    ReceiveFailed { queue_url: String, detail: String },
    /// A source's routes cannot be merged into one matcher (unreachable for a loaded config).
    #[error("cannot build the routes of source {source_name:?}")]
    RoutesRejected {
        source_name: String,
        #[source]
        source: crate::pipeline::PatternError,
    },
}

/// What a redrive tells as it goes; the run never prints, its observer shows these
/// (`src/render.rs` for the command line).
#[derive(Debug, Clone)]
pub enum RedriveEvent {
    /// The queue and about how many messages it holds.
    Started { queue_url: String, total: usize },
    /// `--dry-run`: the entry a message would be sent as.
    WouldSend(Value),
    /// A message stays in the queue, and why.
    Left { id: String, reason: String },
    /// Messages seen so far, of about `total`, and the rate.
    Progress {
        seen: usize,
        total: usize,
        per_second: f64,
    },
}

/// Options of one redrive run.
#[derive(Debug, Clone, Copy)]
pub struct RedriveOptions {
    /// Print what would be sent; publish and delete nothing.
    pub dry_run: bool,
    /// Stop after this many messages (`None` = until the queue looks empty).
    pub max_messages: Option<usize>,
}

/// Runs a redrive.
///
/// # Errors
/// [`RedriveError`]: no queue configured, or the queue cannot be read.
pub async fn run(
    config: &Config,
    options: RedriveOptions,
    observe: &dyn Fn(RedriveEvent),
) -> Result<RedriveReport, RedriveError> {
    let clients = Clients::load(&config.aws, Retries::Sdk).await;
    let sqs = clients.sqs;
    let queue_url = queue_url(config, &sqs).await?;
    let routers = Routers::new(config)?;
    let publisher = EventBridgePublisher::new(clients.eventbridge, clients.eventbridgev2);
    let total = approximate_messages(&sqs, &queue_url).await?;
    observe(RedriveEvent::Started {
        queue_url: queue_url.clone(),
        total,
    });

    let started = Instant::now();
    let mut report = RedriveReport::default();
    let mut to_release = Vec::new();
    let mut seen = 0;
    loop {
        if options.max_messages.is_some_and(|max| seen >= max) {
            break;
        }
        let batch = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            // Hidden for the rest of the run (so each message is seen once), long enough to
            // publish; messages left behind are made visible again at the end.
            .visibility_timeout(VISIBILITY_TIMEOUT_SECS)
            .send()
            .await
            .map_err(|e| RedriveError::ReceiveFailed {
                queue_url: queue_url.clone(),
                detail: crate::aws::describe_error(&e),
            })?;
        if batch.messages().is_empty() {
            break;
        }
        for message in batch.messages() {
            seen += 1;
            let id = message.message_id().unwrap_or("?").to_owned();
            match redrive_one(message, &routers, &publisher, options.dry_run).await {
                Ok(entry) => {
                    if options.dry_run {
                        observe(RedriveEvent::WouldSend(entry.request_json()));
                        to_release.push(message.clone());
                        report.redriven += 1;
                    } else if let Err(reason) = delete(&sqs, &queue_url, message).await {
                        observe(RedriveEvent::Left {
                            id: id.clone(),
                            reason: reason.clone(),
                        });
                        report.left.push((id, reason));
                    } else {
                        report.redriven += 1;
                    }
                }
                Err(reason) => {
                    observe(RedriveEvent::Left {
                        id: id.clone(),
                        reason: reason.clone(),
                    });
                    to_release.push(message.clone());
                    report.left.push((id, reason));
                }
            }
            observe(RedriveEvent::Progress {
                seen,
                total,
                per_second: seen as f64 / started.elapsed().as_secs_f64().max(0.001),
            });
        }
    }
    for message in &to_release {
        release(&sqs, &queue_url, message).await;
    }
    Ok(report)
}

/// The dead-letter queue's URL: `dead_letter.queue_url`, else `queue_name` resolved.
async fn queue_url(config: &Config, sqs: &aws_sdk_sqs::Client) -> Result<String, RedriveError> {
    match (
        &config.dead_letter.queue_url,
        &config.dead_letter.queue_name,
    ) {
        (Some(url), _) => Ok(url.clone()),
        (None, Some(name)) => sqs
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| RedriveError::QueueNotFound {
                name: name.clone(),
                detail: crate::aws::describe_error(&e),
            })?
            .queue_url
            .ok_or_else(|| RedriveError::QueueNotFound {
                name: name.clone(),
                detail: "no URL returned".to_owned(),
            }),
        (None, None) => Err(RedriveError::NoQueue),
    }
}

/// About how many messages the queue holds (SQS's `ApproximateNumberOfMessages`), for
/// progress.
async fn approximate_messages(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> Result<usize, RedriveError> {
    Ok(sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .map_err(|e| RedriveError::ReceiveFailed {
            queue_url: queue_url.to_owned(),
            detail: crate::aws::describe_error(&e),
        })?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0))
}

/// How long a received message stays hidden from other receivers during a run.
const VISIBILITY_TIMEOUT_SECS: i32 = 300;

/// Re-renders and (unless `dry_run`) publishes one dead letter.
async fn redrive_one(
    message: &Message,
    routers: &Routers<'_>,
    publisher: &EventBridgePublisher,
    dry_run: bool,
) -> Result<Entry, String> {
    let body = message.body().ok_or("empty message")?;
    let letter: DeadLetter =
        serde_json::from_str(body).map_err(|e| format!("not a dead letter: {e}"))?;
    if letter.truncated {
        return Err(format!(
            "payload was truncated when dead-lettered (record too large); fetch sequence number {} of {} by hand",
            letter.sequence_number, letter.shard_id
        ));
    }
    let entry = routers.render(&letter)?;
    if dry_run {
        return Ok(entry);
    }
    match publisher.put_events(std::slice::from_ref(&entry)).await {
        Ok(outcome) => match outcome.failed.first() {
            None => Ok(entry),
            Some(f) => Err(format!(
                "EventBridge rejected it again ({}): {}",
                f.code, f.message
            )),
        },
        Err(e) => Err(e.to_string()),
    }
}

/// Every configured source's router: a letter is re-rendered by the routes that apply to
/// its stream now, exactly as the running relay would.
struct Routers<'c> {
    config: &'c Config,
    by_source: Vec<(StreamSelector, Router)>,
}

impl<'c> Routers<'c> {
    fn new(config: &'c Config) -> Result<Self, RedriveError> {
        let by_source = config
            .source
            .streams()
            .into_iter()
            .map(|s| {
                let router =
                    config
                        .router_for(&s)
                        .map_err(|source| RedriveError::RoutesRejected {
                            source_name: s.name().to_owned(),
                            source,
                        })?;
                Ok((s, router))
            })
            .collect::<Result<_, RedriveError>>()?;
        Ok(Self { config, by_source })
    }

    /// The entry the letter's route makes of its record under the current config.
    fn render(&self, letter: &DeadLetter) -> Result<Entry, String> {
        let source = self
            .config
            .source
            .source_of_stream(&letter.stream_arn)
            .ok_or_else(|| {
                format!(
                    "its stream {} is not a source of this config any more",
                    letter.stream_arn
                )
            })?;
        let router = self
            .by_source
            .iter()
            .find(|(s, _)| *s == source)
            .map(|(_, r)| r)
            .ok_or_else(|| format!("no routes for source {:?}", source.name()))?;
        let Some(index) = router
            .routes()
            .iter()
            .position(|r| r.name() == letter.route)
        else {
            let known = self
                .config
                .routes
                .iter()
                .any(|b| b.route.name() == letter.route);
            return Err(if known {
                format!(
                    "route {:?} does not apply to source {:?} any more",
                    letter.route,
                    source.name()
                )
            } else {
                format!("route {:?} is not in the config any more", letter.route)
            });
        };
        let created = letter
            .entry
            .as_ref()
            .and_then(|e| e.time.as_deref())
            .and_then(|t| humantime::parse_rfc3339(t).ok());
        // The trace travels on when the letter kept the row's images (not when truncated).
        let (trace, _) = self.config.source.record_policy().trace_of(&letter.record);
        router
            .route_traced(
                &letter.record,
                ImageTexts::default(),
                &letter.stream_arn,
                &letter.event_id,
                created,
                trace.as_ref(),
            )
            .into_iter()
            .find_map(|r| match r {
                Ok(entry) if entry.route == index => Some(Ok(entry)),
                Err(e) if e.route() == letter.route => {
                    Some(Err(format!("still cannot render: {e}")))
                }
                _ => None,
            })
            .unwrap_or_else(|| {
                Err(format!(
                    "the record no longer matches route {:?}'s filters",
                    letter.route
                ))
            })
    }
}

async fn delete(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    message: &Message,
) -> Result<(), String> {
    let handle = message
        .receipt_handle()
        .ok_or("message without receipt handle")?;
    sqs.delete_message()
        .queue_url(queue_url)
        .receipt_handle(handle)
        .send()
        .await
        .map(drop)
        .map_err(|e| {
            // The event was published but the message stays: a later redrive sends it again
            // (at least once; consumers deduplicate on eventId).
            format!(
                "published, but deleting the message failed: {}",
                crate::aws::describe_error(&e)
            )
        })
}

/// Makes a message visible again at once (it is left for a later run).
async fn release(sqs: &aws_sdk_sqs::Client, queue_url: &str, message: &Message) {
    if let Some(handle) = message.receipt_handle() {
        let _ = sqs
            .change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(handle)
            .visibility_timeout(0)
            .send()
            .await;
    }
}
