//! Turns benchmark runs into `latest.json`, a markdown table and a PNG chart.

use anyhow::Context;
use plotters::prelude::*;
use serde_json::{json, Value};
use std::path::Path;

const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Reads runs (one JSON object per line) and the yardstick, writes the three outputs.
pub fn write(
    runs_path: &Path,
    yardstick_path: &Path,
    out_dir: &Path,
    font: Option<&Path>,
) -> anyhow::Result<String> {
    let runs: Vec<Value> = std::fs::read_to_string(runs_path)
        .with_context(|| format!("reading {}", runs_path.display()))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let yardstick: Value = serde_json::from_str(&std::fs::read_to_string(yardstick_path)?)?;
    std::fs::create_dir_all(out_dir)?;
    let combined = json!({"yardstick": yardstick, "runs": runs});
    std::fs::write(
        out_dir.join("latest.json"),
        serde_json::to_string_pretty(&combined)? + "\n",
    )?;
    let table = markdown(&runs, &yardstick);
    std::fs::write(out_dir.join("latest.md"), &table)?;
    chart(&runs, &out_dir.join("latest.png"), font)?;
    Ok(table)
}

fn f(v: &Value, k: &str) -> f64 {
    v.get(k).and_then(Value::as_f64).unwrap_or(0.0)
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// A run's name in tables: workload and message size.
fn workload_name(v: &Value) -> String {
    let size = f(v, "message_size");
    let size = if size >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.0} GiB", size / 1073741824.0)
    } else if size >= 1024.0 * 1024.0 {
        format!("{:.0} MiB", size / 1048576.0)
    } else {
        format!("{:.0} KiB", size / 1024.0)
    };
    format!("{} {}", s(v, "workload"), size)
}

/// Upload bandwidth, shown for the chunked workload only (where it is the figure the
/// disk's sequential write yardstick compares with).
fn upload_mib_s(r: &Value) -> String {
    let v = f(r, "upload_bytes_per_s") / 1048576.0;
    if s(r, "workload") == "Chunked" && v > 0.0 {
        format!("{v:.1}")
    } else {
        "–".into()
    }
}

fn worst_p99(v: &Value) -> f64 {
    v.get("ops")
        .and_then(Value::as_object)
        .map(|ops| ops.values().map(|o| f(o, "p99_ms")).fold(0.0, f64::max))
        .unwrap_or(0.0)
}

pub fn markdown(runs: &[Value], y: &Value) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "Machine: {} cores; sequential write with fdatasync {:.0} MiB/s; 1 KiB append+fdatasync {:.0}/s.\n\n",
        f(y, "cores"),
        f(y, "seq_write_mib_s"),
        f(y, "append_fsync_per_s")
    ));
    if y.get("openspine_start_to_ready_ms").is_some() {
        out.push_str(&format!(
            "OpenSpine: start to ready {:.0} ms; idle RSS {:.1} MiB; peak RSS over the whole run {:.1} MiB.\n\n",
            f(y, "openspine_start_to_ready_ms"),
            f(y, "openspine_idle_rss_mib"),
            f(y, "openspine_peak_rss_mib")
        ));
    }
    out.push_str("| server | workload | concurrency | messages/s | API calls/s | MiB/s | upload MiB/s | worst p99 ms | errors | lost | corrupt |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in runs {
        out.push_str(&format!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {} | {} | {} |\n",
            s(r, "label"),
            workload_name(r),
            f(r, "concurrency"),
            f(r, "messages_per_s"),
            f(r, "api_calls_per_s"),
            f(r, "bytes_per_s") / 1048576.0,
            upload_mib_s(r),
            worst_p99(r),
            f(r, "errors"),
            f(r, "lost"),
            f(r, "corrupt"),
        ));
    }
    // Side by side: the first label against each other label, per workload.
    let labels: Vec<&str> = runs
        .iter()
        .map(|r| s(r, "label"))
        .fold(Vec::new(), |mut v, l| {
            if !v.contains(&l) {
                v.push(l);
            }
            v
        });
    if labels.len() >= 2 {
        out.push_str(&format!(
            "\n| workload | {} msg/s | {} msg/s | ratio |\n|---|---:|---:|---:|\n",
            labels[0], labels[1]
        ));
        for a in runs.iter().filter(|r| s(r, "label") == labels[0]) {
            let name = workload_name(a);
            if let Some(b) = runs
                .iter()
                .find(|r| s(r, "label") == labels[1] && workload_name(r) == name)
            {
                let (ours, theirs) = (f(a, "messages_per_s"), f(b, "messages_per_s"));
                let ratio = if theirs > 0.0 {
                    format!("{:.1}×", ours / theirs)
                } else {
                    "n/a".into()
                };
                out.push_str(&format!("| {name} | {ours:.1} | {theirs:.1} | {ratio} |\n"));
            }
        }
    }
    out
}

