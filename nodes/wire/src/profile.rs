//! The flow mobility signalling profile: how the protocol core's FMI/FMA
//! are framed on the wire.
//!
//! The core decides *what* to signal (a flow added, deleted or refreshed
//! at a MAG, and the MAG's answer) and always speaks FMI/FMA. In the
//! draft profile those go out as they are, on the configured MH type. In
//! the RFC 7864 profile the FMI is an Update Notification (RFC 7077 §4.1,
//! MH type 19) with Notification Reason 8 FLOW-MOBILITY and the A flag,
//! and the FMA an Update Notification Acknowledgement (MH type 20). This
//! is the one place that maps both ways, used by the virtual World and the
//! daemons alike, so a step means the same in both backends.
//!
//! What UPN/UPA cannot carry (docs/protocol.md, "The RFC 7864 profile"):
//! - no Lifetime: a flow moved by UPN lives as long as the binding, so an
//!   incoming add is an FMI with the infinite lifetime (0xffff) and the
//!   harness gives the LMA that lifetime too (it never refreshes);
//! - no R flag: a refresh goes out as an add;
//! - no C flag: a delete is a UPN with the D flag set. RFC 7864's own
//!   encoding of a removal could not be read here; this is the lab's
//!   choice and is the only use the profile makes of D;
//! - seven FMA statuses but three UPA statuses (0, 131 reason
//!   unspecified, 132 MN not attached): 129 maps to 132, 133 (the flow
//!   is held already) to 0, every other refusal to 131.

use serde::{Deserialize, Serialize};

use crate::codepoints::{FmaStatus, NotificationReason, UpaStatus};
use crate::mh::{Fma, Fmi, Message, Upa, Upn};

/// Which flow mobility signalling the LMA and MAGs speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Profile {
    /// The flow mobility draft's FMI/FMA on `flow_mobility_mh_type`.
    #[default]
    DraftFmi,
    /// RFC 7864: UPN/UPA (RFC 7077) with Notification Reason FLOW-MOBILITY.
    Rfc7864,
}

/// The lifetime an FMI decoded from a UPN carries: infinite, since a UPN
/// has no lifetime field.
const INFINITE: u16 = 0xffff;

impl Profile {
    /// The message a node puts on the wire for what its core sent.
    pub fn outgoing(self, message: Message) -> Message {
        match (self, message) {
            (Profile::Rfc7864, Message::Fmi(f)) => Message::Upn(Upn {
                sequence: f.sequence,
                reason: NotificationReason::FlowMobility,
                ack_requested: true,
                deregister: f.cancel,
                options: f.options,
            }),
            (Profile::Rfc7864, Message::Fma(f)) => {
                Message::Upa(Upa { sequence: f.sequence, status: upa_status(f.status), options: f.options })
            }
            (_, m) => m,
        }
    }

    /// The message a node's core is handed for what came off the wire. A
    /// UPN with another reason, and anything in the draft profile, pass as
    /// they are (the core has nothing to do with them).
    pub fn incoming(self, message: Message) -> Message {
        match (self, message) {
            (Profile::Rfc7864, Message::Upn(u)) if u.reason == NotificationReason::FlowMobility => Message::Fmi(Fmi {
                sequence: u.sequence,
                cancel: u.deregister,
                refresh: false,
                lifetime: if u.deregister { 0 } else { INFINITE },
                options: u.options,
            }),
            (Profile::Rfc7864, Message::Upa(u)) => {
                let status = fma_status(u.status);
                Message::Fma(Fma {
                    sequence: u.sequence,
                    status,
                    lifetime: if status == FmaStatus::Success { INFINITE } else { 0 },
                    options: u.options,
                })
            }
            (_, m) => m,
        }
    }
}

/// The UPA status for an FMA status: RFC 7864 defines only "reason
/// unspecified" (131) and "MN not attached" (132) besides success.
pub fn upa_status(s: FmaStatus) -> UpaStatus {
    match s {
        FmaStatus::Success => UpaStatus::Success,
        FmaStatus::MnNotAttached => UpaStatus::MnNotAttached,
        // The flow is held already: the state the add asks for is there
        // (the draft's LMA takes 133 as done too), and without an R flag
        // a repeated add is how this profile refreshes.
        FmaStatus::FlowMobilityCacheEntryExists => UpaStatus::Success,
        _ => UpaStatus::ReasonUnspecified,
    }
}

