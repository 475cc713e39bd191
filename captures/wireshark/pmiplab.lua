-- Wireshark/tshark dissector for what stock Wireshark (4.0) does not decode
-- in pmiplab captures:
--   * the flow mobility draft's FMI/FMA (one message, I flag set for FMI),
--     carried by MH type 11 (Experimental) unless the preference says another;
--   * RFC 7077 Update Notification (UPN, MH type 19) and its
--     Acknowledgement (UPA, 20), used by the RFC 7864 profile;
--   * the Flow Summary (44) and Flow Identification (45, RFC 6089) options
--     with their BID Reference and RFC 6088 traffic selector sub-options,
--     also where they ride in a PBU or PBA;
--   * the Mobility Header checksum, which stock Wireshark does not verify.
-- Every other Mobility Header goes to Wireshark's own MIPv6 dissector.
--
-- Use: tshark -X lua_script:captures/wireshark/pmiplab.lua -r run.pcapng
--      (or copy it into Wireshark's personal Lua plugins folder).
-- Preference: -o pmip.fmi_mh_type:N for captures that carry FMI/FMA as N.

local pmip = Proto("pmip", "PMIPv6 flow mobility (pmiplab)")

pmip.prefs.fmi_mh_type = Pref.uint("FMI/FMA MH type", 11,
    "Mobility Header type that carries the draft's FMI/FMA (never assigned by IANA)")
pmip.prefs.verify_checksum = Pref.bool("Verify the MH checksum", true,
    "Check the Mobility Header checksum over the IPv6 pseudo-header")

local fma_status = {
    [0] = "Success", [128] = "Reason unspecified", [129] = "MN not attached",
    [130] = "Sequence number out of window", [131] = "Traffic selector format not supported",
    [132] = "No Flow Mobility Cache entry", [133] = "Flow Mobility Cache entry exists",
}
local upa_status = {
    -- IANA registry: 128-129 RFC 7077, 130 RFC 7222, 131-132 RFC 7864
    [0] = "Success", [128] = "Failed to update session parameters",
    [129] = "Missing vendor-specific option", [130] = "Cannot meet QoS service request",
    [131] = "Reason unspecified", [132] = "MN not attached",
}
local upn_reason = {
    [1] = "Force re-registration", [2] = "Update session parameters", [3] = "Vendor-specific reason",
    [4] = "ANI parameters requested", [5] = "QoS service request", [8] = "Flow mobility",
}
local option_names = {
    [0] = "Pad1", [1] = "PadN", [8] = "Mobile Node Identifier", [22] = "Home Network Prefix",
    [23] = "Handoff Indicator", [24] = "Access Technology Type", [25] = "MN Link-layer Identifier",
    [26] = "Link-local Address", [27] = "Timestamp", [28] = "Restart Counter",
    [35] = "Binding Identifier", [44] = "Flow Summary", [45] = "Flow Identification",
}
local checksum_status = { [0] = "Bad", [1] = "Good", [2] = "Not verified" }

local f = {
    msg = ProtoField.string("pmip.msg", "Message"),
    mhtype = ProtoField.uint8("pmip.mhtype", "MH type"),
    hdrlen = ProtoField.uint8("pmip.hdrlen", "Header length (8-octet units after the first 8)"),
    checksum = ProtoField.uint16("pmip.checksum", "Checksum", base.HEX),
    checksum_status = ProtoField.uint8("pmip.checksum.status", "Checksum status", base.DEC, checksum_status),
    seq = ProtoField.uint16("pmip.seq", "Sequence number"),
    fmi_i = ProtoField.bool("pmip.fm.i", "Initiate (I)", 8, nil, 0x80),
    fmi_c = ProtoField.bool("pmip.fmi.c", "Cancel (C)", 8, nil, 0x40),
    fmi_r = ProtoField.bool("pmip.fmi.r", "Refresh (R)", 8, nil, 0x20),
    fma_status = ProtoField.uint8("pmip.fma.status", "Status", base.DEC, fma_status),
    lifetime = ProtoField.uint16("pmip.lifetime", "Lifetime (s, 65535 infinite)"),
    upn_reason = ProtoField.uint8("pmip.upn.reason", "Notification reason", base.DEC, upn_reason),
    upn_a = ProtoField.bool("pmip.upn.a", "Acknowledgement requested (A)", 8, nil, 0x80),
    upn_d = ProtoField.bool("pmip.upn.d", "De-register (D)", 8, nil, 0x40),
    upa_status = ProtoField.uint8("pmip.upa.status", "Status", base.DEC, upa_status),
    opt_type = ProtoField.uint8("pmip.opt.type", "Option type", base.DEC, option_names),
    opt_len = ProtoField.uint8("pmip.opt.len", "Option length"),
    opt_data = ProtoField.bytes("pmip.opt.data", "Option data"),
    mnid_subtype = ProtoField.uint8("pmip.mnid.subtype", "MN-ID subtype"),
    mnid = ProtoField.string("pmip.mnid", "MN identifier"),
    hnp_len = ProtoField.uint8("pmip.hnp.len", "Prefix length"),
    hnp = ProtoField.ipv6("pmip.hnp", "Home network prefix"),
    hi = ProtoField.uint8("pmip.hi", "Handoff indicator"),
    att = ProtoField.uint8("pmip.att", "Access technology type"),
    bid = ProtoField.uint16("pmip.bid", "Binding ID"),
    bid_status = ProtoField.uint8("pmip.bid.status", "BID status"),
    bid_h = ProtoField.bool("pmip.bid.h", "Simultaneous home and foreign binding (H)", 8, nil, 0x80),
    bid_pri = ProtoField.uint8("pmip.bid.pri", "BID-PRI", base.DEC, nil, 0x7f),
    bid_coa = ProtoField.ipv6("pmip.bid.coa", "Care-of address"),
    fs_fid = ProtoField.uint16("pmip.fs.fid", "Registered FID"),
    fid = ProtoField.uint16("pmip.fid", "FID"),
    fid_pri = ProtoField.uint16("pmip.fid.pri", "FID-PRI"),
    fid_status = ProtoField.uint8("pmip.fid.status", "Status"),
    sub_type = ProtoField.uint8("pmip.sub.type", "Sub-option type", base.DEC,
        { [0] = "Pad1", [1] = "PadN", [2] = "BID Reference", [3] = "Traffic Selector" }),
    sub_len = ProtoField.uint8("pmip.sub.len", "Sub-option length"),
    bidref = ProtoField.uint16("pmip.bidref", "BID reference"),
    ts_format = ProtoField.uint8("pmip.ts.format", "TS format", base.DEC, { [1] = "IPv4 binary", [2] = "IPv6 binary" }),
    ts_flags = ProtoField.uint16("pmip.ts.flags", "Fields present (A-P)", base.HEX),
    ts_src6 = ProtoField.ipv6("pmip.ts.src", "Source address"),
    ts_dst6 = ProtoField.ipv6("pmip.ts.dst", "Destination address"),
    ts_src4 = ProtoField.ipv4("pmip.ts.src4", "Source address"),
    ts_dst4 = ProtoField.ipv4("pmip.ts.dst4", "Destination address"),
    ts_spi = ProtoField.uint32("pmip.ts.spi", "IPsec SPI"),
    ts_flow_label = ProtoField.uint32("pmip.ts.flow_label", "Flow label", base.HEX),
    ts_sport = ProtoField.uint16("pmip.ts.sport", "Source port"),
    ts_dport = ProtoField.uint16("pmip.ts.dport", "Destination port"),
    ts_class = ProtoField.uint8("pmip.ts.class", "Traffic class / DS field"),
    ts_proto = ProtoField.uint8("pmip.ts.next_header", "Next header / protocol"),
    ts_data = ProtoField.bytes("pmip.ts.data", "Selector"),
}
local fields = {}
for _, v in pairs(f) do fields[#fields + 1] = v end
pmip.fields = fields

local e_malformed = ProtoExpert.new("pmip.malformed", "Malformed Mobility Header",
    expert.group.MALFORMED, expert.severity.ERROR)
local e_checksum = ProtoExpert.new("pmip.checksum.bad", "Bad Mobility Header checksum",
    expert.group.CHECKSUM, expert.severity.ERROR)
pmip.experts = { e_malformed, e_checksum }

local ipv6_src = Field.new("ipv6.src")
local ipv6_dst = Field.new("ipv6.dst")

-- The innermost IPv6 header's addresses: the one carrying this MH.
local function last(field)
    local all = { field() }
    return all[#all]
end

-- RFC 6275 §6.1.1: the one's complement sum over the pseudo-header (next
-- header 135) and the whole MH, checksum included, is 0xffff when right.
local function checksum_ok(tvb)
    local src, dst = last(ipv6_src), last(ipv6_dst)
    if not src or not dst then return nil end
    local sum = 0
    local function add(range)
        local n = range:len()
        for i = 0, n - 2, 2 do sum = sum + range(i, 2):uint() end
        if n % 2 == 1 then sum = sum + range(n - 1, 1):uint() * 256 end
    end
    add(src.range)
    add(dst.range)
    sum = sum + tvb:len() + 135
    add(tvb:range(0))
    while sum > 0xffff do sum = (sum % 0x10000) + math.floor(sum / 0x10000) end
    return sum == 0xffff
end

-- RFC 6088 selector fields, in flag order (A is the top bit): for each
-- flag, the field, its size and the tree label.
local ts_layout = {
    [2] = {
        { f.ts_src6, 16, "start" }, { f.ts_src6, 16, "end" }, { f.ts_dst6, 16, "start" }, { f.ts_dst6, 16, "end" },
        { f.ts_spi, 4, "start" }, { f.ts_spi, 4, "end" }, { f.ts_flow_label, 4, "start" },
        { f.ts_flow_label, 4, "end" }, { f.ts_sport, 2, "start" }, { f.ts_sport, 2, "end" },
        { f.ts_dport, 2, "start" }, { f.ts_dport, 2, "end" }, { f.ts_class, 1, "start" },
        { f.ts_class, 1, "end" }, { f.ts_proto, 1, "start" }, { f.ts_proto, 1, "end" },
    },
    [1] = {
        { f.ts_src4, 4, "start" }, { f.ts_src4, 4, "end" }, { f.ts_dst4, 4, "start" }, { f.ts_dst4, 4, "end" },
        { f.ts_spi, 4, "start" }, { f.ts_spi, 4, "end" }, { f.ts_sport, 2, "start" }, { f.ts_sport, 2, "end" },
        { f.ts_dport, 2, "start" }, { f.ts_dport, 2, "end" }, { f.ts_class, 1, "start" },
        { f.ts_class, 1, "end" }, { f.ts_proto, 1, "start" }, { f.ts_proto, 1, "end" },
    },
}

local function traffic_selector(range, tree, pinfo)
    if range:len() < 6 then
        tree:add_proto_expert_info(e_malformed, "traffic selector shorter than its 6-octet header")
        return
    end
    local format = range(0, 1):uint()
    tree:add(f.ts_format, range(0, 1))
    local flags_range = range(2, 2)
    tree:add(f.ts_flags, flags_range)
    local layout = ts_layout[format]
    if not layout then
        if range:len() > 6 then tree:add(f.ts_data, range(6)) end
        return
    end
    local flags, off = flags_range:uint(), 6
    for bit = 1, #layout do
        if math.floor(flags / 2 ^ (16 - bit)) % 2 == 1 then
            local field, size, which = layout[bit][1], layout[bit][2], layout[bit][3]
            if off + size > range:len() then
                tree:add_proto_expert_info(e_malformed, "traffic selector shorter than its flags say")
                return
            end
            tree:add(field, range(off, size)):append_text(" (" .. which .. ")")
            off = off + size
        end
    end
end

local function flow_identification(range, tree, pinfo)
    if range:len() < 6 then
        tree:add_proto_expert_info(e_malformed, "Flow Identification shorter than 6 octets")
        return
    end
    tree:add(f.fid, range(0, 2))
    tree:add(f.fid_pri, range(2, 2))
    tree:add(f.fid_status, range(5, 1))
    local off, n = 6, range:len()
    while off < n do
        local kind = range(off, 1):uint()
        if kind == 0 then
            off = off + 1
        else
            if off + 2 > n or off + 2 + range(off + 1, 1):uint() > n then
                tree:add_proto_expert_info(e_malformed, "sub-option runs past its option")
                return
            end
            local len = range(off + 1, 1):uint()
            local sub = tree:add(f.sub_type, range(off, 1))
            sub:add(f.sub_len, range(off + 1, 1))
            local body = len > 0 and range(off + 2, len) or nil
            if kind == 2 and body then
                for i = 0, len - 2, 2 do sub:add(f.bidref, body(i, 2)) end
            elseif kind == 3 and body then
                traffic_selector(body, sub, pinfo)
            end
            off = off + 2 + len
        end
    end
end

-- Decodes the option area; with `only_flow`, only options 44 and 45 get a
-- tree (the others are Wireshark's own to show).
local function options(tvb, off, tree, pinfo, only_flow)
    local n = tvb:len()
    while off < n do
        local kind = tvb(off, 1):uint()
        if kind == 0 then
            if not only_flow then tree:add(f.opt_type, tvb(off, 1)) end
            off = off + 1
        else
            if off + 2 > n or off + 2 + tvb(off + 1, 1):uint() > n then
                tree:add_proto_expert_info(e_malformed, "option runs past the Mobility Header")
                return
            end
            local len = tvb(off + 1, 1):uint()
            local data = len > 0 and tvb(off + 2, len) or nil
            if not only_flow or kind == 44 or kind == 45 then
                local t = tree:add(f.opt_type, tvb(off, 1))
                t:add(f.opt_len, tvb(off + 1, 1))
                if kind == 8 and len >= 2 then
                    t:add(f.mnid_subtype, data(0, 1))
                    t:add(f.mnid, data(1))
                elseif kind == 22 and len == 18 then
                    t:add(f.hnp_len, data(1, 1))
                    t:add(f.hnp, data(2, 16))
                elseif kind == 23 and len == 2 then
                    t:add(f.hi, data(1, 1))
                elseif kind == 24 and len == 2 then
                    t:add(f.att, data(1, 1))
                elseif kind == 35 and len >= 4 then
                    t:add(f.bid, data(0, 2))
                    t:add(f.bid_status, data(2, 1))
                    t:add(f.bid_h, data(3, 1))
                    t:add(f.bid_pri, data(3, 1))
                    if len == 20 then t:add(f.bid_coa, data(4, 16)) end
                elseif kind == 44 then
                    for i = 0, len - 2, 2 do t:add(f.fs_fid, data(i, 2)) end
                elseif kind == 45 then
                    flow_identification(data or tvb(off + 2, 0), t, pinfo)
                elseif kind ~= 1 and data then
                    t:add(f.opt_data, data)
                end
            end
            off = off + 2 + len
        end
    end
end

-- Whether the option area holds a Flow Summary or Flow Identification.
local function has_flow_options(tvb)
    local off, n = 12, tvb:len()
    while off + 2 <= n do
        local kind = tvb(off, 1):uint()
        if kind == 44 or kind == 45 then return true end
        off = off + (kind == 0 and 1 or 2 + tvb(off + 1, 1):uint())
    end
    return false
end

local ip_proto = DissectorTable.get("ip.proto")
local mipv6 = ip_proto:get_dissector(135)

-- The checksum and its verdict under `tree`: Good (1), Bad (0, with
-- expert info of severity error) or Not verified (2).
local function verify_checksum(tvb, tree)
    local ck = tree:add(f.checksum, tvb(4, 2))
    local verdict = 2
    if pmip.prefs.verify_checksum then
        local ok = checksum_ok(tvb)
        if ok == true then verdict = 1 elseif ok == false then verdict = 0 end
    end
    ck:add(f.checksum_status, tvb(4, 2), verdict)
    if verdict == 0 then ck:add_proto_expert_info(e_checksum) end
end

local function dissect(tvb, pinfo, tree, mh_type)
    local root = tree:add(pmip, tvb(), "PMIPv6 flow mobility (pmiplab)")
    pinfo.cols.protocol = "PMIPv6"
    root:add(f.mhtype, tvb(2, 1))
    root:add(f.hdrlen, tvb(1, 1))
    local declared = (tvb(1, 1):uint() + 1) * 8
    if declared ~= tvb:len() or tvb:len() < 12 then
        root:add_proto_expert_info(e_malformed,
            string.format("header length says %d octets, the packet has %d (at least 12 needed)", declared, tvb:len()))
        return tvb:len()
    end
    verify_checksum(tvb, root)
    root:add(f.seq, tvb(6, 2))
    local seq = tvb(6, 2):uint()
    local name, detail
    if mh_type == 19 then
        -- The same words as the lab's ladder: reason, then the A and D flags.
        local flags = tvb(9, 1):uint()
        name, detail = "UPN", string.format("reason=%d a=%d d=%d", tvb(8, 1):uint(),
            math.floor(flags / 128) % 2, math.floor(flags / 64) % 2)
        root:add(f.upn_reason, tvb(8, 1))
        root:add(f.upn_a, tvb(9, 1))
        root:add(f.upn_d, tvb(9, 1))
    elseif mh_type == 20 then
        name, detail = "UPA", string.format("status=%d", tvb(8, 1):uint())
        root:add(f.upa_status, tvb(8, 1))
    elseif tvb(8, 1):uint() >= 0x80 then
        local flags = tvb(8, 1):uint()
        local op = (flags % 0x80 >= 0x40) and "del" or ((flags % 0x40 >= 0x20) and "refresh" or "add")
        name, detail = "FMI", string.format("op=%s lifetime=%d", op, tvb(10, 2):uint())
        root:add(f.fmi_i, tvb(8, 1))
        root:add(f.fmi_c, tvb(8, 1))
        root:add(f.fmi_r, tvb(8, 1))
        root:add(f.lifetime, tvb(10, 2))
    else
        name, detail = "FMA", string.format("status=%d", tvb(9, 1):uint())
        root:add(f.fmi_i, tvb(8, 1))
        root:add(f.fma_status, tvb(9, 1))
        root:add(f.lifetime, tvb(10, 2))
    end
    root:add(f.msg, name):set_generated()
    root:append_text(": " .. name)
    pinfo.cols.info = string.format("%s seq=%d %s", name, seq, detail)
    options(tvb, 12, root, pinfo, false)
    return tvb:len()
end

function pmip.dissector(tvb, pinfo, tree)
    if tvb:len() >= 6 then
        local mh_type = tvb(2, 1):uint()
        if mh_type == pmip.prefs.fmi_mh_type or mh_type == 19 or mh_type == 20 then
            return dissect(tvb, pinfo, tree, mh_type)
        end
        local used = mipv6:call(tvb, pinfo, tree)
        -- Wireshark does not verify the checksum of any MH: every message
        -- (PBU, PBA, BRI, BRA, Heartbeat, ...) gets the verdict here.
        local t = tree:add(pmip, tvb(), "Mobility Header checksum (pmiplab)")
        verify_checksum(tvb, t)
        -- PBU (5) and PBA (6) may carry flow options Wireshark leaves opaque.
        if (mh_type == 5 or mh_type == 6) and tvb:len() >= 12 and has_flow_options(tvb) then
            local o = tree:add(pmip, tvb(12), "Flow mobility options (pmiplab)")
            options(tvb, 12, o, pinfo, true)
        end
        return used
    end
    return mipv6:call(tvb, pinfo, tree)
end

ip_proto:add(135, pmip)
