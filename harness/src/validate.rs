//! Checks a parsed scenario for what YAML types cannot say: names that
//! must exist, roles that must fit, values that must parse. The first
//! problem is returned, with its line and column.

use std::collections::BTreeSet;
use std::path::Path;

use serde_saphyr::{Location, Spanned};

use crate::scenario::*;

struct Checker<'a> {
    path: &'a Path,
    s: &'a Scenario,
}

type Check = Result<(), ScenarioError>;

/// The kernel's limit on an interface name (IFNAMSIZ less the NUL).
pub const IFNAME_MAX: usize = 15;
/// The harness names the LMA's port to a MAG or CN `to-<node>`, a MAG's
/// access port `to-<mn>-<iface>`, and keeps `lo`, `lif` (the MN's logical
/// interface), `core` and `eth0` for itself.
const NODE_NAME_MAX: usize = IFNAME_MAX - "to-".len();
const RESERVED_IFACES: [&str; 4] = ["lo", "lif", "core", "eth0"];
/// Longest MN-ID: an MN Identifier option holds its subtype and at most
/// 254 more octets, and a NAI is at most 253 (RFC 4282 §2.2).
const MN_ID_MAX: usize = 253;
/// Longest scenario id: it names a folder under `--out`.
const ID_MAX: usize = 64;

/// Letters, digits, `-` and `_`, starting with a letter or a digit: safe
/// as a file name, an interface name and a namespace name.
pub fn is_safe_name(s: &str) -> bool {
    s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Why `addr/len` is not a prefix: host bits set past its length.
fn host_bits(addr: std::net::Ipv6Addr, len: u8) -> Option<String> {
    let bits = u128::from(addr);
    let host_mask = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
    (bits & host_mask != 0).then(|| {
        let net = std::net::Ipv6Addr::from(bits & !host_mask);
        format!("{addr}/{len} has host bits set past its /{len}; the prefix is {net}/{len}")
    })
}

/// Every `address/length` written in the scenario must be a prefix, with
/// no host bits set (`2001:db8:1::1/64` is refused, not silently read as
/// `2001:db8:1::/64`). Read from the text, since a parsed prefix has
/// already dropped its host bits.
pub fn check_prefixes(path: &Path, text: &str) -> Result<(), ScenarioError> {
    let is_addr = |b: u8| b.is_ascii_hexdigit() || b == b':' || b == b'.';
    for (i, line) in text.lines().enumerate() {
        // Up to a comment: a # at the start or after a blank.
        let end = line
            .bytes()
            .enumerate()
            .find(|&(j, b)| b == b'#' && (j == 0 || line.as_bytes()[j - 1].is_ascii_whitespace()))
            .map_or(line.len(), |(j, _)| j);
        let bytes = &line.as_bytes()[..end];
        for (slash, _) in bytes.iter().enumerate().filter(|(_, &b)| b == b'/') {
            let start = bytes[..slash].iter().rposition(|&b| !is_addr(b)).map_or(0, |p| p + 1);
            let stop =
                bytes[slash + 1..].iter().position(|b| !b.is_ascii_digit()).map_or(bytes.len(), |p| slash + 1 + p);
            let (Ok(addr), Ok(len)) =
                (line[start..slash].parse::<std::net::Ipv6Addr>(), line[slash + 1..stop].parse::<u8>())
            else {
                continue;
            };
            if let Some(why) = (len <= 128).then(|| host_bits(addr, len)).flatten() {
                return Err(ScenarioError {
                    file: path.into(),
                    line: i as u64 + 1,
                    column: start as u64 + 1,
                    message: why,
                });
            }
        }
    }
    Ok(())
}

/// Where the top-level `id:` is in `text`, 1-based, at its value.
fn id_location(text: &str) -> (u64, u64) {
    for (i, line) in text.lines().enumerate() {
        if let Some(rest) = line.strip_prefix("id") {
            if let Some(v) = rest.trim_start().strip_prefix(':') {
                let col = line.len() - v.trim_start().len() + 1;
                return (i as u64 + 1, col as u64);
            }
        }
    }
    (0, 0)
}

/// The scenario id names the folder of its results under `--out`: only
/// letters, digits, `-`, `_` and `.`, starting with a letter or a digit
/// (so never `..`, a `/` or an absolute path), at most 64 characters.
pub fn check_id(path: &Path, text: &str, id: &str) -> Result<(), ScenarioError> {
    let ok = id.len() <= ID_MAX
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        return Ok(());
    }
    let (line, column) = id_location(text);
    let shown: String = id.chars().flat_map(char::escape_default).take(80).collect();
    Err(ScenarioError {
        file: path.into(),
        line,
        column,
        message: format!(
            "the scenario id '{shown}' names the folder of its results: use at most {ID_MAX} letters, digits, -, _ and ., starting with a letter or a digit"
        ),
    })
}

