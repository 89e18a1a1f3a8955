//! Multitracker tiers (BEP 12): trackers within a tier are shuffled once;
//! they are tried in order, and one that answers moves to the front of its
//! tier. A tier is tried only when every tracker of the tiers before it has
//! failed.

#[derive(Debug, Clone)]
pub struct Tiers {
    tiers: Vec<Vec<String>>,
}

impl Tiers {
    pub fn new(mut tiers: Vec<Vec<String>>) -> Tiers {
        tiers.retain(|t| !t.is_empty());
        for t in &mut tiers {
            fastrand::shuffle(t);
        }
        Tiers { tiers }
    }

    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }

    /// Trackers in the order to try them: (tier, index in tier, URL).
    pub fn order(&self) -> impl Iterator<Item = (usize, usize, &str)> {
        self.tiers.iter().enumerate().flat_map(|(t, urls)| {
            urls.iter()
                .enumerate()
                .map(move |(i, u)| (t, i, u.as_str()))
        })
    }

    /// The tracker at (`tier`, `index`) answered: it goes first in its tier.
    pub fn promote(&mut self, tier: usize, index: usize) {
        if let Some(t) = self.tiers.get_mut(tier)
            && index < t.len()
        {
            let url = t.remove(index);
            t.insert(0, url);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_promotion() {
        let mut t = Tiers::new(vec![
            vec!["a".into(), "b".into(), "c".into()],
            vec![],
            vec!["d".into()],
        ]);
        let order: Vec<_> = t.order().map(|(tier, _, u)| (tier, u.to_owned())).collect();
        assert_eq!(order.len(), 4);
        assert!(order[..3].iter().all(|(tier, _)| *tier == 0));
        assert_eq!(order[3], (1, "d".to_owned()), "empty tiers are dropped");
        let last_of_first = order[2].1.clone();
        t.promote(0, 2);
        assert_eq!(t.order().next().unwrap().2, last_of_first);
        t.promote(7, 0);
    }
}