fn load_font(font: Option<&Path>) -> anyhow::Result<()> {
    let path = match font {
        Some(p) => p.to_path_buf(),
        None => FONT_PATHS
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.exists())
            .context("no DejaVuSans.ttf found: install fonts-dejavu-core or pass --font")?,
    };
    let bytes: &'static [u8] = Box::leak(std::fs::read(&path)?.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("{} is not a usable font", path.display()))?;
    Ok(())
}

/// Two panels: messages/s (log scale) and worst p99 latency, one bar per server per workload.
fn chart(runs: &[Value], path: &Path, font: Option<&Path>) -> anyhow::Result<()> {
    load_font(font)?;
    let mut workloads: Vec<String> = Vec::new();
    let mut labels: Vec<String> = Vec::new();
    for r in runs {
        let w = workload_name(r);
        if !workloads.contains(&w) {
            workloads.push(w);
        }
        let l = s(r, "label").to_string();
        if !labels.contains(&l) {
            labels.push(l);
        }
    }
    let root = BitMapBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);
    let colors = [
        RGBColor(0, 94, 184),
        RGBColor(218, 41, 28),
        RGBColor(0, 150, 57),
    ];
    type Metric = fn(&Value) -> f64;
    let panels: [(&str, Metric); 2] = [
        ("messages per second (log)", |r| {
            f(r, "messages_per_s").max(0.01)
        }),
        ("worst p99 latency, ms (log)", |r| worst_p99(r).max(0.01)),
    ];
    for (area, (title, value)) in [left, right].into_iter().zip(panels) {
        let max = runs.iter().map(value).fold(1.0, f64::max) * 3.0;
        let n = workloads.len().max(1);
        let mut chart = ChartBuilder::on(&area)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..n as f64, (0.01..max).log_scale())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .label_style(("sans-serif", 13))
            .draw()?;
        let width = 0.8 / labels.len().max(1) as f64;
        for (li, label) in labels.iter().enumerate() {
            let color = colors[li % colors.len()];
            let bars: Vec<_> = runs
                .iter()
                .filter(|r| s(r, "label") == label)
                .filter_map(|r| {
                    let wi = workloads.iter().position(|w| *w == workload_name(r))?;
                    let x0 = wi as f64 + 0.1 + li as f64 * width;
                    Some(Rectangle::new(
                        [(x0, 0.01), (x0 + width * 0.95, value(r))],
                        color.filled(),
                    ))
                })
                .collect();
            chart
                .draw_series(bars)?
                .label(label.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        // Workload names under their bar groups, in the label area below the plot (a
        // numeric x axis would put its labels at round numbers, not at the bars).
        let name_style = TextStyle::from(("sans-serif", 13).into_font()).pos(
            plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Top,
            ),
        );
        for (i, w) in workloads.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(i as f64 + 0.5, 0.01));
            root.draw(&Text::new(w.clone(), (px, py + 8), name_style.clone()))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .label_font(("sans-serif", 14))
            .draw()?;
    }
    root.present()?;
    Ok(())
}
