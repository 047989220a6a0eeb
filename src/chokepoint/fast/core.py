"""The offline fast path's per-packet core: record walk, decode, flow key and lookup, TCP state, counters.

This file is compiled by Cython (types in ``core.pxd``, built by ``setup.py``) and is also the pure-Python
fallback when no compiled module is present: one source, so both give the same results (tests/fast/ checks
that they do, and that the fast path's EVE output equals the reference engine's). Readers of this file: it is
written so that the compiled code does not touch Python objects on the common path — locals are C integers,
``p`` is a pointer into the block — and every read is bounds-checked by hand before it happens.

What it does for each record of a block (classic pcap records, or pcapng Enhanced Packet Blocks):

* **decode** the common case natively (Ethernet with 802.1Q/802.1ad tags and a PPPoE session header, Linux
  SLL/SLL2, raw IP; IPv4 without fragmentation; IPv6 without extension headers; TCP and UDP). Every other frame
  — other link types, MPLS, GRE, VXLAN, GTP-U, IP-in-IP, fragments, anything damaged or unusual — goes to the
  reference decoder (:class:`chokepoint.packet.decode.Decoder`, whose ``_descend`` unwraps them), which counts and
  reassembles exactly as it always does; only a frame the native decoder accepts whole is decoded here, so the
  two never disagree about a packet. The ``encap`` labels of a natively unwrapped frame come from the reference
  steps (:func:`chokepoint.packet.decap.link_labels`), cached by the wrapper headers' bytes;
* **find the flow** by a 64-bit hash of its direction-free key in a dict, with a chain for colliding keys;
  the table keeps the reference's semantics (:mod:`chokepoint.flow.table`): per-timeout-class LRU lists
  (intrusive here), packet-time expiry every :data:`EXPIRY_INTERVAL`, the memory budget and emergency mode of
  :mod:`chokepoint.flow.memcap` (unassured flows evicted first);
* **count and track TCP state** as :class:`chokepoint.flow.flow.Flow` does, in C fields;
* **inspect**: the budget is counted here; only a packet that can change something — one with a payload, the
  first inspected one of its direction, or a deferred-rule check — becomes a Python
  :class:`~chokepoint.packet.record.Packet` and goes to :meth:`chokepoint.engine.Engine.examine`. After a
  terminal verdict or past the budget a packet costs only the counting above.

Each flow also has its Python ``Flow`` (created with the flow; the policy sees every flow's first packet);
its counters are written back before each call into Python and when the flow ends.
"""

from chokepoint.flow.flow import Flow, TcpState, port_rank
from chokepoint.flow.key import ip_text
from chokepoint.flow.memcap import DATA_BYTES, FLOW_BYTES, RECOVERY
from chokepoint.packet.decap import MAX_DEPTH, link_labels
from chokepoint.packet.pcap import Frame
from chokepoint.packet.record import Packet

#: Seconds of packet time between two expiry sweeps (as :data:`chokepoint.engine.EXPIRY_INTERVAL`).
EXPIRY_INTERVAL = 1.0
MASK32 = 0xFFFFFFFF
MASK64 = 0xFFFFFFFFFFFFFFFF
_K1 = 0xBF58476D1CE4E5B9
_K2 = 0x94D049BB133111EB
_EXACT = 1 << 53  # integers below this convert to doubles exactly

_TCP = 6
_UDP = 17
_FIN = 0x01
_SYN = 0x02
_RST = 0x04
_ACK = 0x10

# TcpState as small integers, in the order of _STATES
_NONE = 0
_NEW = 1
_SYN_SENT = 2
_SYN_RECEIVED = 3
_ESTABLISHED = 4
_CLOSING = 5
_CLOSED = 6
_STATES = (
    TcpState.NONE,
    TcpState.NEW,
    TcpState.SYN_SENT,
    TcpState.SYN_RECEIVED,
    TcpState.ESTABLISHED,
    TcpState.CLOSING,
    TcpState.CLOSED,
)
#: Timeout classes, in the order the reference table sweeps them ("tcp_new": TCP without a completed handshake,
#: "udp_new": UDP never answered; the unassured flows of :mod:`chokepoint.flow.memcap`).
CLASS_NAMES = ("tcp", "tcp_closed", "udp", "other", "tcp_new", "udp_new")
_CLASSES = 6
_TCP_NEW = 4
_UDP_NEW = 5

#: Ended flows held before ``Core.on_ended`` is called to take them.
ENDED_BATCH = 1024

#: Encapsulation label tuples kept by wrapper headers before the cache starts over.
ENCAP_CACHE = 4096
_NO_ENCAP = ()

#: pcapng block types handled natively
_EPB = 6

# Why a walk stopped (Core.stop)
STOP_NEED_MORE = 0  # the next record is not whole in this block
STOP_BLOCK = 1  # pcapng: the next block is not an Enhanced Packet Block the walker takes (Python handles it)
STOP_ERROR = 2  # classic pcap: an implausible record length (Core.error_what)


def _crc_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return table


