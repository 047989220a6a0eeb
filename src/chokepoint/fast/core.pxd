# C types for core.py when Cython compiles it (an "augmenting" .pxd: core.py stays plain Python).
# Every multi-byte read widens its bytes first (_be16/_be32/_le32/_be64); lengths are Py_ssize_t;
# sequence numbers and addresses are unsigned 64-bit; -1 stands for "not seen" in seq_end/syn_seq.
import cython

cdef unsigned long long MASK32, MASK64, _K1, _K2, _EXACT
cdef int _TCP, _UDP, _FIN, _SYN, _RST, _ACK
cdef int _NONE, _NEW, _SYN_SENT, _SYN_RECEIVED, _ESTABLISHED, _CLOSING, _CLOSED
cdef int _EPB, _CLASSES, _TCP_NEW, _UDP_NEW, ENDED_BATCH
cdef long long FLOW_BYTES, DATA_BYTES
cdef double RECOVERY
cdef int MAX_DEPTH


cdef class FlowRec:
    cdef public unsigned long long h, a_hi, a_lo, b_hi, b_lo, c_hi, c_lo
    cdef public int version, proto, state, cls
    cdef public unsigned int pa, pb, cport
    cdef public double first_ts, last_ts
    cdef long long pkts[2]
    cdef long long nbytes[2]
    cdef long long pay[2]
    cdef long long ipkts[2]
    cdef long long ibytes[2]
    cdef long long seq_end[2]
    cdef long long syn_seq[2]
    cdef unsigned int flags[2]
    cdef bint fin[2]
    cdef public bint syn_seen, synack_seen, rst_seen, inspecting, watched, decided, live
    cdef public object flow
    cdef public FlowRec chain, prev, next


