//! Accuracy, the confusion matrix and per-class precision and recall.

use std::fmt;

use crate::shape::CLASSES;

/// Counts of (true digit, predicted digit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confusion {
    /// `counts[truth][predicted]`.
    pub counts: [[u32; CLASSES]; CLASSES],
}

impl Confusion {
    /// Tallies predictions against labels.
    pub fn new(labels: &[u8], predictions: &[u8]) -> Self {
        let mut c = Self::default();
        for (&t, &p) in labels.iter().zip(predictions) {
            if let Some(cell) = c
                .counts
                .get_mut(usize::from(t))
                .and_then(|row| row.get_mut(usize::from(p)))
            {
                *cell += 1;
            }
        }
        c
    }

    /// Images counted.
    pub fn total(&self) -> u32 {
        self.counts.iter().flatten().sum()
    }

    /// Fraction on the diagonal.
    pub fn accuracy(&self) -> f64 {
        let correct: u32 = (0..CLASSES).map(|d| self.counts[d][d]).sum();
        f64::from(correct) / f64::from(self.total().max(1))
    }

    /// Of the images predicted as `digit`, the fraction that were (NaN if none were).
    pub fn precision(&self, digit: usize) -> f64 {
        let predicted: u32 = (0..CLASSES).map(|t| self.counts[t][digit]).sum();
        f64::from(self.counts[digit][digit]) / f64::from(predicted)
    }

    /// Of the images of `digit`, the fraction predicted as such (NaN if there were none).
    pub fn recall(&self, digit: usize) -> f64 {
        let actual: u32 = self.counts[digit].iter().sum();
        f64::from(self.counts[digit][digit]) / f64::from(actual)
    }
}

impl fmt::Display for Confusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "confusion matrix (rows: true digit, columns: predicted)")?;
        write!(f, "     ")?;
        for p in 0..CLASSES {
            write!(f, "{p:>6}")?;
        }
        writeln!(f, "   precision  recall")?;
        for t in 0..CLASSES {
            write!(f, "{t:>5}")?;
            for p in 0..CLASSES {
                write!(f, "{:>6}", self.counts[t][p])?;
            }
            writeln!(f, "   {:>9.4}  {:>6.4}", self.precision(t), self.recall(t))?;
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
        let c = Confusion::new(&labels, &predictions);
        assert_eq!(c.total(), 6);
        assert_eq!(c.counts[1][0], 1);
        assert!((c.accuracy() - 4.0 / 6.0).abs() < 1e-12);
        assert!((c.precision(1) - 2.0 / 3.0).abs() < 1e-12);
        assert!((c.recall(1) - 2.0 / 3.0).abs() < 1e-12);
        assert!(c.precision(3).is_nan());
        assert!(c.to_string().contains("precision"));
    }
}
