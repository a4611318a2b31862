//! How far an agent's address reaches: anywhere, one network, or one host.
//!
//! An agent registers every address it listens on, loopback and LAN ones
//! included, because a private registry serves a private network. A public
//! registry must not hand those out: a client anywhere would dial into its
//! own LAN on a stranger's say-so. [`reach`] tells them apart, from the
//! address alone (no DNS lookup, so a public name may still resolve to a
//! private address).

use std::net::{Ipv4Addr, Ipv6Addr};

use multiaddr::{Multiaddr, Protocol};

/// Who can reach an address, widest first (the order sorts best first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reach {
    /// Anyone on the internet: a global IP address or a DNS name that is not
    /// a local one.
    Public,
    /// Only the same network: private, shared (carrier-grade NAT),
    /// link-local and unique-local ranges, `.local` names, and addresses
    /// that are not IP addresses at all (memory, Unix sockets).
    Local,
    /// Only the same host, or nobody: loopback, unspecified, multicast,
    /// broadcast, documentation and reserved ranges, `localhost`.
    Host,
}

/// How far `addr` reaches, from its first component.
pub fn reach(addr: &Multiaddr) -> Reach {
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => reach_v4(ip),
        Some(Protocol::Ip6(ip)) => reach_v6(ip),
        Some(Protocol::Dns(name) | Protocol::Dns4(name) | Protocol::Dns6(name))
        | Some(Protocol::Dnsaddr(name)) => reach_name(&name),
        _ => Reach::Local,
    }
}

fn reach_v4(ip: Ipv4Addr) -> Reach {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        // 0.0.0.0/8 "this network", 240.0.0.0/4 reserved, 198.18.0.0/15 benchmarking.
        || a == 0
        || a >= 240
        || (a == 198 && (b & 0xfe) == 18)
    {
        Reach::Host
    } else if ip.is_private()
        || ip.is_link_local()
        // 100.64.0.0/10, shared by carrier-grade NAT.
        || (a == 100 && (b & 0xc0) == 64)
    {
        Reach::Local
    } else {
        Reach::Public
    }
}

fn reach_v6(ip: Ipv6Addr) -> Reach {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return reach_v4(v4);
    }
    let first = ip.segments()[0];
    if ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // 2001:db8::/32, documentation.
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
    {
        Reach::Host
    } else if ip.is_unique_local() || ip.is_unicast_link_local() {
        Reach::Local
    } else if (first & 0xe000) == 0x2000 {
        // 2000::/3 is what is allocated for global unicast.
        Reach::Public
    } else {
        Reach::Host
    }
}

fn reach_name(name: &str) -> Reach {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        Reach::Host
    } else if !name.contains('.')
        || [".local", ".lan", ".home.arpa", ".internal"]
            .iter()
            .any(|suffix| name.ends_with(suffix))
    {
        Reach::Local
    } else {
        Reach::Public
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(addr: &str) -> Reach {
        reach(&addr.parse().unwrap())
    }

    #[test]
    fn global_addresses_and_names_are_public() {
        for addr in [
            "/ip4/203.0.114.7/tcp/4001",
            "/ip4/8.8.8.8/udp/4001/quic-v1",
            "/ip6/2a01:4f8::1/tcp/4001",
            "/dns4/agents.example.com/tcp/4001",
            "/dnsaddr/bootstrap.ecco.dev",
        ] {
            assert_eq!(of(addr), Reach::Public, "{addr}");
        }
    }

    #[test]
    fn lan_addresses_are_local() {
        for addr in [
            "/ip4/10.1.2.3/tcp/4001",
            "/ip4/172.16.0.1/tcp/4001",
            "/ip4/192.168.1.20/tcp/4001",
            "/ip4/169.254.3.4/tcp/4001",
            "/ip4/100.64.0.1/tcp/4001",
            "/ip4/100.127.255.254/tcp/4001",
            "/ip6/fd00::1/tcp/4001",
            "/ip6/fe80::1/tcp/4001",
            "/ip6/::ffff:192.168.0.1/tcp/4001",
            "/dns4/printer.local/tcp/4001",
            "/dns/nas/tcp/4001",
            "/dns/box.home.arpa/tcp/4001",
            "/memory/1234",
        ] {
            assert_eq!(of(addr), Reach::Local, "{addr}");
        }
    }

    #[test]
    fn loopback_and_unroutable_addresses_reach_no_further_than_the_host() {
        for addr in [
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/0.0.0.0/tcp/4001",
            "/ip4/0.1.2.3/tcp/4001",
            "/ip4/224.0.0.251/udp/5353",
            "/ip4/255.255.255.255/udp/1",
            "/ip4/192.0.2.1/tcp/4001",
            "/ip4/198.18.0.1/tcp/4001",
            "/ip4/240.0.0.1/tcp/4001",
            "/ip6/::1/tcp/4001",
            "/ip6/::/tcp/4001",
            "/ip6/ff02::fb/udp/5353",
            "/ip6/2001:db8::1/tcp/4001",
            "/ip6/::ffff:127.0.0.1/tcp/4001",
            "/dns4/localhost/tcp/4001",
            "/dns/api.localhost./tcp/4001",
        ] {
            assert_eq!(of(addr), Reach::Host, "{addr}");
        }
    }

    #[test]
    fn the_edges_of_the_shared_and_benchmarking_ranges() {
        assert_eq!(of("/ip4/100.63.255.255/tcp/1"), Reach::Public);
        assert_eq!(of("/ip4/100.128.0.0/tcp/1"), Reach::Public);
        assert_eq!(of("/ip4/198.17.255.255/tcp/1"), Reach::Public);
        assert_eq!(of("/ip4/198.19.255.255/tcp/1"), Reach::Host);
        assert_eq!(of("/ip4/198.20.0.0/tcp/1"), Reach::Public);
    }

    #[test]
    fn reach_sorts_widest_first() {
        assert!(Reach::Public < Reach::Local && Reach::Local < Reach::Host);
    }
}
