//! Checks a parsed scenario for what YAML types cannot say: names that
//! must exist, roles that must fit, values that must parse. Every problem
//! is reported (one per node, link, flow and step at most), each with a
//! real line and column: a value the file left implicit is blamed on the
//! thing that implied it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::path::Path;

use serde_saphyr::{Location, Spanned};

use crate::scenario::*;

struct Checker<'a> {
    path: &'a Path,
    s: &'a Scenario,
    text: &'a str,
    /// Where the item being checked starts: an error about a value the
    /// file does not spell out (a default) points here.
    context: Cell<(u64, u64)>,
    errors: RefCell<Vec<ScenarioError>>,
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
    // No `id:` line (an id from a flow mapping): the file's start.
    (1, 1)
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
    fn names(&self) {
        self.each(&self.s.nodes, |(_, n)| n.referenced, |(name, n)| {
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
            Ok(())
        })
    }

    fn err(&self, at: Location, message: String) -> ScenarioError {
        self.err_at((at.line(), at.column()), message)
    }

    /// An error at `(line, column)`, or at the item being checked when
    /// that is unknown (0), or at the file's start when that is too.
    fn err_at(&self, at: (u64, u64), message: String) -> ScenarioError {
        let at = if at.0 == 0 { self.context.get() } else { at };
        let (line, column) = if at.0 == 0 { (1, 1) } else { at };
        ScenarioError { file: self.path.into(), line, column, message }
    }

    /// Runs `check` on each item, each with its own location as the
    /// context, keeping every item's error.
    fn each<T>(
        &self,
        items: impl IntoIterator<Item = T>,
        at: impl Fn(&T) -> Location,
        mut check: impl FnMut(T) -> Check,
    ) {
        for item in items {
            let l = at(&item);
            self.context.set((l.line(), l.column()));
            if let Err(e) = check(item) {
                self.errors.borrow_mut().push(e);
            }
        }
    }

    fn keep(&self, r: Check) {
        if let Err(e) = r {
            self.errors.borrow_mut().push(e);
        }
    }

    /// Where the top-level `key:` is written, for errors about the whole
    /// section.
    fn key_location(&self, key: &str) -> (u64, u64) {
        let line = self.text.lines().position(|l| l.strip_prefix(key).is_some_and(|r| r.trim_start().starts_with(':')));
        line.map_or((0, 0), |i| (i as u64 + 1, 1))
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

    /// `mn/iface` naming an attached interface of a two-level MN.
    fn two_level_iface(&self, r: &Spanned<String>, attached: &BTreeSet<String>) -> Check {
        self.iface(r)?;
        let mn = r.value.split_once('/').map_or("", |(m, _)| m);
        let model = self.s.nodes.get(mn).and_then(|n| n.value.model);
        if model != Some(pmip_proto::lma::PrefixModel::TwoLevel) {
            return Err(
                self.err(r.referenced, format!("{mn} does not use the two-level prefix model ('model: two-level')"))
            );
        }
        if !attached.contains(&r.value) {
            return Err(self.err(r.referenced, format!("{} is not attached at this step", r.value)));
        }
        Ok(())
    }

    /// The 2-level model's settings under `lma:`.
    fn two_level(&self) {
        let Some(t) = &self.s.lma.two_level else { return };
        self.context.set((t.referenced.line(), t.referenced.column()));
        let t = &t.value;
        let pool = t.temporal_pool.value;
        let len = t.temporal_len.value;
        if !(len > pool.prefix_len() && len < 64) {
            let at = if t.temporal_len.referenced == Location::UNKNOWN {
                t.temporal_pool.referenced
            } else {
                t.temporal_len.referenced
            };
            self.keep(Err(self.err(
                at,
                format!("temporal_len {len} should be longer than the temporal_pool's /{} and shorter than the level-2 /64s", pool.prefix_len()),
            )));
            return;
        }
        let mags = self.s.nodes.values().filter(|n| n.value.role == Role::Mag).count() as u32;
        let room = u32::from(len - pool.prefix_len());
        if room < 32 && (1u64 << room) <= u64::from(mags) {
            self.keep(Err(self.err(
                t.temporal_pool.referenced,
                format!(
                    "the temporal_pool {pool} holds {} /{len}s after the first, too few for {mags} MAGs",
                    (1u64 << room) - 1
                ),
            )));
        }
        let idle = t.idle_lifetime.value.trim();
        if idle != "never" && parse_duration(idle).is_none() {
            self.keep(Err(self.err(
                t.idle_lifetime.referenced,
                format!("idle_lifetime '{idle}' should be a duration (e.g. 30s) or never"),
            )));
        }
        if !crate::plan::uses_two_level(self.s) {
            self.keep(Err(self.err_at(
                (t.temporal_pool.referenced.line(), t.temporal_pool.referenced.column()),
                "two_level settings, but no MN says 'model: two-level'".into(),
            )));
        }
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

    /// Every `requires` entry must be a feature some backend has: a
    /// misspelled one would otherwise SKIP the scenario everywhere.
    fn requires(&self) {
        let known = known_features();
        self.each(
            &self.s.requires,
            |r| r.referenced,
            |r| {
                if known.contains(&r.value.as_str()) {
                    return Ok(());
                }
                Err(self.err(
                    r.referenced,
                    format!("'{}' is not a feature any backend has; known: {}", r.value, known.join(", ")),
                ))
            },
        );
    }

    /// `with:` entries of every expect_message (also under wait_for's
    /// `seen`) must name a field the message carries, with a value of its
    /// kind: `with: [stauts=0]` would otherwise never match and fail at
    /// run time with "saw 0".
    fn with_fields(&self) {
        let mut expects: Vec<(&ExpectMessage, Location)> = Vec::new();
        for st in &self.s.steps {
            match &st.value {
                Step::ExpectMessage(e) => expects.push((e, st.referenced)),
                Step::WaitFor(w) => expects.extend(w.seen.as_ref().map(|e| (e, st.referenced))),
                _ => {}
            }
        }
        self.each(
            expects,
            |(_, at)| *at,
            |(e, at)| {
                let kind = e.message.value.to_ascii_uppercase();
                for w in &e.with {
                    if let Some(why) = with_problem(&kind, w) {
                        return Err(self.err_at(self.locate(w, at, e.message.referenced), why));
                    }
                }
                Ok(())
            },
        );
    }

    /// Where `token` is written at or after the step at `step`: `with`
    /// entries keep no location of their own, so the text is searched;
    /// failing that, `fallback`.
    fn locate(&self, token: &str, step: Location, fallback: Location) -> (u64, u64) {
        let from = step.line().saturating_sub(1) as usize;
        for (i, line) in self.text.lines().enumerate().skip(from) {
            if let Some(col) = line.find(token) {
                return (i as u64 + 1, col as u64 + 1);
            }
        }
        (fallback.line(), fallback.column())
    }

    fn nodes(&self) {
        let count = |role| self.s.nodes.values().filter(|n| n.value.role == role).count();
        // Blamed on the `nodes:` section, which lacks the node.
        let section = self.key_location("nodes");
        if count(Role::Lma) == 0 {
            self.keep(Err(self.err_at(section, "a scenario needs at least one lma node".into())));
        }
        if count(Role::Mag) == 0 {
            self.keep(Err(self.err_at(section, "a scenario needs at least one mag node".into())));
        }
        let mut addrs = BTreeSet::new();
        self.each(
            &self.s.nodes,
            |(_, n)| n.referenced,
            |(name, n)| {
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
                if spec.role != Role::Mag && spec.heartbeat.is_some() {
                    return Err(
                        self.err(at, format!("{name}: only mag nodes take 'heartbeat' (the LMA's is under lma:)"))
                    );
                }
                if spec.role != Role::Mn && spec.proxy_enabled.is_some() {
                    return Err(self.err(at, format!("{name}: only mn nodes take 'proxy_enabled'")));
                }
                if let Some(l) = &spec.lma {
                    if !matches!(spec.role, Role::Mn | Role::Mag) {
                        return Err(self.err(at, format!("{name}: only mn and mag nodes take 'lma'")));
                    }
                    self.node(l, Some(Role::Lma))?;
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
                    if model == TwoLevel && spec.prefixes.len() < spec.interfaces.len() {
                        return Err(self.err(
                            at,
                            format!(
                                "{name}: the two-level prefix model needs a permanent prefix per interface in 'prefixes' ({} for {} interfaces)",
                                spec.prefixes.len(),
                                spec.interfaces.len()
                            ),
                        ));
                    }
                    if model == TwoLevel && self.s.lma.two_level.is_none() {
                        return Err(self.err(
                            at,
                            format!("{name}: the two-level prefix model needs 'two_level:' settings under 'lma:' (temporal_pool, ...)"),
                        ));
                    }
                    if matches!(model, Shared | Hybrid) && spec.shared_prefixes.is_empty() {
                        return Err(self.err(
                            at,
                            format!("{name}: the {model:?} prefix model needs 'shared_prefixes'").to_lowercase(),
                        ));
                    }
                }
                Ok(())
            },
        )
    }

    fn links(&self) {
        let mut linked = BTreeSet::new();
        self.each(
            &self.s.links,
            |l| l.referenced,
            |l| {
                let l = &l.value;
                self.iface(&l.mn)?;
                self.node(&l.mag, Some(Role::Mag))?;
                if parse_att(&l.att.value).is_none() {
                    return Err(self.err(
                        l.att.referenced,
                        format!(
                            "'{}' is not an access technology (try wifi, ethernet, e-utran or a number)",
                            l.att.value
                        ),
                    ));
                }
                let mn = l.mn.value.split_once('/').map_or("", |(m, _)| m);
                for f in l.moved_on_attach.iter().chain(&l.requested_on_attach) {
                    self.flow(f)?;
                    if self.s.flows[&f.value].value.mn.value != mn {
                        return Err(self.err(f.referenced, format!("flow {} is not {mn}'s", f.value)));
                    }
                    if crate::plan::fid_of(self.s, &f.value).is_none() {
                        return Err(self.err(
                            f.referenced,
                            format!("flow {} has no FID: a bind step gives it the FID the PBU or PBA carries", f.value),
                        ));
                    }
                }
                if !linked.insert(l.mn.value.clone()) {
                    return Err(self.err(
                        l.mn.referenced,
                        format!("{} is linked to a MAG twice; give each interface one link", l.mn.value),
                    ));
                }
                Ok(())
            },
        )
    }

    fn flows(&self) {
        self.each(
            &self.s.flows,
            |(_, f)| f.referenced,
            |(name, f)| {
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
                // A two-level MN's level-2 prefixes are carved by the MAGs
                // out of the temporal pool, so a flow may be sent to one.
                let temporal = (mn.model == Some(pmip_proto::lma::PrefixModel::TwoLevel))
                    .then(|| self.s.lma.two_level.as_ref().map(|t| t.value.temporal_pool.value))
                    .flatten()
                    .is_some_and(|pool| f.prefix.prefix_len() >= pool.prefix_len() && pool.contains(&f.prefix.addr()));
                if !mn.prefixes.contains(&f.prefix) && !mn.shared_prefixes.contains(&f.prefix) && !temporal {
                    return Err(self.err(
                        f.mn.referenced,
                        format!("flow {name}: {} is not one of {}'s prefixes", f.prefix, f.mn.value),
                    ));
                }
                Ok(())
            },
        )
    }

    fn steps(&self) {
        let mut attached: BTreeSet<String> = BTreeSet::new();
        let mut bound: BTreeSet<String> = BTreeSet::new();
        let mut running: BTreeSet<(String, Direction)> = BTreeSet::new();
        let mut killed: BTreeSet<String> = BTreeSet::new();
        let linked: BTreeSet<&str> = self.s.links.iter().map(|l| l.value.mn.value.as_str()).collect();
        self.each(&self.s.steps, |st| st.referenced, |step| {
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
                Step::Carve(c) => {
                    self.two_level_iface(&c.iface, &attached)?;
                    if c.service.value.trim().is_empty() {
                        return Err(self.err(c.service.referenced, "a carve step names the service it is for".into()));
                    }
                }
                Step::FlowHandover(h) => {
                    self.two_level_iface(&h.to, &attached)?;
                    if h.prefixes.is_empty() {
                        return Err(self.err(h.to.referenced, "a flow_handover needs the temporal 'prefixes' it moves".into()));
                    }
                    let pool = self.s.lma.two_level.as_ref().map(|t| t.value.temporal_pool.value);
                    for p in &h.prefixes {
                        if pool.is_some_and(|pool| !(p.value.prefix_len() >= pool.prefix_len() && pool.contains(&p.value.addr()))) {
                            return Err(self.err(
                                p.referenced,
                                format!("{} is not a temporal prefix: it lies outside the temporal_pool", p.value),
                            ));
                        }
                    }
                }
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
                Step::Spoof(sp) => {
                    self.node(&sp.from_node(), None)?;
                    self.node(&sp.as_node, None)?;
                    self.node(&sp.to, None)?;
                    if let Some((_, _)) = sp.from.value.split_once('/') {
                        self.iface(&sp.from)?;
                    }
                    crate::plan::spoof_link(self.s, sp).map_err(|why| self.err(sp.from.referenced, why))?;
                    match &sp.message {
                        SpoofMessage::Send(p) => {
                            self.iface(&p.pbu)?;
                            if !self.s.links.iter().any(|l| l.value.mn.value == p.pbu.value) {
                                return Err(self.err(p.pbu.referenced, format!("{} has no link to a MAG", p.pbu.value)));
                            }
                            if let Some(f) = &p.from {
                                return Err(self.err(
                                    f.referenced,
                                    "a spoofed PBU is sent by the spoof's 'from' as 'as': leave 'from' out here".into(),
                                ));
                            }
                            if let Some(h) = &p.hi {
                                if parse_hi(&h.value).is_none() {
                                    return Err(
                                        self.err(h.referenced, format!("'{}' is not a Handoff Indicator", h.value))
                                    );
                                }
                            }
                            for o in &p.omit {
                                if !OMITTABLE.contains(&o.value.as_str()) {
                                    return Err(self.err(
                                        o.referenced,
                                        format!("'{}' is not an option a PBU can leave out", o.value),
                                    ));
                                }
                            }
                        }
                        SpoofMessage::SendFmi(f) => {
                            self.node(&f.mn, Some(Role::Mn))?;
                            if f.to.value != sp.to.value {
                                return Err(self.err(
                                    f.to.referenced,
                                    format!("the FMI's 'to' ({}) is not the spoof's 'to' ({})", f.to.value, sp.to.value),
                                ));
                            }
                            if !["add", "del", "refresh"].contains(&f.op.value.as_str()) {
                                return Err(self.err(
                                    f.op.referenced,
                                    format!("'{}' is not an FMI operation; expected add, del or refresh", f.op.value),
                                ));
                            }
                        }
                        SpoofMessage::Bri(b) => self.node(&b.mn, Some(Role::Mn))?,
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
            Ok(())
        })
    }
}

/// Every feature a scenario may require: what some backend has, and
/// the RFC 7864 profile.
pub fn known_features() -> Vec<&'static str> {
    let mut v: Vec<&str> =
        crate::plan::VIRTUAL_FEATURES.iter().chain(crate::plan::NETNS_FEATURES.iter()).copied().collect();
    v.push("rfc7864");
    v.sort_unstable();
    v.dedup();
    v
}

/// The fields each message's summary carries (as `pmip_wire`'s
/// `Message::summary` writes them), besides the options any may carry.
fn message_fields(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "PBU" => &["seq", "lifetime"],
        "PBA" => &["seq", "status", "lifetime"],
        "BRI" => &["seq", "trigger"],
        "BRA" | "FMA" | "UPA" => &["seq", "status"],
        "HB-REQ" | "HB-RESP" => &["seq"],
        "FMI" => &["seq", "op", "lifetime"],
        "UPN" => &["seq", "reason", "a", "d"],
        "MH-UNKNOWN" => &["type", "len"],
        _ => return None,
    })
}

