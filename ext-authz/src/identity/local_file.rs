//! Identity from the configuration file: callers named by the networks they connect from
//! (deployments without Kubernetes, and the local stack).

use std::net::IpAddr;

use ipnet::IpNet;

use super::{Identity, Source};
use crate::config::IdentitySpec;

/// Source networks to identities, most specific first.
#[derive(Debug, Clone, Default)]
pub struct AddressIdentities {
    networks: Vec<(IpNet, String)>,
}

impl AddressIdentities {
    /// Builds the table from the configured identities.
    pub fn new(specs: &[IdentitySpec]) -> Self {
        let mut networks: Vec<(IpNet, String)> = specs
            .iter()
            .flat_map(|s| s.source_cidrs.iter().map(|n| (n.trunc(), s.name.clone())))
            .collect();
        networks.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        Self { networks }
    }

    /// The identity of the most specific network containing `addr`. IPv4-mapped IPv6
    /// addresses are matched as IPv4.
    pub fn resolve(&self, addr: IpAddr) -> Option<Identity> {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        self.networks
            .iter()
            .find(|(net, _)| net.contains(&addr))
            .map(|(_, name)| Identity {
                name: name.clone(),
                source: Source::LocalFile,
                ..Identity::default()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_specific_network_wins() {
        let specs = vec![
            IdentitySpec {
                name: "wide".into(),
                source_cidrs: vec!["10.0.0.0/8".parse().unwrap()],
            },
            IdentitySpec {
                name: "narrow".into(),
                source_cidrs: vec!["10.1.2.3/32".parse().unwrap()],
            },
        ];
        let t = AddressIdentities::new(&specs);
        assert_eq!(
            t.resolve("10.1.2.3".parse().unwrap()).unwrap().name,
            "narrow"
        );
        assert_eq!(t.resolve("10.9.9.9".parse().unwrap()).unwrap().name, "wide");
        assert_eq!(
            t.resolve("::ffff:10.1.2.3".parse().unwrap()).unwrap().name,
            "narrow"
        );
        assert_eq!(t.resolve("192.168.0.1".parse().unwrap()), None);
    }
}
