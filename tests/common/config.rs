//! The relay config a test runs with, built by key as a TOML document: the tests' base config,
//! set to the fixture's tables and bus, with keys set or merged per section. Nothing is spliced
//! into text: a snippet a test gives is parsed as TOML and merged table by table (a
//! `[[routes]]` snippet adds routes), so a mistyped snippet fails where it is written.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::fixture::Fixture;
use super::unique;

/// `[publisher]` keys for strict per-shard order.
pub const STRICT: &str = "max_in_flight_per_shard = 1";

/// The `book-added` route's ordering key: the row's aggregate.
pub const PER_AGGREGATE: &str = r#"ordering_key = "<$.NewImage.eventData.aggregate>""#;

/// The tests' config before the fixture's names: fast polls, short leases, one route of the
/// books' `BookAdded` rows, JSON logs, an HTTP port the relay picks.
const BASE: &str = r#"
[aws]
region = "us-east-1"

[source]
poll_interval = "100ms"
event_id_attribute = "pk"
discovery_interval = "2s"

[leases]
lease_duration = "3s"
renew_interval = "1s"

[publisher]
initial_backoff = "50ms"
max_backoff = "1s"

[[routes]]
name = "book-added"
filters = ['{"eventName": ["INSERT"], "dynamodb": {"NewImage": {"eventType": {"S": ["BookAdded"]}}}}']
source = "OutboxDemo.Books"
detail_type = "BookAdded"
unmarshall = "NewImage"

[http]
listen = "127.0.0.1:0"

[log]
level = "info"
format = "json"

[shutdown]
grace = "10s"
"#;

/// A relay config being built; [`RelayConfig::write`] puts it in a file.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    doc: Table,
    dir: PathBuf,
}

impl RelayConfig {
    /// The base config for `f`: its outbox table, lease table and bus; written into its
    /// temporary directory.
    pub fn for_fixture(f: &Fixture) -> Self {
        let doc: Table = BASE.parse().expect("the base config is TOML");
        Self {
            doc,
            dir: f.dir.path().to_owned(),
        }
        .source("table_name", f.events_table.as_str())
        .set("leases", "table_name", f.lease_table.as_str())
        .route("event_bus_name", f.bus.as_str())
    }

    /// A shipped config file (such as `config/custom-bus.toml`), to change by key.
    pub fn from_file(path: &Path, dir: &Path) -> Self {
        let text = std::fs::read_to_string(path).expect("read config");
        Self {
            doc: text.parse().expect("the config is TOML"),
            dir: dir.to_owned(),
        }
    }

    /// Sets `key` in `[section]` (made if missing).
    pub fn set(mut self, section: &str, key: &str, value: impl Into<Value>) -> Self {
        self.table(section).insert(key.to_owned(), value.into());
        self
    }

    /// Sets `key` in `[source]`.
    pub fn source(self, key: &str, value: impl Into<Value>) -> Self {
        self.set("source", key, value)
    }

    /// Sets `key` in `[publisher]`.
    pub fn publisher(self, key: &str, value: impl Into<Value>) -> Self {
        self.set("publisher", key, value)
    }

    /// Sets `key` in the first route (the base config's `book-added`).
    pub fn route(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.first_route().insert(key.to_owned(), value.into());
        self
    }

    /// Sets `key` to `to` in every route whose `key` is `from` (a shipped config's bus, for
    /// one the test made).
    pub fn retarget_routes(mut self, key: &str, from: &str, to: &str) -> Self {
        let routes = self
            .doc
            .get_mut("routes")
            .and_then(Value::as_array_mut)
            .expect("the config has routes");
        for route in routes.iter_mut().filter_map(Value::as_table_mut) {
            if route.get(key).and_then(Value::as_str) == Some(from) {
                route.insert(key.to_owned(), to.into());
            }
        }
        self
    }

    /// Merges `keys` (TOML key/value lines) into `[section]`.
    pub fn section_keys(mut self, section: &str, keys: &str) -> Self {
        let keys = parse(keys);
        let table = self.table(section);
        for (k, v) in keys {
            table.insert(k, v);
        }
        self
    }

    /// Merges `keys` (TOML key/value lines) into the first route.
    pub fn route_keys(mut self, keys: &str) -> Self {
        let keys = parse(keys);
        let route = self.first_route();
        for (k, v) in keys {
            route.insert(k, v);
        }
        self
    }

    /// Merges a TOML document: its tables into this one's, key by key; its `[[routes]]` after
    /// this one's routes.
    pub fn merge(mut self, document: &str) -> Self {
        merge_into(&mut self.doc, parse(document));
        self
    }