/// Mobility options a summary shows, on any message.
/// `src` is the node whose source address a spoofed message carried
/// (the summary shows it only when that is not the sender's).
const OPTION_FIELDS: [&str; 8] = ["mn", "hnp", "hi", "att", "fid", "bid", "restart", "src"];

/// Why `with` entry `w` can never match a `kind` message, if it cannot.
fn with_problem(kind: &str, w: &str) -> Option<String> {
    let Some((field, value)) = w.split_once('=') else {
        return Some(format!("with entry '{w}' should be field=value, e.g. status=0"));
    };
    // A message kind this table does not know takes any field.
    let fields = message_fields(kind)?;
    if !fields.contains(&field) && !OPTION_FIELDS.contains(&field) {
        let mut all: Vec<&str> = fields.iter().chain(OPTION_FIELDS.iter()).copied().collect();
        all.sort_unstable();
        return Some(format!("a {kind} has no field '{field}'; its fields are {}", all.join(", ")));
    }
    let ok = match field {
        "seq" | "lifetime" | "len" => value.parse::<u16>().is_ok(),
        "restart" => value.parse::<u32>().is_ok(),
        "status" | "trigger" | "reason" | "hi" | "att" | "bid" | "type" => value.parse::<u8>().is_ok(),
        "op" => matches!(value, "add" | "del" | "refresh"),
        "a" | "d" => matches!(value, "0" | "1"),
        "hnp" => value.parse::<pmip_proto::Prefix>().is_ok(),
        "fid" => value.split_once("/pri=").is_some_and(|(f, p)| f.parse::<u16>().is_ok() && p.parse::<u8>().is_ok()),
        _ => !value.is_empty(),
    };
    if ok {
        return None;
    }
    let want = match field {
        "seq" | "lifetime" | "len" => "a number from 0 to 65535",
        "op" => "add, del or refresh",
        "a" | "d" => "0 or 1",
        "hnp" => "a prefix such as 2001:db8:1::/64",
        "fid" => "FID/pri=PRIORITY, e.g. 1/pri=0",
        "mn" => "an MN-ID",
        "restart" => "a number from 0 to 4294967295",
        _ => "a number from 0 to 255",
    };
    Some(format!("'{value}' is not a {kind} {field}: expected {want}"))
}

