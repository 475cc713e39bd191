//! Every PBA status the LMA sends (RFC 5213 §5.3.1 and §8.9, RFC 6275
//! §6.1.8), each provoked by a PBU built for it, straight into the
//! sans-IO LMA.

use std::net::Ipv6Addr;

use pmip_proto::lma::{Lma, LmaConfig, LmaInput, MnPolicy, PrefixModel};
use pmip_proto::signalling::{hnp, hnp_request, nai, timestamp_at};
use pmip_proto::{Instant, Prefix, Span};
use pmip_wire::{AccessTechnologyType, HandoffIndicator, Message, MobilityOption, PbaStatus, Pbu, PbuFlags};

const LMA: &str = "2001:db8:ffff::1";
const MAG: &str = "2001:db8:ffff::11";

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn pref(n: u8) -> Prefix {
    format!("2001:db8:{n}::/64").parse().unwrap()
}

fn lma(tune: impl FnOnce(&mut LmaConfig)) -> Lma {
    let mut c = LmaConfig::new(a(LMA));
    c.authorized_mags = vec![a(MAG)];
    tune(&mut c);
    let mut l = Lma::new(c);
    let mut p = MnPolicy::new("mn1", PrefixModel::Unique);
    p.unique_prefixes = vec![pref(1), pref(2)];
    l.add_policy(p.clone());
    let mut off = MnPolicy::new("disabled", PrefixModel::Unique);
    off.unique_prefixes = vec![pref(3)];
    off.proxy_enabled = false;
    l.add_policy(off);
    let mut elsewhere = MnPolicy::new("elsewhere", PrefixModel::Unique);
    elsewhere.unique_prefixes = vec![pref(4)];
    elsewhere.served_by = Some(a("2001:db8:ffff::99"));
    l.add_policy(elsewhere);
    let mut banned = MnPolicy::new("banned", PrefixModel::Unique);
    banned.unique_prefixes = vec![pref(5)];
    banned.prohibited = true;
    l.add_policy(banned);
    let mut other = MnPolicy::new("mn2", PrefixModel::Unique);
    other.unique_prefixes = vec![pref(6)];
    l.add_policy(other);
    l
}

/// A well-formed PBU for `mn` at time `now`; `edit` spoils it.
fn pbu(mn: &str, seq: u16, now: Instant, edit: impl FnOnce(&mut Vec<MobilityOption>)) -> Pbu {
    let mut options = vec![
        nai(mn),
        hnp_request(),
        MobilityOption::HandoffIndicator(HandoffIndicator::NewInterface),
        MobilityOption::AccessTechnologyType(AccessTechnologyType::Ieee80211),
        MobilityOption::MnLinkLayerIdentifier(vec![2, 0, 0, 0, 0, 1]),
        MobilityOption::Timestamp(timestamp_at(now, 0)),
    ];
    edit(&mut options);
    Pbu { sequence: seq, flags: PbuFlags::proxy(), lifetime: 100, options }
}

fn send(l: &mut Lma, now: Instant, src: &str, p: Pbu) -> PbaStatus {
    let out = l.handle(now, LmaInput::Message { src: a(src), dst: a(LMA), message: Message::Pbu(p) });
    let pba = out
        .transmits
        .iter()
        .find_map(|t| match &t.message {
            Message::Pba(p) => Some(p.clone()),
            _ => None,
        })
        .expect("every PBU gets a PBA");
    pba.status
}

fn at(ms: u64) -> Instant {
    Instant::ZERO + Span::from_millis(ms)
}

fn drop_kind(kind: u8) -> impl FnOnce(&mut Vec<MobilityOption>) {
    move |o| o.retain(|x| x.kind() != kind)
}

#[test]
fn accepted() {
    let mut l = lma(|_| {});
    assert_eq!(send(&mut l, at(1000), MAG, pbu("mn1", 1, at(1000), |_| {})), PbaStatus::Accepted);
}

#[test]
fn s152_proxy_reg_not_enabled() {
    let mut l = lma(|_| {});
    assert_eq!(send(&mut l, at(1000), MAG, pbu("disabled", 1, at(1000), |_| {})), PbaStatus::ProxyRegNotEnabled);
    assert_eq!(send(&mut l, at(1000), MAG, pbu("stranger", 2, at(1000), |_| {})), PbaStatus::ProxyRegNotEnabled);
}

#[test]
fn s153_not_lma_for_this_mobile_node() {
    let mut l = lma(|_| {});
    assert_eq!(send(&mut l, at(1000), MAG, pbu("elsewhere", 1, at(1000), |_| {})), PbaStatus::NotLmaForThisMobileNode);
}

#[test]
fn s154_mag_not_authorized() {
    let mut l = lma(|_| {});
    let s = send(&mut l, at(1000), "2001:db8:ffff::66", pbu("mn1", 1, at(1000), |_| {}));
    assert_eq!(s, PbaStatus::MagNotAuthorizedForProxyReg);
    assert!(l.binding_cache().is_empty());
}

#[test]
fn s155_not_authorized_for_home_network_prefix() {
    let mut l = lma(|_| {});
    let p = pbu("mn1", 1, at(1000), |o| o[1] = hnp(pref(9)));
    assert_eq!(send(&mut l, at(1000), MAG, p), PbaStatus::NotAuthorizedForHomeNetworkPrefix);
}

#[test]
fn s156_timestamp_mismatch() {
    let mut l = lma(|_| {});
    let stale = pbu("mn1", 1, at(1000), |_| {});
    assert_eq!(send(&mut l, at(2000), MAG, stale), PbaStatus::TimestampMismatch);
    let missing = pbu("mn1", 2, at(2000), drop_kind(27));
    assert_eq!(send(&mut l, at(2000), MAG, missing), PbaStatus::TimestampMismatch);
}

