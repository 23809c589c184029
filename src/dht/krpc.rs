//! KRPC messages sans I/O (BEP 5, with BEP 32's `nodes6`/`want`, BEP 42's `ip` and BEP 43's
//! `ro`): [`decode`] one UDP payload into a typed [`Message`] and [`encode`] one back. Decoding
//! is bounded before and during parsing: packets over [`MAX_PACKET`] bytes are refused unread,
//! nesting over [`MAX_NESTING`], transaction ids over [`MAX_TID`] bytes, ids not exactly 20
//! bytes, compact node strings not a multiple of 26 (v4) / 38 (v6) or over [`MAX_NODES`] nodes,
//! and `values` over [`MAX_VALUES`] entries or not 6/18 bytes each are all [`KrpcError`]s.
//! Unknown keys are ignored; an unknown query method decodes as [`Query::Unknown`] so the node
//! can answer 204.

use super::id::NodeId;
use crate::bencode::{self, Value};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Largest UDP payload we parse (an Ethernet MTU); bigger ones are refused before parsing.
pub const MAX_PACKET: usize = 1500;
/// Longest transaction id accepted (ours are 2 bytes; clients use up to 4 or 8).
pub const MAX_TID: usize = 16;
/// Most compact nodes read from one `nodes` or `nodes6` string.
pub const MAX_NODES: usize = 32;
/// Most `values` (compact peers) read from one response.
pub const MAX_VALUES: usize = 100;
/// Deepest list/dictionary nesting a KRPC message needs is 3 (`r` → `values` → string).
pub const MAX_NESTING: usize = 4;
/// Longest token accepted in `announce_peer` or a `get_peers` response.
pub const MAX_TOKEN: usize = 64;

/// Which nodes a query wants (BEP 32); both false means "the family the query came in on".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Want {
    pub n4: bool,
    pub n6: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    Ping,
    FindNode {
        target: NodeId,
        want: Want,
    },
    GetPeers {
        info_hash: NodeId,
        want: Want,
    },
    AnnouncePeer {
        info_hash: NodeId,
        port: u16,
        token: Vec<u8>,
        implied_port: bool,
    },
    /// A method we do not speak (answered with error 204).
    Unknown(Vec<u8>),
}