impl Checker<'_> {
    /// Node names, MN interface names and MN-IDs: safe as file and
    /// interface names once the harness adds its prefixes, and printable.
    fn names(&self) -> Check {
        for (name, n) in &self.s.nodes {
            let at = n.referenced;
            if !is_safe_name(name) || name.len() > NODE_NAME_MAX {
                return Err(self.err(
                    at,
                    format!(
                        "node name '{}' must be 1 to {NODE_NAME_MAX} letters, digits, - and _, starting with a letter or a digit (it names files and, as to-<node>, an interface of at most {IFNAME_MAX} characters)",
                        name.escape_default()
                    ),
                ));
            }
            for iface in &n.value.interfaces {
                let access = format!("to-{name}-{iface}");
                if !is_safe_name(iface) || RESERVED_IFACES.contains(&iface.as_str()) || access.len() > IFNAME_MAX {
                    return Err(self.err(
                        at,
                        format!(
                            "{name}: interface name '{}' must be letters, digits, - and _, not one of {}, and short enough that the MAG's port {} fits in {IFNAME_MAX} characters",
                            iface.escape_default(),
                            RESERVED_IFACES.join(", "),
                            access.escape_default()
                        ),
                    ));
                }
            }
            if let Some(id) = &n.value.mn_id {
                if id.is_empty() || id.len() > MN_ID_MAX || id.chars().any(char::is_control) {
                    return Err(self.err(
                        at,
                        format!(
                            "{name}: mn_id '{}' must be 1 to {MN_ID_MAX} octets with no control characters",
                            id.chars().flat_map(char::escape_default).take(80).collect::<String>()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn err(&self, at: Location, message: String) -> ScenarioError {
        ScenarioError { file: self.path.into(), line: at.line(), column: at.column(), message }
    }

    fn role(&self, name: &str) -> Option<Role> {
        self.s.nodes.get(name).map(|n| n.value.role)
    }

    fn node(&self, r: &Spanned<String>, want: Option<Role>) -> Check {
        match (self.role(&r.value), want) {
            (None, _) => Err(self.err(
                r.referenced,
                format!(
                    "there is no node named '{}' (nodes: {})",
                    r.value,
                    self.s.nodes.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )),
            (Some(have), Some(want)) if have != want => Err(self.err(
                r.referenced,
                format!("'{}' is a {:?} node, but a {:?} node is expected here", r.value, have, want).to_lowercase(),
            )),
            _ => Ok(()),
        }
    }

    fn expect_message(&self, e: &ExpectMessage) -> Check {
        self.message(&e.message)?;
        for n in e.from.iter().chain(e.to.iter()) {
            self.node(n, None)?;
        }
        Ok(())
    }

    fn expect_state(&self, e: &ExpectState) -> Check {
        self.node(&e.node, None)?;
        if !e.path.starts_with('/') && !e.path.is_empty() {
            return Err(
                self.err(e.node.referenced, format!("path '{}' should be a JSON pointer starting with /", e.path))
            );
        }
        if e.equals.is_some() == e.len.is_some() {
            return Err(self.err(e.node.referenced, "expect_state needs exactly one of 'equals' or 'len'".into()));
        }
        Ok(())
    }

    /// `mn/iface` naming an interface of an MN.
    fn iface(&self, r: &Spanned<String>) -> Check {
        let Some((mn, iface)) = r.value.split_once('/') else {
            return Err(
                self.err(r.referenced, format!("'{}' should name an MN interface as mn/iface, e.g. mn1/if1", r.value))
            );
        };
        let node = self.s.nodes.get(mn).filter(|n| n.value.role == Role::Mn);
        match node {
            None => Err(self.err(r.referenced, format!("'{}' names '{mn}', which is not an mn node", r.value))),
            Some(n) if !n.value.interfaces.iter().any(|i| i == iface) => Err(self.err(
                r.referenced,
                format!("{mn} has no interface '{iface}' (it has: {})", n.value.interfaces.join(", ")),
            )),
            Some(_) => Ok(()),
        }
    }

    fn flow(&self, r: &Spanned<String>) -> Check {
        if self.s.flows.contains_key(&r.value) {
            return Ok(());
        }
        Err(self.err(r.referenced, format!("there is no flow named '{}' under flows", r.value)))
    }

    fn message(&self, r: &Spanned<String>) -> Check {
        if MESSAGE_NAMES.iter().any(|m| m.eq_ignore_ascii_case(&r.value)) {
            return Ok(());
        }
        Err(self.err(
            r.referenced,
            format!("'{}' is not a message kind; expected one of {}", r.value, MESSAGE_NAMES.join(", ")),
        ))
    }

    fn nodes(&self) -> Check {
        let count = |role| self.s.nodes.values().filter(|n| n.value.role == role).count();
        let top = Location::UNKNOWN;
        let first = self.s.nodes.values().next().map(|n| n.referenced).unwrap_or(top);
        if count(Role::Lma) != 1 {
            return Err(
                self.err(first, format!("a scenario needs exactly one lma node; this one has {}", count(Role::Lma)))
            );
        }
        if count(Role::Mag) == 0 {
            return Err(self.err(first, "a scenario needs at least one mag node".into()));
        }
        let mut addrs = BTreeSet::new();
        for (name, n) in &self.s.nodes {
            let spec = &n.value;
            let at = n.referenced;
            if let Some(a) = spec.address {
                if !addrs.insert(a) {
                    return Err(self.err(at, format!("{name}: address {a} is already used by another node")));
                }
            }
            if spec.role != Role::Mn {
                let misplaced = [
                    ("mn_id", spec.mn_id.is_some()),
                    ("interfaces", !spec.interfaces.is_empty()),
                    ("model", spec.model.is_some()),
                    ("prefixes", !spec.prefixes.is_empty()),
                    ("shared_prefixes", !spec.shared_prefixes.is_empty()),
                    ("per_attachment", spec.per_attachment.is_some()),
                ];
                if let Some((field, _)) = misplaced.iter().find(|(_, set)| *set) {
                    return Err(self.err(at, format!("{name}: only mn nodes take '{field}'")));
                }
            }
            if let Some(i) = &spec.implementation {
                crate::iut::check(name, spec.role, i).map_err(|(loc, why)| self.err(loc, why))?;
            }
            if spec.role != Role::Mag && spec.authorized.is_some() {
                return Err(self.err(at, format!("{name}: only mag nodes take 'authorized'")));
            }
            if spec.role == Role::Mn {
                if spec.interfaces.is_empty() {
                    return Err(self.err(at, format!("{name}: an mn node needs at least one interface")));
                }
                let mut seen = BTreeSet::new();
                if let Some(dup) = spec.interfaces.iter().find(|i| !seen.insert(*i)) {
                    return Err(self.err(at, format!("{name}: interface '{dup}' is listed twice")));
                }
                use pmip_proto::lma::PrefixModel::*;
                let model = spec.model.unwrap_or(Unique);
                if matches!(model, Unique | Hybrid) && spec.prefixes.is_empty() {
                    return Err(self.err(
                        at,
                        format!("{name}: the {model:?} prefix model needs 'prefixes' to hand out").to_lowercase(),
                    ));
                }
                if matches!(model, Shared | Hybrid) && spec.shared_prefixes.is_empty() {
                    return Err(self.err(
                        at,
                        format!("{name}: the {model:?} prefix model needs 'shared_prefixes'").to_lowercase(),
                    ));
                }
            }
        }
        Ok(())
    }

    fn links(&self) -> Check {
        let mut linked = BTreeSet::new();
        for l in &self.s.links {
            let l = &l.value;
            self.iface(&l.mn)?;
            self.node(&l.mag, Some(Role::Mag))?;
            if parse_att(&l.att.value).is_none() {
                return Err(self.err(
                    l.att.referenced,
                    format!("'{}' is not an access technology (try wifi, ethernet, e-utran or a number)", l.att.value),
                ));
            }
            if !linked.insert(l.mn.value.clone()) {
                return Err(self.err(
                    l.mn.referenced,
                    format!("{} is linked to a MAG twice; give each interface one link", l.mn.value),
                ));
            }
        }
        Ok(())
    }

    fn flows(&self) -> Check {
        for (name, f) in &self.s.flows {
            let f = &f.value;
            self.node(&f.mn, Some(Role::Mn))?;
            self.node(&f.cn, Some(Role::Cn))?;
            if proto_number(&f.proto.value).is_none() {
                return Err(self.err(
                    f.proto.referenced,
                    format!("flow {name}: proto '{}' should be udp, tcp or a number", f.proto.value),
                ));
            }
            let mn = &self.s.nodes[&f.mn.value].value;
            if !mn.prefixes.contains(&f.prefix) && !mn.shared_prefixes.contains(&f.prefix) {
                return Err(self.err(
                    f.mn.referenced,
                    format!("flow {name}: {} is not one of {}'s prefixes", f.prefix, f.mn.value),
                ));
            }
        }
        Ok(())
    }

    fn steps(&self) -> Check {
        let mut attached: BTreeSet<String> = BTreeSet::new();
        let mut bound: BTreeSet<String> = BTreeSet::new();
        let mut running: BTreeSet<(String, Direction)> = BTreeSet::new();
        let mut killed: BTreeSet<String> = BTreeSet::new();
        let linked: BTreeSet<&str> = self.s.links.iter().map(|l| l.value.mn.value.as_str()).collect();
        for step in &self.s.steps {
            let at = step.referenced;
            match &step.value {
                Step::Attach(a) => {
                    self.iface(&a.iface)?;
                    if !linked.contains(a.iface.value.as_str()) {
                        return Err(self.err(
                            a.iface.referenced,
                            format!("{} has no entry under links, so no MAG to attach to", a.iface.value),
                        ));
                    }
                    if !attached.insert(a.iface.value.clone()) {
                        return Err(self.err(
                            a.iface.referenced,
                            format!("{} is attached twice without a detach in between", a.iface.value),
                        ));
                    }
                    if let Some(hi) = &a.hi {
                        if parse_hi(&hi.value).is_none() {
                            return Err(self.err(hi.referenced, format!("'{}' is not a Handoff Indicator (a number, or new-interface, between-interfaces, between-mags, unknown, not-changed, partial)", hi.value)));
                        }
                    }
                }
                Step::Detach(i) => {
                    self.iface(i)?;
                    if !attached.remove(&i.value) {
                        return Err(self.err(i.referenced, format!("{} is detached but was not attached", i.value)));
                    }
                }
                Step::Bind(b) => {
                    self.flow(&b.flow)?;
                    if !matches!(b.action.value.as_str(), "forward" | "drop") {
                        return Err(self.err(
                            b.action.referenced,
                            format!("action '{}' should be forward or drop", b.action.value),
                        ));
                    }
                    if b.bids.is_empty() {
                        return Err(self.err(b.flow.referenced, "a bind needs at least one BID in 'bids'".into()));
                    }
                    if let Some(p) = b.selector.as_ref().and_then(|x| x.proto.as_ref()) {
                        if proto_number(&p.value).is_none() {
                            return Err(
                                self.err(p.referenced, format!("proto '{}' should be udp, tcp or a number", p.value))
                            );
                        }
                    }
                    bound.insert(b.flow.value.clone());
                }
                Step::Move(m) => {
                    self.flow(&m.flow)?;
                    if !bound.contains(&m.flow.value) {
                        return Err(self.err(
                            m.flow.referenced,
                            format!("flow {} is moved before a bind step gives it a FID", m.flow.value),
                        ));
                    }
                }
                Step::MovePrefix(m) => self.node(&m.mn, Some(Role::Mn))?,
                Step::Unbind(f) => {
                    self.flow(f)?;
                    if !bound.remove(&f.value) {
                        return Err(self.err(f.referenced, format!("flow {} is unbound but was not bound", f.value)));
                    }
                }
                Step::Drop(d) => {
                    self.message(&d.message)?;
                    for n in d.from.iter().chain(d.to.iter()) {
                        self.node(n, None)?;
                    }
                }
                Step::Fault(f) => {
                    self.message(&f.message)?;
                    for n in f.from.iter().chain(f.to.iter()) {
                        self.node(n, None)?;
                    }
                    match (f.action.value.as_str(), f.delay_ms) {
                        ("delay", None) => {
                            return Err(self.err(f.action.referenced, "a delay needs 'delay_ms'".into()));
                        }
                        ("drop" | "duplicate" | "reorder", Some(_)) => {
                            return Err(self.err(
                                f.action.referenced,
                                format!("'delay_ms' goes with action delay, not {}", f.action.value),
                            ));
                        }
                        ("drop" | "duplicate" | "reorder" | "delay", _) => {}
                        (other, _) => {
                            return Err(self.err(
                                f.action.referenced,
                                format!("'{other}' is not a fault action; expected drop, delay, duplicate or reorder"),
                            ));
                        }
                    }
                }
                Step::Link(l) => {
                    if l.between.value.len() != 2 {
                        return Err(self.err(l.between.referenced, "'between' takes exactly two node names".into()));
                    }
                    for n in &l.between.value {
                        if self.role(n).is_none() {
                            return Err(self.err(l.between.referenced, format!("there is no node named '{n}'")));
                        }
                    }
                    if l.loss_per_mille > 1000 {
                        return Err(self.err(l.between.referenced, "loss_per_mille is at most 1000".into()));
                    }
                }
                Step::Send(p) => {
                    self.iface(&p.pbu)?;
                    if !self.s.links.iter().any(|l| l.value.mn.value == p.pbu.value) {
                        return Err(self.err(p.pbu.referenced, format!("{} has no link to a MAG", p.pbu.value)));
                    }
                    if let Some(f) = &p.from {
                        self.node(f, Some(Role::Mag))?;
                    }
                    if let Some(h) = &p.hi {
                        if parse_hi(&h.value).is_none() {
                            return Err(self.err(h.referenced, format!("'{}' is not a Handoff Indicator", h.value)));
                        }
                    }
                    for o in &p.omit {
                        if !OMITTABLE.contains(&o.value.as_str()) {
                            return Err(self.err(
                                o.referenced,
                                format!(
                                    "'{}' is not an option send can leave out; expected one of {}",
                                    o.value,
                                    OMITTABLE.join(", ")
                                ),
                            ));
                        }
                    }
                }
                Step::SendFmi(f) => {
                    self.node(&f.to, Some(Role::Mag))?;
                    self.node(&f.mn, Some(Role::Mn))?;
                    if !["add", "del", "refresh"].contains(&f.op.value.as_str()) {
                        return Err(self.err(
                            f.op.referenced,
                            format!("'{}' is not an FMI operation; expected add, del or refresh", f.op.value),
                        ));
                    }
                }
                Step::Kill(n) => {
                    self.node(n, None)?;
                    if !matches!(self.role(&n.value), Some(Role::Lma | Role::Mag)) {
                        return Err(self.err(
                            n.referenced,
                            format!("{} is not an lma or a mag node: only those can be killed and restarted", n.value),
                        ));
                    }
                    if !killed.insert(n.value.clone()) {
                        return Err(self.err(n.referenced, format!("{} is killed again before a restart", n.value)));
                    }
                }
                Step::Restart(n) => {
                    self.node(n, None)?;
                    if !killed.remove(&n.value) {
                        return Err(self.err(n.referenced, format!("{} is restarted but was not killed", n.value)));
                    }
                }
                Step::StartFlow(f) => {
                    self.flow(&f.flow)?;
                    if !(1..=100_000).contains(&f.rate_pps.value) {
                        return Err(self.err(
                            f.rate_pps.referenced,
                            format!("rate_pps is {}; it must be between 1 and 100000", f.rate_pps.value),
                        ));
                    }
                    if !running.insert((f.flow.value.clone(), f.direction)) {
                        return Err(self.err(
                            f.flow.referenced,
                            format!(
                                "the {} of flow {} is started again before a stop_flow",
                                f.direction.name(),
                                f.flow.value
                            ),
                        ));
                    }
                }
                Step::StopFlow(f) => {
                    self.flow(&f.flow)?;
                    if !running.remove(&(f.flow.value.clone(), f.direction)) {
                        return Err(self.err(
                            f.flow.referenced,
                            format!(
                                "the {} of flow {} is stopped but no start_flow started it",
                                f.direction.name(),
                                f.flow.value
                            ),
                        ));
                    }
                    let (wrong, name) = match f.direction {
                        Direction::Downlink => (&f.left_on, "left_on"),
                        Direction::Uplink => (&f.arrived_on, "arrived_on"),
                    };
                    if let Some(i) = wrong.first() {
                        return Err(self.err(
                            i.referenced,
                            format!(
                                "'{name}' does not apply to the {} of flow {}: arrived_on is for downlink, left_on for uplink",
                                f.direction.name(),
                                f.flow.value
                            ),
                        ));
                    }
                    for i in f.arrived_on.iter().chain(&f.left_on) {
                        self.iface(i)?;
                    }
                }
                Step::Wait(w) => {
                    if parse_duration(&w.value).is_none() {
                        return Err(self
                            .err(w.referenced, format!("'{}' is not a duration: write e.g. 50ms, 2s or 5m", w.value)));
                    }
                }
                Step::ExpectMessage(e) => self.expect_message(e)?,
                Step::ExpectFlow(e) => {
                    self.flow(&e.flow)?;
                    match (&e.arrives_on, e.dropped) {
                        (Some(i), false) => self.iface(i)?,
                        (None, true) => {}
                        _ => {
                            return Err(self.err(
                                e.flow.referenced,
                                "expect_flow needs either 'arrives_on' or 'dropped: true'".into(),
                            ))
                        }
                    }
                }
                Step::ExpectUplink(e) => {
                    self.flow(&e.flow)?;
                    self.iface(&e.leaves_on)?;
                }
                Step::ExpectState(e) => self.expect_state(e)?,
                Step::WaitFor(w) => {
                    if parse_duration(&w.timeout.value).is_none() {
                        return Err(self.err(
                            w.timeout.referenced,
                            format!("'{}' is not a duration: write e.g. 500ms or 5s", w.timeout.value),
                        ));
                    }
                    match (&w.seen, &w.holds) {
                        (Some(e), None) => self.expect_message(e)?,
                        (None, Some(e)) => self.expect_state(e)?,
                        _ => {
                            return Err(self.err(
                                at,
                                "wait_for needs exactly one of 'seen' (a message) or 'holds' (a state)".into(),
                            ))
                        }
                    }
                }
                Step::Snapshot(name) => {
                    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                        return Err(
                            self.err(at, format!("snapshot name '{name}' may use only letters, digits, - and _"))
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

pub fn validate(path: &Path, s: &Scenario) -> Result<(), ScenarioError> {
    let c = Checker { path, s };
    if s.id.trim().is_empty() {
        return Err(c.err(Location::UNKNOWN, "the scenario 'id' is empty".into()));
    }
    c.names()?;
    c.nodes()?;
    c.links()?;
    c.flows()?;
    c.steps()
}
