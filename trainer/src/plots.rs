//! Pictures of a run, as PNG files: loss and accuracy per epoch (train and test), the confusion
//! matrix as a heatmap, and a grid of the misclassified test digits.
//!
//! Charts are drawn with plotters as SVG, then rasterized by resvg with the DejaVu Sans font
//! shipped in `assets/`, so text renders the same on every machine, fonts installed or not.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;
use plotters::style::text_anchor;
use resvg::{tiny_skia, usvg};

use crate::metrics::Confusion;
use crate::train::EpochStats;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
/// Misclassified digits shown at most.
const GRID_MAX: usize = 100;

/// A test digit the model got wrong.
#[derive(Debug, Clone, Copy)]
pub struct Miss<'a> {
    /// Its 28 × 28 pixels.
    pub pixels: &'a [u8],
    /// The label.
    pub truth: u8,
    /// What the model said.
    pub predicted: u8,
}

/// The test digits a model got wrong, from its `predictions` (one per label; `images` 784 bytes
/// each).
pub fn misses<'a>(images: &'a [u8], labels: &[u8], predictions: &[u8]) -> Vec<Miss<'a>> {
    images
        .as_chunks::<{ crate::shape::INPUTS }>()
        .0
        .iter()
        .zip(labels)
        .zip(predictions)
        .filter(|((_, t), p)| t != p)
        .map(|((pixels, &truth), &predicted)| Miss {
            pixels,
            truth,
            predicted,
        })
        .collect()
}

/// The files [`write_all`] may write.
pub const FILES: [&str; 3] = ["history.png", "confusion.png", "misclassified.png"];

