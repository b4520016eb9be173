//! Hand-written SVG charts: the latency distribution (CDF) and the rollup scaling (log–log).

use std::fmt::Write as _;

const W: f64 = 760.0;
const H: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 4] = ["#1b7837", "#c2410c", "#2563eb", "#7c3aed"];

fn header(title: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" font-family="system-ui, sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15" font-weight="600">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn plot_w() -> f64 {
    W - LEFT - RIGHT
}

fn plot_h() -> f64 {
    H - TOP - BOTTOM
}

/// A vertical grid line at `x`, labelled `label` under the plot.
fn x_gridline(s: &mut String, x: f64, label: &str) {
    let _ = writeln!(
        s,
        r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#e5e7eb"/><text x="{0:.1}" y="{3}" text-anchor="middle">{4}</text>"##,
        x,
        TOP,
        TOP + plot_h(),
        TOP + plot_h() + 16.0,
        label
    );
}

/// A horizontal grid line at `y`, labelled `label` left of the plot.
fn y_gridline(s: &mut String, y: f64, label: &str) {
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#e5e7eb"/><text x="{2}" y="{3:.1}" text-anchor="end">{4}</text>"##,
        y,
        LEFT + plot_w(),
        LEFT - 6.0,
        y + 4.0,
        label
    );
}

/// The plot's frame and the two axis titles.
fn frame(s: &mut String, x_title: &str, y_title: &str) {
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#374151"/>"##,
        plot_w(),
        plot_h()
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        LEFT + plot_w() / 2.0,
        H - 18.0,
        escape(x_title)
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{0}" text-anchor="middle" transform="rotate(-90 16 {0})">{1}</text>"#,
        TOP + plot_h() / 2.0,
        escape(y_title)
    );
}

/// CDF of the latency samples, one line per kind, with the targets as dashed lines.
pub fn latency_chart(samples: &[(&'static str, f64)]) -> String {
    let kinds = [
        ("online", "heartbeat → online event", 1000.0),
        ("offline", "deadline → offline event", 2000.0),
    ];
    let max_sample = samples.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    let min_sample = samples
        .iter()
        .map(|(_, v)| *v)
        .fold(f64::MAX, f64::min)
        .max(0.01);
    // Log scale: the online (tens of ms) and offline (hundreds of ms) curves both show.
    let x_lo = min_sample.min(1.0).log10().floor();
    let x_hi = max_sample.max(2000.0).log10().ceil();
    let x = |v: f64| LEFT + (v.max(10f64.powf(x_lo)).log10() - x_lo) / (x_hi - x_lo) * plot_w();
    let y = |f: f64| TOP + (1.0 - f) * plot_h();
    let mut s = header("Latency through the local stack (CDF of samples, log scale)");
    for d in (x_lo as i32)..=(x_hi as i32) {
        let v = 10f64.powi(d);
        x_gridline(&mut s, x(v), &human(v));
        for m in 2..10 {
            let _ = writeln!(
                s,
                r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#f3f4f6"/>"##,
                x(v * f64::from(m)),
                TOP,
                TOP + plot_h()
            );
        }
    }
    for i in 0..=10 {
        let f = f64::from(i) / 10.0;
        y_gridline(&mut s, y(f), &format!("{:.0}%", f * 100.0));
    }
    frame(
        &mut s,
        "latency, ms (log scale)",
        "share of samples at or below",
    );
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" fill="#4b5563">dashed: p99 targets (online ≤ 1 s, offline ≤ 2 s)</text>"##,
        LEFT + 30.0,
        TOP + 54.0
    );
    for (i, (kind, label, target)) in kinds.iter().enumerate() {
        let color = COLORS[i];
        let mut v: Vec<f64> = samples
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, ms)| *ms)
            .collect();
        v.sort_by(f64::total_cmp);
        // Target line, labelled above the plot.
        let _ = writeln!(
            s,
            r#"<line x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{1}" stroke="{color}" stroke-dasharray="6 4" opacity="0.7"/><text x="{0:.1}" y="{2}" fill="{color}" text-anchor="middle">{3} s</text>"#,
            x(*target),
            TOP + plot_h(),
            TOP - 5.0,
            *target / 1000.0
        );
        if v.is_empty() {
            continue;
        }
        let n = v.len() as f64;
        let mut path = format!("M{:.1},{:.1}", x(v[0]), y(0.0));
        for (j, ms) in v.iter().enumerate() {
            let _ = write!(
                path,
                " L{:.1},{:.1} L{:.1},{:.1}",
                x(*ms),
                y(j as f64 / n),
                x(*ms),
                y((j + 1) as f64 / n)
            );
        }
        let _ = writeln!(
            s,
            r#"<path d="{path}" fill="none" stroke="{color}" stroke-width="2"/>"#
        );
        let p50 = crate::quantile(&v, 0.5);
        let p99 = crate::quantile(&v, 0.99);
        let max = v[v.len() - 1];
        let ly = TOP + 18.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{0:.1}" y="{1:.1}" width="14" height="4" fill="{color}"/><text x="{2:.1}" y="{3:.1}">{4}: n={5}, p50 {6:.0} ms, p99 {7:.0} ms, max {8:.0} ms</text>"#,
            LEFT + 10.0,
            ly - 4.0,
            LEFT + 30.0,
            ly + 1.0,
            escape(label),
            v.len(),
            p50,
            p99,
            max
        );
    }
    s.push_str("</svg>\n");
    s
}

