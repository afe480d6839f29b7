//! The servers under test, each its own process on loopback started from this executable: the bare echo and a
//! bare proxy in front of it (hidden `echo` subcommand), compute and a gateway in front of it (the hidden
//! `compute` / `gateway` subcommands, which run exactly the servers' library code), with what h2load needs to call
//! each.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use offload_loadgen::call::{Call, Caller};
use offload_proto::v1::{ExecMode, FactorialRequest};
use offload_testkit::{child::ChildServer, cluster::Launcher};

/// How long a server may take to drain and exit at the end.
const STOP_GRACE: Duration = Duration::from_secs(20);
/// How long the gateway may take to see compute as ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The trivial call every target gets: `Factorial(1)`, run inline (a few nanoseconds of work), so what is
/// measured is the path around the work.
pub fn trivial_request() -> FactorialRequest {
    FactorialRequest { n: 1, mode: ExecMode::Inline as i32, ..Default::default() }
}

/// Which server a run loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The bare tonic echo.
    Echo,
    /// A bare tonic proxy in front of the echo: the floor of a hop.
    Proxy,
    /// Compute, called directly.
    Direct,
    /// The gateway, in front of compute.
    Gateway,
}

impl Target {
    /// Row names in the output.
    pub fn label(self) -> &'static str {
        match self {
            Self::Echo => "echo",
            Self::Proxy => "proxy",
            Self::Direct => "direct",
            Self::Gateway => "gateway",
        }
    }

    /// The gRPC path it is called at.
    fn path(self) -> &'static str {
        match self {
            Self::Echo | Self::Proxy | Self::Direct => "/offload.v1.Compute/Factorial",
            Self::Gateway => "/offload.v1.Gateway/Factorial",
        }
    }
}

/// The running servers.
#[derive(Debug)]
pub struct Servers {
    pub echo: ChildServer,
    pub proxy: ChildServer,
    pub compute: ChildServer,
    pub gateway: ChildServer,
}

/// A server process's name in the output, and its pid.
pub type Process<'a> = (&'static str, &'a ChildServer);

impl Servers {
    /// Starts the four and waits until a real call goes through each.
    pub async fn start(extra_compute: &[String], extra_gateway: &[String]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find this executable")?;
        let mut echo = std::process::Command::new(&exe);
        echo.args(["echo", "--listen", "127.0.0.1:0"]);
        let echo = ChildServer::start(echo)?;
        let mut proxy = std::process::Command::new(&exe);
        proxy.args(["echo", "--listen", "127.0.0.1:0", "--forward", &echo.url()]);
        let proxy = ChildServer::start(proxy)?;
        let launcher = Launcher::this_executable()?;
        let local = ["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"];
        let mut command = launcher.compute(&local);
        command.args(extra_compute);
        let compute = ChildServer::start(command)?;
        let mut command = launcher.gateway(&local);
        command.args(["--compute", &compute.url()]).args(extra_gateway);
        let gateway = ChildServer::start(command)?;
        let servers = Self { echo, proxy, compute, gateway };
        for target in [Target::Echo, Target::Proxy, Target::Direct, Target::Gateway] {
            servers.wait_answering(target).await?;
        }
        Ok(servers)
    }

    /// `http://addr/package.Service/Method` of `target`.
    pub fn url(&self, target: Target) -> String {
        let server = match target {
            Target::Echo => &self.echo,
            Target::Proxy => &self.proxy,
            Target::Direct => &self.compute,
            Target::Gateway => &self.gateway,
        };
        format!("{}{}", server.url(), target.path())
    }

    /// The processes that work for a call to `target`, the one called first.
    pub fn processes(&self, target: Target) -> Vec<Process<'_>> {
        match target {
            Target::Echo => vec![("echo", &self.echo)],
            Target::Proxy => vec![("proxy", &self.proxy), ("echo", &self.echo)],
            Target::Direct => vec![("compute", &self.compute)],
            Target::Gateway => vec![("gateway", &self.gateway), ("compute", &self.compute)],
        }
    }

    /// Waits until the trivial call succeeds at `target` (the gateway needs to have seen compute ready).
    async fn wait_answering(&self, target: Target) -> anyhow::Result<()> {
        let url = self.url(target);
        wait_answering(url.trim_end_matches(target.path()), target).await
    }

    /// Stops all four, each front first (so compute is not reported unhealthy to a gateway about to go anyway).
    pub fn stop(self) {
        let order = [("gateway", self.gateway), ("compute", self.compute), ("proxy", self.proxy), ("echo", self.echo)];
        for (name, server) in order {
            if server.stop(STOP_GRACE) != Some(0) {
                eprintln!("warning: {name} did not exit cleanly within {STOP_GRACE:?}");
            }
        }
    }
}

/// Waits until the trivial call succeeds at the server at `base` (`http://addr`), called as `target` is.
pub async fn wait_answering(base: &str, target: Target) -> anyhow::Result<()> {
    let mut caller = Caller::connect(base).await?;
    let call = match target {
        Target::Gateway => Call::GatewayFactorial(trivial_request()),
        Target::Echo | Target::Proxy | Target::Direct => Call::ComputeFactorial(trivial_request()),
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match caller.call(&call, Some(Duration::from_secs(1))).await {
            Ok(()) => return Ok(()),
            Err(status) if Instant::now() > deadline => bail!("{base}{} never answered: {status}", target.path()),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
