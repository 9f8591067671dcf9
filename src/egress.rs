//! Where the service may send requests: the operator's egress policy and the HTTP clients
//! that enforce it.
//!
//! Every outbound request (model providers, webhooks, OTLP collectors) goes through an
//! [`Egress`] the server or CLI builds once and passes down. Its clients check each
//! destination address *after* DNS resolution (a [`reqwest::dns::Resolve`] that drops
//! refused addresses, so a name that later resolves elsewhere cannot slip through), and
//! literal IP hosts, which reqwest never resolves, before each request. They never
//! follow redirects and ignore `HTTP(S)_PROXY` (a proxy would resolve names itself).
//!
//! Address classes:
//! - **forbidden**, always refused: link-local (169.254.0.0/16, fe80::/10, which holds
//!   the usual cloud metadata address 169.254.169.254), other cloud metadata addresses
//!   (fd00:ec2::254, 100.100.100.200), multicast and broadcast;
//! - **internal**: loopback (127.0.0.0/8, ::1, and 0.0.0.0/::, which reach this host),
//!   private (10/8, 172.16/12, 192.168/16, fc00::/7) and shared (100.64/10) ranges:
//!   allowed when the service listens on loopback only (or runs as the CLI), else only
//!   for destinations the operator declared, or inside `--allow-egress` networks;
//! - **public**: everything else, allowed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

/// Why a destination was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("egress policy refuses {ip} ({class}); {hint}")]
    Refused {
        ip: IpAddr,
        class: &'static str,
        hint: &'static str,
    },
    #[error("egress policy: {0}")]
    Invalid(String),
    #[error("could not build the HTTP client: {0}")]
    Client(String),
}

/// What an address is, for the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddressClass {
    Forbidden(&'static str),
    Internal(&'static str),
    Public,
}

fn net(text: &str) -> IpNet {
    // Only called on the constants below.
    text.parse()
        .unwrap_or_else(|_| IpNet::from(IpAddr::V4(Ipv4Addr::BROADCAST)))
}

/// Classifies an address (IPv4-mapped IPv6 addresses as their IPv4 form).
pub(crate) fn classify(ip: IpAddr) -> AddressClass {
    let ip = ip.to_canonical();
    const METADATA: [&str; 2] = ["fd00:ec2::254/128", "100.100.100.200/32"];
    if METADATA.iter().any(|n| net(n).contains(&ip)) {
        return AddressClass::Forbidden("cloud metadata");
    }
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_link_local() {
                AddressClass::Forbidden("link-local")
            } else if v4.is_multicast() || v4.is_broadcast() {
                AddressClass::Forbidden("multicast/broadcast")
            } else if v4.is_loopback() || v4.is_unspecified() {
                AddressClass::Internal("loopback")
            } else if v4.is_private() || net("100.64.0.0/10").contains(&ip) {
                AddressClass::Internal("private")
            } else {
                AddressClass::Public
            }
        }
        IpAddr::V6(v6) => {
            if net("fe80::/10").contains(&ip) {
                AddressClass::Forbidden("link-local")
            } else if v6.is_multicast() {
                AddressClass::Forbidden("multicast/broadcast")
            } else if v6.is_loopback() || v6.is_unspecified() {
                AddressClass::Internal("loopback")
            } else if net("fc00::/7").contains(&ip) {
                AddressClass::Internal("private")
            } else {
                AddressClass::Public
            }
        }
    }
}

/// The operator's rules (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Loopback and private destinations are allowed (loopback listener, CLI).
    pub internal_allowed: bool,
    /// Extra networks allowed (`--allow-egress`); never opens forbidden addresses.
    pub allow: Vec<IpNet>,
}

impl EgressPolicy {
    /// The development policy of `themis run` and a loopback-bound server.
    pub fn local() -> Self {
        EgressPolicy {
            internal_allowed: true,
            allow: Vec::new(),
        }
    }

    /// The policy of a server listening on `listen`: internal ranges only when it is a
    /// loopback address.
    pub fn for_listener(listen: IpAddr, allow: Vec<IpNet>) -> Self {
        EgressPolicy {
            internal_allowed: listen.is_loopback(),
            allow,
        }
    }

    /// Whether `ip` may be reached; `declared`: the destination is one the operator
    /// configured (a declared provider, the default OTLP collector).
    pub fn check(&self, ip: IpAddr, declared: bool) -> Result<(), EgressError> {
        match classify(ip) {
            AddressClass::Public => Ok(()),
            AddressClass::Forbidden(class) => Err(EgressError::Refused {
                ip,
                class,
                hint: "such addresses are never reachable",
            }),
            AddressClass::Internal(_)
                if declared
                    || self.internal_allowed
                    || self.allow.iter().any(|n| n.contains(&ip.to_canonical())) =>
            {
                Ok(())
            }
            AddressClass::Internal(class) => Err(EgressError::Refused {
                ip,
                class,
                hint: "the operator allows such networks with --allow-egress",
            }),
        }
    }
}

/// Parses `--allow-egress` entries: CIDRs or single addresses.
pub fn parse_allow(entries: &[String]) -> Result<Vec<IpNet>, EgressError> {
    entries
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.parse::<IpNet>()
                .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    EgressError::Invalid(format!(
                        "--allow-egress: `{e}` is not a CIDR (e.g. 10.0.0.0/8) or an address"
                    ))
                })
        })
        .collect()
}