class FlowRec:
    """One live flow: identity, counters and TCP state (C fields when compiled), its Python ``Flow``, and
    its links in the hash chain and in its timeout class's LRU list."""

    def __init__(self):
        self.h = 0
        self.version = 0
        self.proto = 0
        self.a_hi = 0
        self.a_lo = 0
        self.pa = 0
        self.b_hi = 0
        self.b_lo = 0
        self.pb = 0
        self.c_hi = 0
        self.c_lo = 0
        self.cport = 0
        self.first_ts = 0.0
        self.last_ts = 0.0
        self.pkts = [0, 0]
        self.nbytes = [0, 0]
        self.pay = [0, 0]
        self.ipkts = [0, 0]
        self.ibytes = [0, 0]
        self.flags = [0, 0]
        self.seq_end = [-1, -1]
        self.syn_seq = [-1, -1]
        self.fin = [False, False]
        self.state = _NONE
        self.syn_seen = False
        self.synack_seen = False
        self.rst_seen = False
        self.inspecting = True
        self.watched = False
        self.decided = False
        self.live = True
        self.cls = 0
        self.flow = None
        self.chain = None
        self.prev = None
        self.next = None


class Core:
    """The flow table and the per-packet path of one engine (one shard of one capture).

    ``engine`` is the :class:`chokepoint.engine.Engine` whose ``examine``/``deferred_due`` inspect and decide;
    ``decoder`` the reference decoder for frames not decoded natively. Flows that end (expired, evicted)
    are appended to ``ended`` as Python ``Flow`` objects, written back (``on_ended``, when set, is called to
    take them every :data:`ENDED_BATCH`); :meth:`finish` ends the rest.
    """

    def __init__(self, engine, decoder, shard=0, shards=1):
        s = engine.settings
        self.engine = engine
        self.decoder = decoder
        self.shard = shard
        self.shards = shards
        self.reassembly = bool(s.reassembly)
        self.max_pkts = s.inspect_max_packets
        self.max_bytes = s.inspect_max_bytes
        self.max_flows = s.max_flows
        self.budget = s.flow_memcap_mb * 1024 * 1024
        self.used = 0
        self.emergency = False
        self.emergency_new_timeout = s.emergency_new_timeout
        self.deferrals = bool(engine.has_deferrals)
        self.timeouts = [
            s.tcp_timeout,
            s.tcp_closed_timeout,
            s.udp_timeout,
            s.other_timeout,
            s.tcp_timeout,
            s.udp_timeout,
        ]
        self.crc = _crc_table()
        self.index = {}
        self.heads = [None, None, None, None, None, None]
        self.tails = [None, None, None, None, None, None]
        self.nflows = 0
        self.next_id = 1
        self.now = 0.0
        self.next_sweep = 0.0
        self.ended = []
        self.on_ended = None  # called when ``ended`` holds ENDED_BATCH flows (the caller empties it)
        self.frames = 0
        self.decoded = 0
        self.slow = 0
        self.packets = 0
        self.flows_created = 0
        self.flows_expired = 0
        self.flows_evicted = 0
        self.evicted_unassured = 0
        self.emergencies = 0
        self.expired_emergency = 0
        self.budget_spent = 0
        self.stop = STOP_NEED_MORE
        self.error_what = ""
        self.encap_now = _NO_ENCAP  # the encapsulation labels of the frame being decoded
        self.encap_cache = {}

    # -- record walks ---------------------------------------------------------------------------------

    def walk_pcap(self, block, pos, little, units, linktype, limit):
        """Walk classic pcap records in ``block`` from ``pos``; return where it stopped (``stop`` says why)."""
        p = block
        n = len(block)
        while pos + 16 <= n:
            if little:
                sec = _le32(p, pos)
                frac = _le32(p, pos + 4)
                caplen = _le32(p, pos + 8)
                orig = _le32(p, pos + 12)
            else:
                sec = _be32(p, pos)
                frac = _be32(p, pos + 4)
                caplen = _be32(p, pos + 8)
                orig = _be32(p, pos + 12)
            if caplen > limit:
                self.stop = STOP_ERROR
                self.error_what = f"implausible captured length {caplen} (limit {limit})"
                return pos
            if pos + 16 + caplen > n:
                break
            self.frames += 1
            self._frame(block, pos + 16, caplen, orig, linktype, sec + frac / units)
            pos += 16 + caplen
        self.stop = STOP_NEED_MORE
        return pos

    def walk_pcapng(self, block, pos, little, interfaces):
        """Walk pcapng Enhanced Packet Blocks of a section from ``pos``; stop (``stop`` says why) at a block
        that is not whole, not an EPB, or not one the reference reader would take inline (Python handles
        it). ``interfaces``: the section's (linktype, snaplen, ticks per second, offset seconds)."""
        p = block
        n = len(block)
        count = len(interfaces)
        while pos + 12 <= n:
            if little:
                btype = _le32(p, pos)
                total = _le32(p, pos + 4)
            else:
                btype = _be32(p, pos)
                total = _be32(p, pos + 4)
            if btype != _EPB or total < 32 or total % 4 or total > 16 * 1024 * 1024:
                self.stop = STOP_BLOCK
                return pos
            if pos + total > n:
                self.stop = STOP_NEED_MORE
                return pos
            end = pos + total - 4
            if little:
                trailer = _le32(p, end)
                iface = _le32(p, pos + 8)
                ts_high = _le32(p, pos + 12)
                ts_low = _le32(p, pos + 16)
                caplen = _le32(p, pos + 20)
                orig = _le32(p, pos + 24)
            else:
                trailer = _be32(p, end)
                iface = _be32(p, pos + 8)
                ts_high = _be32(p, pos + 12)
                ts_low = _be32(p, pos + 16)
                caplen = _be32(p, pos + 20)
                orig = _be32(p, pos + 24)
            if trailer != total or iface >= count or caplen > total - 32:
                self.stop = STOP_BLOCK
                return pos
            linktype, _snaplen, units, tsoffset = interfaces[iface]
            ticks = (ts_high << 32) | ts_low
            self.frames += 1
            self._frame(block, pos + 28, caplen, orig, linktype, _ticks_to_seconds(ticks, units) + tsoffset)
            pos += total
        self.stop = STOP_NEED_MORE
        return pos

    def frame(self, frame):
        """One frame read by Python (a pcapng block the walker left to the reference reader's logic)."""
        self.frames += 1
        self._frame(frame.data, 0, len(frame.data), frame.orig_len, frame.linktype, frame.ts)

    # -- decode ---------------------------------------------------------------------------------------

    def _frame(self, block, off, caplen, orig, linktype, ts):
        """Decode one frame at ``block[off:off + caplen]``, natively when it is the common case."""
        p = block
        end = off + caplen
        self.encap_now = _NO_ENCAP
        if linktype == 1:
            if caplen < 14:
                self._slow(block, off, caplen, orig, linktype, ts)
                return
            self._ethertype(block, off, end, off + 14, _be16(p, off + 12), orig, linktype, ts)
            return
        if linktype in (12, 14, 101, 228, 229):  # raw IP
            if caplen < 1:
                self._slow(block, off, caplen, orig, linktype, ts)
                return
            self._network(block, off, end, off, p[off] >> 4, orig, linktype, ts)
            return
        if linktype == 113 and caplen >= 16:
            self._ethertype(block, off, end, off + 16, _be16(p, off + 14), orig, linktype, ts)
            return
        if linktype == 276 and caplen >= 20:
            ethertype = _be16(p, off)
            if ethertype != 0x0800 and ethertype != 0x86DD:  # SLL2's EtherType is not next to its payload
                self._slow(block, off, caplen, orig, linktype, ts)
                return
            self._ethertype(block, off, end, off + 20, ethertype, orig, linktype, ts)
            return
        self._slow(block, off, caplen, orig, linktype, ts)

    def _ethertype(self, block, start, end, pos, ethertype, orig, linktype, ts):
        """Pop 802.1Q/802.1ad/QinQ tags and a PPPoE session header (carrying IPv4/IPv6 with a two-byte PPP
        protocol), then hand IPv4/IPv6 to :meth:`_network`; any other wrapper goes to the reference decoder."""
        p = block
        first = pos - 2
        labels = 0
        while ethertype == 0x8100 or ethertype == 0x88A8 or ethertype == 0x9100:
            if pos + 4 > end or labels == MAX_DEPTH:
                self._slow(block, start, end - start, orig, linktype, ts)
                return
            ethertype = _be16(p, pos + 2)
            pos += 4
            labels += 1
        key_end = pos
        if ethertype == 0x8864:
            if (
                pos + 8 > end
                or labels == MAX_DEPTH
                or p[pos] != 0x11
                or p[pos + 1] != 0
                or _be16(p, pos + 4) < 2
                or _be16(p, pos + 4) > end - pos - 6
                or p[pos + 6] & 1
            ):
                self._slow(block, start, end - start, orig, linktype, ts)
                return
            protocol = _be16(p, pos + 6)
            key_end = pos + 4  # version, type, code and session id: what the label depends on
            pos += 8
            labels += 1
            if protocol == 0x0021:
                ethertype = 0x0800
            elif protocol == 0x0057:
                ethertype = 0x86DD
            else:
                self._slow(block, start, end - start, orig, linktype, ts)
                return
        if ethertype != 0x0800 and ethertype != 0x86DD:
            self._slow(block, start, end - start, orig, linktype, ts)
            return
        if labels:
            self.encap_now = self._labels(block, start, end, first, key_end)
        if ethertype == 0x0800:
            self._network(block, start, end, pos, 4, orig, linktype, ts)
        else:
            self._network(block, start, end, pos, 6, orig, linktype, ts)

    def _labels(self, block, start, end, first, key_end):
        """The encapsulation labels of the wrapper headers at ``block[first:key_end]`` (from the first EtherType),
        as the reference decoder writes them; cached by those bytes."""
        key = block[first:key_end]
        labels = self.encap_cache.get(key)
        if labels is None:
            if len(self.encap_cache) >= ENCAP_CACHE:
                self.encap_cache.clear()
            labels = link_labels(block[start:end], first - start + 2, _be16(block, first))
            self.encap_cache[key] = labels
        return labels

    def _network(self, block, start, end, off, version, orig, linktype, ts):
        """The IP header at ``off`` (``version`` as the link layer announced it); TCP/UDP go on to
        :meth:`_packet`, anything else to the reference decoder. Decapsulation would go here."""
        p = block
        captured = end - off
        if version == 4:
            if captured < 20 or p[off] >> 4 != 4:
                self._slow(block, start, end - start, orig, linktype, ts)
                return
            hl = (p[off] & 0x0F) << 2
            total = _be16(p, off + 2)
            frag = _be16(p, off + 6)
            proto = p[off + 9]
            if (
                hl < 20
                or hl > captured
                or total < hl
                or total > captured
                or frag & 0x3FFF
                or (proto != 6 and proto != 17)
            ):
                self._slow(block, start, end - start, orig, linktype, ts)
                return
            s_lo = _be32(p, off + 12)
            d_lo = _be32(p, off + 16)
            self._transport(
                block,
                start,
                end,
                off + hl,
                off + total,
                4,
                proto,
                0,
                s_lo,
                0,
                d_lo,
                p[off + 8],
                _be16(p, off + 4),
                (frag & 0x4000) != 0,
                total,
                orig,
                linktype,
                ts,
            )
            return
        if version == 6:
            if captured < 40 or p[off] >> 4 != 6:
                self._slow(block, start, end - start, orig, linktype, ts)
                return
            plen = _be16(p, off + 4)
            nh = p[off + 6]
            if plen == 0 or plen > captured - 40 or (nh != 6 and nh != 17):
                self._slow(block, start, end - start, orig, linktype, ts)
                return
            s_hi = _be64(p, off + 8)
            s_lo = _be64(p, off + 16)
            d_hi = _be64(p, off + 24)
            d_lo = _be64(p, off + 32)
            self._transport(
                block,
                start,
                end,
                off + 40,
                off + 40 + plen,
                6,
                nh,
                s_hi,
                s_lo,
                d_hi,
                d_lo,
                p[off + 7],
                0,
                False,
                40 + plen,
                orig,
                linktype,
                ts,
            )
            return
        self._slow(block, start, end - start, orig, linktype, ts)

    def _transport(
        self,
        block,
        start,
        end,
        pos,
        stop,
        version,
        proto,
        s_hi,
        s_lo,
        d_hi,
        d_lo,
        ttl,
        ip_id,
        df,
        ip_len,
        orig,
        linktype,
        ts,
    ):
        """The TCP or UDP header at ``pos`` (the IP payload ends at ``stop``)."""
        p = block
        available = stop - pos
        if proto == 6:
            if available < 20:
                self._slow(block, start, end - start, orig, linktype, ts)
                return
            offset_byte = p[pos + 12]
            hl = (offset_byte >> 4) << 2
            if hl < 20 or hl > available:
                self._slow(block, start, end - start, orig, linktype, ts)
                return
            flags = p[pos + 13] | ((offset_byte & 0x0F) << 8)
            self.decoded += 1
            self._packet(
                block,
                pos + hl,
                stop - pos - hl,
                None,
                ts,
                version,
                proto,
                s_hi,
                s_lo,
                _be16(p, pos),
                d_hi,
                d_lo,
                _be16(p, pos + 2),
                ttl,
                ip_id,
                df,
                ip_len,
                flags,
                _be32(p, pos + 4),
                _be32(p, pos + 8),
                _be16(p, pos + 14),
                hl,
                orig,
            )
            return
        if available < 8:
            self._slow(block, start, end - start, orig, linktype, ts)
            return
        dport = _be16(p, pos + 2)
        if dport == 4789 or dport == 2152:  # VXLAN, GTP-U: the reference decoder unwraps them
            self._slow(block, start, end - start, orig, linktype, ts)
            return
        length = _be16(p, pos + 4)
        if length > available or length == 0:
            last = stop
        elif length < 8:
            self._slow(block, start, end - start, orig, linktype, ts)
            return
        else:
            last = pos + length
        self.decoded += 1
        self._packet(
            block,
            pos + 8,
            last - pos - 8,
            None,
            ts,
            version,
            proto,
            s_hi,
            s_lo,
            _be16(p, pos),
            d_hi,
            d_lo,
            dport,
            ttl,
            ip_id,
            df,
            ip_len,
            0,
            0,
            0,
            0,
            0,
            orig,
        )

    def _slow(self, block, off, caplen, orig, linktype, ts):
        """A frame the native decoder does not take: the reference decoder decodes or counts it."""
        self.slow += 1
        data = block[off : off + caplen]
        pkt = self.decoder.decode(Frame(ts, linktype, data, orig, self.frames))
        if pkt is None:
            return
        self.decoded += 1
        self.encap_now = pkt.encap
        src = pkt.src
        dst = pkt.dst
        if len(src) == 4:
            s_hi = 0
            s_lo = int.from_bytes(src, "big")
            d_hi = 0
            d_lo = int.from_bytes(dst, "big")
        else:
            s_hi = int.from_bytes(src[:8], "big")
            s_lo = int.from_bytes(src[8:], "big")
            d_hi = int.from_bytes(dst[:8], "big")
            d_lo = int.from_bytes(dst[8:], "big")
        self._packet(
            pkt.payload,
            0,
            len(pkt.payload),
            pkt,
            pkt.ts,
            pkt.ip_version,
            pkt.proto,
            s_hi,
            s_lo,
            pkt.sport,
            d_hi,
            d_lo,
            pkt.dport,
            pkt.ttl,
            pkt.ip_id,
            pkt.df,
            pkt.ip_len,
            pkt.tcp_flags,
            pkt.seq,
            pkt.ack,
            pkt.window,
            pkt.tcp_header_len,
            pkt.frame_len,
        )

    # -- flows ----------------------------------------------------------------------------------------

    def _packet(
        self,
        buf,
        poff,
        plen,
        pkt,
        ts,
        version,
        proto,
        s_hi,
        s_lo,
        sport,
        d_hi,
        d_lo,
        dport,
        ttl,
        ip_id,
        df,
        ip_len,
        flags,
        seq,
        ack,
        window,
        thl,
        frame_len,
    ):
        """One decoded packet (its payload is ``buf[poff:poff + plen]``; ``pkt`` is its Packet when the
        reference decoder made one): the flow, counters, TCP state and, when needed, Python inspection."""
        if s_hi < d_hi or (s_hi == d_hi and (s_lo < d_lo or (s_lo == d_lo and sport <= dport))):
            a_hi = s_hi
            a_lo = s_lo
            pa = sport
            b_hi = d_hi
            b_lo = d_lo
            pb = dport
        else:
            a_hi = d_hi
            a_lo = d_lo
            pa = dport
            b_hi = s_hi
            b_lo = s_lo
            pb = sport
        h = _mix(version, proto, a_hi, a_lo, pa, b_hi, b_lo, pb)
        rec = self._find(h, version, proto, a_hi, a_lo, pa, b_hi, b_lo, pb)
        if rec is None and self.shards > 1:
            if self.shard_of(version, proto, a_hi, a_lo, pa, b_hi, b_lo, pb) != self.shard:
                return
        # the reference engine sweeps before looking the flow up
        if ts >= self.next_sweep:
            self._expire(ts)
            self.next_sweep = ts + EXPIRY_INTERVAL
            if rec is not None and not rec.live:
                rec = None
        if rec is None:
            while self.nflows > 0 and (self.nflows >= self.max_flows or self.used + FLOW_BYTES > self.budget):
                if not self.emergency:
                    self.emergency = True
                    self.emergencies += 1
                self._evict_lru()
            rec = self._create(
                h, version, proto, a_hi, a_lo, pa, b_hi, b_lo, pb, s_hi, s_lo, sport, d_hi, d_lo, dport, flags, ts
            )
        else:
            self._touch(rec)
        self.packets += 1
        if s_hi == rec.c_hi and s_lo == rec.c_lo and sport == rec.cport:
            d = 0
        else:
            d = 1
        rec.pkts[d] += 1
        rec.nbytes[d] += ip_len if ip_len else plen
        rec.pay[d] += plen
        if ts > rec.last_ts:
            rec.last_ts = ts
        if proto == _TCP:
            self._tcp(rec, d, flags, seq, plen)
        elif d == 1 and rec.cls == _UDP_NEW:  # answered: no longer unassured
            self._unlink(rec)
            rec.cls = 2
            self._append(rec)
        decided = False
        if rec.inspecting:
            if rec.ipkts[d] >= self.max_pkts or rec.ibytes[d] >= self.max_bytes:
                if rec.ipkts[1 - d] >= self.max_pkts or rec.ibytes[1 - d] >= self.max_bytes:
                    rec.inspecting = False
                    self.budget_spent += 1
            else:
                rec.ipkts[d] += 1
                rec.ibytes[d] += plen
                if proto == _TCP and flags & _SYN and self.reassembly and rec.syn_seq[d] < 0:
                    rec.syn_seq[d] = seq
                if plen or rec.ipkts[d] == 1 or (proto != _TCP and proto != _UDP):
                    if pkt is None:
                        pkt = self._make_packet(
                            rec, d, buf, poff, plen, ts, version, proto, sport, dport, ttl, ip_id, df, ip_len, flags,
                            seq, ack, window, thl, frame_len
                        )  # fmt: skip
                    decided = self._examine(rec, pkt, d)
        if rec.watched and not decided and not rec.decided:
            if pkt is None:
                pkt = self._make_packet(
                    rec, d, buf, poff, plen, ts, version, proto, sport, dport, ttl, ip_id, df, ip_len, flags, seq,
                    ack, window, thl, frame_len
                )  # fmt: skip
            self._deferred(rec, pkt, d)

    def _tcp(self, rec, d, flags, seq, plen):
        """``Flow.advance_seq`` and ``Flow.update_tcp``, and the timeout class that follows the state."""
        end = (seq + plen + (1 if flags & (_SYN | _FIN) else 0)) & MASK32
        current = rec.seq_end[d]
        if current < 0 or 0 < ((end - current) & MASK32) < 0x80000000:
            rec.seq_end[d] = end
        was = rec.state
        rec.flags[d] |= flags
        if flags & _RST:
            rec.rst_seen = True
            rec.state = _CLOSED
        else:
            if flags & _SYN:
                if flags & _ACK:
                    rec.synack_seen = True
                    if rec.state == _SYN_SENT or rec.state == _NEW:
                        rec.state = _SYN_RECEIVED
                else:
                    rec.syn_seen = True
                    if rec.state == _NEW:
                        rec.state = _SYN_SENT
            elif flags & _ACK and rec.state == _SYN_RECEIVED and d == 0:
                rec.state = _ESTABLISHED
            elif rec.state == _NEW and plen:
                rec.state = _ESTABLISHED
            if flags & _FIN:
                rec.fin[d] = True
                rec.state = _CLOSED if rec.fin[0] and rec.fin[1] else _CLOSING
        if rec.state != was:
            if rec.state == _CLOSED:
                cls = 1
            elif rec.state == _NEW or rec.state == _SYN_SENT or rec.state == _SYN_RECEIVED:
                cls = _TCP_NEW
            else:
                cls = 0
            if cls != rec.cls:
                self._unlink(rec)
                rec.cls = cls
                self._append(rec)

    def _create(
        self, h, version, proto, a_hi, a_lo, pa, b_hi, b_lo, pb, s_hi, s_lo, sport, d_hi, d_lo, dport, flags, ts
    ):
        """A new flow, its roles as ``Flow.from_first_packet`` decides them, and its Python ``Flow``."""
        if proto == _TCP and flags & _SYN:
            client_is_src = not flags & _ACK  # a SYN+ACK seen first: its receiver is the client
        else:
            client_is_src = port_rank(sport, proto == _TCP) >= port_rank(dport, proto == _TCP)
        rec = FlowRec()
        rec.h = h
        rec.version = version
        rec.proto = proto
        rec.a_hi = a_hi
        rec.a_lo = a_lo
        rec.pa = pa
        rec.b_hi = b_hi
        rec.b_lo = b_lo
        rec.pb = pb
        src_ip = _address(version, s_hi, s_lo)
        dst_ip = _address(version, d_hi, d_lo)
        if client_is_src:
            rec.c_hi = s_hi
            rec.c_lo = s_lo
            rec.cport = sport
            c_ip = src_ip
            s_ip = dst_ip
            s_port = dport
        else:
            rec.c_hi = d_hi
            rec.c_lo = d_lo
            rec.cport = dport
            c_ip = dst_ip
            s_ip = src_ip
            s_port = sport
        if a_hi == s_hi and a_lo == s_lo and pa == sport:
            key = (proto, src_ip, pa, dst_ip, pb)
        else:
            key = (proto, dst_ip, pa, src_ip, pb)
        rec.first_ts = ts
        rec.last_ts = ts
        if proto == _TCP:
            rec.state = _NEW
            rec.cls = _TCP_NEW
        elif proto == _UDP:
            rec.cls = _UDP_NEW
        else:
            rec.cls = 3
        flow = Flow(
            self.next_id,
            key,
            proto,
            version,
            c_ip,
            rec.cport,
            s_ip,
            s_port,
            ts,
            ts,
            client_text=ip_text(c_ip),
            server_text=ip_text(s_ip),
            encap=self.encap_now,
        )
        if proto == _TCP:
            flow.tcp_state = TcpState.NEW
        flow.timeout_class = CLASS_NAMES[rec.cls]
        rec.flow = flow
        self.next_id += 1
        rec.chain = self.index.get(h)
        self.index[h] = rec
        self.nflows += 1
        self.used += FLOW_BYTES
        self._append(rec)
        self.flows_created += 1
        return rec

    def _find(self, h, version, proto, a_hi, a_lo, pa, b_hi, b_lo, pb):
        rec = self.index.get(h)
        while rec is not None:
            if (
                rec.a_lo == a_lo
                and rec.b_lo == b_lo
                and rec.pa == pa
                and rec.pb == pb
                and rec.proto == proto
                and rec.a_hi == a_hi
                and rec.b_hi == b_hi
                and rec.version == version
            ):
                return rec
            rec = rec.chain
        return None

    def _remove(self, rec):
        """Take ``rec`` out of the hash chain and its LRU list."""
        head = self.index[rec.h]
        if head is rec:
            if rec.chain is None:
                del self.index[rec.h]
            else:
                self.index[rec.h] = rec.chain
        else:
            while head.chain is not rec:
                head = head.chain
            head.chain = rec.chain
        rec.chain = None
        self._unlink(rec)
        rec.live = False
        self.nflows -= 1
        self.used -= FLOW_BYTES
        if rec.flow.facts is not None:
            self.used -= DATA_BYTES

    # LRU lists: one per timeout class, least recently active at the head
    def _append(self, rec):
        tail = self.tails[rec.cls]
        rec.prev = tail
        rec.next = None
        if tail is None:
            self.heads[rec.cls] = rec
        else:
            tail.next = rec
        self.tails[rec.cls] = rec

    def _unlink(self, rec):
        if rec.prev is None:
            self.heads[rec.cls] = rec.next
        else:
            rec.prev.next = rec.next
        if rec.next is None:
            self.tails[rec.cls] = rec.prev
        else:
            rec.next.prev = rec.prev
        rec.prev = None
        rec.next = None

    def _touch(self, rec):
        if rec.next is not None:
            self._unlink(rec)
            self._append(rec)

    def _expire(self, now):
        """``FlowTable.expire``: every flow idle past its class's timeout at packet time ``now`` ends."""
        if now > self.now:
            self.now = now
        expired = 0
        flagged = 0
        emergency = self.emergency
        for cls in range(_CLASSES):
            timeout = self.timeouts[cls]
            unassured = emergency and (cls == _TCP_NEW or cls == _UDP_NEW)
            if unassured and self.emergency_new_timeout < timeout:
                timeout = self.emergency_new_timeout
            limit = self.now - timeout
            while True:
                rec = self.heads[cls]
                if rec is None or rec.last_ts > limit:
                    break
                self._remove(rec)
                self.flows_expired += 1
                if unassured:
                    self.expired_emergency += 1
                expired += 1
                flow = self._end(rec, "timeout")
                if self.deferrals and flow.watch and flow.verdict is None:
                    flagged += 1
        if expired and self.deferrals:
            self.engine.counters["flows_expired_flagged"] += flagged
        if emergency and self.nflows < RECOVERY * self.max_flows and self.used < RECOVERY * self.budget:
            self.emergency = False

    def _evict_lru(self):
        """The least recently active unassured flow, or if there is none the least recently active one."""
        oldest = self.heads[_TCP_NEW]
        rec = self.heads[_UDP_NEW]
        if rec is not None and (oldest is None or rec.last_ts < oldest.last_ts):
            oldest = rec
        if oldest is not None:
            self.evicted_unassured += 1
        else:
            for cls in range(_CLASSES):
                rec = self.heads[cls]
                if rec is not None and (oldest is None or rec.last_ts < oldest.last_ts):
                    oldest = rec
        if oldest is None:
            return
        self._remove(oldest)
        self.flows_evicted += 1
        self._end(oldest, "evicted")

    def _end(self, rec, reason):
        flow = rec.flow
        self._write_back(rec)
        flow.end_reason = reason
        self.ended.append(flow)
        if self.on_ended is not None and len(self.ended) >= ENDED_BATCH:
            self.on_ended()  # a flood ends a flow per packet: do not hold a whole block's worth of them
        return flow

    def finish(self):
        """End of input: every remaining flow ends, oldest first (as ``FlowTable.drain``)."""
        live = []
        for cls in range(_CLASSES):
            rec = self.heads[cls]
            while rec is not None:
                live.append(rec)
                rec = rec.next
        live.sort(key=_start_order)
        for rec in live:
            self._remove(rec)
            self._end(rec, rec.flow.end_reason or "end-of-capture")

    def counters(self):
        """The engine's and the flow table's counters, as the reference path reports them."""
        out = {"packets": self.packets, "flows_budget_spent": self.budget_spent}
        out["flows_created"] = self.flows_created
        out["flows_expired"] = self.flows_expired
        out["flows_evicted"] = self.flows_evicted
        out["flows_evicted_unassured"] = self.evicted_unassured
        out["flows_emergency_entered"] = self.emergencies
        out["flows_expired_emergency"] = self.expired_emergency
        return out

    # -- Python inspection ----------------------------------------------------------------------------

    def _make_packet(
        self,
        rec,
        d,
        buf,
        poff,
        plen,
        ts,
        version,
        proto,
        sport,
        dport,
        ttl,
        ip_id,
        df,
        ip_len,
        flags,
        seq,
        ack,
        window,
        thl,
        frame_len,
    ):
        flow = rec.flow
        if d == 0:
            src = flow.client_ip
            dst = flow.server_ip
        else:
            src = flow.server_ip
            dst = flow.client_ip
        payload = buf[poff : poff + plen] if plen else b""
        return Packet(
            ts,
            version,
            src,
            dst,
            proto,
            sport,
            dport,
            payload,
            ttl,
            ip_id,
            df,
            ip_len,
            flags,
            seq,
            ack,
            window,
            thl,
            -1,
            -1,
            frame_len,
            1,
            self.frames,
            self.encap_now,
        )

    def _examine(self, rec, pkt, d):
        flow = rec.flow
        self._sync(rec, flow)
        bare = flow.facts is None
        decided = self.engine.examine(flow, pkt, d)
        if bare and flow.facts is not None:
            self.used += DATA_BYTES  # the memory budget (flow/memcap.py)
        rec.inspecting = flow.inspecting  # Python only ever ends inspection (a terminal verdict)
        rec.watched = flow.watch is not None
        rec.decided = flow.verdict is not None
        return decided

    def _deferred(self, rec, pkt, d):
        flow = rec.flow
        self._sync(rec, flow)
        self.engine.deferred_due(flow, pkt, d)
        rec.inspecting = flow.inspecting  # Python only ever ends inspection (a terminal verdict)
        rec.watched = flow.watch is not None
        rec.decided = flow.verdict is not None

    def _sync(self, rec, flow):
        """What inspection reads of the counters kept here."""
        flow.pkts[0] = rec.pkts[0]
        flow.pkts[1] = rec.pkts[1]
        flow.bytes[0] = rec.nbytes[0]
        flow.bytes[1] = rec.nbytes[1]
        flow.inspected_pkts[0] = rec.ipkts[0]
        flow.inspected_pkts[1] = rec.ipkts[1]
        flow.inspected_bytes[0] = rec.ibytes[0]
        flow.inspected_bytes[1] = rec.ibytes[1]
        flow.syn_seq[0] = rec.syn_seq[0] if rec.syn_seq[0] >= 0 else None
        flow.syn_seq[1] = rec.syn_seq[1] if rec.syn_seq[1] >= 0 else None
        flow.last_ts = rec.last_ts
        flow.inspecting = rec.inspecting

    def _write_back(self, rec):
        """Everything kept here, onto the Python Flow (when it ends)."""
        flow = rec.flow
        self._sync(rec, flow)
        flow.payload_bytes[0] = rec.pay[0]
        flow.payload_bytes[1] = rec.pay[1]
        flow.tcp_flags[0] = rec.flags[0]
        flow.tcp_flags[1] = rec.flags[1]
        flow.seq_end[0] = rec.seq_end[0] if rec.seq_end[0] >= 0 else None
        flow.seq_end[1] = rec.seq_end[1] if rec.seq_end[1] >= 0 else None
        flow.fin_seen[0] = rec.fin[0]
        flow.fin_seen[1] = rec.fin[1]
        flow.tcp_state = _STATES[rec.state]
        flow.syn_seen = rec.syn_seen
        flow.synack_seen = rec.synack_seen
        flow.rst_seen = rec.rst_seen
        flow.inspecting = rec.inspecting
        flow.timeout_class = CLASS_NAMES[rec.cls]

    # -- keys -----------------------------------------------------------------------------------------

    def shard_of(self, version, proto, a_hi, a_lo, pa, b_hi, b_lo, pb):
        """``chokepoint.flow.key.shard_of``: CRC-32 of the key's bytes (addresses, ports, protocol) mod shards."""
        c = MASK32
        if version == 6:
            c = self._crc64(c, a_hi)
            c = self._crc64(c, a_lo)
            c = self._crc64(c, b_hi)
            c = self._crc64(c, b_lo)
        else:
            c = self._crc32(c, a_lo)
            c = self._crc32(c, b_lo)
        c = self._crc8(c, pa >> 8)
        c = self._crc8(c, pa & 0xFF)
        c = self._crc8(c, pb >> 8)
        c = self._crc8(c, pb & 0xFF)
        c = self._crc8(c, proto)
        return (c ^ MASK32) % self.shards

    def _crc8(self, c, byte):
        return self.crc[(c ^ byte) & 0xFF] ^ (c >> 8)

    def _crc32(self, c, word):
        c = self._crc8(c, (word >> 24) & 0xFF)
        c = self._crc8(c, (word >> 16) & 0xFF)
        c = self._crc8(c, (word >> 8) & 0xFF)
        return self._crc8(c, word & 0xFF)

    def _crc64(self, c, word):
        c = self._crc32(c, word >> 32)
        return self._crc32(c, word & MASK32)


