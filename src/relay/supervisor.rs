//! The supervisor: start-up (lease table, streams), shard discovery, the worker registry
//! heartbeat, lease coordination (take, renew, shed, release), and one worker task per owned
//! shard; on shutdown it waits for the workers to checkpoint, releases its leases and leaves
//! the registry so peers resume at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, info_span, warn, Instrument};

use super::keeper::{Heartbeat, HeldLeases, Keeper};
use super::worker::{initial_checkpoint, Worker, WorkerExit, WorkerSettings};
use crate::config::{StartingPosition, StreamSelector};
use crate::lease::{
    plan, previous_owner, Checkpoint, Lease, LeaseAction, LeaseError, LeaseKey, LeaseObservations,
    LeaseSnapshot, LeaseStore, WorkerId, WorkerRecord,
};
use crate::pipeline::Router;
use crate::publish::{DeadLetterSink, EventPublisher};
use crate::stream::{lineage_order, Shard, ShardSource, SourceError};
use crate::telemetry::{Health, LeaseEvent, Metrics, PendingRecords};

/// Why a discovery round failed (it is retried the next round).
#[derive(Debug, thiserror::Error)]
enum DiscoveryError {
    #[error("listing the shards of {stream_arn}")]
    ListShardsFailed {
        stream_arn: String,
        #[source]
        source: crate::stream::SourceError,
    },
    #[error("creating the lease of shard {shard}")]
    CreateLeaseFailed {
        shard: crate::stream::ShardId,
        #[source]
        source: crate::lease::LeaseError,
    },
}

/// How the supervisor coordinates.
#[derive(Debug, Clone)]
pub struct SupervisorSettings {
    pub starting_position: StartingPosition,
    pub discovery_interval: Duration,
    /// A stream is listed in full every this many discoveries ([`FULL_LISTING_EVERY`]).
    pub full_listing_every: u32,
    pub lease_duration: Duration,
    pub renew_interval: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub worker: WorkerSettings,
}

impl SupervisorSettings {
    /// The settings a config asks for.
    #[must_use]
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            starting_position: config.source.starting_position,
            discovery_interval: config.source.discovery_interval,
            full_listing_every: FULL_LISTING_EVERY,
            lease_duration: config.leases.lease_duration,
            renew_interval: config.leases.renew_interval,
            initial_backoff: config.publisher.initial_backoff,
            max_backoff: config.publisher.max_backoff,
            worker: WorkerSettings::from_config(config),
        }
    }
}

/// Runs the relay for every configured stream.
pub struct Supervisor<S, P, L, D> {
    pub source: Arc<S>,
    pub publisher: Arc<P>,
    pub leases: Arc<L>,
    pub dead_letters: Arc<D>,
    /// Each configured stream with the routes that apply to it.
    pub streams: Vec<(StreamSelector, Arc<Router>)>,
    pub metrics: Metrics,
    pub pending: PendingRecords,
    pub health: Health,
    pub settings: SupervisorSettings,
    pub owner: WorkerId,
}

struct Running {
    token: CancellationToken,
    handle: JoinHandle<WorkerExit>,
}

/// A configured source and the stream it currently resolves to.
struct SourceState {
    selector: StreamSelector,
    router: Arc<Router>,
    current: Option<String>,
    up: bool,
}

/// The supervisor's view between rounds.
/// A stream is listed in full every this many discoveries (see `Supervisor::discover`).
pub const FULL_LISTING_EVERY: u32 = 10;

#[derive(Default)]
struct State {
    running: HashMap<LeaseKey, Running>,
    /// Leases whose reader was asked to stop so they can be released to a peer.
    shedding: HashSet<LeaseKey>,
    observations: LeaseObservations,
    /// The leases we hold, renewed by the keeper.
    held: HeldLeases,
}