/// The first problem of a parsed scenario (see [`validate_all`]).
pub fn validate(path: &Path, s: &Scenario) -> Result<(), ScenarioError> {
    match validate_all(path, "", s).into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Every problem of a parsed scenario whose text is `text` (empty when
/// unknown: errors about a whole section then point at the file's start).
pub fn validate_all(path: &Path, text: &str, s: &Scenario) -> Vec<ScenarioError> {
    let c = Checker { path, s, text, context: Cell::new((0, 0)), errors: RefCell::new(Vec::new()) };
    if s.id.trim().is_empty() {
        let at = id_location(text);
        c.keep(Err(c.err_at(at, "the scenario 'id' is empty".into())));
    }
    c.requires();
    c.names();
    c.nodes();
    c.two_level();
    c.links();
    c.flows();
    c.steps();
    c.with_fields();
    c.ladder();
    let mut errors = c.errors.into_inner();
    errors.sort_by_key(|e| (e.line, e.column));
    errors.dedup();
    errors
}

/// Reads scenario text into a scenario, or every problem it has: a file
/// that does not parse as the format has one (the parser stops there);
/// one that does gets every check.
pub fn check_text(path: &Path, text: &str) -> Result<Scenario, Vec<ScenarioError>> {
    let s = crate::scenario::parse_only(path, text).map_err(|e| vec![e])?;
    let mut errors: Vec<ScenarioError> = Vec::new();
    errors.extend(check_id(path, text, &s.id).err());
    errors.extend(check_prefixes(path, text).err());
    errors.extend(validate_all(path, text, &s));
    errors.sort_by_key(|e| (e.line, e.column));
    errors.dedup();
    if errors.is_empty() {
        Ok(s)
    } else {
        Err(errors)
    }
}

/// [`check_text`] of a file.
pub fn check_file(path: &Path) -> Result<Scenario, Vec<ScenarioError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ScenarioError { file: path.into(), line: 1, column: 1, message: format!("cannot read the scenario: {e}") }]
    })?;
    check_text(path, &text)
}

