//! A gateway in front of several compute replicas, all real processes on loopback, that a scenario can kill,
//! stop and restart one replica at a time, and whose memory, descriptors and CPU it can read.

use std::{
    ffi::OsStr,
    net::SocketAddr,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use offload_proto::v1::{ExecMode, SumOfSquaresRequest, gateway_client::GatewayClient};

use crate::child::{ChildServer, Memory};

/// How a replica's or the gateway's process is started.
#[derive(Debug, Clone)]
pub struct Launcher {
    compute: (PathBuf, Vec<String>),
    gateway: (PathBuf, Vec<String>),
}

impl Launcher {
    /// This executable's hidden `compute` and `gateway` subcommands (what `offload-bench reliability` uses).
    pub fn this_executable() -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find this executable")?;
        Ok(Self { compute: (exe.clone(), vec!["compute".into()]), gateway: (exe, vec!["gateway".into()]) })
    }

    /// The `offload-compute` and `offload-gateway` binaries, built on demand (what the tests use).
    pub fn binaries() -> Self {
        let (compute, gateway) = (crate::binaries::path("offload-compute"), crate::binaries::path("offload-gateway"));
        Self { compute: (compute, Vec::new()), gateway: (gateway, Vec::new()) }
    }

    /// Every compute process also gets `args`.
    pub fn with_compute_args(mut self, args: &[&str]) -> Self {
        self.compute.1.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    fn command<S: AsRef<OsStr>>((program, prefix): &(PathBuf, Vec<String>), args: &[S]) -> Command {
        let mut command = Command::new(program);
        command.args(prefix).args(args);
        command
    }

    /// The command starting a compute server with `args`.
    pub fn compute<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        Self::command(&self.compute, args)
    }

    /// The command starting a gateway with `args`.
    pub fn gateway<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        Self::command(&self.gateway, args)
    }
}

/// One compute replica: its fixed address (a restart reuses it, as a pod keeps its Service's name) and, while it
/// runs, its process.
#[derive(Debug)]
pub struct Replica {
    /// Its `--instance-id`, which replies carry as `served_by`.
    pub id: String,
    pub addr: SocketAddr,
    args: Vec<String>,
    pub process: Option<ChildServer>,
}

/// The gateway and its replicas.
#[derive(Debug)]
pub struct Cluster {
    launcher: Launcher,
    pub replicas: Vec<Replica>,
    pub gateway: ChildServer,
}

impl Cluster {
    /// Starts `replicas` compute processes with `compute_args`, then a gateway over them with `gateway_args`, and
    /// waits until the gateway serves through every replica.
    pub async fn start(
        launcher: Launcher,
        replicas: usize,
        compute_args: &[&str],
        gateway_args: &[&str],
    ) -> anyhow::Result<Self> {
        let mut started = Vec::new();
        for i in 0..replicas {
            let id = format!("replica-{i}");
            let mut args: Vec<String> = ["--instance-id", id.as_str(), "--metrics-listen", "127.0.0.1:0"]
                .into_iter()
                .chain(compute_args.iter().copied())
                .map(str::to_owned)
                .collect();
            let mut first = args.clone();
            first.extend(["--listen".to_owned(), "127.0.0.1:0".to_owned()]);
            let process = ChildServer::start(launcher.compute(&first))?;
            let addr = process.addr;
            args.extend(["--listen".to_owned(), addr.to_string()]);
            started.push(Replica { id, addr, args, process: Some(process) });
        }
        let urls = started.iter().map(|r| format!("http://{}", r.addr)).collect::<Vec<_>>().join(",");
        let mut command =
            launcher.gateway(&["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--compute", &urls]);
        command.args(gateway_args);
        let gateway = ChildServer::start(command)?;
        let cluster = Self { launcher, replicas: started, gateway };
        for i in 0..replicas {
            cluster.wait_in_rotation(i, Duration::from_secs(30)).await?;
        }
        Ok(cluster)
    }

    /// The gateway's URL.
    pub fn url(&self) -> String {
        self.gateway.url()
    }

    /// SIGKILL replica `i`: no drain, connections reset.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut process) = self.replicas[i].process.take() {
            process.kill();
        }
    }

    /// SIGTERM replica `i` and wait up to `grace` for it to exit; its exit code and how long it took (`None`:
    /// still running after `grace`, then killed).
    pub fn terminate(&mut self, i: usize, grace: Duration) -> (Option<i32>, Duration) {
        let Some(process) = self.replicas[i].process.take() else { return (None, Duration::ZERO) };
        let started = Instant::now();
        let code = process.stop(grace);
        (code, started.elapsed())
    }

    /// Starts replica `i` again on its old address.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let replica = &mut self.replicas[i];
        if replica.process.is_some() {
            bail!("{} is running", replica.id);
        }
        // The port was just released; binding it again can race the kernel for a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match ChildServer::start(self.launcher.compute(&replica.args)) {
                Ok(process) => {
                    replica.process = Some(process);
                    return Ok(());
                }
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Waits (at most `timeout`) until a call through the gateway is served by replica `i`; how long that took.
    pub async fn wait_in_rotation(&self, i: usize, timeout: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let mut client = GatewayClient::new(crate::channel(&self.url()).await?);
        let probe = SumOfSquaresRequest { n: 1000, mode: ExecMode::Inline as i32, ..Default::default() };
        loop {
            let mut request = tonic::Request::new(probe);
            request.set_timeout(Duration::from_secs(2));
            if let Ok(reply) = client.sum_of_squares(request).await
                && reply.get_ref().execution.as_ref().is_some_and(|e| e.served_by == self.replicas[i].id)
            {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                bail!("{} never served a call through the gateway", self.replicas[i].id);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Total CPU time of the running replicas.
    pub fn compute_cpu(&self) -> Duration {
        self.replicas.iter().filter_map(|r| r.process.as_ref()).map(ChildServer::cpu_time).sum()
    }

    /// Memory of every running process: the gateway first, then the replicas.
    pub fn memory(&self) -> Vec<(String, Memory)> {
        let replicas = self.replicas.iter().filter_map(|r| Some((r.id.clone(), r.process.as_ref()?.memory())));
        std::iter::once(("gateway".to_owned(), self.gateway.memory())).chain(replicas).collect()
    }

    /// Open descriptors of every running process, in the order of [`Cluster::memory`].
    pub fn open_fds(&self) -> Vec<(String, usize)> {
        let replicas = self.replicas.iter().filter_map(|r| Some((r.id.clone(), r.process.as_ref()?.open_fds())));
        std::iter::once(("gateway".to_owned(), self.gateway.open_fds())).chain(replicas).collect()
    }

    /// Whether every process that should be running is.
    pub fn all_running(&mut self) -> bool {
        self.gateway.is_running()
            && self.replicas.iter_mut().all(|r| r.process.as_mut().is_some_and(ChildServer::is_running))
    }

    /// Stops everything (SIGTERM, bounded).
    pub fn stop(mut self) {
        for i in 0..self.replicas.len() {
            self.terminate(i, Duration::from_secs(20));
        }
        self.gateway.stop(Duration::from_secs(20));
    }
}