impl<S: ShardSource, P: EventPublisher, L: LeaseStore, D: DeadLetterSink> Supervisor<S, P, L, D> {
    /// Runs until `token` is cancelled, then stops every worker (each checkpoints what it
    /// settled) and releases the leases.
    ///
    /// # Cancel safety
    /// Not cancel-safe: cancel `token` and await the future instead of dropping it.
    pub async fn run(self, token: CancellationToken) {
        if !self.start_up(&token).await {
            return;
        }
        let held = HeldLeases::default();
        let heartbeat = Heartbeat::default();
        let keeper = Keeper {
            leases: Arc::clone(&self.leases),
            held: held.clone(),
            heartbeat: heartbeat.clone(),
            owner: self.owner.clone(),
            metrics: self.metrics.clone(),
            renew_interval: self.settings.renew_interval,
            lease_duration: self.settings.lease_duration,
        };
        // The keeper renews until the supervisor has shut down (readers drain and release
        // their leases first), then stops.
        let keeper_token = CancellationToken::new();
        let coordination = async {
            self.coordinate(&token, held).await;
            keeper_token.cancel();
        };
        tokio::join!(keeper.run(keeper_token.clone()), coordination);
        self.deregister(&heartbeat).await;
    }

    /// Waits for the lease table, retrying with backoff. `false` if cancelled first.
    async fn start_up(&self, token: &CancellationToken) -> bool {
        let mut pause =
            super::backoff::backoff(self.settings.initial_backoff, self.settings.max_backoff);
        loop {
            self.health.tick();
            match self.leases.ensure_table().await {
                Ok(()) => {
                    info!(owner = %self.owner, sources = self.streams.len(), "Relay started.");
                    return true;
                }
                Err(e) => {
                    let delay = pause.next().unwrap_or(self.settings.max_backoff);
                    warn!(error = %e, retry_in = ?delay, "Start-up failed (lease table unreachable); retrying.");
                    tokio::select! {
                        () = token.cancelled() => return false,
                        () = sleep_ticking(delay, &self.health) => {}
                    }
                }
            }
        }
    }

    /// Resolves every source to its current stream, one by one: a source that cannot be
    /// resolved (table deleted, stream disabled) is reported down and retried next round
    /// without holding the others back. A table whose stream was replaced is followed; the
    /// old stream stays in `routers` so its shards are read to their end.
    async fn resolve(
        &self,
        sources: &mut [SourceState],
        routers: &mut HashMap<String, Arc<Router>>,
    ) {
        for src in sources.iter_mut() {
            let name = src.selector.name().to_owned();
            let resolved = match &src.selector {
                StreamSelector::Arn(arn) => Ok(arn.clone()),
                StreamSelector::Table(table) => self.source.latest_stream_arn(table).await,
            };
            match resolved {
                Ok(arn) => {
                    if src.current.as_deref() != Some(arn.as_str()) {
                        match &src.current {
                            Some(old) => {
                                info!(source = %name, old = %old, new = %arn, "The table has a new stream; following it (the old one is read to its end).")
                            }
                            None => info!(source = %name, stream.arn = %arn, "Source found."),
                        }
                        routers.insert(arn.clone(), Arc::clone(&src.router));
                        src.current = Some(arn);
                    }
                    src.up = true;
                }
                Err(e) => {
                    if src.up || src.current.is_none() {
                        warn!(source = %name, error = %e, "Source unavailable; the other sources keep running. Retrying.");
                    }
                    src.up = false;
                }
            }
            self.metrics
                .source_up
                .with_label_values(&[name.as_str()])
                .set(i64::from(src.up));
        }
    }

