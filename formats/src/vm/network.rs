//! The guest's network: one virtio NIC on QEMU's user-mode network (slirp: the guest gets
//! 10.0.2.15 by DHCP and reaches the host's network through NAT, nothing to set up on the
//! host) and TCP ports of the host forwarded into the guest, as `docker run -p` does.

use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

/// A virtio NIC on QEMU's user-mode network with forwarded ports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserNetwork {
    /// Host ports forwarded to guest ports.
    pub forwards: Vec<PortForward>,
}

/// `[ADDR:]HOST:GUEST`: TCP connections to ADDR:HOST on the host reach GUEST in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortForward {
    /// The host address listened on; 127.0.0.1 unless given, so that a VM with a
    /// passwordless root is not reachable from the network by accident.
    pub host_addr: IpAddr,
    /// The host port.
    pub host_port: u16,
    /// The guest port.
    pub guest_port: u16,
}

/// A `--publish` value that is not `[ADDR:]HOST:GUEST`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{value}` is not [ADDR:]HOST_PORT:GUEST_PORT (e.g. 2222:22 or 0.0.0.0:8080:80): {why}")]
pub struct PortForwardError {
    value: String,
    why: String,
}

impl FromStr for PortForward {
    type Err = PortForwardError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let fail = |why: String| PortForwardError {
            value: value.to_owned(),
            why,
        };
        let (addr, ports) = match value.rsplitn(3, ':').collect::<Vec<_>>()[..] {
            [guest, host] => (None, (host, guest)),
            [guest, host, addr] => (Some(addr), (host, guest)),
            _ => return Err(fail("two ports are needed".into())),
        };
        let port = |s: &str, which: &str| match s.parse::<u16>() {
            Ok(0) | Err(_) => Err(fail(format!("{which} port `{s}` is not 1-65535"))),
            Ok(p) => Ok(p),
        };
        let host_addr = match addr {
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some(a) => a
                .trim_matches(|c| c == '[' || c == ']')
                .parse()
                .map_err(|_| fail(format!("`{a}` is not an IP address")))?,
        };
        Ok(PortForward {
            host_addr,
            host_port: port(ports.0, "host")?,
            guest_port: port(ports.1, "guest")?,
        })
    }
}

impl UserNetwork {
    /// QEMU's arguments: the user-mode backend with its forwards and a virtio NIC without
    /// an option ROM (nothing boots from the network; none needs `ipxe-qemu`).
    pub fn qemu_args(&self) -> Vec<String> {
        let mut netdev = String::from("user,id=net0");
        for f in &self.forwards {
            let addr = match f.host_addr {
                IpAddr::V4(a) => a.to_string(),
                IpAddr::V6(a) => format!("[{a}]"),
            };
            netdev.push_str(&format!(
                ",hostfwd=tcp:{addr}:{}-:{}",
                f.host_port, f.guest_port
            ));
        }
        vec![
            "-netdev".into(),
            netdev,
            "-device".into(),
            "virtio-net-pci,netdev=net0,romfile=".into(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_parse_with_and_without_an_address() {
        let f: PortForward = "2222:22".parse().unwrap();
        assert_eq!(f.host_addr, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!((f.host_port, f.guest_port), (2222, 22));
        let f: PortForward = "0.0.0.0:8080:80".parse().unwrap();
        assert_eq!(f.host_addr.to_string(), "0.0.0.0");
        assert_eq!((f.host_port, f.guest_port), (8080, 80));
        let f: PortForward = "[::1]:8080:80".parse().unwrap();
        assert_eq!(f.host_addr.to_string(), "::1");
    }

    #[test]
    fn bad_forwards_say_what_is_wrong() {
        for (bad, why) in [
            ("22", "two ports"),
            ("0:22", "host port `0`"),
            ("2222:70000", "guest port `70000`"),
            ("x:22", "host port `x`"),
            ("host:1:2", "`host` is not an IP address"),
        ] {
            let e = bad.parse::<PortForward>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn the_netdev_carries_every_forward() {
        let net = UserNetwork {
            forwards: vec!["2222:22".parse().unwrap(), "[::1]:8080:80".parse().unwrap()],
        };
        assert_eq!(
            net.qemu_args(),
            [
                "-netdev",
                "user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:[::1]:8080-:80",
                "-device",
                "virtio-net-pci,netdev=net0,romfile="
            ]
        );
    }
}
