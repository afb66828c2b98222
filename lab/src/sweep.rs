//! The sweep: the steady load at several rates, each in two configurations, and an SVG plot
//! of fire-lag percentiles against the offered rate (ticks due per second):
//! - `skip` with completions after ~1,000 ms (what users run: the service default, and
//!   runs that take a second) — solid lines;
//! - `allow` without completions (every tick launches; the launch pipeline alone) —
//!   dashed lines.

use std::path::PathBuf;

use cron_scheduler::schedules::OverlapPolicy;

use super::{
    args::FleetArgs,
    load::{self, LoadArgs, LoadReport, Mode},
    report,
};

#[derive(Debug, Clone, clap::Args)]
pub struct SweepArgs {
    /// Fire rates to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "250,500,1000,2000,4000")]
    pub rates: Vec<usize>,
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Seconds of measurement per rate and configuration.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Completion delay of the `skip` configuration, ms.
    #[arg(long, default_value_t = 1000)]
    pub completion_ms: u64,
    /// Where to write the SVG plot of lag percentiles against fires/s.
    #[arg(long, default_value = "docs/lag-vs-rate.svg")]
    pub svg: PathBuf,
    /// Write every report as a JSON array here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The two configurations: (overlap, completion ms, label, SVG dash pattern).
fn configs(completion_ms: u64) -> [(OverlapPolicy, u64, String, &'static str); 2] {
    [
        (
            OverlapPolicy::Skip,
            completion_ms,
            format!("skip, done after {completion_ms} ms"),
            "none",
        ),
        (
            OverlapPolicy::Allow,
            0,
            "allow, no completions".into(),
            "6,4",
        ),
    ]
}

fn label(r: &LoadReport) -> &'static str {
    if r.overlap == OverlapPolicy::Allow && r.completion_ms == 0 {
        "allow/none"
    } else {
        "skip/done"
    }
}

/// Runs the steady load at each rate in both configurations and plots the lags.
pub async fn run(args: SweepArgs) -> anyhow::Result<Vec<LoadReport>> {
    let mut reports = Vec::new();
    for rate in &args.rates {
        for (overlap, completion_ms, name, _) in configs(args.completion_ms) {
            println!("\nsweep: {rate} fires/s, {name}");
            reports.push(
                load::run(LoadArgs {
                    mode: Mode::Steady,
                    fleet: args.fleet.clone(),
                    rate: *rate,
                    burst: 0,
                    background: 1000,
                    duration: args.duration,
                    overlap,
                    completion_ms,
                    json: None,
                })
                .await?,
            );
        }
    }
    std::fs::write(&args.svg, svg_plot(&reports, args.completion_ms))?;
    println!("\nsweep: plot written to {}", args.svg.display());
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            vec![
                r.target_fires_per_s.to_string(),
                label(r).into(),
                format!("{:.0}", r.fires_per_s),
                report::ms(r.lag_p50_ms),
                report::ms(r.lag_p95_ms),
                report::ms(r.lag_p99_ms),
                r.skipped_rows.to_string(),
                r.missed_rows.to_string(),
                format!("{:.3}", r.cpu.postgres_s_per_1000_runs),
                format!("{:.3}", r.cpu.replicas_s_per_1000_runs),
                format!("{:.3}", r.cpu.lab_s_per_1000_runs),
            ]
        })
        .collect();
    report::print_table(
        "sweep (CPU columns: seconds per 1,000 delivered runs)",
        &[
            "target/s",
            "config",
            "delivered/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "skipped",
            "missed",
            "cpu pg",
            "cpu replicas",
            "cpu lab",
        ],
        &rows,
    );
    report::write_json(args.json.as_deref(), &reports)?;
    Ok(reports)
}

/// A plain SVG line chart: x = offered fires/s, y = lag (ms, log scale); one colour per
/// percentile, one line style per configuration.
fn svg_plot(reports: &[LoadReport], completion_ms: u64) -> String {
    let (w, h, left, bottom, top, right) = (840.0, 440.0, 70.0, 50.0, 40.0, 250.0);
    let max_x = reports
        .iter()
        .map(|r| r.target_fires_per_s as f64)
        .fold(1.0, f64::max)
        * 1.1;
    let lags: Vec<f64> = reports
        .iter()
        .flat_map(|r| [r.lag_p50_ms, r.lag_p95_ms, r.lag_p99_ms])
        .filter(|v| v.is_finite())
        .collect();
    let (min_y, max_y) = (
        lags.iter()
            .copied()
            .fold(f64::MAX, f64::min)
            .max(0.1)
            .log10()
            .floor(),
        lags.iter()
            .copied()
            .fold(0.1, f64::max)
            .log10()
            .ceil()
            .max(1.0),
    );
    let x = |v: f64| left + v / max_x * (w - left - right);
    let y = |v: f64| {
        h - bottom - (v.max(0.1).log10() - min_y) / (max_y - min_y).max(1e-9) * (h - top - bottom)
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{left}\" y=\"22\" font-size=\"15\">cron-scheduler: fire lag (Executor receive − scheduled_for) vs fires/s</text>\n"
    );
    svg.push_str(&format!(
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"black\"/>\n",
        h - bottom, w - right, h - bottom, h - bottom
    ));
    let mut decade = min_y;
    while decade <= max_y {
        let v = 10f64.powf(decade);
        svg.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#ddd\"/><text x=\"{2}\" y=\"{3}\" text-anchor=\"end\">{v} ms</text>\n",
            y(v), w - right, left - 6.0, y(v) + 4.0
        ));
        decade += 1.0;
    }
    let mut rates: Vec<usize> = reports.iter().map(|r| r.target_fires_per_s).collect();
    rates.sort_unstable();
    rates.dedup();
    for rate in rates {
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{rate}</text>\n",
            x(rate as f64),
            h - bottom + 18.0,
        ));
    }
    svg.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">ticks due per second (offered)</text>\n",
        (left + w - right) / 2.0,
        h - 10.0
    ));
    let percentiles = [("p50", "#1f77b4"), ("p95", "#ff7f0e"), ("p99", "#d62728")];
    let mut legend_y = top + 20.0;
    for (overlap, cms, name, dash) in configs(completion_ms) {
        let series: Vec<&LoadReport> = reports
            .iter()
            .filter(|r| r.overlap == overlap && r.completion_ms == cms)
            .collect();
        if series.is_empty() {
            continue;
        }
        for (i, (pname, color)) in percentiles.iter().enumerate() {
            let pts: Vec<(f64, f64)> = series
                .iter()
                .map(|r| {
                    let v = [r.lag_p50_ms, r.lag_p95_ms, r.lag_p99_ms][i];
                    (x(r.target_fires_per_s as f64), y(v))
                })
                .filter(|(_, py)| py.is_finite())
                .collect();
            let points: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
            svg.push_str(&format!(
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\" points=\"{}\"/>\n",
                points.join(" ")
            ));
            for (px, py) in &pts {
                svg.push_str(&format!(
                    "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"3\" fill=\"{color}\"/>\n"
                ));
            }
            svg.push_str(&format!(
                "<line x1=\"{0}\" y1=\"{legend_y}\" x2=\"{1}\" y2=\"{legend_y}\" stroke=\"{color}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\"/><text x=\"{2}\" y=\"{3}\">{pname}, {name}</text>\n",
                w - right + 10.0, w - right + 40.0, w - right + 46.0, legend_y + 4.0
            ));
            legend_y += 18.0;
        }
        legend_y += 8.0;
    }
    svg.push_str("</svg>\n");
    svg
}