/// Writes `history.png` (with a training history), `confusion.png` and `misclassified.png` into
/// `dir`; returns their paths.
pub fn write_all(
    dir: &Path,
    history: Option<&[EpochStats]>,
    confusion: &Confusion,
    misses: &[Miss<'_>],
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create plots folder {}", dir.display()))?;
    let mut charts = Vec::new();
    if let Some(history) = history {
        charts.push(("history.png", history_svg(history)?));
    }
    charts.push(("confusion.png", confusion_svg(confusion)?));
    charts.push(("misclassified.png", misclassified_svg(misses)?));
    let mut written = Vec::new();
    for (name, svg) in charts {
        let path = dir.join(name);
        rasterize(&svg, &path)?;
        written.push(path);
    }
    Ok(written)
}

fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

/// Loss and accuracy per epoch: training, validation (with a validation split) and test (only
/// where asked for).
pub fn history_svg(history: &[EpochStats]) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let panels = root.split_evenly((1, 2));
        let epochs = history.len().max(1) as f64;
        type Metric = fn(&EpochStats) -> Option<f64>;
        let charts: [(&str, [Metric; 3]); 2] = [
            (
                "Loss (cross-entropy)",
                [|e| Some(e.loss), |e| e.val_loss, |e| e.test_loss],
            ),
            (
                "Accuracy",
                [
                    |e| Some(e.accuracy),
                    |e| e.val_accuracy,
                    |e| e.test_accuracy,
                ],
            ),
        ];
        for (panel, (title, [train, val, test])) in panels.iter().zip(charts) {
            let values: Vec<f64> = history
                .iter()
                .flat_map(|e| [train(e), val(e), test(e)])
                .flatten()
                .collect();
            let (lo, hi) = values
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
            let pad = ((hi - lo) * 0.1).max(1e-3);
            let mut chart = ChartBuilder::on(panel)
                .caption(title, ("sans-serif", 22))
                .margin(16)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(1f64..epochs.max(2.0), (lo - pad)..(hi + pad))
                .map_err(plot_error)?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .x_labels(history.len().clamp(2, 10))
                .x_label_formatter(&|v| format!("{v:.0}"))
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(plot_error)?;
            let green = RGBColor(0, 140, 60);
            for (name, metric, color) in [
                ("train", train, BLUE),
                ("validation", val, green),
                ("test", test, RED),
            ] {
                let points: Vec<(f64, f64)> = history
                    .iter()
                    .filter_map(|e| metric(e).map(|v| (e.epoch as f64, v)))
                    .collect();
                if points.is_empty() {
                    continue;
                }
                chart
                    .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                    .map_err(plot_error)?
                    .label(name)
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(
                        points
                            .into_iter()
                            .map(|p| Circle::new(p, 4, color.filled())),
                    )
                    .map_err(plot_error)?;
            }
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 14))
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(plot_error)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// The confusion matrix as a heatmap, counts written in the cells.
pub fn confusion_svg(confusion: &Confusion) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (620, 620)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "Confusion matrix, accuracy {:.2} %",
                    100.0 * confusion.accuracy()
                ),
                ("sans-serif", 22),
            )
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(44)
            .build_cartesian_2d((0i32..9).into_segmented(), (0i32..9).into_segmented())
            .map_err(plot_error)?;
        // Rows run top to bottom: true digit `t` is drawn at y = 9 − t.
        let centre = |v: &SegmentValue<i32>, flip: bool| match v {
            SegmentValue::CenterOf(v) => (if flip { 9 - v } else { *v }).to_string(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("predicted")
            .y_desc("true digit")
            .x_labels(10)
            .y_labels(10)
            .x_label_formatter(&|v| centre(v, false))
            .y_label_formatter(&|v| centre(v, true))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(plot_error)?;
        let max = confusion
            .counts
            .iter()
            .flatten()
            .copied()
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        for (t, row) in confusion.counts.iter().enumerate() {
            for (p, &count) in row.iter().enumerate() {
                // Log scale: the few errors stay visible beside ~1000 hits on the diagonal.
                let shade = if count == 0 {
                    0.0
                } else {
                    (1.0 + count as f64).ln() / (1.0 + max).ln()
                };
                let color = if t == p {
                    RGBColor(30, 90, 200)
                } else {
                    RGBColor(220, 60, 40)
                };
                let (x, y) = (p as i32, 9 - t as i32);
                let cell = [
                    (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                    (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
                ];
                chart
                    .draw_series([Rectangle::new(
                        cell,
                        color.mix(0.08 + 0.92 * shade).filled(),
                    )])
                    .map_err(plot_error)?;
                let ink = if shade > 0.6 { WHITE } else { BLACK };
                let style = ("sans-serif", 13)
                    .into_font()
                    .color(&ink)
                    .pos(text_anchor::Pos::new(
                        text_anchor::HPos::Center,
                        text_anchor::VPos::Center,
                    ));
                let at = (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y));
                chart
                    .draw_series([Text::new(count.to_string(), at, style)])
                    .map_err(plot_error)?;
            }
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// The misclassified digits, each with its label and the prediction.
pub fn misclassified_svg(misses: &[Miss<'_>]) -> Result<String> {
    const COLUMNS: usize = 10;
    const SCALE: i32 = 3;
    const CELL_W: i32 = 28 * SCALE + 16;
    const CELL_H: i32 = 28 * SCALE + 30;
    let shown = misses.len().min(GRID_MAX);
    let rows = shown.div_ceil(COLUMNS).max(1);
    let (w, h) = (COLUMNS as i32 * CELL_W + 16, rows as i32 * CELL_H + 56);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w as u32, h as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let title = format!(
            "{} misclassified test digits{} (true → predicted)",
            misses.len(),
            if misses.len() > shown {
                format!(", first {shown}")
            } else {
                String::new()
            }
        );
        root.draw(&Text::new(title, (12, 12), ("sans-serif", 20)))
            .map_err(plot_error)?;
        for (i, miss) in misses.iter().take(shown).enumerate() {
            let x0 = 12 + (i % COLUMNS) as i32 * CELL_W;
            let y0 = 48 + (i / COLUMNS) as i32 * CELL_H;
            root.draw(&Rectangle::new(
                [(x0, y0), (x0 + 28 * SCALE, y0 + 28 * SCALE)],
                BLACK.filled(),
            ))
            .map_err(plot_error)?;
            for (p, &v) in miss.pixels.iter().enumerate().filter(|(_, v)| **v > 0) {
                let (px, py) = (x0 + (p % 28) as i32 * SCALE, y0 + (p / 28) as i32 * SCALE);
                root.draw(&Rectangle::new(
                    [(px, py), (px + SCALE, py + SCALE)],
                    RGBColor(v, v, v).filled(),
                ))
                .map_err(plot_error)?;
            }
            let label = format!("{} → {}", miss.truth, miss.predicted);
            root.draw(&Text::new(
                label,
                (x0 + 20, y0 + 28 * SCALE + 4),
                ("sans-serif", 16),
            ))
            .map_err(plot_error)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// SVG → PNG with the shipped font standing in for `sans-serif`.
fn rasterize(svg: &str, path: &Path) -> Result<()> {
    let mut fonts = usvg::fontdb::Database::new();
    fonts.load_font_data(FONT.to_vec());
    fonts.set_sans_serif_family("DejaVu Sans");
    let options = usvg::Options {
        font_family: "DejaVu Sans".into(),
        fontdb: Arc::new(fonts),
        ..usvg::Options::default()
    };
    let tree =
        usvg::Tree::from_str(svg, &options).context("plotters wrote an SVG resvg cannot read")?;
    let size = tree.size().to_int_size();
    let mut pixmap =
        tiny_skia::Pixmap::new(size.width(), size.height()).context("empty picture")?;
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    let png = pixmap.encode_png().context("cannot encode PNG")?;
    crate::output::write_atomic(path, &png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_three_pngs_with_their_text_rendered() {
        let history: Vec<EpochStats> = (1..=3)
            .map(|epoch| EpochStats {
                epoch,
                loss: 0.3 / epoch as f64,
                accuracy: 0.9 + 0.02 * epoch as f64,
                seconds: 1.0,
                learning_rate: 1e-3,
                val_loss: Some(0.25 / epoch as f64),
                val_accuracy: Some(0.94 + 0.01 * epoch as f64),
                test_loss: Some(0.2 / epoch as f64),
                test_accuracy: Some(0.95 + 0.01 * epoch as f64),
            })
            .collect();
        let confusion = Confusion::new(&[0, 1, 2, 3, 3], &[0, 1, 2, 3, 5]);
        let digit = [200u8; 784];
        let misses = [Miss {
            pixels: &digit,
            truth: 3,
            predicted: 5,
        }];
        let dir = std::env::temp_dir().join(format!("plots-{}", std::process::id()));
        let written = write_all(&dir, Some(&history), &confusion, &misses).unwrap();
        assert_eq!(written.len(), 3);
        for path in written {
            let image = image::open(&path).unwrap().to_luma8();
            assert!(
                image.width() > 400 && image.height() > 150,
                "{}",
                path.display()
            );
            // The title is drawn in the top band: text needs the shipped font to render.
            let title_ink = (0..image.width())
                .flat_map(|x| (0..40).map(move |y| (x, y)))
                .filter(|&(x, y)| image.get_pixel(x, y).0[0] < 128)
                .count();
            assert!(title_ink > 50, "no title text in {}", path.display());
        }
    }
}
