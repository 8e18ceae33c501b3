-- Tailscale DERP frames for Wireshark/tshark (shipped with Spanza).
--
-- Load with: tshark -X lua_script:<path> -r capture.pcapng
-- (spanza.trace.wireshark_plugin() gives the path; or copy it into
-- ~/.local/lib/wireshark/plugins/).
--
-- Spanza's pcapng files carry DERP frames in UDP to port 3340; this
-- dissector decodes every frame (type, length, keys) and hands the
-- payload of SendPacket/RecvPacket (a WireGuard datagram) to Wireshark's
-- own WireGuard dissector, which decrypts it with the file's key log.

local derp = Proto("derp", "Tailscale DERP")

local frame_types = {
    [0x01] = "ServerKey", [0x02] = "ClientInfo", [0x03] = "ServerInfo", [0x04] = "SendPacket",
    [0x05] = "RecvPacket", [0x06] = "KeepAlive", [0x07] = "NotePreferred", [0x08] = "PeerGone",
    [0x09] = "PeerPresent", [0x0a] = "ForwardPacket", [0x10] = "WatchConns", [0x11] = "ClosePeer",
    [0x12] = "Ping", [0x13] = "Pong", [0x14] = "Health", [0x15] = "Restarting",
}

local HDR = 5
local KEY = 32
local SEND_PACKET, RECV_PACKET, FORWARD_PACKET = 0x04, 0x05, 0x0a
local PEER_GONE, PEER_PRESENT, PING, PONG = 0x08, 0x09, 0x12, 0x13

local f_type = ProtoField.uint8("derp.type", "Frame type", base.HEX, frame_types)
local f_len = ProtoField.uint32("derp.len", "Frame length", base.DEC)
local f_dst = ProtoField.bytes("derp.dst", "Destination key")
local f_src = ProtoField.bytes("derp.src", "Source key")
local f_key = ProtoField.bytes("derp.key", "Key")
local f_plen = ProtoField.uint32("derp.packet_len", "Packet length", base.DEC)
local f_ping = ProtoField.bytes("derp.ping", "Ping data")
local f_reason = ProtoField.uint8("derp.peer_gone_reason", "PeerGone reason", base.HEX)
local f_payload = ProtoField.bytes("derp.payload", "Payload")
derp.fields = { f_type, f_len, f_dst, f_src, f_key, f_plen, f_ping, f_reason, f_payload }

local wg = Dissector.get("wg")

local function packet_frame(buf, pinfo, tree, sub, off, ftype, flen, avail)
    local key_field = (ftype == RECV_PACKET) and f_src or f_dst
    if avail < HDR + KEY then return end
    sub:add(key_field, buf(off + HDR, KEY))
    local keys = 1
    if ftype == FORWARD_PACKET and avail >= HDR + 2 * KEY then
        sub:add(f_dst, buf(off + HDR + KEY, KEY))
        keys = 2
    end
    local start = off + HDR + keys * KEY
    local plen = flen - keys * KEY
    sub:add(f_plen, plen):set_generated()
    local have = avail - HDR - keys * KEY
    if have <= 0 then return end
    -- A cut record (snap length) still shows its header; the WireGuard
    -- dissector sees what was kept.
    local payload = buf(start, have):tvb()
    pcall(function() wg:call(payload, pinfo, tree) end)
end

function derp.dissector(buf, pinfo, tree)
    local total = buf:len()
    local off = 0
    local names = {}
    while off + HDR <= total do
        local ftype = buf(off, 1):uint()
        local flen = buf(off + 1, 4):uint()
        local avail = math.min(HDR + flen, total - off)
        local sub = tree:add(derp, buf(off, avail))
        sub:add(f_type, buf(off, 1))
        sub:add(f_len, buf(off + 1, 4))
        local name = frame_types[ftype] or string.format("0x%02x", ftype)
        sub:append_text(": " .. name)
        names[#names + 1] = name
        if ftype == SEND_PACKET or ftype == RECV_PACKET or ftype == FORWARD_PACKET then
            packet_frame(buf, pinfo, tree, sub, off, ftype, flen, avail)
        elseif (ftype == PEER_GONE or ftype == PEER_PRESENT) and avail >= HDR + KEY then
            sub:add(f_key, buf(off + HDR, KEY))
            if ftype == PEER_GONE and avail > HDR + KEY then sub:add(f_reason, buf(off + HDR + KEY, 1)) end
        elseif (ftype == PING or ftype == PONG) and avail >= HDR + 8 then
            sub:add(f_ping, buf(off + HDR, 8))
        elseif avail > HDR then
            sub:add(f_payload, buf(off + HDR, avail - HDR))
        end
        off = off + HDR + flen
    end
    if #names > 0 and not string.find(tostring(pinfo.cols.protocol), "WireGuard") and
       not string.find(tostring(pinfo.cols.protocol), "TCP") then
        pinfo.cols.protocol = "DERP"
    end
    return total
end

DissectorTable.get("udp.port"):add(3340, derp)
