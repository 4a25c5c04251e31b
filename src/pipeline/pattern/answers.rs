//! quamina's answers remembered, per matcher and input text, on each thread.
//!
//! What quamina reads of a record is its text pruned to the fields the patterns name
//! ([`super::fields::ReadFields::write`]): `{"eventName":"INSERT"}` for the seed's routes, an
//! event type and an event name for an outbox's. Such texts repeat from record to record, and
//! quamina's answer is a function of the text and the patterns alone; asking quamina again
//! was about a tenth of the relay's loop (issue #28, BENCHMARKS.md).
//!
//! The rules:
//! - an answer is kept under its matcher's **generation**, which changes whenever a pattern
//!   is added, so a matcher's answers never outlive its patterns;
//! - only short texts are kept ([`LONGEST_TEXT`]), at most [`ANSWERS_PER_MATCHER`] per matcher
//!   and [`MATCHERS`] matchers per thread: past a bound, what is kept is dropped and filled
//!   again, so memory stays bounded whatever the records hold (8 × 256 texts of at most 256
//!   bytes with their answers: well under a MiB a thread);
//! - when a matcher's texts rarely repeat (a filter on a field of many values, an amount, an
//!   id), keeping them costs more than it saves: a matcher whose kept answers filled up with
//!   fewer hits than answers keeps none for the next [`REST`] texts, then tries again;
//! - each thread keeps its own (no lock on the relay's path; a worker thread serves many
//!   shards of one router).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

type Hasher = foldhash::fast::RandomState;

/// Texts longer than this are not kept (patterns on long values rarely see one twice).
pub const LONGEST_TEXT: usize = 256;
/// Answers kept per matcher generation.
pub const ANSWERS_PER_MATCHER: usize = 256;
/// Matcher generations kept per thread.
pub const MATCHERS: usize = 8;
/// Texts a matcher whose texts rarely repeat is asked without keeping answers.
pub const REST: usize = 4096;

/// A matcher's patterns as they stand: a fresh one for every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Generation(u64);

