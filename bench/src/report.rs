//! Figures, the summary table, the CSV of every measured run and the charts.

use crate::svg;
use std::fmt::Write as _;
use std::path::Path;

/// What a target applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    Value,
    Ratio,
}

/// A target: `on` must be at least / at most `threshold`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    AtLeast(On, f64),
    AtMost(On, f64),
}

impl Target {
    fn check(self, value: f64, ratio: Option<f64>) -> Option<bool> {
        let pick = |on: On| match on {
            On::Value => Some(value),
            On::Ratio => ratio,
        };
        match self {
            Target::AtLeast(on, t) => pick(on).map(|v| v >= t),
            Target::AtMost(on, t) => pick(on).map(|v| v <= t),
        }
    }

    fn describe(self, unit: &str) -> String {
        let (sign, on, t) = match self {
            Target::AtLeast(on, t) => ("≥", on, t),
            Target::AtMost(on, t) => ("≤", on, t),
        };
        match on {
            On::Value => format!("{sign} {} {unit}", fmt_num(t)),
            On::Ratio => format!("ratio {sign} {}", fmt_num(t)),
        }
    }
}

/// The reference a figure is measured against, in the same run.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub name: String,
    pub value: f64,
    pub unit: String,
}

/// One line of the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub bench: &'static str,
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub reference: Option<Reference>,
    /// value / reference (or as stated by the benchmark).
    pub ratio: Option<f64>,
    pub target: Option<Target>,
}

impl Figure {
    pub fn new(bench: &'static str, name: impl Into<String>, value: f64, unit: &str) -> Self {
        Self {
            bench,
            name: name.into(),
            value,
            unit: unit.to_owned(),
            reference: None,
            ratio: None,
            target: None,
        }
    }

    /// Against `reference`; the ratio is value / reference.
    pub fn against(mut self, name: impl Into<String>, value: f64, unit: &str) -> Self {
        self.ratio = Some(self.value / value);
        self.reference = Some(Reference {
            name: name.into(),
            value,
            unit: unit.to_owned(),
        });
        self
    }

    /// Overrides the ratio (e.g. reference / value when smaller is better).
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = Some(ratio);
        self
    }

    pub fn target(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }

    /// PASS (true), MISS (false) or no target (None).
    pub fn pass(&self) -> Option<bool> {
        if !self.value.is_finite() {
            return self.target.map(|_| false);
        }
        self.target.and_then(|t| t.check(self.value, self.ratio))
    }
}

/// One measured run, a row of `runs.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub bench: &'static str,
    pub variant: String,
    /// Items processed (heartbeats, sessions, samples, connections…).
    pub n: u64,
    pub seconds: f64,
    /// Items per second (or the figure the variant measures; see `note`).
    pub rate: f64,
    pub note: String,
}