    async fn coordinate(&self, token: &CancellationToken, held: HeldLeases) {
        let mut sources: Vec<SourceState> = self
            .streams
            .iter()
            .map(|(selector, router)| SourceState {
                selector: selector.clone(),
                router: Arc::clone(router),
                current: None,
                up: false,
            })
            .collect();
        let mut routers: HashMap<String, Arc<Router>> = HashMap::new();
        let routers = &mut routers;
        let mut state = State {
            held,
            ..State::default()
        };
        let mut next_discovery = Instant::now();
        let mut discovered_once = false;
        // When each stream was last listed in full (see `discover`).
        let mut listed: HashMap<String, Instant> = HashMap::new();
        loop {
            self.health.tick();
            let round = self.metrics.lease_round_duration_seconds.start_timer();
            let discovering = Instant::now() >= next_discovery;
            if discovering {
                // Before the snapshot, so a newly found stream's leases count as ours.
                self.resolve(&mut sources, routers).await;
            }
            match self.leases.snapshot().await {
                Ok(mut snapshot) => {
                    if discovering {
                        if let Some(up) = self
                            .discover_in_round(&sources, &mut snapshot, &mut listed)
                            .await
                        {
                            // Ready once shards were discovered for at least one source.
                            discovered_once = up;
                            next_discovery = Instant::now() + self.settings.discovery_interval;
                        }
                    }
                    let ours: Vec<Lease> = snapshot
                        .leases
                        .into_iter()
                        .filter(|l| routers.contains_key(&l.stream_arn))
                        .collect();
                    // A lease the table shows a peer's stops its reader here (no write needed).
                    state.held.drop_taken(&ours, &self.owner, &self.metrics);
                    state
                        .observations
                        .observe(&ours, &snapshot.workers, Instant::now());
                    let actions = plan(
                        &ours,
                        &snapshot.workers,
                        &self.owner,
                        &state.observations,
                        Instant::now(),
                        self.settings.lease_duration,
                    );
                    self.execute(
                        actions,
                        &ours,
                        &snapshot.workers,
                        routers,
                        &mut state,
                        token,
                    )
                    .instrument(crate::telemetry::spans::call("lease round"))
                    .await;
                    let finished = ours
                        .iter()
                        .filter(|l| l.checkpoint == Checkpoint::ShardEnd)
                        .count();
                    self.metrics.shards_finished.set(gauge(finished));
                    self.health.set_ready(discovered_once);
                }
                Err(e) => {
                    self.lease_table_error("snapshot", &e);
                    warn!(error = %e, "Reading the lease table failed; retrying next round.");
                    self.health.set_ready(false);
                }
            }
            round.observe_duration();
            self.reap(&mut state).await;
            self.metrics.leases_owned.set(gauge(state.running.len()));
            self.metrics.oldest_unpublished_record_age_seconds.set(
                self.pending
                    .oldest_age(std::time::SystemTime::now())
                    .as_secs_f64(),
            );
            tokio::select! {
                () = token.cancelled() => break,
                () = tokio::time::sleep(self.settings.renew_interval) => {}
            }
        }
        self.shut_down(state).await;
    }

    /// A round's discovery: leases for the up sources' new shards, taken in this round (the
    /// snapshot is read again when any were created). `Some(whether any source is up)` when
    /// it ran, `None` when it failed (it is retried next round).
    async fn discover_in_round(
        &self,
        sources: &[SourceState],
        snapshot: &mut LeaseSnapshot,
        listed: &mut HashMap<String, Instant>,
    ) -> Option<bool> {
        let current: Vec<String> = sources
            .iter()
            .filter(|s| s.up)
            .filter_map(|s| s.current.clone())
            .collect();
        match self.discover(&current, &snapshot.leases, listed).await {
            Ok(created) => {
                if created > 0 {
                    if let Ok(fresh) = self.leases.snapshot().await {
                        *snapshot = fresh;
                    }
                }
                Some(sources.iter().any(|s| s.up))
            }
            Err(e) => {
                warn!(error = %e, cause = %std::error::Error::source(&e).map_or_else(String::new, ToString::to_string), "Shard discovery failed; retrying next round.");
                None
            }
        }
    }

    /// Creates a lease for every shard of the current streams that has none, parents first.
    /// Returns how many leases it created.
    ///
    /// A stream is listed in full (every DescribeStream page, `ceil(shards / 100)` calls) at
    /// start-up and then every `full_listing_every` discoveries, which also cleans up
    /// trimmed leases. In between, new shards are found where DynamoDB Streams makes them: as
    /// children of a closed shard. A finished lease without a child lease is asked for its
    /// children (DescribeStream with `ShardFilter {Type: CHILD_SHARDS}`, one call) at each
    /// discovery until they appear; an idle stream costs nothing. A child that appears later
    /// than its sibling is found by the next full listing at the latest.
    async fn discover(
        &self,
        streams: &[String],
        leases: &[Lease],
        listed: &mut HashMap<String, Instant>,
    ) -> Result<usize, DiscoveryError> {
        let mut created = 0;
        let mut known_total = None;
        let full_every = self.settings.discovery_interval * self.settings.full_listing_every;
        for stream_arn in streams {
            let due = listed
                .get(stream_arn)
                .is_none_or(|at| at.elapsed() >= full_every);
            if due {
                let (shards, made) = self.discover_listing(stream_arn, leases).await?;
                listed.insert(stream_arn.clone(), Instant::now());
                *known_total.get_or_insert(0) += shards;
                created += made;
            } else {
                created += self.discover_children(stream_arn, leases).await?;
            }
        }
        if let Some(known) = known_total {
            self.metrics.shards_known.set(gauge(known));
        }
        Ok(created)
    }