impl Generation {
    /// A generation no matcher had before.
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// One matcher generation's kept answers.
#[derive(Default)]
struct Answers {
    by_text: HashMap<Box<[u8]>, Box<[u32]>, Hasher>,
    /// Answers found kept since `by_text` was last emptied.
    hits: usize,
    /// Texts still to ask without keeping answers.
    resting: usize,
}

thread_local! {
    static KEPT: RefCell<HashMap<Generation, Answers, Hasher>> = RefCell::default();
}

/// Calls `then` with the answer for `text` under `generation`: the one kept on this thread,
/// or `ask`'s (kept when the bounds allow).
pub fn with_answer<R>(
    generation: Generation,
    text: &[u8],
    ask: impl FnOnce() -> Vec<u32>,
    then: impl FnOnce(&[u32]) -> R,
) -> R {
    if text.len() > LONGEST_TEXT {
        return then(&ask());
    }
    KEPT.with(|kept| {
        let mut kept = kept.borrow_mut();
        if !kept.contains_key(&generation) && kept.len() >= MATCHERS {
            kept.clear();
        }
        let answers = kept.entry(generation).or_default();
        if answers.resting > 0 {
            answers.resting -= 1;
            return then(&ask());
        }
        if let Some(answer) = answers.by_text.get(text) {
            answers.hits += 1;
            return then(answer);
        }
        let answer = ask().into_boxed_slice();
        let result = then(&answer);
        if answers.by_text.len() >= ANSWERS_PER_MATCHER {
            if answers.hits < answers.by_text.len() {
                answers.resting = REST;
            }
            answers.by_text.clear();
            answers.hits = 0;
        }
        if answers.resting == 0 {
            answers.by_text.insert(text.into(), answer);
        }
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers counted: how often `ask` ran.
    fn answer(generation: Generation, text: &[u8], truth: &[u32], asked: &mut usize) -> Vec<u32> {
        with_answer(
            generation,
            text,
            || {
                *asked += 1;
                truth.to_vec()
            },
            <[u32]>::to_vec,
        )
    }

    #[test]
    fn an_answer_is_asked_once_per_generation_and_text() {
        let (one, two) = (Generation::next(), Generation::next());
        let mut asked = 0;
        assert_eq!(answer(one, b"a", &[1], &mut asked), [1]);
        assert_eq!(answer(one, b"a", &[9], &mut asked), [1]);
        assert_eq!(asked, 1);
        // Another generation (another matcher, or the same one after a pattern was added)
        // asks again, and keeps its own answer.
        assert_eq!(answer(two, b"a", &[2], &mut asked), [2]);
        assert_eq!(answer(one, b"a", &[9], &mut asked), [1]);
        assert_eq!(asked, 2);
        // Another text asks again.
        assert_eq!(answer(one, b"b", &[], &mut asked), Vec::<u32>::new());
        assert_eq!(asked, 3);
    }

    #[test]
    fn past_the_bounds_answers_are_asked_again_and_stay_right() {
        let generation = Generation::next();
        let mut asked = 0;
        // Each text twice: half the lookups find their answer kept.
        for i in 0..ANSWERS_PER_MATCHER {
            let text = i.to_string();
            let truth = [u32::try_from(i).expect("small")];
            for _ in 0..2 {
                assert_eq!(
                    answer(generation, text.as_bytes(), &truth, &mut asked),
                    truth
                );
            }
        }
        assert_eq!(asked, ANSWERS_PER_MATCHER);
        // One text more than is kept: what is kept is dropped, and as many hits as answers
        // were found, so the next text's answer is kept.
        assert_eq!(answer(generation, b"new", &[7], &mut asked), [7]);
        assert_eq!(answer(generation, b"new", &[8], &mut asked), [7]);
        assert_eq!(asked, ANSWERS_PER_MATCHER + 1);
        assert_eq!(answer(generation, b"0", &[0], &mut asked), [0]);
        assert_eq!(asked, ANSWERS_PER_MATCHER + 2, "dropped, asked again");
        let long = vec![b'x'; LONGEST_TEXT + 1];
        let mut asked = 0;
        answer(generation, &long, &[3], &mut asked);
        assert_eq!(answer(generation, &long, &[3], &mut asked), [3]);
        assert_eq!(asked, 2, "a long text is not kept");
    }

    #[test]
    fn texts_that_rarely_repeat_are_asked_without_keeping_for_a_while() {
        let generation = Generation::next();
        let mut asked = 0;
        let ask = |i: usize, asked: &mut usize| {
            let truth = [u32::try_from(i % 1000).expect("small")];
            assert_eq!(
                answer(generation, i.to_string().as_bytes(), &truth, asked),
                truth
            );
        };
        // Every text new: the kept answers fill up with no hit.
        for i in 0..=ANSWERS_PER_MATCHER {
            ask(i, &mut asked);
        }
        assert_eq!(asked, ANSWERS_PER_MATCHER + 1);
        // Resting: a text seen just before is asked again, for `REST` texts in all.
        ask(5, &mut asked);
        ask(5, &mut asked);
        for i in 2..REST {
            ask(i, &mut asked);
        }
        assert_eq!(asked, ANSWERS_PER_MATCHER + 1 + REST);
        // Then answers are kept again.
        ask(5, &mut asked);
        ask(5, &mut asked);
        assert_eq!(asked, ANSWERS_PER_MATCHER + 2 + REST);
    }

    #[test]
    fn past_the_matchers_kept_each_still_gets_its_own_answers() {
        // On a thread of its own: nothing kept before.
        std::thread::spawn(|| {
            let mut asked = 0;
            let generations: Vec<Generation> = (0..=MATCHERS).map(|_| Generation::next()).collect();
            for _ in 0..2 {
                for (i, g) in generations.iter().enumerate() {
                    let truth = [u32::try_from(i).expect("small")];
                    assert_eq!(answer(*g, b"a", &truth, &mut asked), truth);
                }
            }
            // Cycling through one matcher more than are kept, every answer is asked again
            // (what is kept is dropped whole), and every answer is right.
            assert_eq!(asked, 2 * (MATCHERS + 1));
        })
        .join()
        .expect("no panic");
    }
}
