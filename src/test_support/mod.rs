//! What the unit tests share: one scriptable fake stream ([`stream::FakeStream`]) and one fake
//! of each other seam ([`fakes`]), usable by the relay's tests and backfill's alike.

pub(crate) mod fakes;
pub(crate) mod stream;

pub(crate) use fakes::{Behaviour, EventLog, FakeDeadLetters, FakeLeases, FakePublisher};
pub(crate) use stream::{FakeShard, FakeStream};
