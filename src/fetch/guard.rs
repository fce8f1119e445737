//! The SSRF guard's address classifier: which IP addresses an `ImageUrl` may never reach
//! (loopback, private, link-local, CGNAT, multicast, documentation, reserved, ...).
//!
//! A pure function of the address; the fetcher (`fetch/mod.rs`) applies it to every
//! resolved candidate and to the connected socket's peer. Not here: resolving or connecting.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused by the SSRF guard. `Display` reads as a noun phrase
/// ("a loopback address") for use inside messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrClass {
    /// `0.0.0.0`, `::`.
    Unspecified,
    /// `0.0.0.0/8` other than `0.0.0.0`: "this network", reaches the local host on Linux.
    ThisNetwork,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918: `10/8`, `172.16/12`, `192.168/16`.
    Private,
    /// `fc00::/7`, the IPv6 counterpart of RFC 1918.
    UniqueLocal,
    /// `100.64.0.0/10`, carrier-grade NAT (RFC 6598).
    SharedAddressSpace,
    /// `169.254.0.0/16` (cloud metadata services live here), `fe80::/10`.
    LinkLocal,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18.0.0/15`.
    Benchmarking,
    /// Any other special-purpose or unallocated range (`240/4`, `192.0.0/24`, IPv6 outside
    /// `2000::/3`, `2001::/23`, local-use NAT64, ...).
    Reserved,
}

impl fmt::Display for AddrClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "an unspecified address",
            Self::ThisNetwork => "a \"this network\" address (0.0.0.0/8)",
            Self::Loopback => "a loopback address",
            Self::Private => "a private address",
            Self::UniqueLocal => "a unique local address (fc00::/7)",
            Self::SharedAddressSpace => "a carrier-grade NAT address (100.64.0.0/10)",
            Self::LinkLocal => "a link-local address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "the broadcast address",
            Self::Documentation => "a documentation address",
            Self::Benchmarking => "a benchmarking address (198.18.0.0/15)",
            Self::Reserved => "a reserved special-purpose address",
        })
    }
}

/// The SSRF guard's verdict on one address: `None` when it is an ordinary public address,
/// otherwise why it is refused. IPv6 addresses that embed an IPv4 address and are routed to
/// it (IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by
/// the embedded address.
pub fn classify_ip(ip: IpAddr) -> Option<AddrClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Whether `n` lies in `net/len`.
fn in_v4(n: u32, net: [u8; 4], len: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    n & mask == u32::from_be_bytes(net) & mask
}

fn in_v6(n: u128, net: Ipv6Addr, len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    n & mask == u128::from(net) & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddrClass> {
    use AddrClass::*;
    let n = u32::from(ip);
    // Most specific first: single addresses, then ranges inside larger ones.
    let class = if n == 0 {
        Unspecified
    } else if n == u32::MAX {
        Broadcast
    } else if in_v4(n, [0, 0, 0, 0], 8) {
        ThisNetwork
    } else if in_v4(n, [127, 0, 0, 0], 8) {
        Loopback
    } else if in_v4(n, [10, 0, 0, 0], 8)
        || in_v4(n, [172, 16, 0, 0], 12)
        || in_v4(n, [192, 168, 0, 0], 16)
    {
        Private
    } else if in_v4(n, [100, 64, 0, 0], 10) {
        SharedAddressSpace
    } else if in_v4(n, [169, 254, 0, 0], 16) {
        LinkLocal
    } else if in_v4(n, [224, 0, 0, 0], 4) {
        Multicast
    } else if in_v4(n, [192, 0, 2, 0], 24)
        || in_v4(n, [198, 51, 100, 0], 24)
        || in_v4(n, [203, 0, 113, 0], 24)
    {
        Documentation
    } else if in_v4(n, [198, 18, 0, 0], 15) {
        Benchmarking
    } else if in_v4(n, [240, 0, 0, 0], 4)
        // IETF protocol assignments (RFC 6890), deprecated 6to4 relay anycast (RFC 7526).
        || in_v4(n, [192, 0, 0, 0], 24)
        || in_v4(n, [192, 88, 99, 0], 24)
    {
        Reserved
    } else {
        return None;
    };
    Some(class)
}

/// The IPv4 address in the low 32 bits.
fn low_v4(n: u128) -> Ipv4Addr {
    Ipv4Addr::from((n & 0xffff_ffff) as u32)
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddrClass> {
    use AddrClass::*;
    let n = u128::from(ip);
    // Embeddings that the network routes to the embedded IPv4 address: judge that address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    if in_v6(n, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        return classify_v4(low_v4(n));
    }
    if in_v6(n, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        // 6to4: bits 16..48 are the IPv4 address of the site.
        return classify_v4(Ipv4Addr::from(((n >> 80) & 0xffff_ffff) as u32));
    }
    let class = if ip.is_unspecified() {
        Unspecified
    } else if ip.is_loopback() {
        Loopback
    } else if in_v6(n, Ipv6Addr::UNSPECIFIED, 96) {
        // Deprecated IPv4-compatible `::a.b.c.d`: name the embedded address's class when it
        // has one, so the message is useful; refused either way.
        classify_v4(low_v4(n)).unwrap_or(Reserved)
    } else if in_v6(n, Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7) {
        UniqueLocal
    } else if in_v6(n, Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10) {
        LinkLocal
    } else if in_v6(n, Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8) {
        Multicast
    } else if in_v6(n, Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32)
        || in_v6(n, Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20)
    {
        Documentation
    } else if !in_v6(n, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3)
        // Only 2000::/3 is global unicast; everything else (site-local fec0::/10, discard
        // 100::/64, local-use NAT64 64:ff9b:1::/48, IPv4-translated ::ffff:0:0:0/96, ...)
        // is special or unallocated.
        // 2001::/23: IETF protocol assignments (Teredo, benchmarking 2001:2::/48, ORCHID).
        || in_v6(n, Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23)
    {
        Reserved
    } else {
        return None;
    };
    Some(class)
}