    /// A stream's children of finished shards that have no lease yet (see [`Self::discover`]).
    async fn discover_children(
        &self,
        stream_arn: &str,
        leases: &[Lease],
    ) -> Result<usize, DiscoveryError> {
        let ours: Vec<&Lease> = leases
            .iter()
            .filter(|l| l.stream_arn == stream_arn)
            .collect();
        let childless = ours.iter().filter(|l| {
            l.checkpoint == Checkpoint::ShardEnd
                && !ours
                    .iter()
                    .any(|c| c.parent_shard_id.as_ref() == Some(&l.shard_id))
        });
        let mut created = 0;
        for parent in childless {
            let children = self
                .source
                .child_shards(stream_arn, &parent.shard_id)
                .await
                .map_err(|e| self.listing_failed(stream_arn, e))?;
            for child in &children {
                created += usize::from(self.create_lease(stream_arn, child, true).await?);
            }
        }
        Ok(created)
    }

    /// A stream listed in full: a lease for every shard without one, parents first, and the
    /// clean-up of trimmed ones. Returns (shards listed, leases created).
    async fn discover_listing(
        &self,
        stream_arn: &str,
        leases: &[Lease],
    ) -> Result<(usize, usize), DiscoveryError> {
        let shards = self
            .source
            .list_shards(stream_arn)
            .await
            .map_err(|e| self.listing_failed(stream_arn, e))?;
        let known: HashSet<_> = shards.iter().map(|s| s.id.clone()).collect();
        let existing: HashSet<_> = leases
            .iter()
            .filter(|l| l.stream_arn == stream_arn)
            .map(|l| l.shard_id.clone())
            .collect();
        self.clean_up(stream_arn, &known, leases).await;
        let mut created = 0;
        for shard in lineage_order(&shards) {
            if existing.contains(&shard.id) {
                continue;
            }
            let has_known_parent = shard
                .parent
                .as_ref()
                .is_some_and(|p| known.contains(p) || existing.contains(p));
            created += usize::from(
                self.create_lease(stream_arn, &shard, has_known_parent)
                    .await?,
            );
        }
        Ok((shards.len(), created))
    }

    /// Counts a failed listing and names its stream.
    fn listing_failed(&self, stream_arn: &str, e: SourceError) -> DiscoveryError {
        self.metrics
            .stream_errors
            .with_label_values(&[e.code()])
            .inc();
        DiscoveryError::ListShardsFailed {
            stream_arn: stream_arn.to_owned(),
            source: e,
        }
    }

    /// Creates `shard`'s lease unless one exists; whether it did.
    async fn create_lease(
        &self,
        stream_arn: &str,
        shard: &Shard,
        has_known_parent: bool,
    ) -> Result<bool, DiscoveryError> {
        let lease = Lease::new(
            stream_arn,
            &shard.id,
            shard.parent.clone(),
            initial_checkpoint(self.settings.starting_position, has_known_parent),
        );
        let created = self.leases.create(&lease).await.map_err(|source| {
            DiscoveryError::CreateLeaseFailed {
                shard: shard.id.clone(),
                source,
            }
        })?;
        if created {
            info!(stream.arn = %stream_arn, shard.id = %shard.id, checkpoint = %lease.checkpoint, "New shard found; lease created.");
        }
        Ok(created)
    }

    /// Deletes finished leases whose shard has left the stream (trimmed after 24 h) and whose
    /// children have all started. A listed shard keeps its lease: discovery would otherwise
    /// create it anew and read the shard again.
    async fn clean_up(
        &self,
        stream_arn: &str,
        listed: &HashSet<crate::stream::ShardId>,
        leases: &[Lease],
    ) {
        let started = |l: &Lease| {
            l.owner.is_some()
                || !matches!(l.checkpoint, Checkpoint::TrimHorizon | Checkpoint::Latest)
        };
        for lease in leases.iter().filter(|l| {
            l.stream_arn == stream_arn
                && l.checkpoint == Checkpoint::ShardEnd
                && !listed.contains(&l.shard_id)
        }) {
            let children_started = leases
                .iter()
                .filter(|c| {
                    c.stream_arn == stream_arn
                        && c.parent_shard_id.as_ref() == Some(&lease.shard_id)
                })
                .all(started);
            if !children_started {
                continue;
            }
            match self.leases.delete(lease).await {
                Ok(true) => {
                    info!(shard.id = %lease.shard_id, "Finished shard left the stream; its lease is deleted.")
                }
                Ok(false) => {}
                Err(e) => {
                    debug!(error = %e, shard.id = %lease.shard_id, "Deleting a finished lease failed; retrying next discovery.")
                }
            }
        }
    }

