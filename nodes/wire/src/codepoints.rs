//! Every code point pmiplab puts on the wire, as a typed enum with an
//! `Unknown` fallback so that a value from another implementation survives
//! a parse and an emit unchanged.

use serde::{Deserialize, Serialize};

macro_rules! codepoint {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:expr, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A value this codec has no name for, kept as it was.
            Unknown(u8),
        }

        impl From<u8> for $name {
            fn from(v: u8) -> Self {
                match v {
                    $( $value => $name::$variant, )*
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for u8 {
            fn from(v: $name) -> u8 {
                match v {
                    $( $name::$variant => $value, )*
                    $name::Unknown(other) => other,
                }
            }
        }

        impl $name {
            /// The wire value.
            pub fn value(self) -> u8 {
                u8::from(self)
            }
        }
    };
}

codepoint! {
    /// Mobility Header type (IANA "Mobility Header Types").
    pub enum MhType {
        BindingUpdate = 5,
        BindingAck = 6,
        Experimental = 11,
        Heartbeat = 13,
        BindingRevocation = 16,
        UpdateNotification = 19,
        UpdateNotificationAck = 20,
    }
}

codepoint! {
    /// Binding Acknowledgement status (RFC 6275 §6.1.8, RFC 5213 §8.9).
    pub enum PbaStatus {
        Accepted = 0,
        AcceptedPrefixDiscoveryNecessary = 1,
        ReasonUnspecified = 128,
        AdministrativelyProhibited = 129,
        InsufficientResources = 130,
        HomeRegistrationNotSupported = 131,
        NotHomeSubnet = 132,
        NotHomeAgentForThisMobileNode = 133,
        DuplicateAddressDetectionFailed = 134,
        SequenceNumberOutOfWindow = 135,
        ExpiredHomeNonceIndex = 136,
        ExpiredCareOfNonceIndex = 137,
        ExpiredNonces = 138,
        RegistrationTypeChangeDisallowed = 139,
        ProxyRegNotEnabled = 152,
        NotLmaForThisMobileNode = 153,
        MagNotAuthorizedForProxyReg = 154,
        NotAuthorizedForHomeNetworkPrefix = 155,
        TimestampMismatch = 156,
        TimestampLowerThanPrevAccepted = 157,
        MissingHomeNetworkPrefixOption = 158,
        BcePbuPrefixSetDoNotMatch = 159,
        MissingMnIdentifierOption = 160,
        MissingHandoffIndicatorOption = 161,
        MissingAccessTechTypeOption = 162,
    }
}

impl PbaStatus {
    /// Values below 128 mean the binding was accepted (RFC 6275 §6.1.8).
    pub fn is_accepted(self) -> bool {
        self.value() < 128
    }
}

codepoint! {
    /// Binding Revocation Acknowledgement status (RFC 5846 §6.2).
    pub enum BraStatus {
        Success = 0,
        PartialSuccess = 1,
        BindingDoesNotExist = 128,
        Ipv4HomeAddressOptionRequired = 129,
        GlobalRevocationNotAuthorized = 130,
        RevokedMobileNodeIdentityRequired = 131,
        RevocationFailedMnAttached = 132,
        RevocationTriggerNotSupported = 133,
        RevocationFunctionNotSupported = 134,
        ProxyBindingRevocationNotSupported = 135,
    }
}

codepoint! {
    /// Binding Revocation trigger (RFC 5846 §6.1).
    pub enum RevocationTrigger {
        Unspecified = 0,
        AdministrativeReason = 1,
        InterMagHandoverSameAccessType = 2,
        InterMagHandoverDifferentAccessType = 3,
        InterMagHandoverUnknown = 4,
        UserInitiatedSessionTermination = 5,
        AccessNetworkSessionTermination = 6,
        PossibleOutOfSyncBceState = 7,
        GlobalPerPeerPolicy = 128,
        GlobalRevokingMobilityNodeLocalPolicy = 129,
    }
}

codepoint! {
    /// Binding Revocation message type (RFC 5846 §6.1).
    pub enum RevocationType {
        Indication = 1,
        Acknowledgement = 2,
    }
}

codepoint! {
    /// Flow Mobility Acknowledge status (flow mobility draft §4.2).
    pub enum FmaStatus {
        Success = 0,
        ReasonUnspecified = 128,
        MnNotAttached = 129,
        SequenceNumberOutOfWindow = 130,
        TrafficSelectorFormatUnsupported = 131,
        NoFlowMobilityCacheEntry = 132,
        FlowMobilityCacheEntryExists = 133,
    }
}

codepoint! {
    /// Update Notification Acknowledgement status (IANA "Update Notification
    /// Acknowledgement Status Registry"): 128 and 129 from RFC 7077 §4.2,
    /// 130 from RFC 7222, 131 and 132 from RFC 7864 (flow mobility).
    pub enum UpaStatus {
        Success = 0,
        FailedToUpdateSessionParameters = 128,
        MissingVendorSpecificOption = 129,
        CannotMeetQosServiceRequest = 130,
        ReasonUnspecified = 131,
        MnNotAttached = 132,
    }
}

codepoint! {
    /// Update Notification reason (IANA "Update Notification Reasons
    /// Registry": 1–4 RFC 7077 §4.1, 5 RFC 7222, 6–7 3GPP TS 29.275,
    /// 8 FLOW-MOBILITY RFC 7864).
    pub enum NotificationReason {
        ForceReregistration = 1,
        UpdatedSessionParameters = 2,
        VendorSpecificReason = 3,
        AniParamsRequested = 4,
        QosServiceRequest = 5,
        PgwTriggeredPcscfRestorationPco = 6,
        PgwTriggeredPcscfRestorationDhcp = 7,
        FlowMobility = 8,
    }
}

codepoint! {
    /// Handoff Indicator (RFC 5213 §8.4; 6 from RFC 7864).
    pub enum HandoffIndicator {
        NewInterface = 1,
        BetweenInterfaces = 2,
        BetweenMags = 3,
        HandoffStateUnknown = 4,
        NotChanged = 5,
        NewInterfaceSharingPrefixes = 6,
    }
}

codepoint! {
    /// Access Technology Type (RFC 5213 §8.5, IANA registry).
    pub enum AccessTechnologyType {
        Virtual = 1,
        Ppp = 2,
        Ieee8023 = 3,
        Ieee80211 = 4,
        Ieee80216e = 5,
        Geran = 6,
        Utran = 7,
        EUtran = 8,
        EHrpd = 9,
        Hrpd = 10,
        OneXRtt = 11,
        Umb = 12,
    }
}

codepoint! {
    /// Mobile Node Identifier subtype (RFC 4283, RFC 8371).
    pub enum MnIdSubtype {
        Nai = 1,
        Ipv6Address = 2,
        Imsi = 3,
        PTmsi = 4,
        Eui48 = 5,
        Eui64 = 6,
        Guti = 7,
    }
}

codepoint! {
    /// Traffic Selector format (RFC 6088 §3).
    pub enum TsFormat {
        Ipv4Binary = 1,
        Ipv6Binary = 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips() {
        for v in 0..=255u8 {
            assert_eq!(PbaStatus::from(v).value(), v);
            assert_eq!(FmaStatus::from(v).value(), v);
            assert_eq!(HandoffIndicator::from(v).value(), v);
            assert_eq!(AccessTechnologyType::from(v).value(), v);
            assert_eq!(BraStatus::from(v).value(), v);
            assert_eq!(RevocationTrigger::from(v).value(), v);
            assert_eq!(UpaStatus::from(v).value(), v);
            assert_eq!(NotificationReason::from(v).value(), v);
            assert_eq!(MnIdSubtype::from(v).value(), v);
            assert_eq!(TsFormat::from(v).value(), v);
            assert_eq!(MhType::from(v).value(), v);
        }
        assert_eq!(PbaStatus::from(154), PbaStatus::MagNotAuthorizedForProxyReg);
        assert_eq!(HandoffIndicator::from(99), HandoffIndicator::Unknown(99));
    }
}
