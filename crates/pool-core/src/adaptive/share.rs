//! Sharing a connection budget between the pools that draw on it, by demand (water-filling):
//! every pool first gets its `min_size` (scaled down only if the minimums alone exceed the
//! budget), then what is left is poured into the pools that want more, equal shares at a time,
//! each pool taking no more than it wants, until the budget or the wants run out. A pool that
//! wants little leaves its share to the others; nobody starves when the budget is tight.

/// What one pool asks of a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// Guaranteed first (`min_size`).
    pub min: u32,
    /// What it would use (its controller's wish; at least `min`).
    pub want: u32,
}

/// Each claim's share of `budget`, in claim order. The shares never sum to more than `budget`.
pub fn water_fill(budget: u32, claims: &[Claim]) -> Vec<u32> {
    let n = claims.len();
    if n == 0 {
        return Vec::new();
    }
    let mins: u64 = claims.iter().map(|c| u64::from(c.min)).sum();
    let mut share: Vec<u32> = if mins <= u64::from(budget) {
        claims.iter().map(|c| c.min).collect()
    } else {
        // Not even the minimums fit: each gets the same fraction of its minimum.
        let mut s: Vec<u32> = claims
            .iter()
            .map(|c| (u64::from(c.min) * u64::from(budget) / mins) as u32)
            .collect();
        let mut left = budget - s.iter().sum::<u32>();
        for (i, c) in claims.iter().enumerate() {
            if left == 0 {
                break;
            }
            if s[i] < c.min {
                s[i] += 1;
                left -= 1;
            }
        }
        return s;
    };
    let mut left = budget - share.iter().sum::<u32>();
    loop {
        let hungry: Vec<usize> = (0..n)
            .filter(|&i| share[i] < claims[i].want.max(claims[i].min))
            .collect();
        if left == 0 || hungry.is_empty() {
            return share;
        }
        let each = (left / hungry.len() as u32).max(1);
        for i in hungry {
            if left == 0 {
                break;
            }
            let room = claims[i].want.max(claims[i].min) - share[i];
            let give = each.min(room).min(left);
            share[i] += give;
            left -= give;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(min: u32, want: u32) -> Claim {
        Claim { min, want }
    }

    #[test]
    fn wants_that_fit_are_met() {
        assert_eq!(water_fill(100, &[c(2, 10), c(0, 20), c(5, 5)]), [10, 20, 5]);
    }

    #[test]
    fn a_tight_budget_is_shared_fairly_and_minimums_come_first() {
        // 30 to share: mins 2 + 2 + 2, then 24 poured equally into three hungry pools.
        let s = water_fill(30, &[c(2, 50), c(2, 50), c(2, 50)]);
        assert_eq!(s, [10, 10, 10]);
        // A pool that wants little leaves the rest to the others.
        let s = water_fill(30, &[c(2, 4), c(2, 50), c(2, 50)]);
        assert_eq!(s, [4, 13, 13]);
        assert_eq!(s.iter().sum::<u32>(), 30);
    }

    #[test]
    fn never_over_the_budget_even_when_the_minimums_are_not_met() {
        let s = water_fill(5, &[c(4, 10), c(4, 10)]);
        assert!(s.iter().sum::<u32>() <= 5, "{s:?}");
        assert!(s.iter().all(|&x| x >= 2), "{s:?}");
        for budget in 0..40 {
            for claims in [
                vec![c(0, 7), c(3, 30), c(1, 2)],
                vec![c(5, 5), c(5, 50)],
                vec![c(0, 0)],
            ] {
                let s = water_fill(budget, &claims);
                assert!(s.iter().sum::<u32>() <= budget, "{budget} {claims:?} {s:?}");
                for (x, cl) in s.iter().zip(&claims) {
                    assert!(*x <= cl.want.max(cl.min), "{budget} {claims:?} {s:?}");
                }
            }
        }
    }
}