    async fn execute(
        &self,
        actions: Vec<LeaseAction>,
        leases: &[Lease],
        workers: &[WorkerRecord],
        routers: &HashMap<String, Arc<Router>>,
        state: &mut State,
        token: &CancellationToken,
    ) {
        for action in actions {
            match action {
                LeaseAction::Take(observed) => {
                    let now = Instant::now();
                    let previous = previous_owner(
                        &observed,
                        workers,
                        &state.observations,
                        now,
                        self.settings.lease_duration,
                    );
                    let heartbeat_still = observed.owner.as_ref().and_then(|o| {
                        let w = workers.iter().find(|w| &w.id == o)?;
                        state.observations.still_for(&w.id.0, w.counter, now)
                    });
                    let counter_still =
                        state
                            .observations
                            .still_for(&observed.key.0, observed.counter, now);
                    match self.leases.take(&observed, &self.owner).await {
                        Ok(lease) => {
                            LeaseEvent::Taken {
                                lease: &lease,
                                previous_owner: observed.owner.as_ref(),
                                previous,
                                counter_still,
                                heartbeat_still,
                            }
                            .emit(&self.metrics);
                            state.held.hold(&lease.key);
                            self.spawn(lease, routers, state, token);
                        }
                        Err(LeaseError::LeaseLost { .. }) => {
                            debug!(shard.id = %observed.shard_id, "A peer took the lease first.");
                        }
                        Err(e) => {
                            self.lease_table_error("take", &e);
                            warn!(error = %e, "Taking a lease failed.");
                        }
                    }
                }
                LeaseAction::Keep(key) => {
                    // Ours in the table: our heartbeat keeps it; read it if nothing does.
                    state.held.hold(&key);
                    if state.shedding.contains(&key) || state.running.contains_key(&key) {
                        continue;
                    }
                    if state.held.may_read(&key) {
                        if let Some(lease) = leases.iter().find(|l| l.key == key) {
                            self.spawn(lease.clone(), routers, state, token);
                        }
                    }
                }
                LeaseAction::Shed(key) => {
                    if let Some(r) = state.running.get(&key) {
                        info!(lease = %key, "Shedding a lease to a less loaded peer: stopping its reader.");
                        r.token.cancel();
                        state.shedding.insert(key);
                    }
                }
                LeaseAction::Release(key) => {
                    if state.running.contains_key(&key) {
                        continue; // its worker is still writing SHARD_END
                    }
                    match self.leases.release(&key, &self.owner).await {
                        Ok(()) => {
                            LeaseEvent::Released { key: &key }.emit(&self.metrics);
                            state.held.forget(&key);
                        }
                        Err(e) => {
                            debug!(error = %e, lease = %key, "Releasing a finished lease failed.")
                        }
                    }
                }
            }
        }
    }

    fn spawn(
        &self,
        lease: Lease,
        routers: &HashMap<String, Arc<Router>>,
        state: &mut State,
        token: &CancellationToken,
    ) {
        let Some(router) = routers.get(&lease.stream_arn) else {
            return;
        };
        let child = token.child_token();
        let span = info_span!("shard", shard.id = %lease.shard_id, stream.arn = %lease.stream_arn);
        let key = lease.key.clone();
        let worker = Worker {
            source: Arc::clone(&self.source),
            publisher: Arc::clone(&self.publisher),
            leases: Arc::clone(&self.leases),
            dead_letters: Arc::clone(&self.dead_letters),
            router: Arc::clone(router),
            metrics: self.metrics.clone(),
            pending: self.pending.clone(),
            health: self.health.clone(),
            settings: Arc::new(self.settings.worker.clone()),
            owner: self.owner.clone(),
            lease,
            token: child.clone(),
            held: state.held.clone(),
        };
        let handle = tokio::spawn(worker.run().instrument(span));
        state.held.reading(&key, child.clone());
        state.running.insert(
            key,
            Running {
                token: child,
                handle,
            },
        );
    }