cdef class Core:
    cdef public object engine, decoder
    cdef public int shard, shards
    cdef bint reassembly, deferrals
    cdef long long max_pkts, max_bytes, max_flows
    cdef public long long budget, used
    cdef public bint emergency
    cdef double emergency_new_timeout
    cdef double timeouts[6]
    cdef unsigned int crc[256]
    cdef dict index
    cdef list heads, tails
    cdef public long long nflows, next_id, frames, decoded, slow, packets
    cdef public long long flows_created, flows_expired, flows_evicted, budget_spent
    cdef public long long evicted_unassured, emergencies, expired_emergency
    cdef public double now, next_sweep
    cdef public list ended
    cdef public object on_ended
    cdef public int stop
    cdef public str error_what
    cdef public object encap_now
    cdef dict encap_cache

    @cython.locals(p="const unsigned char *", n=Py_ssize_t, sec=cython.uint, frac=cython.uint, caplen=cython.uint,
                   orig=cython.uint)
    cpdef Py_ssize_t walk_pcap(self, bytes block, Py_ssize_t pos, bint little, double units, int linktype,
                               unsigned int limit) except -1

    @cython.locals(p="const unsigned char *", n=Py_ssize_t, count=Py_ssize_t, btype=cython.uint, total=cython.uint,
                   end=Py_ssize_t, trailer=cython.uint, iface=cython.uint, ts_high=cython.ulonglong,
                   ts_low=cython.uint, caplen=cython.uint, orig=cython.uint, ticks=cython.ulonglong,
                   linktype=cython.int, tsoffset=cython.longlong)
    cpdef Py_ssize_t walk_pcapng(self, bytes block, Py_ssize_t pos, bint little, list interfaces) except -1

    cpdef frame(self, frame)

    @cython.locals(p="const unsigned char *", end=Py_ssize_t, ethertype=cython.uint)
    cdef _frame(self, bytes block, Py_ssize_t off, Py_ssize_t caplen, unsigned int orig, int linktype, double ts)

    @cython.locals(p="const unsigned char *", first=Py_ssize_t, labels=cython.int, key_end=Py_ssize_t,
                   protocol=cython.uint)
    cdef _ethertype(self, bytes block, Py_ssize_t start, Py_ssize_t end, Py_ssize_t pos, unsigned int ethertype,
                    unsigned int orig, int linktype, double ts)

    cdef object _labels(self, bytes block, Py_ssize_t start, Py_ssize_t end, Py_ssize_t first, Py_ssize_t key_end)

    @cython.locals(p="const unsigned char *", captured=Py_ssize_t, hl=Py_ssize_t, total=Py_ssize_t, frag=cython.uint,
                   proto=cython.int, nh=cython.int, plen=Py_ssize_t, s_hi=cython.ulonglong, s_lo=cython.ulonglong,
                   d_hi=cython.ulonglong, d_lo=cython.ulonglong)
    cdef _network(self, bytes block, Py_ssize_t start, Py_ssize_t end, Py_ssize_t off, int version,
                  unsigned int orig, int linktype, double ts)

    @cython.locals(p="const unsigned char *", available=Py_ssize_t, offset_byte=cython.uint, hl=Py_ssize_t,
                   flags=cython.uint, length=Py_ssize_t, last=Py_ssize_t, dport=cython.uint)
    cdef _transport(self, bytes block, Py_ssize_t start, Py_ssize_t end, Py_ssize_t pos, Py_ssize_t stop, int version,
                    int proto, unsigned long long s_hi, unsigned long long s_lo, unsigned long long d_hi,
                    unsigned long long d_lo, int ttl, unsigned int ip_id, bint df, long long ip_len,
                    unsigned int orig, int linktype, double ts)

    @cython.locals(s_hi=cython.ulonglong, s_lo=cython.ulonglong, d_hi=cython.ulonglong, d_lo=cython.ulonglong)
    cdef _slow(self, bytes block, Py_ssize_t off, Py_ssize_t caplen, unsigned int orig, int linktype, double ts)

    @cython.locals(a_hi=cython.ulonglong, a_lo=cython.ulonglong, pa=cython.uint, b_hi=cython.ulonglong,
                   b_lo=cython.ulonglong, pb=cython.uint, h=cython.ulonglong, rec=FlowRec, d=cython.int,
                   decided=cython.bint)
    cdef _packet(self, object buf, Py_ssize_t poff, Py_ssize_t plen, object pkt, double ts, int version, int proto,
                 unsigned long long s_hi, unsigned long long s_lo, unsigned int sport, unsigned long long d_hi,
                 unsigned long long d_lo, unsigned int dport, int ttl, unsigned int ip_id, bint df, long long ip_len,
                 unsigned int flags, unsigned long long seq, unsigned long long ack, unsigned int window, int thl,
                 long long frame_len)

    @cython.locals(end=cython.longlong, current=cython.longlong, was=cython.int, cls=cython.int)
    cdef _tcp(self, FlowRec rec, int d, unsigned int flags, unsigned long long seq, Py_ssize_t plen)

    @cython.locals(client_is_src=cython.bint, rec=FlowRec, s_port=cython.uint)
    cdef FlowRec _create(self, unsigned long long h, int version, int proto, unsigned long long a_hi,
                         unsigned long long a_lo, unsigned int pa, unsigned long long b_hi, unsigned long long b_lo,
                         unsigned int pb, unsigned long long s_hi, unsigned long long s_lo, unsigned int sport,
                         unsigned long long d_hi, unsigned long long d_lo, unsigned int dport, unsigned int flags,
                         double ts)

    @cython.locals(rec=FlowRec)
    cdef FlowRec _find(self, unsigned long long h, int version, int proto, unsigned long long a_hi,
                       unsigned long long a_lo, unsigned int pa, unsigned long long b_hi, unsigned long long b_lo,
                       unsigned int pb)

    @cython.locals(head=FlowRec)
    cdef _remove(self, FlowRec rec)
    @cython.locals(tail=FlowRec)
    cdef _append(self, FlowRec rec)
    cdef _unlink(self, FlowRec rec)
    cdef _touch(self, FlowRec rec)

    @cython.locals(cls=cython.int, limit=cython.double, timeout=cython.double, rec=FlowRec, expired=cython.longlong,
                   flagged=cython.longlong, emergency=cython.bint, unassured=cython.bint)
    cdef _expire(self, double now)

    @cython.locals(oldest=FlowRec, rec=FlowRec, cls=cython.int)
    cdef _evict_lru(self)

    cdef _end(self, FlowRec rec, str reason)

    cdef _make_packet(self, FlowRec rec, int d, object buf, Py_ssize_t poff, Py_ssize_t plen, double ts, int version,
                      int proto, unsigned int sport, unsigned int dport, int ttl, unsigned int ip_id, bint df,
                      long long ip_len, unsigned int flags, unsigned long long seq, unsigned long long ack,
                      unsigned int window, int thl, long long frame_len)

    @cython.locals(bare=cython.bint)
    cdef bint _examine(self, FlowRec rec, object pkt, int d) except -1
    cdef _deferred(self, FlowRec rec, object pkt, int d)
    cdef _sync(self, FlowRec rec, object flow)
    cdef _write_back(self, FlowRec rec)

    @cython.locals(c=cython.uint)
    cpdef int shard_of(self, int version, int proto, unsigned long long a_hi, unsigned long long a_lo, unsigned int pa,
                       unsigned long long b_hi, unsigned long long b_lo, unsigned int pb)
    cdef unsigned int _crc8(self, unsigned int c, unsigned int byte)
    cdef unsigned int _crc32(self, unsigned int c, unsigned long long word)
    cdef unsigned int _crc64(self, unsigned int c, unsigned long long word)


@cython.locals(h=cython.ulonglong)
cdef unsigned long long _mix(int version, int proto, unsigned long long a_hi, unsigned long long a_lo, unsigned int pa,
                             unsigned long long b_hi, unsigned long long b_lo, unsigned int pb)
cdef unsigned long long _fmix(unsigned long long x)

@cython.locals(b0=cython.uint, b1=cython.uint)
cdef unsigned int _be16(const unsigned char *p, Py_ssize_t off)
@cython.locals(b0=cython.uint, b1=cython.uint, b2=cython.uint, b3=cython.uint)
cdef unsigned int _be32(const unsigned char *p, Py_ssize_t off)
@cython.locals(b0=cython.uint, b1=cython.uint, b2=cython.uint, b3=cython.uint)
cdef unsigned int _le32(const unsigned char *p, Py_ssize_t off)
@cython.locals(hi=cython.ulonglong, lo=cython.ulonglong)
cdef unsigned long long _be64(const unsigned char *p, Py_ssize_t off)

@cython.locals(t=cython.double, u=cython.double)
cdef double _ticks_to_seconds(unsigned long long ticks, object units) except? -1.0
