//! Terminal progress: a bar with images/s and ETA on a terminal, periodic plain lines
//! otherwise (pipes, files, CI).

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

/// Progress display: a bar on a terminal, plain log lines elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    Bar,
    Lines,
}

impl ProgressMode {
    /// Bars when stderr is a terminal and `CI` is unset, plain lines otherwise.
    pub fn detect() -> Self {
        if std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() {
            ProgressMode::Bar
        } else {
            ProgressMode::Lines
        }
    }
}

/// Progress of one epoch.
pub struct EpochProgress {
    bar: Option<ProgressBar>,
    label: String,
    steps: usize,
    images: usize,
    started: Instant,
    next_line: usize,
}

impl EpochProgress {
    pub fn new(mode: ProgressMode, label: String, steps: usize) -> Self {
        let bar = (mode == ProgressMode::Bar).then(|| {
            let bar = ProgressBar::new(steps as u64);
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} steps {msg} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label.clone());
            bar
        });
        Self {
            bar,
            label,
            steps,
            images: 0,
            started: Instant::now(),
            next_line: steps.div_ceil(4).max(1),
        }
    }

    /// Records one finished step of `images` inputs with its loss.
    pub fn step(&mut self, done: usize, images: usize, loss: f64) {
        self.images += images;
        let rate = self.images_per_second();
        match &self.bar {
            Some(bar) => {
                bar.set_position(done as u64);
                bar.set_message(format!("loss {loss:.4}, {rate:.0} images/s"));
            }
            None if done >= self.next_line && done < self.steps => {
                self.next_line += self.steps.div_ceil(4).max(1);
                tracing::info!(
                    "{}: step {done}/{}, loss {loss:.4}, {rate:.0} images/s",
                    self.label,
                    self.steps
                );
            }
            None => {}
        }
    }

    pub fn images_per_second(&self) -> f64 {
        self.images as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