    /// The first route targets the Custom Event Bus `bus_arn` instead of the classic bus, and
    /// the Custom Event Bus API is served at `endpoint` (the emulator of `common::eventsv2`).
    pub fn custom_bus(self, bus_arn: &str, endpoint: &str) -> Self {
        let mut config = self.eventsv2_endpoint(endpoint);
        let route = config.first_route();
        assert!(
            route.remove("event_bus_name").is_some(),
            "the route targets a classic bus"
        );
        route.insert("event_bus_arn".to_owned(), bus_arn.into());
        config
    }

    /// The Custom Event Bus API is served at `endpoint` (`[aws.endpoints] eventbridgev2`).
    pub fn eventsv2_endpoint(mut self, endpoint: &str) -> Self {
        let endpoints = self
            .table("aws")
            .entry("endpoints")
            .or_insert_with(|| Value::Table(Table::new()));
        endpoints
            .as_table_mut()
            .expect("[aws.endpoints] is a table")
            .insert("eventbridgev2".to_owned(), endpoint.into());
        self
    }

    /// Dead letters go to the SQS queue `queue_url`.
    pub fn dead_letter_queue(self, queue_url: &str) -> Self {
        self.set("dead_letter", "queue_url", queue_url)
    }

    /// The config as TOML text.
    pub fn text(&self) -> String {
        toml::to_string(&self.doc).expect("a TOML table serializes")
    }

    /// Writes the config to a new file in the fixture's directory; returns its path.
    pub fn write(&self) -> PathBuf {
        let path = self.dir.join(format!("{}.toml", unique("relay")));
        std::fs::write(&path, self.text()).expect("write config");
        path
    }

    fn table(&mut self, section: &str) -> &mut Table {
        self.doc
            .entry(section)
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .unwrap_or_else(|| panic!("[{section}] is a table"))
    }

    fn first_route(&mut self) -> &mut Table {
        self.doc
            .get_mut("routes")
            .and_then(Value::as_array_mut)
            .and_then(|routes| routes.first_mut())
            .and_then(Value::as_table_mut)
            .expect("the config has a [[routes]] entry")
    }
}

fn parse(text: &str) -> Table {
    text.parse()
        .unwrap_or_else(|e| panic!("not TOML: {e}\n{text}"))
}

/// `from`'s keys into `into`: tables merged key by key, arrays of tables appended, any other
/// value replaced.
fn merge_into(into: &mut Table, from: Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Table(old)), Value::Table(new)) => merge_into(old, new),
            (Some(Value::Array(old)), Value::Array(new))
                if new.iter().all(Value::is_table) && old.iter().all(Value::is_table) =>
            {
                old.extend(new);
            }
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

impl Fixture {
    /// This fixture's base relay config, to build on.
    pub fn relay_config(&self) -> RelayConfig {
        RelayConfig::for_fixture(self)
    }

    /// Writes a relay config for this fixture with `source_extra` (TOML keys) in `[source]`;
    /// returns its path.
    pub fn config(&self, source_extra: &str) -> PathBuf {
        self.config_with(source_extra, "")
    }

    /// Like [`Fixture::config`], with the TOML document `tail` (more routes, a
    /// `[dead_letter]` section) merged in.
    pub fn config_with(&self, source_extra: &str, tail: &str) -> PathBuf {
        self.relay_config()
            .section_keys("source", source_extra)
            .merge(tail)
            .write()
    }

    /// A config with one PutEvents call in flight per shard: strict per-shard order.
    pub fn strict_config(&self, source_extra: &str, tail: &str) -> PathBuf {
        self.relay_config()
            .section_keys("source", source_extra)
            .section_keys("publisher", STRICT)
            .merge(tail)
            .write()
    }

    /// A config ordering entries per aggregate (`eventData.aggregate`, see
    /// [`Fixture::write_event`]), with the default calls in flight per shard.
    pub fn per_aggregate_config(&self, source_extra: &str) -> PathBuf {
        self.relay_config()
            .section_keys("source", source_extra)
            .route_keys(PER_AGGREGATE)
            .write()
    }

    /// A config whose `book-added` route targets the Custom Event Bus `bus_arn`, served at
    /// `eventsv2_endpoint` (the emulator of `common::eventsv2`), with `route_extra` (TOML
    /// keys) in the route.
    pub fn custom_bus_config(
        &self,
        bus_arn: &str,
        eventsv2_endpoint: &str,
        route_extra: &str,
    ) -> PathBuf {
        self.relay_config()
            .route_keys(route_extra)
            .custom_bus(bus_arn, eventsv2_endpoint)
            .write()
    }
}