    /// Collects finished workers; releases shed leases; a panicked worker marks the process
    /// unhealthy.
    async fn reap(&self, state: &mut State) {
        let finished: Vec<LeaseKey> = state
            .running
            .iter()
            .filter(|(_, r)| r.handle.is_finished())
            .map(|(k, _)| k.clone())
            .collect();
        for key in finished {
            let Some(r) = state.running.remove(&key) else {
                continue;
            };
            let shed = state.shedding.remove(&key);
            match r.handle.await {
                Ok(WorkerExit::Cancelled) if shed => {
                    match self.leases.release(&key, &self.owner).await {
                        Ok(()) => LeaseEvent::Shed { key: &key }.emit(&self.metrics),
                        Err(e) => {
                            warn!(error = %e, lease = %key, "Releasing a shed lease failed; it expires instead.")
                        }
                    }
                    state.held.forget(&key);
                }
                Ok(WorkerExit::LeaseLost) => {
                    debug!(lease = %key, "Shard reader stopped: the lease is a peer's now.");
                    state.held.forget(&key);
                }
                Ok(exit) => debug!(lease = %key, ?exit, "Shard reader finished."),
                Err(e) => {
                    error!(lease = %key, error = %e, "Shard reader panicked; the process is unhealthy and should be restarted.");
                    self.health.fail();
                }
            }
        }
    }

    /// Stops every worker (they checkpoint what they settled), releases our leases and leaves
    /// the registry.
    async fn shut_down(&self, state: State) {
        info!(
            leases = state.running.len(),
            "Shutting down: settling in-flight batches."
        );
        let mut released = 0;
        for r in state.running.values() {
            r.token.cancel();
        }
        let mut lost = HashSet::new();
        for (key, r) in state.running {
            match r.handle.await {
                Ok(WorkerExit::LeaseLost) => {
                    lost.insert(key);
                }
                Ok(_) => {}
                Err(e) => {
                    error!(lease = %key, error = %e, "Shard reader panicked during shutdown.");
                    self.health.fail();
                }
            }
        }
        // Every lease we hold, read or not (a fenced lease's reader is already stopped).
        for key in state.held.all() {
            state.held.forget(&key);
            if lost.contains(&key) {
                continue;
            }
            match self.leases.release(&key, &self.owner).await {
                Ok(()) => {
                    released += 1;
                    LeaseEvent::Released { key: &key }.emit(&self.metrics);
                }
                Err(LeaseError::LeaseLost { .. }) => {}
                Err(e) => {
                    warn!(error = %e, lease = %key, "Releasing a lease failed; a peer takes it after it expires.")
                }
            }
        }
        self.metrics.leases_owned.set(0);
        info!(released, "Leases released; leaving the worker registry.");
    }

    /// Leaves the worker registry, once the keeper has stopped and its last heartbeat has
    /// landed: a heartbeat answered after the delete would write the registry item again.
    async fn deregister(&self, heartbeat: &Heartbeat) {
        let end = tokio::time::Instant::now() + self.settings.lease_duration;
        while heartbeat.in_flight() && tokio::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Err(e) = self.leases.deregister(&self.owner).await {
            warn!(error = %e, "Leaving the worker registry failed; peers notice after lease_duration.");
        }
        info!("Left the worker registry. Leases released; shutdown complete.");
    }
}

impl<S, P, L, D> Supervisor<S, P, L, D> {
    fn lease_table_error(&self, operation: &str, e: &LeaseError) {
        self.metrics
            .lease_table_errors
            .with_label_values(&[operation, e.code()])
            .inc();
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Sleeps while keeping the liveness tick fresh (start-up backoff can exceed the stall limit).
async fn sleep_ticking(total: Duration, health: &Health) {
    let deadline = Instant::now() + total;
    while Instant::now() < deadline {
        health.tick();
        tokio::time::sleep_until(deadline.min(Instant::now() + Duration::from_secs(1))).await;
    }
}
