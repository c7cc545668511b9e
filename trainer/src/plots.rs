//! Pictures of a run, as PNG files: loss and accuracy per epoch (train and test), the confusion
//! matrix as a heatmap, and a grid of the misclassified test digits.
//!
//! Charts are drawn with plotters as SVG, then rasterized by resvg with the DejaVu Sans font
//! shipped in `assets/`, so text renders the same on every machine, fonts installed or not.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor;
use resvg::{tiny_skia, usvg};

use crate::idx::Dataset;
use crate::metrics::Confusion;
use crate::train::EpochStats;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
/// Misclassified digits shown at most.
const GRID_MAX: usize = 100;

/// A test image the model got wrong.
#[derive(Debug, Clone, Copy)]
pub struct Miss<'a> {
    /// Its pixels, row by row.
    pub pixels: &'a [u8],
    /// Pixels per row.
    pub cols: usize,
    /// The label.
    pub truth: u8,
    /// What the model said.
    pub predicted: u8,
}

/// The test images a model got wrong, from its `predictions` (one per image of `test`).
pub fn misses<'a>(test: &'a Dataset, predictions: &[u8]) -> Vec<Miss<'a>> {
    test.images
        .chunks_exact(test.pixels().max(1))
        .zip(&test.labels)
        .zip(predictions)
        .filter(|((_, t), p)| t != p)
        .map(|((pixels, &truth), &predicted)| Miss {
            pixels,
            cols: test.cols,
            truth,
            predicted,
        })
        .collect()
}

/// The files [`write_all`] may write.
pub const FILES: [&str; 3] = ["history.png", "confusion.png", "misclassified.png"];

/// A run's epochs, and what its history chart marks on them.
#[derive(Debug, Clone, Copy)]
pub struct History<'a> {
    /// One entry per epoch.
    pub epochs: &'a [EpochStats],
    /// The epoch whose weights were kept (the last, or the one of lowest val_loss).
    pub kept: usize,
    /// The first quantization-aware epoch, in a run that has them.
    pub first_qat: Option<usize>,
}

/// Writes `history.png` (with a training history), `confusion.png` and `misclassified.png` into
/// `dir`, each titled with `model` (what the figures are of, e.g. `mlp-int8.bin (int8,
/// 784-512-10)`); returns their paths.
pub fn write_all(
    dir: &Path,
    model: &str,
    history: Option<History<'_>>,
    confusion: &Confusion,
    misses: &[Miss<'_>],
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create plots folder {}", dir.display()))?;
    let mut charts = Vec::new();
    if let Some(history) = history {
        charts.push(("history.png", history_svg(model, history)?));
    }
    charts.push(("confusion.png", confusion_svg(model, confusion)?));
    charts.push(("misclassified.png", misclassified_svg(model, misses)?));
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

type Metric = fn(&EpochStats) -> Option<f64>;

/// Loss and accuracy per epoch: training, validation (with a validation split) and test (only
/// where asked for); the kept epoch as a dashed line, quantization-aware epochs shaded. Loss is
/// drawn on a log axis, so the last epochs of a long run are not a flat line at the bottom.
pub fn history_svg(model: &str, history: History<'_>) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 450)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let title = format!(
            "Training of {model}: weights of epoch {} kept",
            history.kept
        );
        let root = root
            .titled(&title, ("sans-serif", 18))
            .map_err(plot_error)?;
        let panels = root.split_evenly((1, 2));
        let (loss_area, accuracy_area) = (&panels[0], &panels[1]);
        let loss: [Metric; 3] = [|e| Some(e.loss), |e| e.val_loss, |e| e.test_loss];
        let accuracy: [Metric; 3] = [
            |e| Some(e.accuracy),
            |e| e.val_accuracy,
            |e| e.test_accuracy,
        ];
        let (lo, hi) = span(history.epochs, loss, true);
        if lo > 0.0 && hi.is_finite() {
            // From a power of ten: plotters puts a log axis's ticks from the first one up.
            // (just below it: the tick search rounds the logarithm up)
            let (lo, hi) = (0.999 * 10f64.powf(lo.log10().floor()), hi * 1.2);
            let y = (lo..hi).log_scale();
            panel(
                loss_area,
                "Loss (cross-entropy, log scale)",
                history,
                loss,
                y,
                (lo, hi),
                true,
            )?;
        } else {
            // A loss that reached zero or overflowed has no log axis.
            let (lo, hi) = padded(span(history.epochs, loss, false));
            panel(
                loss_area,
                "Loss (cross-entropy)",
                history,
                loss,
                lo..hi,
                (lo, hi),
                false,
            )?;
        }
        let (lo, hi) = padded(span(history.epochs, accuracy, false));
        panel(
            accuracy_area,
            "Accuracy",
            history,
            accuracy,
            lo..hi,
            (lo, hi),
            false,
        )?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// The smallest and largest finite value of `metrics` over the epochs (positive ones only, for
/// a log axis).
fn span(epochs: &[EpochStats], metrics: [Metric; 3], positive: bool) -> (f64, f64) {
    epochs
        .iter()
        .flat_map(|e| metrics.map(|m| m(e)))
        .flatten()
        .filter(|v| v.is_finite() && (!positive || *v > 0.0))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        })
}

