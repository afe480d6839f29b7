//! Where the compute replicas are: static URLs, and DNS names re-resolved periodically.
//!
//! On Kubernetes, compute sits behind a *headless* Service: its DNS name resolves to one address per ready pod.
//! The gateway resolves `dns:///name:port` every `--dns-refresh` and hands the resulting set of endpoints to both
//! of its clients: the health-watched [`Balancer`] of the async path and the synchronous client's own (the same
//! kind, on its I/O thread). Pods joining and
//! leaving are picked up without a restart; a plain ClusterIP Service would instead pin each HTTP/2 connection, and
//! so all the gateway's traffic, to one pod.
//!
//! A failed lookup keeps the endpoints that name had: a DNS blip must not empty the pool (replicas that really
//! went away fail their health watch and stop receiving calls anyway).

use std::{
    collections::{BTreeSet, HashMap},
    fmt::Debug,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    time::Duration,
};

/// Turns a host name and port into socket addresses. The system resolver in production; tests substitute their
/// own to add and remove replicas at will.
pub trait Resolve: Debug + Send + Sync + 'static {
    /// The addresses `host:port` stands for now.
    fn resolve(&self, host: &str, port: u16) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + '_>>;
}

/// The operating system's resolver (`getaddrinfo`, through tokio's blocking pool), which is what reads
/// `/etc/resolv.conf` and the cluster's DNS on Kubernetes.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + '_>> {
        let host = host.to_owned();
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), port)).await?.collect()) })
    }
}

/// One `--compute` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A fixed endpoint URL (`http://host:port`, `https://host:port`).
    Url(String),
    /// `dns:///host:port`: every address the name resolves to, re-resolved periodically.
    Dns { host: String, port: u16 },
}

impl Target {
    /// Parses `dns:///host:port` (gRPC's name syntax; an authority, `dns://server/…`, is not supported: the
    /// system resolver is used) or an `http(s)://` URL.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let entry = entry.trim();
        if let Some(rest) = entry.strip_prefix("dns:") {
            let name = rest.strip_prefix("///").ok_or_else(|| {
                format!("--compute: {entry:?}: write DNS targets as dns:///host:port (no DNS server authority)")
            })?;
            let (host, port) =
                name.rsplit_once(':').ok_or_else(|| format!("--compute: {entry:?} needs a port (dns:///host:port)"))?;
            let port = port.parse().map_err(|_| format!("--compute: {entry:?}: {port:?} is not a port"))?;
            if host.is_empty() {
                return Err(format!("--compute: {entry:?} has no host name"));
            }
            return Ok(Self::Dns { host: host.trim_matches(['[', ']']).to_owned(), port });
        }
        let uri =
            entry.parse::<tonic::transport::Uri>().map_err(|e| format!("--compute: {entry:?} is not a URL: {e}"))?;
        match (uri.scheme_str(), uri.host()) {
            (Some("http" | "https"), Some(_)) => Ok(Self::Url(entry.to_owned())),
            _ => Err(format!("--compute: {entry:?}: expected http://host:port, https://host:port or dns:///host:port")),
        }
    }
}

/// Something that serves the current set of compute endpoints (the balancer, the synchronous client).
pub trait Endpoints: Send + Sync {
    /// Makes `urls` the set of endpoints: new ones are added, missing ones removed.
    fn set_endpoints(&self, urls: &BTreeSet<String>);
}

/// Resolves the targets into endpoint URLs and keeps the consumers up to date.
#[derive(Debug)]
pub struct Discovery {
    targets: Vec<Target>,
    resolver: Arc<dyn Resolve>,
    /// `http` or `https` for resolved addresses.
    scheme: &'static str,
    /// Last successful resolution per DNS target, kept when a lookup fails.
    last: HashMap<(String, u16), BTreeSet<String>>,
}

impl Discovery {
    /// Discovery of `targets`; resolved addresses become `scheme://addr` URLs.
    pub fn new(targets: Vec<Target>, resolver: Arc<dyn Resolve>, scheme: &'static str) -> Self {
        Self { targets, resolver, scheme, last: HashMap::new() }
    }

