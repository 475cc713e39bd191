//! Link faults done in userspace, since this kernel has no netem: rules
//! that drop, delay, duplicate or reorder signalling messages of a kind in
//! one direction, or drop or duplicate a share of tunnelled data packets.

/// The rules' types are the control protocol's (`pmip-control`).
pub use pmip_control::{Direction, FaultRule};

/// The same actions as in virtual time, so a scenario's fault means one
/// thing on both backends.
pub use pmip_proto::fault::FaultAction as Action;

#[derive(Debug, Default)]
pub struct Faults {
    rules: Vec<FaultRule>,
    next_id: u32,
    rng: u64,
}

impl Faults {
    pub fn add(&mut self, mut rule: FaultRule) -> Result<u32, String> {
        if rule.data && matches!(rule.action, Action::Delay { .. } | Action::Reorder) {
            return Err("data packets can be dropped or duplicated, not delayed or reordered".into());
        }
        if rule.per_mille.is_some_and(|p| p > 1000) {
            return Err("per_mille is at most 1000".into());
        }
        self.next_id += 1;
        rule.id = self.next_id;
        rule.hits = 0;
        self.rules.push(rule);
        Ok(self.next_id)
    }

    pub fn remove(&mut self, id: u32) -> bool {
        let before = self.rules.len();
        self.rules.retain(|r| r.id != id);
        self.rules.len() != before
    }

    pub fn rules(&self) -> &[FaultRule] {
        &self.rules
    }

    fn draw(&mut self) -> u16 {
        pmip_proto::fault::draw_per_mille(&mut self.rng)
    }

    /// The action for a signalling message (`name`) or a data packet
    /// (`None`) going in `dir`, if a rule takes it.
    pub fn check(&mut self, dir: Direction, name: Option<&str>) -> Option<Action> {
        self.check_peer(dir, name, None)
    }

    /// [`check`](Faults::check) for a message to or from `peer`.
    pub fn check_peer(
        &mut self,
        dir: Direction,
        name: Option<&str>,
        peer: Option<std::net::Ipv6Addr>,
    ) -> Option<Action> {
        for i in 0..self.rules.len() {
            let r = &self.rules[i];
            let kind_matches = match name {
                Some(n) => !r.data && r.message.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(n)),
                None => r.data,
            };
            let peer_matches = r.peer.is_none() || r.peer == peer;
            if r.direction != dir || !kind_matches || !peer_matches || r.count == Some(0) {
                continue;
            }
            if let Some(p) = r.per_mille {
                if self.draw() >= p {
                    continue;
                }
            }
            let r = &mut self.rules[i];
            r.hits += 1;
            if let Some(c) = r.count.as_mut() {
                *c -= 1;
            }
            return Some(r.action);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(action: Action) -> FaultRule {
        FaultRule {
            id: 0,
            direction: Direction::Out,
            message: Some("PBA".into()),
            peer: None,
            data: false,
            action,
            count: Some(1),
            per_mille: None,
            hits: 0,
        }
    }

    #[test]
    fn a_counted_rule_applies_that_many_times_to_its_kind_only() {
        let mut f = Faults::default();
        f.add(rule(Action::Drop)).unwrap();
        assert_eq!(f.check(Direction::Out, Some("PBU")), None);
        assert_eq!(f.check(Direction::In, Some("PBA")), None);
        assert_eq!(f.check(Direction::Out, Some("pba")), Some(Action::Drop));
        assert_eq!(f.check(Direction::Out, Some("PBA")), None);
        assert_eq!(f.rules()[0].hits, 1);
    }

    #[test]
    fn a_rule_for_one_peer_leaves_the_others_alone() {
        let mut f = Faults::default();
        let (mag1, mag2) = ("2001:db8:ffff::11".parse().unwrap(), "2001:db8:ffff::12".parse().unwrap());
        f.add(FaultRule { peer: Some(mag1), ..rule(Action::Drop) }).unwrap();
        assert_eq!(f.check_peer(Direction::Out, Some("PBA"), Some(mag2)), None);
        assert_eq!(f.check_peer(Direction::Out, Some("PBA"), Some(mag1)), Some(Action::Drop));
    }

    #[test]
    fn a_share_of_data_packets() {
        let mut f = Faults::default();
        let mut r = rule(Action::Drop);
        r.data = true;
        r.count = None;
        r.per_mille = Some(250);
        f.add(r).unwrap();
        let hits = (0..10_000).filter(|_| f.check(Direction::Out, None).is_some()).count();
        assert!((2000..3000).contains(&hits), "{hits}");
        let mut bad = rule(Action::Reorder);
        bad.data = true;
        assert!(f.add(bad).is_err());
    }
}
