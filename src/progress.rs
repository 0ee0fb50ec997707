//! Progress bars on a terminal for the core's long jobs (`lore_core::progress::Progress`).

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use lore_core::progress::{Progress, Quiet};

/// A bar on stderr per task; notes are printed above it.
pub struct TerminalProgress {
    bar: Mutex<Option<ProgressBar>>,
}

impl TerminalProgress {
    /// A bar when stderr is a terminal and `wanted`; otherwise nothing is shown.
    pub fn on_stderr(wanted: bool) -> Box<dyn Progress> {
        if wanted && std::io::stderr().is_terminal() {
            Box::new(TerminalProgress {
                bar: Mutex::new(None),
            })
        } else {
            Box::new(Quiet)
        }
    }

    fn with_bar(&self, f: impl FnOnce(&ProgressBar)) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            f(bar);
        }
    }
}

impl Progress for TerminalProgress {
    fn begin(&self, total: u64, unit: &str) {
        let bar = ProgressBar::new(total);
        let template = format!("{{bar:30}} {{pos}}/{{len}} {unit} {{elapsed}} {{wide_msg}}");
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style);
        }
        *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
    }

    fn message(&self, text: &str) {
        let text = text.to_owned();
        self.with_bar(|bar| bar.set_message(text));
    }

    fn note(&self, text: &str) {
        match self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn advance(&self, steps: u64) {
        self.with_bar(|bar| bar.inc(steps));
    }

    fn resume_at(&self, position: u64) {
        self.with_bar(|bar| bar.set_position(position));
    }

    fn end(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
    }
}
