//! What one file may cost to load: a deadline checked inside the loaders' loops, and
//! counts of elements and nesting checked against [`LoadLimits`].

use std::time::Instant;

use super::{LoadError, LoadLimits};

/// How often (in ticks) the clock is read; reading it on every element would cost more
/// than the work being timed.
const TICKS_PER_CLOCK_READ: u32 = 1024;

/// One file's running account against its limits.
pub(crate) struct Budget<'a> {
    source: &'a str,
    limits: &'a LoadLimits,
    deadline: Instant,
    elements: usize,
    ticks: u32,
}

impl<'a> Budget<'a> {
    pub(crate) fn new(source: &'a str, limits: &'a LoadLimits) -> Self {
        Self {
            source,
            limits,
            deadline: Instant::now() + limits.max_load_time,
            elements: 0,
            ticks: 0,
        }
    }

    pub(crate) fn limits(&self) -> &LoadLimits {
        self.limits
    }

    /// Called inside loops: an error once the file's time is up.
    pub(crate) fn tick(&mut self) -> Result<(), LoadError> {
        self.ticks += 1;
        if self.ticks < TICKS_PER_CLOCK_READ {
            return Ok(());
        }
        self.ticks = 0;
        self.check_time()
    }

    /// Reads the clock now: an error if the file's time is up.
    pub(crate) fn check_time(&self) -> Result<(), LoadError> {
        if Instant::now() < self.deadline {
            return Ok(());
        }
        Err(self.over(format!(
            "still loading after {} s (ingest.load_timeout_secs)",
            self.limits.max_load_time.as_secs_f64()
        )))
    }

    /// Counts one more element (a tag, an XML element, a cue).
    pub(crate) fn element(&mut self) -> Result<(), LoadError> {
        self.elements += 1;
        if self.elements > self.limits.max_elements {
            return Err(self.over(format!(
                "more than {} elements (ingest.max_elements)",
                self.limits.max_elements
            )));
        }
        self.tick()
    }

    /// Checks how deep the reader is in nested elements.
    pub(crate) fn depth(&self, depth: usize) -> Result<(), LoadError> {
        if depth > self.limits.max_depth {
            return Err(self.over(format!(
                "elements nested more than {} levels deep (ingest.max_nesting_depth)",
                self.limits.max_depth
            )));
        }
        Ok(())
    }

    /// An over-limit error naming the file.
    pub(crate) fn over(&self, reason: String) -> LoadError {
        LoadError::OverLimit {
            source: self.source.to_string(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_expired_deadline_is_reported_within_a_clock_read() {
        let limits = LoadLimits {
            max_load_time: Duration::ZERO,
            ..LoadLimits::default()
        };
        let mut budget = Budget::new("slow.html", &limits);
        let err = (0..=TICKS_PER_CLOCK_READ)
            .find_map(|_| budget.tick().err())
            .expect("the deadline is seen");
        let msg = err.to_string();
        assert!(
            msg.contains("slow.html") && msg.contains("ingest.load_timeout_secs"),
            "{msg}"
        );
    }

    #[test]
    fn elements_and_depth_are_bounded() {
        let limits = LoadLimits {
            max_elements: 3,
            max_depth: 2,
            ..LoadLimits::default()
        };
        let mut budget = Budget::new("big.docx", &limits);
        assert!((0..3).all(|_| budget.element().is_ok()));
        let err = budget.element().unwrap_err();
        assert!(err.to_string().contains("ingest.max_elements"), "{err}");
        assert!(budget.depth(2).is_ok());
        let err = budget.depth(3).unwrap_err();
        assert!(matches!(err, LoadError::OverLimit { .. }), "{err:?}");
        assert!(
            err.to_string().contains("ingest.max_nesting_depth"),
            "{err}"
        );
    }
}
