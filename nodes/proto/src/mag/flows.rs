//! Flow state a MAG holds because its LMA moved flows or prefixes to it
//! with FMI (flow mobility draft §3.2 and §4), and the FMA it answers with.

use std::net::Ipv6Addr;

use pmip_wire::{FlowSubOption, Fma, FmaStatus, Fmi, Message, MobilityOption, TrafficSelector, TsFormat};
use serde::Serialize;

use super::{BulState, Mag};
use crate::flow::{describe_selector, selector_destination};
use crate::output::Output;
use crate::prefix::Prefix;
use crate::signalling::{nai, pick};
use crate::time::{Instant, Span};

/// How many FMI answers a MAG keeps to repeat for retransmissions.
const RECENT_FMI: usize = 16;

/// A flow is known by its FID, or by its prefix at prefix granularity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowStateKey {
    pub mn_id: String,
    pub fid: Option<u16>,
    pub prefix: Option<Prefix>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowState {
    pub fid_pri: u16,
    pub selector: Option<TrafficSelector>,
    /// The destination route this flow needs on the access link.
    pub route: Prefix,
    pub iface: String,
    /// `None` for an infinite lifetime (0xffff).
    pub expires_at: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowRow {
    pub mn_id: String,
    pub fid: Option<u16>,
    pub fid_pri: u16,
    pub ts: String,
    pub iface: String,
    pub route: Prefix,
}

impl FlowState {
    pub(super) fn row(&self, k: &FlowStateKey) -> FlowRow {
        FlowRow {
            mn_id: k.mn_id.clone(),
            fid: k.fid,
            fid_pri: self.fid_pri,
            ts: self.selector.as_ref().map(describe_selector).unwrap_or_else(|| format!("dst {}", self.route)),
            iface: self.iface.clone(),
            route: self.route,
        }
    }
}

/// One flow an FMI talks about, validated.
struct Item {
    key: FlowStateKey,
    fid_pri: u16,
    selector: Option<TrafficSelector>,
    route: Option<Prefix>,
    option: MobilityOption,
}

impl Mag {
    pub(super) fn on_fmi(&mut self, now: Instant, fmi: Fmi, out: &mut Output) {
        let lma = self.config.lma;
        // A retransmission of an FMI answered recently: answer the same,
        // as long as that answer still holds. A success is a promise that
        // the MN is attached here with the flow routed to it; if the MN
        // has left since, repeating it would have the LMA commit the flow
        // to a binding that is gone. Several answers are kept, not only
        // the last: the LMA may have several FMIs in flight, and a repeat
        // of an older one must not be refused as out of window (130)
        // when it was applied.
        // The same sequence number with other contents is not a repeat (a
        // restarted LMA counts from 1 again).
        let cached = self.recent_fmi.iter().rposition(|(seq, asked, _)| *seq == fmi.sequence && *asked == fmi);
        if let Some(i) = cached {
            let newest = i + 1 == self.recent_fmi.len();
            let fma = self.recent_fmi[i].2.clone();
            if self.repeated_answer_holds(&fmi, &fma) {
                out.event(format!("FMI seq {} is a retransmission; repeating the FMA", fmi.sequence));
                out.send(self.config.address, lma, fma);
                return;
            }
            out.event(format!(
                "FMI seq {} is a retransmission, but the state it was answered for has gone; answering afresh",
                fmi.sequence
            ));
            // Only the newest may be applied again: an older one could undo
            // what a later FMI did.
            let (status, options) = if newest || !self.mn_attached(&fmi) {
                self.apply_fmi_unchecked(now, &fmi, out)
            } else {
                (FmaStatus::NoFlowMobilityCacheEntry, vec![])
            };
            let fma = Message::Fma(Fma {
                sequence: fmi.sequence,
                status,
                lifetime: if status == FmaStatus::Success { fmi.lifetime } else { 0 },
                options,
            });
            self.recent_fmi[i].2 = fma.clone();
            out.send(self.config.address, lma, fma);
            return;
        }
        let (status, options) = self.apply_fmi(now, &fmi, out);
        let fma = Message::Fma(Fma {
            sequence: fmi.sequence,
            status,
            lifetime: if status == FmaStatus::Success { fmi.lifetime } else { 0 },
            options,
        });
        if status != FmaStatus::SequenceNumberOutOfWindow {
            if self.recent_fmi.len() >= RECENT_FMI {
                self.recent_fmi.remove(0);
            }
            self.recent_fmi.push((fmi.sequence, fmi.clone(), fma.clone()));
        }
        out.send(self.config.address, lma, fma);
    }

    fn mn_attached(&self, fmi: &Fmi) -> bool {
        let o = pick(&fmi.options);
        o.mn_id.is_some_and(|mn| self.bul.iter().any(|e| e.mn_id == mn && e.state == BulState::Registered))
    }

    /// Whether the FMA sent for an FMI still describes this MAG: a refusal
    /// or a deletion always does; an add or refresh only while the MN is
    /// attached and the flow state it created is here.
    fn repeated_answer_holds(&self, fmi: &Fmi, fma: &Message) -> bool {
        let Message::Fma(answer) = fma else {
            return false;
        };
        if answer.status != FmaStatus::Success || fmi.cancel {
            return true;
        }
        let o = pick(&fmi.options);
        let Some(mn_id) = o.mn_id else {
            return true;
        };
        let attached = self.bul.iter().any(|e| e.mn_id == mn_id && e.state == BulState::Registered);
        let keys = fmi.options.iter().filter_map(|opt| match opt {
            MobilityOption::FlowIdentification(fi) => {
                Some(FlowStateKey { mn_id: mn_id.clone(), fid: Some(fi.fid), prefix: None })
            }
            MobilityOption::HomeNetworkPrefix { prefix_len, prefix } => {
                Some(FlowStateKey { mn_id: mn_id.clone(), fid: None, prefix: Some(Prefix::new(*prefix, *prefix_len)) })
            }
            _ => None,
        });
        attached && keys.into_iter().all(|k| self.flows.contains_key(&k))
    }

    fn apply_fmi(&mut self, now: Instant, fmi: &Fmi, out: &mut Output) -> (FmaStatus, Vec<MobilityOption>) {
        if let Some((last, _, _)) = self.recent_fmi.last() {
            let d = fmi.sequence.wrapping_sub(*last);
            if d == 0 || d >= 0x8000 {
                return (FmaStatus::SequenceNumberOutOfWindow, vec![]);
            }
        }
        self.apply_fmi_unchecked(now, fmi, out)
    }

    /// An FMI's effect and answer, its sequence number already accepted.
    fn apply_fmi_unchecked(&mut self, now: Instant, fmi: &Fmi, out: &mut Output) -> (FmaStatus, Vec<MobilityOption>) {
        let o = pick(&fmi.options);
        let Some(mn_id) = o.mn_id.clone() else {
            out.event("FMI without an MN Identifier option; refused with 128");
            return (FmaStatus::ReasonUnspecified, vec![]);
        };
        let Some(entry) = self.bul.iter().find(|e| e.mn_id == mn_id && e.state == BulState::Registered) else {
            out.event(format!("FMI for {mn_id}, who is not attached here; refused with 129"));
            return (FmaStatus::MnNotAttached, vec![nai(&mn_id)]);
        };
        let iface = entry.iface.clone();
        let served: Vec<Prefix> = self
            .bul
            .iter()
            .filter(|e| e.mn_id == mn_id && e.state == BulState::Registered)
            .flat_map(|e| e.hnps.iter().copied())
            .collect();

        let mut items = Vec::new();
        for opt in &fmi.options {
            match opt {
                MobilityOption::FlowIdentification(fi) => {
                    let selector = fi.sub_options.iter().find_map(|s| match s {
                        FlowSubOption::TrafficSelector(t) => Some(t.clone()),
                        _ => None,
                    });
                    if let Some(t) = &selector {
                        if t.format() != TsFormat::Ipv6Binary {
                            out.event(format!(
                                "FMI for {mn_id} FID {} uses traffic selector format {}; refused with 131",
                                fi.fid,
                                t.format().value()
                            ));
                            return (FmaStatus::TrafficSelectorFormatUnsupported, vec![nai(&mn_id)]);
                        }
                    }
                    items.push(Item {
                        key: FlowStateKey { mn_id: mn_id.clone(), fid: Some(fi.fid), prefix: None },
                        fid_pri: fi.fid_pri,
                        route: selector.as_ref().and_then(selector_destination),
                        selector,
                        option: opt.clone(),
                    });
                }
                MobilityOption::HomeNetworkPrefix { prefix_len, prefix } => {
                    let p = Prefix::new(*prefix, *prefix_len);
                    items.push(Item {
                        key: FlowStateKey { mn_id: mn_id.clone(), fid: None, prefix: Some(p) },
                        fid_pri: 0,
                        selector: None,
                        route: Some(p),
                        option: opt.clone(),
                    });
                }
                _ => {}
            }
        }
        if items.is_empty() {
            out.event(format!("FMI for {mn_id} names no flow or prefix; refused with 128"));
            return (FmaStatus::ReasonUnspecified, vec![nai(&mn_id)]);
        }

        // Check every item before changing anything.
        for it in &items {
            let exists = self.flows.contains_key(&it.key);
            // A flow to a prefix this MAG already serves for the MN has
            // implicit state here: deleting it has nothing to undo.
            let implicit = it
                .route
                .is_some_and(|r| served.iter().any(|p| p.prefix_len() <= r.prefix_len() && p.contains(&r.addr())));
            let status = if fmi.cancel {
                (!exists && !implicit).then_some(FmaStatus::NoFlowMobilityCacheEntry)
            } else if fmi.refresh {
                (!exists).then_some(FmaStatus::NoFlowMobilityCacheEntry)
            } else if exists {
                Some(FmaStatus::FlowMobilityCacheEntryExists)
            } else if it.route.is_none() {
                Some(FmaStatus::ReasonUnspecified)
            } else {
                None
            };
            if let Some(s) = status {
                out.event(format!("FMI for {mn_id} {}: refused with {} ({s:?})", describe(&it.key), s.value()));
                return (s, vec![nai(&mn_id)]);
            }
        }

        let expires_at = (fmi.lifetime != 0xffff).then(|| now + Span::from_secs(u64::from(fmi.lifetime)));
        let mut echo = vec![nai(&mn_id)];
        for it in items {
            let what = describe(&it.key);
            if fmi.cancel {
                self.flows.remove(&it.key);
                out.event(format!("FMI[del] {mn_id} {what}: flow state removed"));
            } else if fmi.refresh {
                if let Some(f) = self.flows.get_mut(&it.key) {
                    f.expires_at = expires_at;
                }
                out.event(format!("FMI[refresh] {mn_id} {what}"));
            } else {
                let route = it.route.unwrap_or_else(|| Prefix::new(Ipv6Addr::UNSPECIFIED, 0));
                out.event(format!("FMI[add] {mn_id} {what}: route {route} to {iface}"));
                self.flows.insert(
                    it.key,
                    FlowState { fid_pri: it.fid_pri, selector: it.selector, route, iface: iface.clone(), expires_at },
                );
            }
            echo.push(it.option);
        }
        (FmaStatus::Success, echo)
    }

    /// Flows the LMA moved to the interface a PBA registers, by Flow
    /// Identification options in that PBA (draft §3.2, after Figure 4):
    /// state like an FMI[add]'s, with no lifetime of its own: it lasts as
    /// long as the MN is attached here.
    pub(super) fn flows_from_pba(
        &mut self,
        mn_id: &str,
        iface: &str,
        flows: &[pmip_wire::FlowIdentification],
        out: &mut Output,
    ) {
        for fi in flows {
            let selector = fi.traffic_selector().cloned();
            let Some(route) = selector.as_ref().and_then(selector_destination) else {
                out.event(format!("PBA moves {mn_id} FID {} with no destination to route; ignored", fi.fid));
                continue;
            };
            out.event(format!("PBA moves {mn_id} FID {} here: route {route} to {iface}", fi.fid));
            let key = FlowStateKey { mn_id: mn_id.to_string(), fid: Some(fi.fid), prefix: None };
            let state = FlowState { fid_pri: fi.fid_pri, selector, route, iface: iface.to_string(), expires_at: None };
            self.flows.insert(key, state);
        }
    }

    pub(super) fn expire_flows(&mut self, now: Instant, out: &mut Output) {
        let gone: Vec<FlowStateKey> =
            self.flows.iter().filter(|(_, f)| f.expires_at.is_some_and(|t| t <= now)).map(|(k, _)| k.clone()).collect();
        for k in gone {
            out.event(format!("flow state {} {} expired: no refresh and no FMI[del]", k.mn_id, describe(&k)));
            self.flows.remove(&k);
        }
    }
}

fn describe(k: &FlowStateKey) -> String {
    match (k.fid, k.prefix) {
        (Some(f), _) => format!("FID {f}"),
        (None, Some(p)) => format!("prefix {p}"),
        _ => "flow".into(),
    }
}
