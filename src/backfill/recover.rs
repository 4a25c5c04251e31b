//! `source.recover_gaps`: the running relay recovers gaps by itself. Every
//! `discovery_interval` it reads the gaps recorded in the lease table (by any replica), claims
//! each one nobody recovered or is recovering, runs the backfill of its window (the command
//! `outbox-relay status` shows, [`crate::lease::StreamGap::recovery`]), and marks it recovered. A claim
//! whose relay died is taken over after [`CLAIM_FOR`]; the backfill then starts over (at
//! least once: the rows keep their event ids).

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{run, BackfillOptions};
use crate::aws::{Clients, Retries};
use crate::config::{table_of_stream_arn, Config};
use crate::lease::{claim_gap, gap_label, mark_gap_recovered, read_gaps, StreamGap};

/// How long a claim holds before another relay may take the gap over.
pub const CLAIM_FOR: Duration = Duration::from_secs(15 * 60);

/// The backfill options that recover `gap`.
#[must_use]
pub fn options_for(gap: &StreamGap) -> BackfillOptions {
    let time = |t: std::time::SystemTime| humantime::format_rfc3339_millis(t).to_string();
    let recovery = gap.recovery();
    BackfillOptions {
        table: table_of_stream_arn(&gap.stream_arn).map(str::to_owned),
        segments: 4,
        since: recovery.since.map(time),
        until: recovery.until.map(time),
        max_items_per_second: None,
        dry_run: false,
        resume: false,
        progress_interval: Duration::from_secs(60),
        run_label: Some(gap_label(gap)),
    }
}

/// Recovers gaps until `token` is cancelled.
pub async fn recover_gaps(config: Config, owner: String, token: CancellationToken) {
    let clients = Clients::load(&config.aws, Retries::Sdk).await;
    let table = config.leases.table_name.clone();
    loop {
        match read_gaps(&clients.dynamodb, &table).await {
            Ok(gaps) => {
                for gap in gaps.iter().filter(|g| g.recovered_at.is_none()) {
                    if token.is_cancelled() {
                        return;
                    }
                    recover_one(&config, &clients, &owner, gap, &token).await;
                }
            }
            Err(e) => warn!(error = %e, "Reading the recorded gaps failed; retrying next round."),
        }
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(config.source.discovery_interval) => {}
        }
    }
}

async fn recover_one(
    config: &Config,
    clients: &Clients,
    owner: &str,
    gap: &StreamGap,
    token: &CancellationToken,
) {
    let table = &config.leases.table_name;
    match claim_gap(&clients.dynamodb, table, gap, owner, CLAIM_FOR).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            warn!(error = %e, "Claiming a gap failed; retrying next round.");
            return;
        }
    }
    let options = options_for(gap);
    info!(
        stream_arn = gap.stream_arn,
        shard = %gap.shard_id.0,
        since = options.since.as_deref().unwrap_or("the table's start"),
        until = options.until.as_deref().unwrap_or("now"),
        "Recovering a gap (source.recover_gaps): backfilling its window."
    );
    // Inside a relay, a recovery's progress goes to the log.
    let observe: super::Observer = std::sync::Arc::new(|event| {
        if let super::BackfillEvent::Progress(p) = event {
            info!(
                scanned = p.now.scanned,
                published = p.now.published,
                dead_lettered = p.now.dead_lettered,
                segments_done = p.now.segments_done,
                segments = p.segments,
                "Gap recovery progress."
            );
        }
    });
    match run(config, &options, token.child_token(), observe).await {
        Ok(report) if !report.interrupted => {
            info!(
                published = report.published,
                dead_lettered = report.dead_lettered,
                scanned = report.scanned,
                "Gap recovered."
            );
            if let Err(e) = mark_gap_recovered(&clients.dynamodb, table, gap, report.published).await
            {
                warn!(error = %e, "The gap was recovered but could not be marked so; it may be recovered again after its claim expires (at least once).");
            }
        }
        Ok(_) => info!("Gap recovery stopped by shutdown; another relay takes it over after the claim expires."),
        Err(e) => error!(error = %e, "Gap recovery failed; retried after the claim expires."),
    }
}