/// The FMA status the LMA's core is handed for a UPA status.
pub fn fma_status(s: UpaStatus) -> FmaStatus {
    match s {
        UpaStatus::Success => FmaStatus::Success,
        UpaStatus::MnNotAttached => FmaStatus::MnNotAttached,
        _ => FmaStatus::ReasonUnspecified,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MobilityOption;

    fn fmi(cancel: bool, lifetime: u16) -> Fmi {
        let nai = MobilityOption::MnIdentifier { subtype: crate::MnIdSubtype::Nai, id: b"mn1@pmip.lab".to_vec() };
        Fmi { sequence: 7, cancel, refresh: false, lifetime, options: vec![nai] }
    }

    #[test]
    fn an_add_is_a_flow_mobility_upn_asking_for_an_ack_and_comes_back_with_an_infinite_lifetime() {
        let sent = Profile::Rfc7864.outgoing(Message::Fmi(fmi(false, 300)));
        let Message::Upn(u) = &sent else { panic!("{sent:?}") };
        assert_eq!(
            (u.sequence, u.reason, u.ack_requested, u.deregister),
            (7, NotificationReason::FlowMobility, true, false)
        );
        assert_eq!(Profile::Rfc7864.incoming(sent), Message::Fmi(fmi(false, INFINITE)));
    }

    #[test]
    fn a_delete_sets_d_and_a_refresh_goes_out_as_an_add() {
        let del = Profile::Rfc7864.outgoing(Message::Fmi(fmi(true, 0)));
        assert!(matches!(&del, Message::Upn(u) if u.deregister));
        assert_eq!(Profile::Rfc7864.incoming(del), Message::Fmi(fmi(true, 0)));
        let refresh = Fmi { refresh: true, ..fmi(false, 300) };
        let back = Profile::Rfc7864.incoming(Profile::Rfc7864.outgoing(Message::Fmi(refresh)));
        assert_eq!(back, Message::Fmi(fmi(false, INFINITE)));
    }

    #[test]
    fn fma_statuses_map_to_the_three_upa_statuses_and_back() {
        let cases = [
            (FmaStatus::Success, 0, FmaStatus::Success),
            (FmaStatus::ReasonUnspecified, 131, FmaStatus::ReasonUnspecified),
            (FmaStatus::MnNotAttached, 132, FmaStatus::MnNotAttached),
            (FmaStatus::SequenceNumberOutOfWindow, 131, FmaStatus::ReasonUnspecified),
            (FmaStatus::TrafficSelectorFormatUnsupported, 131, FmaStatus::ReasonUnspecified),
            (FmaStatus::NoFlowMobilityCacheEntry, 131, FmaStatus::ReasonUnspecified),
            (FmaStatus::FlowMobilityCacheEntryExists, 0, FmaStatus::Success),
        ];
        for (fma, upa, back) in cases {
            let m =
                Profile::Rfc7864.outgoing(Message::Fma(Fma { sequence: 3, status: fma, lifetime: 9, options: vec![] }));
            assert!(matches!(&m, Message::Upa(u) if u.status.value() == upa && u.sequence == 3), "{fma:?} → {m:?}");
            let Message::Fma(f) = Profile::Rfc7864.incoming(m) else { panic!("not an FMA") };
            assert_eq!(f.status, back);
            assert_eq!(f.lifetime, if back == FmaStatus::Success { INFINITE } else { 0 });
        }
    }

    #[test]
    fn the_draft_profile_and_other_notifications_pass_untouched() {
        let m = Message::Fmi(fmi(true, 0));
        assert_eq!(Profile::DraftFmi.outgoing(m.clone()), m);
        let other = Message::Upn(Upn {
            sequence: 1,
            reason: NotificationReason::ForceReregistration,
            ack_requested: true,
            deregister: false,
            options: vec![],
        });
        assert_eq!(Profile::Rfc7864.incoming(other.clone()), other);
        assert_eq!(Profile::DraftFmi.incoming(Profile::Rfc7864.outgoing(m.clone())), Profile::Rfc7864.outgoing(m));
    }
}