/// Everything a run produced.
#[derive(Debug, Default)]
pub struct Report {
    pub quick: bool,
    pub started_unix_s: i64,
    pub nofile_limit: u64,
    pub figures: Vec<Figure>,
    pub runs: Vec<Run>,
    /// `(kind, ms)`: kind is `online` (heartbeat → event) or `offline` (deadline → event).
    pub latency_samples: Vec<(&'static str, f64)>,
    /// `(series, live sessions, ms)` for the rollup chart.
    pub rollup_points: Vec<(String, f64, f64)>,
    /// Free-form lines printed under the table (breakdowns, notes).
    pub notes: Vec<String>,
    pub errors: Vec<(&'static str, String)>,
}

impl Report {
    pub fn new(quick: bool, nofile_limit: u64) -> Self {
        Self {
            quick,
            started_unix_s: presence::now_ms() / 1000,
            nofile_limit,
            ..Self::default()
        }
    }

    pub fn figure(&mut self, f: Figure) {
        self.figures.push(f);
    }

    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &mut self,
        bench: &'static str,
        variant: impl Into<String>,
        n: u64,
        seconds: f64,
        rate: f64,
        note: impl Into<String>,
    ) {
        self.runs.push(Run {
            bench,
            variant: variant.into(),
            n,
            seconds,
            rate,
            note: note.into(),
        });
    }

    /// A run of `n` operations in `seconds`, its rate `n / seconds`.
    pub fn timed(
        &mut self,
        bench: &'static str,
        variant: impl Into<String>,
        n: usize,
        seconds: f64,
        note: impl Into<String>,
    ) {
        self.run(bench, variant, n as u64, seconds, n as f64 / seconds, note);
    }

    pub fn note(&mut self, line: impl Into<String>) {
        self.notes.push(line.into());
    }

    pub fn error(&mut self, bench: &'static str, message: String) {
        self.errors.push((bench, message));
    }

    /// Figures of one benchmark.
    pub fn figures_of(&self, bench: &str) -> Vec<&Figure> {
        self.figures.iter().filter(|f| f.bench == bench).collect()
    }

    /// The summary table (Markdown).
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "| benchmark | figure | value | reference | ratio | target | result |"
        );
        let _ = writeln!(t, "|---|---|---:|---|---:|---|---|");
        for f in &self.figures {
            let reference = f.reference.as_ref().map_or("–".to_owned(), |r| {
                format!("{}: {} {}", r.name, fmt_num(r.value), r.unit)
            });
            let ratio = f
                .ratio
                .map_or("–".to_owned(), |r| format!("{}×", fmt_num(r)));
            let target = f.target.map_or("–".to_owned(), |t| t.describe(&f.unit));
            let result = match f.pass() {
                Some(true) => "PASS",
                Some(false) => "MISS",
                None => "–",
            };
            let _ = writeln!(
                t,
                "| {} | {} | {} {} | {} | {} | {} | {} |",
                f.bench,
                f.name,
                fmt_num(f.value),
                f.unit,
                reference,
                ratio,
                target,
                result
            );
        }
        for (bench, e) in &self.errors {
            let _ = writeln!(t, "| {bench} | ERROR: {e} | | | | | MISS |");
        }
        t
    }

    /// The table followed by the notes.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "Presence benchmarks ({} mode)\n\n{}",
            if self.quick { "quick" } else { "full" },
            self.table()
        );
        if !self.notes.is_empty() {
            s.push('\n');
            for n in &self.notes {
                s.push_str(n);
                s.push('\n');
            }
        }
        s
    }

    /// Writes `summary.md`, `runs.csv`, `latency_samples.csv`, `latency.svg` and
    /// `rollup.svg` (each when there is something to put in it).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("summary.md"), self.summary())?;
        let mode = if self.quick { "quick" } else { "full" };
        let mut csv = String::from("started_unix_s,mode,benchmark,variant,n,seconds,rate,note\n");
        for r in &self.runs {
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{:.6},{:.3},{}",
                self.started_unix_s,
                mode,
                r.bench,
                csv_field(&r.variant),
                r.n,
                r.seconds,
                r.rate,
                csv_field(&r.note)
            );
        }
        std::fs::write(dir.join("runs.csv"), csv)?;
        if !self.latency_samples.is_empty() {
            let mut csv = String::from("kind,ms\n");
            for (k, ms) in &self.latency_samples {
                let _ = writeln!(csv, "{k},{ms:.3}");
            }
            std::fs::write(dir.join("latency_samples.csv"), csv)?;
            std::fs::write(
                dir.join("latency.svg"),
                svg::latency_chart(&self.latency_samples),
            )?;
        }
        if !self.rollup_points.is_empty() {
            std::fs::write(
                dir.join("rollup.svg"),
                svg::rollup_chart(&self.rollup_points),
            )?;
        }
        Ok(())
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// 1 234 567 for big numbers, three significant digits for small ones.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let a = v.abs();
    if a >= 10_000.0 {
        let s = format!("{:.0}", a);
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push('\u{202f}');
            }
            out.push(c);
        }
        if v < 0.0 { format!("-{out}") } else { out }
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a == 0.0 {
        "0".into()
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_formatting() {
        let f = Figure::new("x", "y", 120_000.0, "hb/s")
            .against("ref", 600_000.0, "req/s")
            .target(Target::AtLeast(On::Ratio, 0.2));
        assert_eq!(f.pass(), Some(true));
        let f = Figure::new("x", "y", 60.0, "ms").target(Target::AtMost(On::Value, 50.0));
        assert_eq!(f.pass(), Some(false));
        assert_eq!(fmt_num(1_234_567.0), "1\u{202f}234\u{202f}567");
        assert_eq!(fmt_num(0.25), "0.250");
    }
}