def _mix(version, proto, a_hi, a_lo, pa, b_hi, b_lo, pb):
    """A 64-bit hash of a flow key (splitmix64 finaliser over its words)."""
    h = (version << 56) ^ (proto << 48) ^ (pa << 16) ^ pb
    h = _fmix((h ^ a_hi) & MASK64)
    h = _fmix((h ^ a_lo) & MASK64)
    h = _fmix((h ^ b_hi) & MASK64)
    h = _fmix((h ^ b_lo) & MASK64)
    return h


def _fmix(x):
    x = (x ^ (x >> 30)) * _K1 & MASK64
    x = (x ^ (x >> 27)) * _K2 & MASK64
    return x ^ (x >> 31)


def _be16(p, off):
    """The big-endian 16-bit word at ``p[off]`` (the caller checked the bounds)."""
    b0 = p[off]
    b1 = p[off + 1]
    return (b0 << 8) | b1


def _be32(p, off):
    b0 = p[off]
    b1 = p[off + 1]
    b2 = p[off + 2]
    b3 = p[off + 3]
    return (b0 << 24) | (b1 << 16) | (b2 << 8) | b3


def _le32(p, off):
    b0 = p[off]
    b1 = p[off + 1]
    b2 = p[off + 2]
    b3 = p[off + 3]
    return (b3 << 24) | (b2 << 16) | (b1 << 8) | b0


def _be64(p, off):
    hi = _be32(p, off)
    lo = _be32(p, off + 4)
    return (hi << 32) | lo


def _address(version, hi, lo):
    if version == 4:
        return lo.to_bytes(4, "big")
    return ((hi << 64) | lo).to_bytes(16, "big")


def _ticks_to_seconds(ticks, units):
    """``ticks / units`` as Python computes it: correctly rounded, also past 2**53 (where converting the
    operands to doubles first could round twice)."""
    if ticks < _EXACT and units < _EXACT:
        t = ticks
        u = units
        return t / u
    return _exact_division(ticks, units)


def _exact_division(a, b):
    return a / b


def _start_order(rec):
    return (rec.first_ts, rec.flow.id)
