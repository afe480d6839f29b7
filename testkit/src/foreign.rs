//! A gRPC service that is not offload's: Python's `grpc.aio` serving `echo.v1.Echo` (unary, client, server and
//! bidi streaming), `work.v1.Work` (`Blocking`: a synchronous sleep on the event loop; `Offloaded`: the same call
//! in the loop's executor), health and, unless turned off, server reflection (`testkit/python/echo_service.py`).
//! The load generator and `offload-bench stall` are tested against it as against any service a user would point
//! them at.
//!
//! The service prints one `seen {json}` line per request message it receives (the message in proto3 JSON, the
//! metadata), so a test checks from the server's side what was sent. Python and its packages come from a private
//! virtualenv under `target/`; where no `python3` is installed, [`ForeignService::start`] says so and gives `None`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::{
    child::ChildServer,
    python::{python3, venv},
};

/// How long the service's output must stay quiet before [`ForeignService::seen`] takes it as complete: far above
/// a pipe's latency, short enough to add nothing noticeable to a test.
const SEEN_SETTLE: std::time::Duration = std::time::Duration::from_millis(200);
/// The most [`ForeignService::seen`] waits for the output to settle.
const SEEN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The running Python service.
#[derive(Debug)]
pub struct ForeignService {
    /// The process, its address and its log.
    pub server: ChildServer,
    /// Its virtualenv (Python, `grpc_tools`).
    venv: PathBuf,
    /// Where its generated Python stubs are written, removed on drop.
    stubs: PathBuf,
}

impl ForeignService {
    /// Starts the service, with server reflection or without; `None` (after saying why, for `test`) where no
    /// Python 3 is installed.
    pub fn start(test: &str, reflection: bool) -> Option<Self> {
        let Some(python) = python3() else {
            crate::skip::missing_tool(format_args!("{test}: no python3 on PATH"));
            return None;
        };
        let venv = venv(&python, "py-foreign-venv", &python_dir().join("requirements.txt"));
        let stubs = std::env::temp_dir().join(format!("offload-echo-stubs-{}-{test}", std::process::id()));
        let mut command = Command::new(venv.join("bin/python"));
        command.arg(python_dir().join("echo_service.py")).arg(&stubs);
        if !reflection {
            command.arg("--no-reflection");
        }
        let server = ChildServer::start(command).expect("the Python echo service started");
        Some(Self { server, venv, stubs })
    }

    /// `host:port`, as `offload-bench load` (and ghz) take it.
    pub fn host(&self) -> String {
        self.server.addr.to_string()
    }

    /// The folder `--proto`'s imports are resolved from (`-i`).
    pub fn proto_root(&self) -> PathBuf {
        python_dir()
    }

    /// The service's `.proto` file.
    pub fn proto_file(&self) -> PathBuf {
        python_dir().join("echo/v1/echo.proto")
    }

    /// Writes a protoset of the service (with its imports) to `out`, as users make one: `protoc
    /// --descriptor_set_out --include_imports` (the `protoc` bundled with Python's `grpcio-tools`).
    pub fn write_protoset(&self, out: &Path) {
        let status = Command::new(self.venv.join("bin/python"))
            .args(["-m", "grpc_tools.protoc"])
            .arg(format!("-I{}", python_dir().display()))
            .arg(format!("--descriptor_set_out={}", out.display()))
            .args(["--include_imports", "echo/v1/echo.proto"])
            .status()
            .expect("run grpc_tools.protoc");
        assert!(status.success(), "grpc_tools.protoc failed");
    }

    /// The JSON of every `seen` line so far: `{"call", "message", "metadata"}` per request message received.
    ///
    /// The service prints a line as each message arrives, but the lines reach this process through a pipe and a
    /// reader thread, which a busy machine may run a little later than the load generator's exit: so this waits
    /// until no new line has come for [`SEEN_SETTLE`] (at most [`SEEN_WAIT`]).
    pub fn seen(&mut self) -> Vec<String> {
        let read = |server: &mut ChildServer| -> Vec<String> {
            server.log_lines().iter().filter_map(|line| line.strip_prefix("seen ").map(str::to_owned)).collect()
        };
        let deadline = std::time::Instant::now() + SEEN_WAIT;
        let mut lines = read(&mut self.server);
        loop {
            std::thread::sleep(SEEN_SETTLE);
            let now = read(&mut self.server);
            if now.len() == lines.len() || std::time::Instant::now() > deadline {
                return now;
            }
            lines = now;
        }
    }
}

impl Drop for ForeignService {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.stubs);
    }
}

/// The echo service's `.proto` file (`echo.v1.Echo`), for clients given `--proto` (no Python needed to read it).
pub fn echo_proto() -> PathBuf {
    python_dir().join("echo/v1/echo.proto")
}

/// `testkit/python/`.
fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}