/// A linear axis's range: the values plus a tenth either side (a default for no values).
fn padded((lo, hi): (f64, f64)) -> (f64, f64) {
    if lo > hi {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.1).max(1e-3);
    (lo - pad, hi + pad)
}

/// An axis label: the value to two significant digits (`0.012`, `0.25`, `1.5`); on a log axis
/// (`sparse`), only values of leading digit 1, 2 or 5, so the decades stay readable.
fn axis_label(v: &f64, sparse: bool) -> String {
    let leading = v.abs() / 10f64.powf(v.abs().log10().floor());
    if sparse && ![1.0, 2.0, 5.0].iter().any(|d| (leading - d).abs() < 0.01) {
        return String::new();
    }
    two_digits(v)
}

/// A number to two significant digits (`0.012`, `0.25`, `1.5`).
fn two_digits(v: &f64) -> String {
    // 0 (log −∞) and huge values saturate into the clamp.
    let decimals = (1.0 - v.abs().log10().floor()).clamp(0.0, 6.0) as usize;
    format!("{v:.decimals$}")
}

/// One panel of the history chart: three series over the epochs on the `y` axis, whose
/// bottom and top are `lo` and `hi`.
fn panel<DB, Y>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    history: History<'_>,
    [train, val, test]: [Metric; 3],
    y: Y,
    (lo, hi): (f64, f64),
    log: bool,
) -> Result<()>
where
    DB: DrawingBackend,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let epochs = history.epochs.len().max(2) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(1f64..epochs, y)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_labels(history.epochs.len().clamp(2, 10))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_labels(if log { 40 } else { 10 })
        // Faint: a log axis asked for 40 ticks has many minor lines.
        .light_line_style(BLACK.mix(if log { 0.0 } else { 0.05 }))
        .y_label_formatter(&|v| axis_label(v, log))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(plot_error)?;
    if let Some(first) = history.first_qat {
        let amber = RGBColor(240, 160, 40);
        chart
            .draw_series([Rectangle::new(
                [((first as f64 - 0.5).max(1.0), lo), (epochs, hi)],
                amber.mix(0.18).filled(),
            )])
            .map_err(plot_error)?
            .label("quantization-aware")
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 20, y + 5)], amber.mix(0.4).filled())
            });
    }
    let kept = history.kept as f64;
    chart
        .draw_series(DashedLineSeries::new(
            [(kept, lo), (kept, hi)],
            6,
            4,
            BLACK.stroke_width(1),
        ))
        .map_err(plot_error)?
        .label(format!("kept (epoch {})", history.kept))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.stroke_width(1)));
    let green = RGBColor(0, 140, 60);
    for (name, metric, color) in [
        ("train", train, BLUE),
        ("validation", val, green),
        ("test", test, RED),
    ] {
        let points: Vec<(f64, f64)> = history
            .epochs
            .iter()
            .filter_map(|e| metric(e).map(|v| (e.epoch as f64, v)))
            .filter(|&(_, v)| (lo..=hi).contains(&v))
            .collect();
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(plot_error)?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(plot_error)?;
    }
    // Loss falls and accuracy rises: the legend goes in the corner the curves leave free.
    let corner = if title.starts_with("Loss") {
        SeriesLabelPosition::UpperRight
    } else {
        SeriesLabelPosition::LowerRight
    };
    chart
        .configure_series_labels()
        .position(corner)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

