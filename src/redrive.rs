//! `outbox-relay redrive`: re-publish what the dead-letter queue holds, with the *current*
//! config (so a fixed template or bus applies), deleting each message only after EventBridge
//! accepted its event. Messages that still cannot be delivered stay in the queue, with the
//! reason printed.

use std::time::Instant;

use aws_sdk_sqs::types::{Message, QueueAttributeName};
use aws_smithy_types::error::display::DisplayErrorContext;
use serde_json::Value;

use crate::aws::{sdk_config, Clients};
use crate::config::Config;
use crate::pipeline::{Entry, Router};
use crate::publish::{DeadLetter, EventBridgePublisher, EventPublisher};

/// What became of the messages seen.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RedriveReport {
    /// Published (or, with `--dry-run`, would be) and deleted from the queue.
    pub redriven: usize,
    /// Left in the queue, each with why.
    pub left: Vec<(String, String)>,
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
/// When the config has no `dead_letter.queue_url` or the queue cannot be read.
pub async fn run(config: &Config, options: RedriveOptions) -> Result<RedriveReport, String> {
    let clients = Clients::new(&sdk_config(&config.aws).await);
    let queue_url = match (
        &config.dead_letter.queue_url,
        &config.dead_letter.queue_name,
    ) {
        (Some(url), _) => url.clone(),
        (None, Some(name)) => clients
            .sqs
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| format!("cannot find queue {name:?}: {}", DisplayErrorContext(&e)))?
            .queue_url
            .ok_or_else(|| format!("no URL returned for queue {name:?}"))?,
        (None, None) => {
            return Err("redrive needs dead_letter.queue_url or dead_letter.queue_name".into())
        }
    };
    let router = Router::new(config.routes.clone()).map_err(|e| e.to_string())?;
    let publisher = EventBridgePublisher::new(clients.eventbridge);
    let sqs = clients.sqs;

    let total = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .map_err(|e| format!("cannot read {queue_url}: {}", DisplayErrorContext(&e)))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    eprintln!("redrive: about {total} message(s) in {queue_url}");

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
            .map_err(|e| {
                format!(
                    "cannot receive from {queue_url}: {}",
                    DisplayErrorContext(&e)
                )
            })?;
        if batch.messages().is_empty() {
            break;
        }
        for message in batch.messages() {
            seen += 1;
            let id = message.message_id().unwrap_or("?").to_owned();
            match redrive_one(message, &router, &publisher, options.dry_run).await {
                Ok(entry) => {
                    if options.dry_run {
                        println!("{}", entry_json(&entry));
                        to_release.push(message.clone());
                    } else {
                        delete(&sqs, &queue_url, message).await?;
                    }
                    report.redriven += 1;
                }
                Err(reason) => {
                    eprintln!("redrive: left {id} in the queue: {reason}");
                    to_release.push(message.clone());
                    report.left.push((id, reason));
                }
            }
            let rate = seen as f64 / started.elapsed().as_secs_f64().max(0.001);
            eprintln!("redrive: {seen}/{total} ({rate:.1} msg/s)");
        }
    }
    for message in &to_release {
        release(&sqs, &queue_url, message).await;
    }
    Ok(report)
}

/// How long a received message stays hidden from other receivers during a run.
const VISIBILITY_TIMEOUT_SECS: i32 = 300;

/// Re-renders and (unless `dry_run`) publishes one dead letter.
async fn redrive_one(
    message: &Message,
    router: &Router,
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
    let entry = render(&letter, router)?;
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

/// The entry the letter's route makes of its record under the current config.
fn render(letter: &DeadLetter, router: &Router) -> Result<Entry, String> {
    let index = router
        .routes()
        .iter()
        .position(|r| r.name == letter.route)
        .ok_or_else(|| format!("route {:?} is not in the config any more", letter.route))?;
    let created = letter
        .entry
        .as_ref()
        .and_then(|e| e.time.as_deref())
        .and_then(|t| humantime::parse_rfc3339(t).ok());
    router
        .route(
            &letter.record,
            &letter.stream_arn,
            &letter.event_id,
            created,
        )
        .into_iter()
        .find_map(|r| match r {
            Ok(entry) if entry.route == index => Some(Ok(entry)),
            Err(e) if e.route() == letter.route => Some(Err(format!("still cannot render: {e}"))),
            _ => None,
        })
        .unwrap_or_else(|| {
            Err(format!(
                "the record no longer matches route {:?}'s filters",
                letter.route
            ))
        })
}

fn entry_json(entry: &Entry) -> Value {
    serde_json::json!({
        "EventBusName": entry.event_bus_name,
        "Source": entry.source,
        "DetailType": entry.detail_type,
        "Detail": entry.detail,
        "Resources": entry.resources,
        "Time": entry.time.map(crate::publish::rfc3339),
    })
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
                DisplayErrorContext(&e)
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