/// A literal IP host of `url`, if it has one.
fn literal_ip(url: &reqwest::Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// For submit-time validation: why a URL names an address no policy allows (a literal
/// forbidden IP), if it does. Host names are checked when they are resolved.
pub(crate) fn forbidden_literal(url: &reqwest::Url) -> Option<String> {
    let ip = literal_ip(url)?;
    match classify(ip) {
        AddressClass::Forbidden(class) => Some(format!(
            "names {ip}, a {class} address, which this service never contacts"
        )),
        _ => None,
    }
}

/// The policy and the HTTP clients that enforce it; built once by the server or CLI.
pub struct Egress {
    policy: Arc<EgressPolicy>,
    /// For destinations a run chose (webhooks, its own collector, undeclared endpoints).
    /// A client that could not be built fails each request that needs it.
    open: Result<reqwest::Client, EgressError>,
    /// For destinations the operator declared: internal ranges allowed.
    declared: Result<reqwest::Client, EgressError>,
}

impl fmt::Debug for Egress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Egress")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Egress {
    pub fn new(policy: EgressPolicy) -> Self {
        let policy = Arc::new(policy);
        Egress {
            open: client(&policy, false),
            declared: client(&policy, true),
            policy,
        }
    }

    /// [`Egress::new`] with [`EgressPolicy::local`].
    pub fn local() -> Self {
        Self::new(EgressPolicy::local())
    }

    pub fn policy(&self) -> &EgressPolicy {
        &self.policy
    }

    /// The client for a destination; `declared` as in [`EgressPolicy::check`].
    pub fn client(&self, declared: bool) -> Result<&reqwest::Client, EgressError> {
        let client = if declared { &self.declared } else { &self.open };
        client.as_ref().map_err(Clone::clone)
    }

    /// Checks a URL's literal IP host (names are checked by the clients' resolver).
    /// Called before every request, since redirects are never followed.
    pub fn check_url(&self, url: &reqwest::Url, declared: bool) -> Result<(), EgressError> {
        match literal_ip(url) {
            Some(ip) => self.policy.check(ip, declared),
            None => Ok(()),
        }
    }
}

fn client(policy: &Arc<EgressPolicy>, declared: bool) -> Result<reqwest::Client, EgressError> {
    reqwest::Client::builder()
        .user_agent(concat!("themis/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        // Callers retry themselves; reqwest's own layer (HTTP/2 refusals only, which
        // these HTTP/1 clients never see) would still copy every request's headers and
        // extensions in case it retried.
        .retry(reqwest::retry::never().max_retries_per_request(0))
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver {
            policy: policy.clone(),
            declared,
        }))
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        // Room for every request a high-concurrency run has in flight to one endpoint
        // (run concurrency goes to 4,096): with fewer idle slots, each wave of a run
        // would close connections and open new ones.
        .pool_max_idle_per_host(4_096)
        .build()
        .map_err(|e| EgressError::Client(e.to_string()))
}

/// Resolves with the system resolver and keeps only the addresses the policy allows.
struct GuardedResolver {
    policy: Arc<EgressPolicy>,
    declared: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let declared = self.declared;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refusal = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match policy.check(addr.ip(), declared) {
                    Ok(()) => true,
                    Err(e) => {
                        refusal.get_or_insert(e);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let message = match refusal {
                    Some(e) => format!("{host}: {e}"),
                    None => format!("{host}: no address found"),
                };
                return Err(message.into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn classes() {
        for forbidden in [
            "169.254.169.254",
            "169.254.0.1",
            "fe80::1",
            "fd00:ec2::254",
            "100.100.100.200",
            "::ffff:169.254.169.254",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(
                matches!(classify(ip(forbidden)), AddressClass::Forbidden(_)),
                "{forbidden}"
            );
        }
        for internal in [
            "127.0.0.1",
            "::1",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "fd12::1",
            "100.64.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(
                matches!(classify(ip(internal)), AddressClass::Internal(_)),
                "{internal}"
            );
        }
        for public in ["1.1.1.1", "2606:4700::1111", "172.32.0.1"] {
            assert_eq!(classify(ip(public)), AddressClass::Public, "{public}");
        }
    }

    #[test]
    fn policy_rules() {
        let strict =
            EgressPolicy::for_listener(ip("0.0.0.0"), parse_allow(&["10.0.0.0/8".into()]).unwrap());
        assert!(!strict.internal_allowed);
        assert!(
            strict.check(ip("10.9.9.9"), false).is_ok(),
            "allowed network"
        );
        assert!(strict.check(ip("192.168.0.1"), false).is_err());
        assert!(strict.check(ip("127.0.0.1"), false).is_err());
        assert!(strict.check(ip("127.0.0.1"), true).is_ok(), "declared");
        assert!(strict.check(ip("169.254.169.254"), true).is_err());
        assert!(strict.check(ip("8.8.8.8"), false).is_ok());
        let local = EgressPolicy::for_listener(ip("127.0.0.1"), Vec::new());
        assert!(local.check(ip("192.168.0.1"), false).is_ok());
        assert!(local.check(ip("169.254.169.254"), false).is_err());
        // --allow-egress never opens forbidden addresses.
        let wide =
            EgressPolicy::for_listener(ip("0.0.0.0"), parse_allow(&["0.0.0.0/0".into()]).unwrap());
        assert!(wide.check(ip("169.254.169.254"), false).is_err());
        assert!(parse_allow(&["nope".into()]).is_err());
        assert_eq!(
            parse_allow(&["10.0.0.1".into(), " ".into()]).unwrap().len(),
            1
        );
    }

    #[test]
    fn forbidden_literals() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(forbidden_literal(&url("http://169.254.169.254/latest")).is_some());
        assert!(forbidden_literal(&url("http://[fe80::1]:80/")).is_some());
        assert!(forbidden_literal(&url("http://127.0.0.1:1/")).is_none());
        assert!(forbidden_literal(&url("http://metadata.example/")).is_none());
    }
}