/// [`latency_chart`] from a `latency_samples.csv` (`kind,ms` lines).
pub fn latency_chart_from_csv(csv: &str) -> String {
    let samples: Vec<(&'static str, f64)> = csv
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (kind, ms) = l.split_once(',')?;
            let kind = match kind {
                "online" => "online",
                "offline" => "offline",
                _ => return None,
            };
            Some((kind, ms.trim().parse().ok()?))
        })
        .collect();
    latency_chart(&samples)
}

/// Rollup time against live sessions, log–log, one line per series.
pub fn rollup_chart(points: &[(String, f64, f64)]) -> String {
    let mut series: Vec<&str> = Vec::new();
    for (name, _, _) in points {
        if !series.contains(&name.as_str()) {
            series.push(name);
        }
    }
    let xs = points.iter().map(|p| p.1);
    let ys = points.iter().map(|p| p.2.max(1e-3));
    let x_lo = xs.clone().fold(f64::MAX, f64::min).log10().floor();
    let x_hi = xs.fold(0.0, f64::max).log10().ceil().max(x_lo + 1.0);
    let y_lo = ys
        .clone()
        .fold(f64::MAX, f64::min)
        .min(50.0)
        .log10()
        .floor();
    let y_hi = ys
        .fold(0.0, f64::max)
        .max(50.0)
        .log10()
        .ceil()
        .max(y_lo + 1.0);
    let x = |v: f64| LEFT + (v.log10() - x_lo) / (x_hi - x_lo) * plot_w();
    let y = |v: f64| TOP + (1.0 - (v.max(1e-3).log10() - y_lo) / (y_hi - y_lo)) * plot_h();
    let mut s = header("Rollup time vs live sessions (log–log)");
    for d in (x_lo as i32)..=(x_hi as i32) {
        let v = 10f64.powi(d);
        x_gridline(&mut s, x(v), &human(v));
    }
    for d in (y_lo as i32)..=(y_hi as i32) {
        let v = 10f64.powi(d);
        y_gridline(&mut s, y(v), &format!("{} ms", human(v)));
    }
    frame(&mut s, "live sessions", "time per run");
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#6b7280" stroke-dasharray="6 4"/><text x="{2}" y="{3:.1}" fill="#6b7280" text-anchor="middle">target: 50 ms at 1 M</text>"##,
        y(50.0),
        LEFT + plot_w(),
        LEFT + plot_w() * 0.62,
        y(50.0) - 5.0
    );
    for (i, name) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        // One point per size: the median of the runs at it.
        let mut by_x: Vec<(f64, Vec<f64>)> = Vec::new();
        for p in points.iter().filter(|p| p.0 == *name) {
            match by_x.iter_mut().find(|(bx, _)| *bx == p.1) {
                Some((_, ys)) => ys.push(p.2),
                None => by_x.push((p.1, vec![p.2])),
            }
        }
        let mut pts: Vec<(f64, f64)> = by_x
            .into_iter()
            .map(|(bx, ys)| (bx, crate::median(&ys)))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = pts
            .iter()
            .enumerate()
            .map(|(j, (sx, sy))| {
                format!(
                    "{}{:.1},{:.1}",
                    if j == 0 { "M" } else { "L" },
                    x(*sx),
                    y(*sy)
                )
            })
            .collect();
        let _ = writeln!(
            s,
            r#"<path d="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for (j, (sx, sy)) in pts.iter().enumerate() {
            let last = j + 1 == pts.len();
            let _ = writeln!(
                s,
                r#"<circle cx="{0:.1}" cy="{1:.1}" r="4" fill="{color}"/><text x="{2:.1}" y="{3:.1}" fill="{color}" text-anchor="{4}">{5}</text>"#,
                x(*sx),
                y(*sy),
                if last { x(*sx) - 8.0 } else { x(*sx) + 8.0 },
                y(*sy) + if i == 1 { 16.0 } else { -8.0 },
                if last { "end" } else { "start" },
                fmt_ms(*sy)
            );
        }
        let ly = TOP + 16.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{0}" y="{1:.1}" width="14" height="4" fill="{color}"/><text x="{2}" y="{3:.1}">{4}</text>"#,
            LEFT + 12.0,
            ly - 4.0,
            LEFT + 32.0,
            ly + 1.0,
            escape(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{}k", v / 1e3)
    } else if v >= 1.0 {
        format!("{v}")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

fn fmt_ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg() {
        let l = latency_chart(&[("online", 12.0), ("online", 30.0), ("offline", 700.0)]);
        assert!(l.starts_with("<svg") && l.trim_end().ends_with("</svg>"));
        let r = rollup_chart(&[
            ("incremental".into(), 1e4, 2.0),
            ("incremental".into(), 1e6, 2.5),
            ("full scan".into(), 1e4, 20.0),
            ("full scan".into(), 1e6, 2000.0),
        ]);
        assert!(r.contains("full scan") && r.contains("1M"));
    }
}