impl Checker<'_> {
    /// The ladder's columns name nodes, each once, and its width leaves
    /// room for a diagram.
    fn ladder(&self) {
        let l = &self.s.ladder;
        self.each(
            l.columns.iter().enumerate(),
            |(_, col)| col.referenced,
            |(i, col)| {
                self.node(col, None)?;
                if l.columns[..i].iter().any(|c| c.value == col.value) {
                    return Err(self.err(col.referenced, format!("'{}' is in the ladder's columns twice", col.value)));
                }
                Ok(())
            },
        );
        if let Some(w) = l.width.as_ref().filter(|w| w.value < 40) {
            self.keep(Err(self.err(
                w.referenced,
                format!("a ladder {} columns wide has no room to draw in: give at least 40", w.value),
            )));
        }
    }
}

#[cfg(test)]
mod with_fields_follow_the_summaries {
    use super::with_problem;

    /// Every `field=value` a message summary writes, in every message of
    /// the catalogue played in virtual time, passes the `with:` check: the
    /// table of fields cannot fall behind what the decoder shows (it did,
    /// for the Heartbeat's Restart Counter).
    #[test]
    fn every_field_a_summary_shows_is_accepted() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies");
        let mut checked = 0;
        for file in glob::glob(&format!("{}/*.yaml", root.display())).expect("a glob").flatten() {
            let s = crate::scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
            let report = crate::run::run_virtual(&file, &s);
            for o in &report.observed {
                let kind = o.kind();
                for token in o.summary.split(' ').skip(1).filter(|t| t.contains('=')) {
                    if let Some(why) = with_problem(kind, token) {
                        panic!("{}: '{}' from {}: {why}", file.display(), token, o.summary);
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 1000, "only {checked} fields seen");
    }
}