    /// Whether any target needs periodic resolution.
    pub fn is_dynamic(&self) -> bool {
        self.targets.iter().any(|t| matches!(t, Target::Dns { .. }))
    }

    /// The endpoint URLs the targets stand for now.
    pub async fn resolve(&mut self) -> BTreeSet<String> {
        let mut urls = BTreeSet::new();
        for target in &self.targets {
            match target {
                Target::Url(url) => {
                    urls.insert(url.clone());
                }
                Target::Dns { host, port } => {
                    let key = (host.clone(), *port);
                    match self.resolver.resolve(host, *port).await {
                        Ok(addrs) => {
                            let resolved: BTreeSet<String> =
                                addrs.iter().map(|addr| format!("{}://{addr}", self.scheme)).collect();
                            if self.last.get(&key) != Some(&resolved) {
                                tracing::info!(host, port, endpoints = ?resolved, "compute endpoints resolved");
                            }
                            self.last.insert(key.clone(), resolved);
                        }
                        Err(error) => {
                            tracing::warn!(host, port, %error, "cannot resolve compute; keeping the last endpoints");
                        }
                    }
                    urls.extend(self.last.get(&key).into_iter().flatten().cloned());
                }
            }
        }
        urls
    }

    /// Resolves now, feeds `consumers`, and (if any target is a DNS name) keeps doing so every `refresh` in a
    /// background task.
    pub async fn start(mut self, refresh: Duration, consumers: Vec<Arc<dyn Endpoints>>) {
        let urls = self.resolve().await;
        consumers.iter().for_each(|c| c.set_endpoints(&urls));
        if !self.is_dynamic() {
            return;
        }
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(refresh);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await; // the first tick is immediate: that resolution was just done
            loop {
                ticker.tick().await;
                let urls = self.resolve().await;
                consumers.iter().for_each(|c| c.set_endpoints(&urls));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(Target::parse("http://a:1"), Ok(Target::Url("http://a:1".into())));
        assert_eq!(
            Target::parse("dns:///compute.offload.svc.cluster.local:50051"),
            Ok(Target::Dns { host: "compute.offload.svc.cluster.local".into(), port: 50051 })
        );
        assert_eq!(Target::parse("dns:///[::1]:7"), Ok(Target::Dns { host: "::1".into(), port: 7 }));
        for bad in ["dns://8.8.8.8/compute:1", "dns:///compute", "dns:///:5", "not a url", "ftp://x:1", "dns:///c:x"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[derive(Debug)]
    struct Flaky;

    impl Resolve for Flaky {
        fn resolve(
            &self,
            host: &str,
            port: u16,
        ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + '_>> {
            let answer = match host {
                "up" => Ok(vec![SocketAddr::from(([10, 0, 0, 1], port)), SocketAddr::from(([10, 0, 0, 2], port))]),
                _ => Err(io::Error::other("SERVFAIL")),
            };
            Box::pin(std::future::ready(answer))
        }
    }

    #[tokio::test]
    async fn a_failed_lookup_keeps_the_last_endpoints() {
        let mut discovery = Discovery::new(
            vec![Target::Url("http://static:1".into()), Target::Dns { host: "up".into(), port: 9 }],
            Arc::new(Flaky),
            "http",
        );
        let urls = discovery.resolve().await;
        assert_eq!(urls, ["http://10.0.0.1:9", "http://10.0.0.2:9", "http://static:1"].map(String::from).into());
        // The same name now fails: its endpoints stay.
        discovery.targets[1] = Target::Dns { host: "down".into(), port: 9 };
        discovery.last.insert(("down".into(), 9), ["http://10.0.0.3:9".to_owned()].into());
        let urls = discovery.resolve().await;
        assert_eq!(urls, ["http://10.0.0.3:9", "http://static:1"].map(String::from).into());
    }
}
