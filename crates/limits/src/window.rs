//! The sliding-window counter: two fixed buckets of one window each, the previous one
//! weighted by the part of it that the sliding window still covers. It needs two numbers
//! per limit instead of a log of requests, and assumes the previous bucket's requests
//! were spread evenly over it (the approximation Cloudflare measured at a few thousandths
//! of a percent of wrong answers on real traffic).
//!
//! All times are milliseconds passed in by the caller; nothing here reads a clock.

/// A counter's numbers as seen at one instant: the pure arithmetic of admission, retry and
/// reset. Also built from the numbers a shared script returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowView {
    pub window_ms: u64,
    /// Units counted in the previous bucket.
    pub prev: u64,
    /// Units counted in the current bucket.
    pub cur: u64,
    /// Time since the current bucket began (less than `window_ms`).
    pub elapsed_ms: u64,
}

impl WindowView {
    /// The previous bucket's share of the sliding window, rounded up: a unit counts as long
    /// as any part of it is still covered.
    fn weighted_prev(&self) -> u64 {
        let w = self.window_ms.max(1);
        let left = w - self.elapsed_ms.min(w);
        // u64 covers every validated limit and window; u128 only guards the rest.
        match self.prev.checked_mul(left) {
            Some(num) => num.div_ceil(w),
            None => {
                let q = (u128::from(self.prev) * u128::from(left)).div_ceil(u128::from(w));
                u64::try_from(q).unwrap_or(u64::MAX)
            }
        }
    }

    /// Units the sliding window holds now.
    pub fn estimate(&self) -> u64 {
        self.weighted_prev().saturating_add(self.cur)
    }

    /// Units that may still be taken now.
    pub fn remaining(&self, limit: u64) -> u64 {
        limit.saturating_sub(self.estimate())
    }

    pub fn admits(&self, cost: u64, limit: u64) -> bool {
        self.estimate().saturating_add(cost) <= limit
    }

    /// Milliseconds until `cost` units are admitted again if nothing else is taken: exact
    /// to the millisecond (0 when admitted now). A cost above the limit is never admitted;
    /// the answer is then two windows, after which the counter is empty.
    pub fn retry_after_ms(&self, cost: u64, limit: u64) -> u64 {
        if self.admits(cost, limit) {
            return 0;
        }
        let w = self.window_ms.max(1);
        let e = self.elapsed_ms.min(w - 1);
        let to_next = w - e;
        // Later in this bucket: the previous bucket's weight falls as time passes.
        if let Some(room) = limit.checked_sub(self.cur.saturating_add(cost)) {
            if self.prev > 0 {
                let at = w.saturating_sub(floor_mul_div(room, w, self.prev));
                if at < w {
                    return at.max(e) - e;
                }
            }
        }
        // In the next bucket the current one becomes the previous one.
        let Some(room) = limit.checked_sub(cost) else {
            return to_next + w;
        };
        let at = if self.cur == 0 {
            0
        } else {
            w.saturating_sub(floor_mul_div(room, w, self.cur))
        };
        if at < w {
            to_next + at
        } else {
            to_next + w
        }
    }

    /// Milliseconds until the full limit is available again if nothing else is taken: the
    /// `t` of the `RateLimit` header.
    pub fn reset_after_ms(&self) -> u64 {
        let w = self.window_ms.max(1);
        let to_next = w - self.elapsed_ms.min(w - 1);
        if self.cur > 0 {
            to_next + w
        } else if self.prev > 0 {
            to_next
        } else {
            0
        }
    }
}

/// floor(a * b / c) without overflow; c > 0.
fn floor_mul_div(a: u64, b: u64, c: u64) -> u64 {
    match a.checked_mul(b) {
        Some(n) => n / c.max(1),
        None => {
            let q = u128::from(a) * u128::from(b) / u128::from(c.max(1));
            u64::try_from(q).unwrap_or(u64::MAX)
        }
    }
}

/// A sliding-window counter for one limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlidingWindow {
    window_ms: u64,
    /// Index of the current bucket (`now / window_ms`).
    bucket: u64,
    prev: u64,
    cur: u64,
}

impl SlidingWindow {
    pub fn new(window_ms: u64) -> Self {
        Self {
            window_ms: window_ms.max(1),
            bucket: 0,
            prev: 0,
            cur: 0,
        }
    }

    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// The counter as seen at `now_ms`, without changing it. A clock that went back stays
    /// in the bucket already reached.
    pub fn view(&self, now_ms: u64) -> WindowView {
        let bucket = now_ms / self.window_ms;
        let (prev, cur) = if bucket <= self.bucket {
            (self.prev, self.cur)
        } else if bucket == self.bucket + 1 {
            (self.cur, 0)
        } else {
            (0, 0)
        };
        let bucket = bucket.max(self.bucket);
        WindowView {
            window_ms: self.window_ms,
            prev,
            cur,
            elapsed_ms: now_ms.saturating_sub(bucket * self.window_ms),
        }
    }

    fn roll(&mut self, now_ms: u64) {
        let view = self.view(now_ms);
        self.bucket = self.bucket.max(now_ms / self.window_ms);
        self.prev = view.prev;
        self.cur = view.cur;
    }

    pub fn estimate(&self, now_ms: u64) -> u64 {
        self.view(now_ms).estimate()
    }

