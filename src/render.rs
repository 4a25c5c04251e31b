//! How the commands' events show on a terminal: the one place besides `main` that prints.
//! Commands return reports and hand what they tell as they go to an observer; these are the
//! command line's observers. Entries and dead letters a dry run would write go to standard
//! output, one JSON document a line; progress goes to standard error, as a bar on a terminal,
//! else as JSON lines (e.g. for a Kubernetes Job's log).

use std::io::IsTerminal;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};

use crate::backfill::{BackfillEvent, Observer};
use crate::redrive::RedriveEvent;

/// The command line's observer of a backfill.
#[must_use]
pub fn backfill() -> Observer {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} scanned · {msg} · {per_sec} · ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    Arc::new(move |event| match event {
        BackfillEvent::WouldSend(v) | BackfillEvent::WouldDeadLetter(v) => println!("{v}"),
        BackfillEvent::Progress(p) => match &bar {
            Some(bar) => {
                if let Some(total) = p.total {
                    bar.set_length(total);
                }
                bar.set_position(p.now.scanned);
                bar.set_message(format!(
                    "{} published · {} dead-lettered · {} skipped",
                    p.now.published, p.now.dead_lettered, p.now.skipped
                ));
                if p.last {
                    bar.finish();
                }
            }
            None => eprintln!("{}", p.json_line()),
        },
    })
}

/// The command line's observer of a redrive.
pub fn redrive(event: RedriveEvent) {
    match event {
        RedriveEvent::Started { queue_url, total } => {
            eprintln!("redrive: about {total} message(s) in {queue_url}");
        }
        RedriveEvent::WouldSend(entry) => println!("{entry}"),
        RedriveEvent::Left { id, reason } => eprintln!("redrive: left {id} in the queue: {reason}"),
        RedriveEvent::Progress {
            seen,
            total,
            per_second,
        } => eprintln!("redrive: {seen}/{total} ({per_second:.1} msg/s)"),
    }
}
