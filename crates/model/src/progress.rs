//! How a long loop (the probe's templates, the corpus sampling, the training steps, a
//! benchmark's examples) tells its caller how far it is and what it does next, and learns that
//! the caller wants it to stop. The libraries only report; a front end (the CLI, the Python package) decides whether
//! and how to draw it.

/// A caller's view of a long run. Every method has a default that shows nothing and never
/// stops, so a caller implements only what it uses.
pub trait Progress: Send + Sync {
    /// A stage of `total` units of work (`0`: not known in advance) named `what` begins; the
    /// returned counter is told of the units done, and the stage ends when it is dropped.
    fn stage(&self, _what: &str, _total: u64) -> Box<dyn Stage + '_> {
        Box::new(Unseen)
    }

    /// A line saying what the run does next, or what it kept from an interrupted run.
    fn message(&self, _text: &str) {}

    /// Polled between units of work; `true` asks the run to end (with its checkpoint kept).
    fn stop_requested(&self) -> bool {
        false
    }
}

/// The counter of one stage of work.
pub trait Stage {
    /// `units` more units are done.
    fn advance(&self, _units: u64) {}
    /// A short status of the stage (the trainer's current losses), shown beside its count.
    fn status(&self, _text: &str) {}
}

/// A stage nobody watches.
struct Unseen;

impl Stage for Unseen {}

/// Progress nobody watches, in a run nobody stops: what tests and one-off calls pass.
pub struct Unwatched;

impl Progress for Unwatched {}
