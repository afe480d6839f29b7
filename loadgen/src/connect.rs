//! The connections a load run sends over, as ghz opens them: `--connections N` HTTP/2 connections, the
//! `-c` workers spread evenly over them (worker `w` uses connection `w mod N`); plaintext with `--insecure` (or an
//! `http://` host), TLS otherwise (`--cacert`, `--cert`/`--key`, `--cname`, `--skipTLS`; the system's roots when
//! no `--cacert` is given); `--authority`, `--connect-timeout`, `--keepalive`; and `--lb-strategy`: `pick_first`
//! (the default: one address) or `round_robin` (each connection reaches every address the host resolves to, and
//! its calls take them in turn).

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, bail};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

/// How to reach the server (ghz's connection and security flags).
#[derive(Debug, Clone, Default)]
pub struct ConnectSettings {
    /// Plaintext.
    pub insecure: bool,
    /// Trusted roots (PEM); the system's when absent.
    pub cacert: Option<PathBuf>,
    /// Client certificate and key (PEM), for mutual TLS.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The name to verify the server's certificate against (and to send as SNI), instead of the host's.
    pub cname: Option<String>,
    /// Accept any server certificate.
    pub skip_tls: bool,
    /// The `:authority` to send.
    pub authority: Option<String>,
    /// How long to wait for each connection (ghz: 10 s).
    pub connect_timeout: Duration,
    /// HTTP/2 keepalive ping interval.
    pub keepalive: Option<Duration>,
    /// `pick_first` or `round_robin`.
    pub lb_strategy: Option<String>,
}

/// The open connections.
#[derive(Debug)]
pub struct Connections {
    /// Per connection, its channel to each address (one unless `round_robin`).
    channels: Vec<Vec<Channel>>,
    /// The next address to use, per connection.
    turns: Vec<AtomicUsize>,
}

impl Connections {
    /// Opens `count` connections to `host` (`host:port` or a URL), now, so that connecting is not measured.
    pub async fn open(host: &str, count: usize, settings: &ConnectSettings) -> anyhow::Result<Arc<Self>> {
        let (scheme, authority) = match host.split_once("://") {
            Some((scheme, rest)) => (scheme.to_owned(), rest.trim_end_matches('/').to_owned()),
            None => ((if settings.insecure { "http" } else { "https" }).to_owned(), host.to_owned()),
        };
        let tls = scheme == "https";
        let round_robin = match settings.lb_strategy.as_deref() {
            None | Some("" | "pick_first") => false,
            Some("round_robin") => true,
            Some(other) => bail!("--lb-strategy {other:?}: offload honours pick_first and round_robin"),
        };
        let addresses: Vec<String> = if round_robin {
            let resolved = tokio::net::lookup_host(&authority)
                .await
                .with_context(|| format!("cannot resolve {authority}"))?
                .map(|a| a.to_string())
                .collect::<Vec<_>>();
            let mut unique = resolved;
            unique.dedup();
            unique
        } else {
            vec![authority.clone()]
        };
        let server_name = settings.cname.clone().unwrap_or_else(|| {
            authority.rsplit_once(':').map_or(authority.as_str(), |(h, _)| h).trim_matches(['[', ']']).to_owned()
        });
        let mut channels = Vec::with_capacity(count);
        for _ in 0..count.max(1) {
            let mut per_address = Vec::with_capacity(addresses.len());
            let mut failure = None;
            for address in &addresses {
                let endpoint = endpoint(&scheme, address, &authority, tls.then_some(&server_name), settings)?;
                match endpoint.connect().await {
                    Ok(channel) => per_address.push(channel),
                    // round_robin, as grpc-go's, uses the addresses that answer; pick_first has just one.
                    Err(e) => {
                        failure = Some(anyhow::Error::new(e).context(format!("cannot connect to {scheme}://{address}")))
                    }
                }
            }
            if per_address.is_empty() {
                return Err(failure.unwrap_or_else(|| anyhow::anyhow!("{authority} resolves to no address")));
            }
            channels.push(per_address);
        }
        let turns = channels.iter().map(|_| AtomicUsize::new(0)).collect();
        Ok(Arc::new(Self { channels, turns }))
    }

    /// The channel worker `worker`'s next call goes over.
    pub fn for_worker(&self, worker: usize) -> Channel {
        let connection = worker % self.channels.len();
        let addresses = &self.channels[connection];
        let turn = self.turns[connection].fetch_add(1, Ordering::Relaxed);
        addresses[turn % addresses.len()].clone()
    }

    /// The first connection (for reflection).
    pub fn first(&self) -> Channel {
        self.channels[0][0].clone()
    }

    /// How many addresses each connection reaches.
    pub fn addresses(&self) -> usize {
        self.channels[0].len()
    }
}

/// One endpoint: `address` reached as `scheme`, presenting `authority`, TLS verified against `server_name`.
fn endpoint(
    scheme: &str,
    address: &str,
    authority: &str,
    server_name: Option<&String>,
    settings: &ConnectSettings,
) -> anyhow::Result<Endpoint> {
    let url = format!("{scheme}://{address}");
    let mut endpoint = Endpoint::from_shared(url.clone())
        .with_context(|| format!("not a host:port or URL: {url}"))?
        .tcp_nodelay(true)
        .connect_timeout(settings.connect_timeout);
    let origin = settings.authority.as_deref().unwrap_or(authority);
    if settings.authority.is_some() || address != authority {
        let uri: Uri = format!("{scheme}://{origin}").parse().with_context(|| format!("--authority {origin:?}"))?;
        endpoint = endpoint.origin(uri);
    }
    if let Some(interval) = settings.keepalive.filter(|d| !d.is_zero()) {
        endpoint = endpoint.http2_keep_alive_interval(interval).keep_alive_while_idle(true);
    }
    let Some(server_name) = server_name else { return Ok(endpoint) };
    let mut tls = ClientTlsConfig::new().domain_name(server_name.clone()).assume_http2(true);
    match (&settings.cert, &settings.key) {
        (Some(cert), Some(key)) => tls = tls.identity(Identity::from_pem(read(cert, "--cert")?, read(key, "--key")?)),
        (None, None) => {}
        _ => bail!("--cert and --key go together (a client certificate and its key)"),
    }
    if settings.skip_tls {
        return endpoint
            .tls_config_with_verifier(tls, Arc::new(crate::skip_tls::AnyServerCertificate::new()))
            .context("TLS settings");
    }
    tls = match &settings.cacert {
        Some(ca) => tls.ca_certificate(Certificate::from_pem(read(ca, "--cacert")?)),
        None => tls.with_native_roots(),
    };
    endpoint.tls_config(tls).context("TLS settings")
}

fn read(path: &PathBuf, flag: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{flag}: cannot read {}", path.display()))
}
