//! Accuracy, the confusion matrix and per-class precision and recall.

use std::fmt;

/// The fraction of `predictions` equal to their `labels` (0 for none).
pub fn accuracy(labels: &[u8], predictions: &[u8]) -> f64 {
    let correct = labels
        .iter()
        .zip(predictions)
        .filter(|(t, p)| t == p)
        .count();
    correct as f64 / labels.len().max(1) as f64
}

/// Counts of (true class, predicted class).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confusion {
    /// `counts[truth][predicted]`, one row and one column per class.
    pub counts: Vec<Vec<u32>>,
    /// Labels or predictions outside the classes.
    pub outside: u32,
}

impl Confusion {
    /// Tallies predictions against labels, for a model of `classes` classes (a label or a
    /// prediction outside them is counted in no cell, so it lowers the accuracy).
    pub fn new(classes: usize, labels: &[u8], predictions: &[u8]) -> Self {
        let mut counts = vec![vec![0; classes]; classes];
        let mut outside = 0;
        for (&t, &p) in labels.iter().zip(predictions) {
            match counts
                .get_mut(usize::from(t))
                .and_then(|row| row.get_mut(usize::from(p)))
            {
                Some(cell) => *cell += 1,
                None => outside += 1,
            }
        }
        Self { counts, outside }
    }

    /// The number of classes.
    pub fn classes(&self) -> usize {
        self.counts.len()
    }

    /// Images counted.
    pub fn total(&self) -> u32 {
        self.counts.iter().flatten().sum::<u32>() + self.outside
    }

    /// Fraction on the diagonal.
    pub fn accuracy(&self) -> f64 {
        let correct: u32 = (0..self.classes()).map(|d| self.counts[d][d]).sum();
        f64::from(correct) / f64::from(self.total().max(1))
    }

    /// Of the images predicted as `class`, the fraction that were (NaN if none were).
    pub fn precision(&self, class: usize) -> f64 {
        let predicted: u32 = self.counts.iter().map(|row| row[class]).sum();
        f64::from(self.counts[class][class]) / f64::from(predicted)
    }

    /// Of the images of `class`, the fraction predicted as such (NaN if there were none).
    pub fn recall(&self, class: usize) -> f64 {
        let actual: u32 = self.counts[class].iter().sum();
        f64::from(self.counts[class][class]) / f64::from(actual)
    }
}

impl fmt::Display for Confusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.classes();
        let what = if n == 10 { "digit" } else { "class" };
        writeln!(
            f,
            "confusion matrix (rows: true {what}, columns: predicted)"
        )?;
        write!(f, "     ")?;
        for p in 0..n {
            write!(f, "{p:>6}")?;
        }
        writeln!(f, "   precision  recall")?;
        for t in 0..n {
            write!(f, "{t:>5}")?;
            for p in 0..n {
                write!(f, "{:>6}", self.counts[t][p])?;
            }
            writeln!(f, "   {:>9.4}  {:>6.4}", self.precision(t), self.recall(t))?;
        }
        if self.outside > 0 {
            writeln!(f, "{} labels are none of the model's classes", self.outside)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_rates() {
        let labels = [0, 0, 1, 1, 1, 2];
        let predictions = [0, 1, 1, 1, 0, 2];
        let c = Confusion::new(10, &labels, &predictions);
        assert_eq!(c.total(), 6);
        assert_eq!(c.counts[1][0], 1);
        assert!((c.accuracy() - 4.0 / 6.0).abs() < 1e-12);
        assert!((c.precision(1) - 2.0 / 3.0).abs() < 1e-12);
        assert!((c.recall(1) - 2.0 / 3.0).abs() < 1e-12);
        assert!(c.precision(3).is_nan());
        assert!(c.to_string().contains("precision"));
        // A label the model has no class for counts, wrong.
        let c = Confusion::new(2, &[0, 1, 5], &[0, 1, 1]);
        assert_eq!((c.total(), c.classes()), (3, 2));
        assert!((c.accuracy() - 2.0 / 3.0).abs() < 1e-12);
        assert!(
            c.to_string()
                .contains("1 labels are none of the model's classes")
        );
    }
}