impl Query {
    /// The method name as sent in `q`.
    pub fn method(&self) -> &[u8] {
        match self {
            Query::Ping => b"ping",
            Query::FindNode { .. } => b"find_node",
            Query::GetPeers { .. } => b"get_peers",
            Query::AnnouncePeer { .. } => b"announce_peer",
            Query::Unknown(m) => m,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    pub id: NodeId,
    pub nodes: Vec<(NodeId, SocketAddr)>,
    pub nodes6: Vec<(NodeId, SocketAddr)>,
    pub values: Vec<SocketAddr>,
    pub token: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Query {
        id: NodeId,
        ro: bool,
        query: Query,
    },
    Response(Response),
    /// BEP 5 errors: 201 generic, 202 server, 203 protocol, 204 method unknown.
    Error {
        code: i64,
        message: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub tid: Vec<u8>,
    /// BEP 42: the receiver's address as the sender sees it.
    pub ip: Option<SocketAddr>,
    pub body: Body,
}

/// Why a packet is not a KRPC message we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KrpcError {
    TooLarge,
    Bencode,
    TooDeep,
    NotADict,
    MissingKey(&'static str),
    BadType(&'static str),
    BadTid,
    BadId,
    BadCompact(&'static str),
    TooMany(&'static str),
    BadPort,
    BadY,
}

impl KrpcError {
    /// A short stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            KrpcError::TooLarge => "too_large",
            KrpcError::Bencode => "bencode",
            KrpcError::TooDeep => "too_deep",
            KrpcError::NotADict => "not_a_dict",
            KrpcError::MissingKey(_) => "missing_key",
            KrpcError::BadType(_) => "bad_type",
            KrpcError::BadTid => "bad_tid",
            KrpcError::BadId => "bad_id",
            KrpcError::BadCompact(_) => "bad_compact",
            KrpcError::TooMany(_) => "too_many",
            KrpcError::BadPort => "bad_port",
            KrpcError::BadY => "bad_y",
        }
    }
}

type N<'a> = bencode::Node<'a>;

fn depth(n: &N<'_>) -> usize {
    match &n.value {
        Value::Int(_) | Value::Bytes(_) => 0,
        Value::List(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Dict(entries) => 1 + entries.iter().map(|(_, v)| depth(v)).max().unwrap_or(0),
    }
}

fn bytes<'a>(n: &N<'a>, key: &'static str) -> Result<Option<&'a [u8]>, KrpcError> {
    match n.get(key).map(|v| &v.value) {
        None => Ok(None),
        Some(Value::Bytes(b)) => Ok(Some(b)),
        Some(_) => Err(KrpcError::BadType(key)),
    }
}

fn need<'a>(n: &N<'a>, key: &'static str) -> Result<&'a [u8], KrpcError> {
    bytes(n, key)?.ok_or(KrpcError::MissingKey(key))
}

fn int(n: &N<'_>, key: &'static str) -> Result<Option<i64>, KrpcError> {
    match n.get(key).map(|v| &v.value) {
        None => Ok(None),
        Some(Value::Int(i)) => Ok(Some(*i)),
        Some(_) => Err(KrpcError::BadType(key)),
    }
}

fn id20(b: &[u8]) -> Result<NodeId, KrpcError> {
    <[u8; 20]>::try_from(b)
        .map(NodeId)
        .map_err(|_| KrpcError::BadId)
}

/// A compact address: 4+2 or 16+2 bytes. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) in the
/// 18-byte form is refused (None): IPv4 nodes and peers are sent in the 6-byte form, and taking
/// one from an IPv6 list would put an IPv4 node in the IPv6 table (and would not encode back
/// to what was received). Found by the `krpc` fuzz target.
pub fn compact_addr(b: &[u8]) -> Option<SocketAddr> {
    match b.len() {
        6 => {
            let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            Some(SocketAddr::new(ip.into(), u16::from_be_bytes([b[4], b[5]])))
        }
        18 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[..16]);
            let port = u16::from_be_bytes([b[16], b[17]]);
            let ip = Ipv6Addr::from(o);
            if ip.to_ipv4_mapped().is_some() {
                return None;
            }
            Some(SocketAddr::new(ip.into(), port))
        }
        _ => None,
    }
}

/// Appends `addr` in compact form (an IPv4-mapped IPv6 address is written as IPv4).
pub fn put_compact_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip().to_canonical() {
        IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

fn nodes(b: &[u8], v6: bool, key: &'static str) -> Result<Vec<(NodeId, SocketAddr)>, KrpcError> {
    let each = if v6 { 38 } else { 26 };
    if b.len() % each != 0 {
        return Err(KrpcError::BadCompact(key));
    }
    if b.len() / each > MAX_NODES {
        return Err(KrpcError::TooMany(key));
    }
    // An IPv4-mapped entry in `nodes6` is left out (see `compact_addr`).
    Ok(b.chunks(each)
        .filter_map(|c| {
            let id = NodeId(c[..20].try_into().expect("20 bytes"));
            Some((id, compact_addr(&c[20..])?))
        })
        .collect())
}

fn want(a: &N<'_>) -> Result<Want, KrpcError> {
    let mut w = Want::default();
    match a.get("want").map(|v| &v.value) {
        None => {}
        Some(Value::List(items)) => {
            if items.len() > 8 {
                return Err(KrpcError::TooMany("want"));
            }
            for it in items {
                match it.value {
                    Value::Bytes(b"n4") => w.n4 = true,
                    Value::Bytes(b"n6") => w.n6 = true,
                    Value::Bytes(_) => {}
                    _ => return Err(KrpcError::BadType("want")),
                }
            }
        }
        Some(_) => return Err(KrpcError::BadType("want")),
    }
    Ok(w)
}

fn token(b: Option<&[u8]>) -> Result<Option<Vec<u8>>, KrpcError> {
    match b {
        Some(t) if t.len() > MAX_TOKEN => Err(KrpcError::TooMany("token")),
        other => Ok(other.map(<[u8]>::to_vec)),
    }
}

fn query(method: &[u8], a: &N<'_>) -> Result<Query, KrpcError> {
    Ok(match method {
        b"ping" => Query::Ping,
        b"find_node" => Query::FindNode {
            target: id20(need(a, "target")?)?,
            want: want(a)?,
        },
        b"get_peers" => Query::GetPeers {
            info_hash: id20(need(a, "info_hash")?)?,
            want: want(a)?,
        },
        b"announce_peer" => {
            let implied_port = int(a, "implied_port")?.unwrap_or(0) != 0;
            let port = int(a, "port")?;
            let port = match (port, implied_port) {
                (Some(p), _) => u16::try_from(p).map_err(|_| KrpcError::BadPort)?,
                (None, true) => 0,
                (None, false) => return Err(KrpcError::MissingKey("port")),
            };
            Query::AnnouncePeer {
                info_hash: id20(need(a, "info_hash")?)?,
                port,
                token: token(Some(need(a, "token")?))?.unwrap_or_default(),
                implied_port,
            }
        }
        other => Query::Unknown(other[..other.len().min(32)].to_vec()),
    })
}

fn response(r: &N<'_>) -> Result<Response, KrpcError> {
    let mut out = Response {
        id: id20(need(r, "id")?)?,
        ..Response::default()
    };
    if let Some(b) = bytes(r, "nodes")? {
        out.nodes = nodes(b, false, "nodes")?;
    }
    if let Some(b) = bytes(r, "nodes6")? {
        out.nodes6 = nodes(b, true, "nodes6")?;
    }
    out.token = token(bytes(r, "token")?)?;
    match r.get("values").map(|v| &v.value) {
        None => {}
        Some(Value::List(items)) => {
            if items.len() > MAX_VALUES {
                return Err(KrpcError::TooMany("values"));
            }
            for it in items {
                let Value::Bytes(b) = it.value else {
                    return Err(KrpcError::BadType("values"));
                };
                if b.len() != 6 && b.len() != 18 {
                    return Err(KrpcError::BadCompact("values"));
                }
                // An IPv4-mapped peer is left out (see `compact_addr`).
                out.values.extend(compact_addr(b));
            }
        }
        Some(_) => return Err(KrpcError::BadType("values")),
    }
    Ok(out)
}

/// Decodes one KRPC packet.
pub fn decode(packet: &[u8]) -> Result<Message, KrpcError> {
    if packet.len() > MAX_PACKET {
        return Err(KrpcError::TooLarge);
    }
    let root = bencode::decode(packet).map_err(|_| KrpcError::Bencode)?;
    if depth(&root) > MAX_NESTING {
        return Err(KrpcError::TooDeep);
    }
    if !matches!(root.value, Value::Dict(_)) {
        return Err(KrpcError::NotADict);
    }
    let tid = need(&root, "t")?;
    if tid.len() > MAX_TID {
        return Err(KrpcError::BadTid);
    }
    let ip = match bytes(&root, "ip")? {
        None => None,
        Some(b) if b.len() != 6 && b.len() != 18 => return Err(KrpcError::BadCompact("ip")),
        // An IPv4-mapped `ip` says nothing we can use: as if absent.
        Some(b) => compact_addr(b),
    };
    let body = match need(&root, "y")? {
        b"q" => {
            let method = need(&root, "q")?;
            let a = root.get("a").ok_or(KrpcError::MissingKey("a"))?;
            if !matches!(a.value, Value::Dict(_)) {
                return Err(KrpcError::BadType("a"));
            }
            let ro = int(&root, "ro")?.unwrap_or(0) == 1;
            Body::Query {
                id: id20(need(a, "id")?)?,
                ro,
                query: query(method, a)?,
            }
        }
        b"r" => {
            let r = root.get("r").ok_or(KrpcError::MissingKey("r"))?;
            if !matches!(r.value, Value::Dict(_)) {
                return Err(KrpcError::BadType("r"));
            }
            Body::Response(response(r)?)
        }
        b"e" => match root.get("e").map(|v| &v.value) {
            Some(Value::List(items)) => match items.as_slice() {
                [code, msg, ..] => match (&code.value, &msg.value) {
                    (Value::Int(c), Value::Bytes(m)) => Body::Error {
                        code: *c,
                        message: m[..m.len().min(128)].to_vec(),
                    },
                    _ => return Err(KrpcError::BadType("e")),
                },
                _ => return Err(KrpcError::BadType("e")),
            },
            Some(_) => return Err(KrpcError::BadType("e")),
            None => return Err(KrpcError::MissingKey("e")),
        },
        _ => return Err(KrpcError::BadY),
    };
    Ok(Message {
        tid: tid.to_vec(),
        ip,
        body,
    })
}

fn bstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(s);
}

fn bint(out: &mut Vec<u8>, i: i64) {
    out.push(b'i');
    out.extend_from_slice(i.to_string().as_bytes());
    out.push(b'e');
}

fn compact_nodes(list: &[(NodeId, SocketAddr)]) -> Vec<u8> {
    let mut b = Vec::with_capacity(list.len() * 38);
    for (id, addr) in list {
        b.extend_from_slice(&id.0);
        put_compact_addr(&mut b, *addr);
    }
    b
}

fn encode_want(out: &mut Vec<u8>, w: Want) {
    if w.n4 || w.n6 {
        bstr(out, b"want");
        out.push(b'l');
        if w.n4 {
            bstr(out, b"n4");
        }
        if w.n6 {
            bstr(out, b"n6");
        }
        out.push(b'e');
    }
}

/// Encodes `msg` canonically (keys sorted).
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(b'd');
    match &msg.body {
        Body::Query { id, query, .. } => {
            bstr(&mut out, b"a");
            out.push(b'd');
            bstr(&mut out, b"id");
            bstr(&mut out, &id.0);
            match query {
                Query::Ping | Query::Unknown(_) => {}
                Query::FindNode { target, want } => {
                    bstr(&mut out, b"target");
                    bstr(&mut out, &target.0);
                    encode_want(&mut out, *want);
                }
                Query::GetPeers { info_hash, want } => {
                    bstr(&mut out, b"info_hash");
                    bstr(&mut out, &info_hash.0);
                    encode_want(&mut out, *want);
                }
                Query::AnnouncePeer {
                    info_hash,
                    port,
                    token,
                    implied_port,
                } => {
                    if *implied_port {
                        bstr(&mut out, b"implied_port");
                        bint(&mut out, 1);
                    }
                    bstr(&mut out, b"info_hash");
                    bstr(&mut out, &info_hash.0);
                    bstr(&mut out, b"port");
                    bint(&mut out, i64::from(*port));
                    bstr(&mut out, b"token");
                    bstr(&mut out, token);
                }
            }
            out.push(b'e');
        }
        Body::Error { code, message } => {
            bstr(&mut out, b"e");
            out.push(b'l');
            bint(&mut out, *code);
            bstr(&mut out, message);
            out.push(b'e');
        }
        Body::Response(_) => {}
    }
    if let Some(ip) = msg.ip {
        bstr(&mut out, b"ip");
        let mut b = Vec::with_capacity(18);
        put_compact_addr(&mut b, ip);
        bstr(&mut out, &b);
    }
    match &msg.body {
        Body::Query { query, ro, .. } => {
            bstr(&mut out, b"q");
            bstr(&mut out, query.method());
            if *ro {
                bstr(&mut out, b"ro");
                bint(&mut out, 1);
            }
        }
        Body::Response(r) => {
            bstr(&mut out, b"r");
            out.push(b'd');
            bstr(&mut out, b"id");
            bstr(&mut out, &r.id.0);
            if !r.nodes.is_empty() {
                bstr(&mut out, b"nodes");
                bstr(&mut out, &compact_nodes(&r.nodes));
            }
            if !r.nodes6.is_empty() {
                bstr(&mut out, b"nodes6");
                bstr(&mut out, &compact_nodes(&r.nodes6));
            }
            if let Some(t) = &r.token {
                bstr(&mut out, b"token");
                bstr(&mut out, t);
            }
            if !r.values.is_empty() {
                bstr(&mut out, b"values");
                out.push(b'l');
                for v in &r.values {
                    let mut b = Vec::with_capacity(18);
                    put_compact_addr(&mut b, *v);
                    bstr(&mut out, &b);
                }
                out.push(b'e');
            }
            out.push(b'e');
        }
        Body::Error { .. } => {}
    }
    bstr(&mut out, b"t");
    bstr(&mut out, &msg.tid);
    bstr(&mut out, b"y");
    bstr(
        &mut out,
        match msg.body {
            Body::Query { .. } => b"q",
            Body::Response(_) => b"r",
            Body::Error { .. } => b"e",
        },
    );
    out.push(b'e');
    out
}

#[cfg(test)]
#[path = "krpc_tests.rs"]
mod tests;
