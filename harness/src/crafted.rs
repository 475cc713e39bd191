//! Messages a scenario builds itself, to provoke a node's checks: a PBU
//! with options left out or changed, sent by a MAG; an FMI sent by the LMA.

use pmip_proto::flow::prefix_selector;
use pmip_proto::world::mac_for;
use pmip_wire::{
    Bri, FlowIdentification, FlowSubOption, Fmi, HandoffIndicator, Ipv4Selector, Message, MnIdSubtype, MobilityOption,
    Pbu, PbuFlags, RevocationFlags, RevocationTrigger, Timestamp, TrafficSelector,
};

use crate::plan::mn_id;
use crate::scenario::{parse_att, parse_hi, Scenario, SendBri, SendFmi, SendPbu, SpoofMessage, SpoofStep};

/// The PBU a `send` step describes, stamped with `now` (microseconds on
/// the Timestamp option's scale) moved by the step's shift. `None` when
/// the step names something the scenario lacks (the validator refuses
/// that first).
pub fn pbu(s: &Scenario, step: &SendPbu, now_micros: u64) -> Option<Message> {
    let (mn, iface) = step.pbu.value.split_once('/')?;
    let link = s.links.iter().find(|l| l.value.mn.value == step.pbu.value)?;
    let att = parse_att(&link.value.att.value)?;
    let hi = match &step.hi {
        Some(h) => parse_hi(&h.value)?,
        None => HandoffIndicator::NewInterface,
    };
    let hnp = step.hnp.unwrap_or_else(|| pmip_proto::Prefix::new(std::net::Ipv6Addr::UNSPECIFIED, 0));
    let stamp = now_micros.saturating_add_signed(step.timestamp_shift_ms.saturating_mul(1000));
    let keep = |name: &str| !step.omit.iter().any(|o| o.value == name);
    let mut options = Vec::new();
    if keep("mn-id") {
        let id = mn_id(mn, &s.nodes.get(mn)?.value);
        options.push(MobilityOption::MnIdentifier { subtype: MnIdSubtype::Nai, id: id.into_bytes() });
    }
    if keep("hnp") {
        options.push(MobilityOption::HomeNetworkPrefix { prefix_len: hnp.prefix_len(), prefix: hnp.addr() });
    }
    if keep("hi") {
        options.push(MobilityOption::HandoffIndicator(hi));
    }
    if keep("att") {
        options.push(MobilityOption::AccessTechnologyType(att));
    }
    if keep("ll-id") {
        options.push(MobilityOption::MnLinkLayerIdentifier(mac_for(mn, iface)));
    }
    if keep("timestamp") {
        options.push(MobilityOption::Timestamp(Timestamp::from_unix_nanos(u128::from(stamp) * 1000)));
    }
    Some(Message::Pbu(Pbu { sequence: step.seq, flags: PbuFlags::proxy(), lifetime: step.lifetime, options }))
}

/// The FMI a `send_fmi` step describes.
pub fn fmi(s: &Scenario, step: &SendFmi) -> Option<Message> {
    let mn_id = match &step.mn_id {
        Some(id) => id.clone(),
        None => mn_id(&step.mn.value, &s.nodes.get(&step.mn.value)?.value),
    };
    let selector = if step.ipv4_selector {
        TrafficSelector::Ipv4(Ipv4Selector { start_dst_port: Some(80), ..Default::default() })
    } else {
        prefix_selector(step.dst)
    };
    let flow = FlowIdentification {
        fid: step.fid,
        fid_pri: step.fid_pri,
        status: 0,
        sub_options: vec![FlowSubOption::TrafficSelector(selector)],
    };
    let (cancel, refresh) = match step.op.value.as_str() {
        "add" => (false, false),
        "del" => (true, false),
        "refresh" => (false, true),
        _ => return None,
    };
    Some(Message::Fmi(Fmi {
        sequence: step.seq,
        cancel,
        refresh,
        lifetime: step.lifetime,
        options: [MobilityOption::MnIdentifier { subtype: MnIdSubtype::Nai, id: mn_id.into_bytes() }]
            .into_iter()
            .filter(|_| !step.omit_mn_id)
            .chain([MobilityOption::FlowIdentification(flow)])
            .collect(),
    }))
}

/// The BRI a `spoof` step describes.
pub fn bri(s: &Scenario, step: &SendBri) -> Option<Message> {
    let id = mn_id(&step.mn.value, &s.nodes.get(&step.mn.value)?.value);
    Some(Message::Bri(Bri {
        trigger: RevocationTrigger::from(step.trigger),
        sequence: step.seq,
        flags: RevocationFlags { p: true, ..Default::default() },
        options: vec![MobilityOption::MnIdentifier { subtype: MnIdSubtype::Nai, id: id.into_bytes() }],
    }))
}

/// The message a `spoof` step sends, stamped with `now` where it carries a
/// Timestamp.
pub fn spoofed(s: &Scenario, step: &SpoofStep, now_micros: u64) -> Option<Message> {
    match &step.message {
        SpoofMessage::Send(p) => pbu(s, p, now_micros),
        SpoofMessage::SendFmi(f) => fmi(s, f),
        SpoofMessage::Bri(b) => bri(s, b),
    }
}

/// The MAG a `send` step sends from: `from`, else the MAG of the link.
pub fn sender(s: &Scenario, step: &SendPbu) -> Option<String> {
    match &step.from {
        Some(f) => Some(f.value.clone()),
        None => s.links.iter().find(|l| l.value.mn.value == step.pbu.value).map(|l| l.value.mag.value.clone()),
    }
}