    /// Takes `cost` units if the window admits them: the units left after, or the
    /// milliseconds until they would be admitted.
    pub fn try_take(&mut self, now_ms: u64, cost: u64, limit: u64) -> Result<u64, u64> {
        let view = self.view(now_ms);
        if !view.admits(cost, limit) {
            return Err(view.retry_after_ms(cost, limit));
        }
        self.record(now_ms, cost);
        Ok(view.remaining(limit) - cost)
    }

    /// Counts `cost` units without asking (usage admitted elsewhere).
    pub fn record(&mut self, now_ms: u64, cost: u64) {
        self.roll(now_ms);
        self.cur = self.cur.saturating_add(cost);
    }

    /// Milliseconds until `cost` units would be admitted; see [`WindowView::retry_after_ms`].
    pub fn retry_after_ms(&self, now_ms: u64, cost: u64, limit: u64) -> u64 {
        self.view(now_ms).retry_after_ms(cost, limit)
    }

    /// Milliseconds until the full limit is available again.
    pub fn reset_after_ms(&self, now_ms: u64) -> u64 {
        self.view(now_ms).reset_after_ms()
    }

    /// True when nothing counted is still in the window: forgetting the counter then
    /// changes no answer.
    pub fn is_idle(&self, now_ms: u64) -> bool {
        let v = self.view(now_ms);
        v.prev == 0 && v.cur == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u64 = 10_000;

    /// Takes one unit at a time until refused; returns how many were admitted.
    fn fill(w: &mut SlidingWindow, now: u64, limit: u64) -> u64 {
        let mut n = 0;
        while w.try_take(now, 1, limit).is_ok() {
            n += 1;
        }
        n
    }

    #[test]
    fn admits_up_to_the_limit_within_a_bucket() {
        let mut w = SlidingWindow::new(W);
        assert_eq!(w.try_take(5_000, 3, 10), Ok(7));
        assert_eq!(fill(&mut w, 5_001, 10), 7);
        assert_eq!(w.estimate(5_002), 10);
        assert!(w.try_take(9_999, 1, 10).is_err());
    }

    #[test]
    fn previous_bucket_weighs_by_the_part_still_covered() {
        let mut w = SlidingWindow::new(W);
        assert_eq!(fill(&mut w, 1_000, 10), 10);
        // 25% into the next bucket: 75% of 10 = 7.5, rounded up to 8.
        assert_eq!(w.estimate(12_500), 8);
        assert_eq!(fill(&mut w, 12_500, 10), 2);
        // Half way: 5 of the previous + the 2 just taken.
        assert_eq!(w.estimate(15_000), 7);
        // Two buckets later everything is gone.
        assert_eq!(w.estimate(30_000), 0);
        assert!(w.is_idle(30_000));
        assert!(!w.is_idle(29_999));
    }

    #[test]
    fn retry_after_is_the_first_admitting_millisecond() {
        let limit = 10;
        let mut w = SlidingWindow::new(W);
        fill(&mut w, 1_000, limit);
        fill(&mut w, 12_500, limit);
        for now in [12_500, 13_000, 17_777, 19_999, 20_000, 24_000] {
            for cost in [1, 3, 10] {
                let wait = w.retry_after_ms(now, cost, limit);
                assert!(
                    w.view(now + wait).admits(cost, limit),
                    "now {now} cost {cost}: not admitted after {wait}"
                );
                if wait > 0 {
                    assert!(
                        !w.view(now + wait - 1).admits(cost, limit),
                        "now {now} cost {cost}: admitted before {wait}"
                    );
                }
            }
        }
        // Exhaustive check against a step-by-step search.
        for now in (12_500..40_000).step_by(37) {
            let wait = w.retry_after_ms(now, 1, limit);
            let first = (now..).find(|t| w.view(*t).admits(1, limit)).unwrap();
            assert_eq!(now + wait, first, "at {now}");
        }
    }

    #[test]
    fn a_cost_above_the_limit_waits_two_windows() {
        let w = SlidingWindow::new(W);
        assert_eq!(w.retry_after_ms(0, 11, 10), W + W);
    }

    #[test]
    fn reset_is_when_the_whole_limit_is_back() {
        let mut w = SlidingWindow::new(W);
        assert_eq!(w.reset_after_ms(3_000), 0);
        w.record(3_000, 1);
        assert_eq!(w.reset_after_ms(3_000), 7_000 + W);
        assert_eq!(w.reset_after_ms(14_000), 6_000);
        assert_eq!(w.view(14_000 + 6_000).remaining(10), 10);
        assert_eq!(w.view(14_000 + 5_999).remaining(10), 9);
    }

    #[test]
    fn a_clock_going_back_stays_in_the_bucket() {
        let mut w = SlidingWindow::new(W);
        w.record(25_000, 4);
        assert_eq!(w.estimate(15_000), 4);
        w.record(15_000, 1);
        assert_eq!(w.estimate(25_000), 5);
    }

    #[test]
    fn large_numbers_do_not_overflow() {
        let big = u64::from(crate::spec::MAX_WINDOW_SECS) * 1000;
        let mut w = SlidingWindow::new(big);
        let limit = u64::from(crate::spec::MAX_LIMIT);
        assert!(w.try_take(1, limit, limit).is_ok());
        let wait = w.retry_after_ms(2, 1, limit);
        assert!(w.view(2 + wait).admits(1, limit));
        assert!(!w.view(2 + wait - 1).admits(1, limit));
    }
}
