//! Where a backend's replicas are: the addresses its targets name, found again and again.
//!
//! A target is `http://HOST:PORT`, or `https://HOST:PORT` for a backend serving TLS: its
//! certificate must name HOST (a DNS name, or an IP address as an IP SAN), whichever address
//! HOST resolves to — a headless Service's pods all carry the Service's name. An IP address is an endpoint as it stands; a name is looked
//! up (a Kubernetes headless Service answers with every ready pod's address) every
//! `--resolve-interval`, and at once when a connection to the backend fails, so that replicas
//! come and go without a restart. A failed lookup keeps the name's last answer: a DNS outage
//! must not empty a working backend.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Weak;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};

use super::Shared;

/// Lookups asked for by failing connections come at most this often.
const MIN_RESOLVE_GAP: Duration = Duration::from_millis(500);

/// One `http://HOST:PORT` or `https://HOST:PORT` of a backend's `--*-url` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    host: String,
    port: u16,
    /// For `https`: the name the replicas' certificates must carry (HOST).
    server_name: Option<tls::ServerName<'static>>,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.server_name.is_some() {
            "https"
        } else {
            "http"
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Where a replica is, and the name its certificate must carry when it serves TLS.
pub(super) type Addresses = BTreeMap<SocketAddr, Option<tls::ServerName<'static>>>;

impl Target {
    /// Parses a comma-separated list of `http://HOST:PORT`.
    pub(crate) fn parse_list(raw: &str) -> Result<Vec<Self>, String> {
        let targets = raw
            .split(',')
            .map(str::trim)
            .filter(|target| !target.is_empty())
            .map(Self::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if targets.is_empty() {
            return Err("must name at least one http://HOST:PORT or https://HOST:PORT".into());
        }
        Ok(targets)
    }

    fn parse(raw: &str) -> Result<Self, String> {
        let uri: http::Uri = raw.parse().map_err(|error| format!("{raw}: {error}"))?;
        let host = uri
            .host()
            .map(|host| host.trim_start_matches('[').trim_end_matches(']'));
        match (uri.scheme_str(), host, uri.port_u16(), uri.path()) {
            // `http://:80` parses as a URI with an empty host, and port 0 is nobody's: neither
            // could ever be reached, so the gateway would start and only ever answer
            // UNAVAILABLE.
            (Some(scheme @ ("http" | "https")), Some(host), Some(port), "" | "/")
                if !host.is_empty() && port != 0 =>
            {
                let server_name = if scheme == "https" {
                    Some(tls::server_name(host).map_err(|reason| format!("{raw}: {reason}"))?)
                } else {
                    None
                };
                Ok(Self {
                    host: host.to_owned(),
                    port,
                    server_name,
                })
            }
            _ => Err(format!(
                "{raw}: must look like http://HOST:PORT or https://HOST:PORT"
            )),
        }
    }

    /// Whether the replicas serve TLS.
    pub(crate) fn is_tls(&self) -> bool {
        self.server_name.is_some()
    }

    fn ip(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.host.parse().ok()?;
        Some(SocketAddr::new(ip, self.port))
    }
}

/// Keeps the endpoint set of `shared` following `targets`, until the upstream is dropped.
pub(super) async fn discover(
    shared: Weak<Shared>,
    targets: Vec<Target>,
    interval: Duration,
    dns_server: Option<SocketAddr>,
) {
    let names = targets
        .iter()
        .filter(|target| target.ip().is_none())
        .count();
    let resolver = match (names, resolver(dns_server)) {
        (0, _) => None,
        (_, Ok(resolver)) => Some(resolver),
        (_, Err(error)) => {
            tracing::error!(%error, "no DNS resolver: backend names cannot be looked up");
            None
        }
    };
    let mut answers: HashMap<String, Vec<IpAddr>> = HashMap::new();
    loop {
        let mut addresses = Addresses::new();
        for target in &targets {
            if let Some(address) = target.ip() {
                addresses.insert(address, target.server_name.clone());
                continue;
            }
            if let Some(resolver) = &resolver {
                match resolver.lookup_ip(target.host.as_str()).await {
                    Ok(lookup) => {
                        answers.insert(target.host.clone(), lookup.iter().collect());
                    }
                    Err(error) => {
                        tracing::warn!(
                            host = target.host,
                            %error,
                            "backend name lookup failed; keeping its last answer"
                        );
                    }
                }
            }
            let ips = answers.get(&target.host).map_or(&[][..], Vec::as_slice);
            addresses.extend(ips.iter().map(|ip| {
                (
                    SocketAddr::new(*ip, target.port),
                    target.server_name.clone(),
                )
            }));
        }
        let Some(upstream) = shared.upgrade() else {
            return;
        };
        upstream.set_endpoints(&addresses);
        if resolver.is_none() {
            // Only addresses (or no way to look names up): nothing will ever change.
            return;
        }
        let resolve_now = upstream.settings.resolve_now.clone();
        let closed = upstream.closed.clone();
        drop(upstream);
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = resolve_now.notified() => tokio::time::sleep(MIN_RESOLVE_GAP).await,
            () = closed.cancelled() => return,
        }
    }
}

/// The system's resolver (`/etc/resolv.conf`, `/etc/hosts`), or one asking `dns_server`.
/// Answers are not cached past the lookup: the next lookup asks again, so that a replica
/// leaving the answer stops receiving calls within one interval.
fn resolver(dns_server: Option<SocketAddr>) -> Result<TokioResolver, String> {
    let mut builder = match dns_server {
        None => Resolver::builder_tokio().map_err(|error| error.to_string())?,
        Some(server) => {
            let mut connection = ConnectionConfig::udp();
            connection.port = server.port();
            let name_server = NameServerConfig::new(server.ip(), true, vec![connection]);
            Resolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![name_server]),
                TokioRuntimeProvider::default(),
            )
        }
    };
    let options = builder.options_mut();
    options.cache_size = 0;
    options.timeout = Duration::from_secs(2);
    options.attempts = 2;
    builder.build().map_err(|error| error.to_string())
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_a_list_of_http_or_https_host_port() {
        let targets = Target::parse_list(
            "http://notes:50052, http://10.0.0.7:50052,http://[::1]:1,https://notes.ns.svc:1",
        )
        .expect("valid");
        assert_eq!(targets.len(), 4);
        assert!(!targets[0].is_tls());
        assert!(targets[3].is_tls());
        assert_eq!(targets[3].to_string(), "https://notes.ns.svc:1");
        assert_eq!(targets[0].ip(), None);
        assert_eq!(
            targets[1].ip(),
            Some("10.0.0.7:50052".parse().expect("address"))
        );
        assert_eq!(targets[2].ip(), Some("[::1]:1".parse().expect("address")));
        for bad in [
            "",
            ",",
            "notes:50052",
            "http://notes",
            "http://notes:1/path",
            "grpc://notes:1",
            "https://not_a name:1",
        ] {
            assert!(Target::parse_list(bad).is_err(), "{bad}");
        }
    }

    /// Found by the `target_list` fuzz target: these were accepted as backends.
    #[test]
    fn targets_without_a_host_or_with_port_zero_are_refused() {
        for bad in ["http://:80", "HTTP://:0", "http://[]:1", "http://notes:0"] {
            assert!(Target::parse_list(bad).is_err(), "{bad}");
        }
    }
}