#[test]
fn s157_timestamp_lower_than_previously_accepted() {
    let mut l = lma(|_| {});
    assert_eq!(send(&mut l, at(1000), MAG, pbu("mn1", 1, at(1000), |_| {})), PbaStatus::Accepted);
    // A replay of an older PBU, still inside the 300 ms window.
    let older = pbu("mn1", 2, at(950), |o| o[2] = MobilityOption::HandoffIndicator(HandoffIndicator::NotChanged));
    assert_eq!(send(&mut l, at(1100), MAG, older), PbaStatus::TimestampLowerThanPrevAccepted);
}

#[test]
fn s158_missing_home_network_prefix_option() {
    let mut l = lma(|_| {});
    assert_eq!(
        send(&mut l, at(1000), MAG, pbu("mn1", 1, at(1000), drop_kind(22))),
        PbaStatus::MissingHomeNetworkPrefixOption
    );
}

#[test]
fn s159_bce_pbu_prefix_set_do_not_match() {
    let mut l = lma(|_| {});
    assert_eq!(send(&mut l, at(1000), MAG, pbu("mn1", 1, at(1000), |_| {})), PbaStatus::Accepted);
    // Same link re-registers, but names the other prefix of the MN.
    let p = pbu("mn1", 2, at(2000), |o| {
        o[1] = hnp(pref(2));
        o[2] = MobilityOption::HandoffIndicator(HandoffIndicator::NotChanged);
    });
    assert_eq!(send(&mut l, at(2000), MAG, p), PbaStatus::BcePbuPrefixSetDoNotMatch);
}

#[test]
fn s160_missing_mn_identifier_option() {
    let mut l = lma(|_| {});
    assert_eq!(
        send(&mut l, at(1000), MAG, pbu("mn1", 1, at(1000), drop_kind(8))),
        PbaStatus::MissingMnIdentifierOption
    );
}

#[test]
fn s161_missing_handoff_indicator_option() {
    let mut l = lma(|_| {});
    assert_eq!(
        send(&mut l, at(1000), MAG, pbu("mn1", 1, at(1000), drop_kind(23))),
        PbaStatus::MissingHandoffIndicatorOption
    );
}

#[test]
fn s162_missing_access_tech_type_option() {
    let mut l = lma(|_| {});
    assert_eq!(
        send(&mut l, at(1000), MAG, pbu("mn1", 1, at(1000), drop_kind(24))),
        PbaStatus::MissingAccessTechTypeOption
    );
}

#[test]
fn s129_administratively_prohibited() {
    let mut l = lma(|_| {});
    assert_eq!(send(&mut l, at(1000), MAG, pbu("banned", 1, at(1000), |_| {})), PbaStatus::AdministrativelyProhibited);
}

#[test]
fn s130_insufficient_resources() {
    let mut l = lma(|c| c.max_bindings = 1);
    assert_eq!(send(&mut l, at(1000), MAG, pbu("mn1", 1, at(1000), |_| {})), PbaStatus::Accepted);
    let p = pbu("mn2", 2, at(1000), |o| o[4] = MobilityOption::MnLinkLayerIdentifier(vec![2, 0, 0, 0, 0, 2]));
    assert_eq!(send(&mut l, at(1000), MAG, p), PbaStatus::InsufficientResources);

    // Also when the MN's own prefix pool runs dry.
    let mut l = lma(|_| {});
    for (i, ll) in [1u8, 2, 3].iter().enumerate() {
        let p = pbu("mn1", i as u16 + 1, at(1000), |o| {
            o[4] = MobilityOption::MnLinkLayerIdentifier(vec![2, 0, 0, 0, 0, *ll])
        });
        let want = if i < 2 { PbaStatus::Accepted } else { PbaStatus::InsufficientResources };
        assert_eq!(send(&mut l, at(1000), MAG, p), want, "attachment {}", i + 1);
    }
}

#[test]
fn s135_sequence_number_out_of_window() {
    let mut l = lma(|c| c.use_timestamps = false);
    assert_eq!(send(&mut l, at(1000), MAG, pbu("mn1", 7, at(1000), |_| {})), PbaStatus::Accepted);
    let again = pbu("mn1", 7, at(2000), |o| o[2] = MobilityOption::HandoffIndicator(HandoffIndicator::NotChanged));
    assert_eq!(send(&mut l, at(2000), MAG, again), PbaStatus::SequenceNumberOutOfWindow);
    let older = pbu("mn1", 6, at(2000), |o| o[2] = MobilityOption::HandoffIndicator(HandoffIndicator::NotChanged));
    assert_eq!(send(&mut l, at(2000), MAG, older), PbaStatus::SequenceNumberOutOfWindow);
    let newer = pbu("mn1", 8, at(2000), |o| o[2] = MobilityOption::HandoffIndicator(HandoffIndicator::NotChanged));
    assert_eq!(send(&mut l, at(2000), MAG, newer), PbaStatus::Accepted);
}

#[test]
fn the_lma_takes_no_pbu_addressed_elsewhere() {
    let mut l = lma(|_| {});
    let out = l.handle(
        at(1000),
        LmaInput::Message {
            src: a(MAG),
            dst: a("2001:db8:ffff::2"),
            message: Message::Pbu(pbu("mn1", 1, at(1000), |_| {})),
        },
    );
    assert!(out.transmits.is_empty());
    assert!(l.binding_cache().is_empty());
}
