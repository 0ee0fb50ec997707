//! Progress of long jobs (ingesting, building an evaluation store, migrating). The core
//! only reports; the application decides how it is shown (a bar on a terminal, nothing in a
//! pipe or a server).

/// Receives the progress of one job at a time; tasks of a job come one after another.
pub trait Progress: Send + Sync {
    /// A task of `total` steps, counted in `unit` ("files", "queries", "chunks"), starts.
    fn begin(&self, total: u64, unit: &str);
    /// What the current step is working on (a file name).
    fn message(&self, _text: &str) {}
    /// A line worth showing between tasks (a sweep's cell).
    fn note(&self, _text: &str) {}
    /// `steps` more steps are done.
    fn advance(&self, steps: u64);
    /// The task resumes at `position` (a resumed migration).
    fn resume_at(&self, _position: u64) {}
    /// The current task ended.
    fn end(&self);
}

/// Shows nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn begin(&self, _total: u64, _unit: &str) {}
    fn advance(&self, _steps: u64) {}
    fn end(&self) {}
}