/// The confusion matrix of `model` as a heatmap, counts written in the cells.
pub fn confusion_svg(model: &str, confusion: &Confusion) -> Result<String> {
    let n = confusion.classes().max(1) as i32;
    let last = n - 1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (620, 620)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{model}: accuracy {:.2} %", 100.0 * confusion.accuracy()),
                ("sans-serif", 18),
            )
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(44)
            .build_cartesian_2d((0i32..last).into_segmented(), (0i32..last).into_segmented())
            .map_err(plot_error)?;
        // Rows run top to bottom: true class `t` is drawn at y = last − t.
        let centre = |v: &SegmentValue<i32>, flip: bool| match v {
            SegmentValue::CenterOf(v) => (if flip { last - v } else { *v }).to_string(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("predicted")
            .y_desc(if n == 10 { "true digit" } else { "true class" })
            .x_labels(n as usize)
            .y_labels(n as usize)
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
                let (x, y) = (p as i32, last - t as i32);
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

/// The digits `model` misclassified, each with its label and the prediction.
pub fn misclassified_svg(model: &str, misses: &[Miss<'_>]) -> Result<String> {
    const COLUMNS: usize = 10;
    // Each image drawn about 84 pixels wide (28 × 3 for MNIST), its pixels whole squares.
    let (cols, rows_px) = misses.first().map_or((28, 28), |m| {
        (m.cols.max(1), m.pixels.len() / m.cols.max(1))
    });
    let scale = (84 / cols.max(rows_px)).max(1) as i32;
    let (image_w, image_h) = (cols as i32 * scale, rows_px as i32 * scale);
    let cell_w = image_w.max(84) + 16;
    let cell_h = image_h + 30;
    let shown = misses.len().min(GRID_MAX);
    let rows = shown.div_ceil(COLUMNS).max(1);
    let (w, h) = (COLUMNS as i32 * cell_w + 16, rows as i32 * cell_h + 56);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w as u32, h as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let title = format!(
            "{} test images misclassified by {model}{} (true → predicted)",
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
            let x0 = 12 + (i % COLUMNS) as i32 * cell_w;
            let y0 = 48 + (i / COLUMNS) as i32 * cell_h;
            root.draw(&Rectangle::new(
                [(x0, y0), (x0 + image_w, y0 + image_h)],
                BLACK.filled(),
            ))
            .map_err(plot_error)?;
            for (p, &v) in miss.pixels.iter().enumerate().filter(|(_, v)| **v > 0) {
                let (px, py) = (
                    x0 + (p % cols) as i32 * scale,
                    y0 + (p / cols) as i32 * scale,
                );
                root.draw(&Rectangle::new(
                    [(px, py), (px + scale, py + scale)],
                    RGBColor(v, v, v).filled(),
                ))
                .map_err(plot_error)?;
            }
            let label = format!("{} → {}", miss.truth, miss.predicted);
            root.draw(&Text::new(
                label,
                (x0 + 20, y0 + image_h + 4),
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
        let confusion = Confusion::new(10, &[0, 1, 2, 3, 3], &[0, 1, 2, 3, 5]);
        let digit = [200u8; 784];
        let misses = [Miss {
            pixels: &digit,
            cols: 28,
            truth: 3,
            predicted: 5,
        }];
        let dir = std::env::temp_dir().join(format!("plots-{}", std::process::id()));
        let history = History {
            epochs: &history,
            kept: 2,
            first_qat: Some(3),
        };
        let model = "mlp-int8.bin (int8, 784-512-10)";
        let written = write_all(&dir, model, Some(history), &confusion, &misses).unwrap();
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

    #[test]
    fn charts_name_the_model_and_mark_the_kept_epoch() {
        let history: Vec<EpochStats> = (1..=30)
            .map(|epoch| EpochStats {
                epoch,
                loss: 0.5 / epoch as f64,
                accuracy: 0.9,
                seconds: 1.0,
                learning_rate: 1e-3,
                val_loss: Some(0.4 / epoch as f64),
                val_accuracy: Some(0.9),
                test_loss: None,
                test_accuracy: None,
            })
            .collect();
        let model = "mlp-int4.bin (int4, 784-96-10)";
        let history = History {
            epochs: &history,
            kept: 17,
            first_qat: Some(26),
        };
        let svg = history_svg(model, history).unwrap();
        assert!(svg.contains("Training of mlp-int4.bin (int4, 784-96-10)"));
        assert!(svg.contains("weights of epoch 17 kept"));
        assert!(svg.contains("kept (epoch 17)") && svg.contains("quantization-aware"));
        assert!(
            svg.contains("log scale"),
            "a positive loss is drawn on a log axis"
        );
        let confusion = Confusion::new(10, &[1, 2], &[1, 2]);
        assert!(confusion_svg(model, &confusion).unwrap().contains(model));
        assert!(misclassified_svg(model, &[]).unwrap().contains(model));
    }

    #[test]
    fn a_loss_that_is_zero_or_not_finite_falls_back_to_a_linear_axis() {
        let epoch = |epoch, loss| EpochStats {
            epoch,
            loss,
            accuracy: 1.0,
            seconds: 1.0,
            learning_rate: 1e-3,
            val_loss: None,
            val_accuracy: None,
            test_loss: None,
            test_accuracy: None,
        };
        for losses in [[0.0, 0.0], [f64::NAN, f64::INFINITY]] {
            let epochs = [epoch(1, losses[0]), epoch(2, losses[1])];
            let history = History {
                epochs: &epochs,
                kept: 2,
                first_qat: None,
            };
            let svg = history_svg("m", history).unwrap();
            assert!(!svg.contains("log scale"), "{losses:?}");
        }
    }
}
