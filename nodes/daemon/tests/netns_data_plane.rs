//! Real packets through the userspace tunnel: a CN sends UDP flows X (to
//! pref1) and Y (to pref2) to an MN host with if1 on MAG1 and if2 on MAG2;
//! the LMA's daemon classifies, encapsulates IPv6-in-IPv6 to the MAG, the
//! MAG decapsulates and routes onto the access link. Then the LMA moves
//! flow Y to MAG1 by FMI and Y arrives on if1.
//!
//! The MN here is a plain host with static addresses: the MN daemon (its
//! logical interface, RS/RA and uplink that follows downlink) is not built
//! yet. Needs root; PMIPLAB_SKIP_NETNS=1 skips it where that is impossible.

mod common;

use common::*;

use std::time::Duration;

use common::data_plane::*;
use serde_json::json;

#[test]
fn flows_cross_the_userspace_tunnel_and_follow_an_fmi_move() {
    if skip() {
        return;
    }
    let mut lab = mn1_host_lab();
    // The data fault below acts on the userspace datapath.
    let dp = json!({"tun": "tun0", "mtu": 1460, "datapath": "userspace"});
    spawn_seed_daemons(&mut lab, &json!({ "data_plane": dp }));
    attach_mn1(&lab);
    let limit = Duration::from_secs(5);

    let (x_sink, y_sink) = (sink(&lab, 5001), sink(&lab, 5002));
    let (if1, if2) = (mn1_if_index(&lab, "if1"), mn1_if_index(&lab, "if2"));
    let cn = cn_socket(&lab);
    let send = |port: u16, n: u8| probe(&cn, pref(n).with_iid(1), port);

    send(5001, 1);
    assert_eq!(arrival(&x_sink, limit), Some(if1), "flow X (to pref1) arrives on if1 through MAG1");
    send(5002, 2);
    assert_eq!(arrival(&y_sink, limit), Some(if2), "flow Y (to pref2) arrives on if2 through MAG2");

    move_flow_y_to_mag1(&lab, limit);

    send(5002, 2);
    assert_eq!(arrival(&y_sink, limit), Some(if1), "after the FMI, flow Y arrives on if1 through MAG1");
    send(5001, 1);
    assert_eq!(arrival(&x_sink, limit), Some(if1), "flow X is untouched");

    let lma_state = lab.request("lma", &json!({"cmd": "state"})).unwrap();
    let counters = &lma_state["state"]["data_plane"]["counters"];
    assert_eq!(counters["encapsulated"], 4, "{counters}");
    for mag in ["mag1", "mag2"] {
        let s = lab.request(mag, &json!({"cmd": "state"})).unwrap();
        assert!(
            s["state"]["data_plane"]["counters"]["decapsulated"].as_u64().unwrap_or(0) >= 1,
            "{mag}: {}",
            s["state"]["data_plane"]
        );
    }

    // A data fault: the LMA drops the next two downlink packets it tunnels.
    let rule = json!({"direction": "out", "data": true, "action": {"kind": "drop"}, "count": 2});
    ok(lab.request("lma", &json!({"cmd": "fault_add", "rule": rule})).unwrap());
    for _ in 0..3 {
        send(5001, 1);
    }
    assert_eq!(arrival(&x_sink, limit), Some(if1), "the third packet arrives");
    assert_eq!(arrival(&x_sink, Duration::from_millis(200)), None, "and only the third");
    let s = lab.request("lma", &json!({"cmd": "state"})).unwrap();
    assert_eq!(s["state"]["data_plane"]["counters"]["dropped: fault rule"], 2, "{}", s["state"]["data_plane"]);
}
