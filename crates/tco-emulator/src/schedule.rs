//! 2Checkout's "IPN POST failure recovery process" (reference §2.3), which the LCN and
//! INS docs say they follow too:
//!
//! | stage | attempts |
//! |---|---|
//! | 1 | immediately |
//! | 2 | 2 more within 5 minutes (here: +2.5 min, +5 min) |
//! | 3 | 4 more, 15 minutes apart (+20, +35, +50, +65 min) |
//! | 4 | hourly until 48 h after the first (+125 min, +185 min, …) |
//!
//! ASSUMED: the exact placement of the stage-2 attempts and the start of stage 4 (one
//! hour after the last stage-3 attempt). That gives 53 attempts in 48 hours.

use std::time::Duration;

const MINUTE: u64 = 60;

/// Offsets of every attempt from the first one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    offsets: Vec<Duration>,
}

impl RetrySchedule {
    /// 2Checkout's schedule (53 attempts over 48 hours).
    pub fn twocheckout() -> RetrySchedule {
        let mut offsets = vec![
            Duration::ZERO,
            Duration::from_secs(150),
            Duration::from_secs(5 * MINUTE),
        ];
        for k in 1..=4 {
            offsets.push(Duration::from_secs((5 + 15 * k) * MINUTE));
        }
        let limit = Duration::from_secs(48 * 60 * MINUTE);
        let mut next = Duration::from_secs(125 * MINUTE);
        while next <= limit {
            offsets.push(next);
            next += Duration::from_secs(60 * MINUTE);
        }
        RetrySchedule { offsets }
    }

    /// A custom schedule (offsets from the first attempt, ascending).
    pub fn from_offsets(mut offsets: Vec<Duration>) -> RetrySchedule {
        offsets.sort();
        if offsets.first() != Some(&Duration::ZERO) {
            offsets.insert(0, Duration::ZERO);
        }
        RetrySchedule { offsets }
    }

    /// Keep at most `n` attempts (at least one).
    pub fn truncated(mut self, n: usize) -> RetrySchedule {
        self.offsets.truncate(n.max(1));
        self
    }

    /// Offsets of every attempt from the first (the first is zero).
    pub fn offsets(&self) -> &[Duration] {
        &self.offsets
    }

    /// Number of attempts.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Always false (a schedule has the first attempt).
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_documented_stages() {
        let s = RetrySchedule::twocheckout();
        let o = s.offsets();
        assert_eq!(o[0], Duration::ZERO);
        // Stage 2: two attempts within five minutes.
        assert!(o[1] > Duration::ZERO && o[2] <= Duration::from_secs(300));
        // Stage 3: four attempts fifteen minutes apart.
        for w in o[2..7].windows(2) {
            assert_eq!(w[1] - w[0], Duration::from_secs(900));
        }
        // About seven attempts in the first 65 minutes.
        assert_eq!(
            o.iter()
                .filter(|d| **d <= Duration::from_secs(65 * 60))
                .count(),
            7
        );
        // Hourly afterwards, never past 48 hours.
        for w in o[7..].windows(2) {
            assert_eq!(w[1] - w[0], Duration::from_secs(3600));
        }
        assert!(*o.last().unwrap() <= Duration::from_secs(48 * 3600));
        assert_eq!(s.len(), 53);
        assert!(!s.is_empty());
    }

    #[test]
    fn truncation_and_custom() {
        assert_eq!(RetrySchedule::twocheckout().truncated(3).len(), 3);
        assert_eq!(RetrySchedule::twocheckout().truncated(0).len(), 1);
        let c = RetrySchedule::from_offsets(vec![Duration::from_secs(5), Duration::from_secs(1)]);
        assert_eq!(
            c.offsets(),
            [
                Duration::ZERO,
                Duration::from_secs(1),
                Duration::from_secs(5)
            ]
        );
    }
}
