//! What a load test sends: a fully qualified method (`--call`) and its request (`-d` JSON), and the client that
//! sends it over a channel.
//!
//! `--call` and `-d` take the same forms as ghz (`offload.v1.Gateway/Factorial` or `offload.v1.Gateway.Factorial`;
//! protobuf JSON, where a `uint64` may be a number or a string and an enum its name or number), so a ghz command
//! line or config file works here unchanged.

use std::time::Duration;

use anyhow::{Context, bail};
use offload_proto::v1::{
    ExecMode, Execution, FactorialRequest, SumOfSquaresRequest, UpstreamWait, compute_client::ComputeClient,
    gateway_client::GatewayClient,
};
use tonic::{Request, Status, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// Replies up to this size are accepted: above the servers' 4 MiB so a load test never fails on a large factorial.
pub const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// A method and its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `offload.v1.Gateway/Factorial`
    GatewayFactorial(FactorialRequest),
    /// `offload.v1.Gateway/SumOfSquares`
    GatewaySumOfSquares(SumOfSquaresRequest),
    /// `offload.v1.Compute/Factorial`
    ComputeFactorial(FactorialRequest),
    /// `offload.v1.Compute/SumOfSquares`
    ComputeSumOfSquares(SumOfSquaresRequest),
    /// `grpc.health.v1.Health/Check`
    HealthCheck(String),
}

impl Call {
    /// Parses `--call` and `-d`.
    pub fn parse(method: &str, data: Option<&str>) -> anyhow::Result<Self> {
        let method = method.trim_start_matches('/');
        let (service, name) = method
            .rsplit_once('/')
            .or_else(|| method.rsplit_once('.'))
            .with_context(|| format!("--call {method:?}: expected package.Service/Method"))?;
        let data: serde_json::Value = match data {
            Some(text) => serde_json::from_str(text).with_context(|| format!("-d is not JSON: {text}"))?,
            None => serde_json::Value::Object(Default::default()),
        };
        let object = data.as_object().context("-d must be a JSON object")?;
        if service == "grpc.health.v1.Health" && name == "Check" {
            let service = object.get("service").and_then(|v| v.as_str()).unwrap_or_default();
            return Ok(Self::HealthCheck(service.to_owned()));
        }
        for key in object.keys() {
            if !["n", "mode", "upstream_wait", "upstreamWait"].contains(&key.as_str()) {
                bail!("-d: unknown field {key:?} (requests have `n`, `mode` and `upstream_wait`)");
            }
        }
        let n = match object.get("n") {
            None => 0,
            Some(serde_json::Value::Number(n)) => n.as_u64().context("-d: n must be a non-negative integer")?,
            Some(serde_json::Value::String(s)) => s.parse().with_context(|| format!("-d: n = {s:?}"))?,
            Some(other) => bail!("-d: n must be a number, not {other}"),
        };
        let mode = match object.get("mode") {
            None => ExecMode::Unspecified as i32,
            Some(serde_json::Value::Number(m)) => m.as_i64().context("-d: mode")? as i32,
            Some(serde_json::Value::String(s)) => {
                ExecMode::from_str_name(s).with_context(|| format!("-d: unknown mode {s:?}"))? as i32
            }
            Some(other) => bail!("-d: mode must be a name or a number, not {other}"),
        };
        let upstream_wait = match object.get("upstream_wait").or_else(|| object.get("upstreamWait")) {
            None => UpstreamWait::Unspecified as i32,
            Some(serde_json::Value::Number(w)) => w.as_i64().context("-d: upstream_wait")? as i32,
            Some(serde_json::Value::String(s)) => {
                UpstreamWait::from_str_name(s).with_context(|| format!("-d: unknown upstream_wait {s:?}"))? as i32
            }
            Some(other) => bail!("-d: upstream_wait must be a name or a number, not {other}"),
        };
        Ok(match (service, name) {
            ("offload.v1.Gateway", "Factorial") => Self::GatewayFactorial(FactorialRequest { n, mode, upstream_wait }),
            ("offload.v1.Gateway", "SumOfSquares") => {
                Self::GatewaySumOfSquares(SumOfSquaresRequest { n, mode, upstream_wait })
            }
            ("offload.v1.Compute", "Factorial") => {
                Self::ComputeFactorial(FactorialRequest { n, mode, ..Default::default() })
            }
            ("offload.v1.Compute", "SumOfSquares") => {
                Self::ComputeSumOfSquares(SumOfSquaresRequest { n, mode, ..Default::default() })
            }
            _ => bail!("--call {method:?}: not an offload.v1 method or grpc.health.v1.Health/Check"),
        })
    }

    /// The fully qualified method, as ghz prints it.
    pub fn method(&self) -> &'static str {
        match self {
            Self::GatewayFactorial(_) => "offload.v1.Gateway.Factorial",
            Self::GatewaySumOfSquares(_) => "offload.v1.Gateway.SumOfSquares",
            Self::ComputeFactorial(_) => "offload.v1.Compute.Factorial",
            Self::ComputeSumOfSquares(_) => "offload.v1.Compute.SumOfSquares",
            Self::HealthCheck(_) => "grpc.health.v1.Health.Check",
        }
    }
}

/// Sends calls over one channel (HTTP/2 connection). Cheap to clone: clones share the connection.
#[derive(Debug, Clone)]
pub struct Caller {
    gateway: GatewayClient<Channel>,
    compute: ComputeClient<Channel>,
    health: HealthClient<Channel>,
}

impl Caller {
    /// Connects to `url` now, so that connection set-up is not measured as request latency.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        Ok(Self::new(connect(url).await?))
    }

    /// Sends over `channel`.
    pub fn new(channel: Channel) -> Self {
        Self {
            gateway: GatewayClient::new(channel.clone()).max_decoding_message_size(MAX_REPLY_BYTES),
            compute: ComputeClient::new(channel.clone()).max_decoding_message_size(MAX_REPLY_BYTES),
            health: HealthClient::new(channel),
        }
    }

    /// Sends one call and waits for its reply (which is read and dropped).
    pub async fn call(&mut self, call: &Call, timeout: Option<Duration>) -> Result<(), Status> {
        self.call_reporting(call, timeout).await.map(drop)
    }

    /// Sends one call; the reply's execution report (`None` for a health check).
    pub async fn call_reporting(
        &mut self,
        call: &Call,
        timeout: Option<Duration>,
    ) -> Result<Option<Execution>, Status> {
        fn request<T>(message: T, timeout: Option<Duration>) -> Request<T> {
            let mut request = Request::new(message);
            if let Some(timeout) = timeout {
                request.set_timeout(timeout);
            }
            request
        }
        let result = match call {
            Call::GatewayFactorial(r) => {
                self.gateway.factorial(request(*r, timeout)).await.map(|r| r.into_inner().execution)
            }
            Call::GatewaySumOfSquares(r) => {
                self.gateway.sum_of_squares(request(*r, timeout)).await.map(|r| r.into_inner().execution)
            }
            Call::ComputeFactorial(r) => {
                self.compute.factorial(request(*r, timeout)).await.map(|r| r.into_inner().execution)
            }
            Call::ComputeSumOfSquares(r) => {
                self.compute.sum_of_squares(request(*r, timeout)).await.map(|r| r.into_inner().execution)
            }
            Call::HealthCheck(service) => {
                let check = HealthCheckRequest { service: service.clone() };
                self.health.check(request(check, timeout)).await.map(|_| None)
            }
        };
        result.map_err(ghz_status)
    }

    /// The standard health check of `service` (`""`: the whole server): what the server says of itself.
    pub async fn serving_status(&mut self, service: &str, timeout: Option<Duration>) -> Result<ServingStatus, Status> {
        let mut request = Request::new(HealthCheckRequest { service: service.to_owned() });
        if let Some(timeout) = timeout {
            request.set_timeout(timeout);
        }
        let reply = self.health.check(request).await.map_err(ghz_status)?.into_inner();
        Ok(ServingStatus::try_from(reply.status).unwrap_or(ServingStatus::Unknown))
    }

    /// Sends one offload call; the replica that served it (its `served_by`).
    pub async fn call_served_by(&mut self, call: &Call, timeout: Option<Duration>) -> Result<String, Status> {
        Ok(self.call_reporting(call, timeout).await?.map(|e| e.served_by).unwrap_or_default())
    }
}

/// A channel (one HTTP/2 connection) to `url`, connected now, with Nagle off: calls are small and latency is what
/// is measured.
pub async fn connect(url: &str) -> anyhow::Result<Channel> {
    Channel::from_shared(url.to_owned())
        .with_context(|| format!("not a URL: {url}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot connect to {url}"))
}

/// tonic's client reports its own expiry of the deadline as CANCELLED "Timeout expired"; ghz (grpc-go) reports
/// DEADLINE_EXCEEDED, and so do we, so reports compare.
pub(crate) fn ghz_status(status: Status) -> Status {
    if status.code() == tonic::Code::Cancelled && status.message() == tonic::TimeoutExpired(()).to_string() {
        Status::deadline_exceeded(status.message())
    } else {
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ghz_style_calls_and_data() {
        let call = Call::parse("offload.v1.Gateway/Factorial", Some(r#"{"n": 20, "mode": "EXEC_MODE_RAYON"}"#));
        assert_eq!(
            call.expect("valid"),
            Call::GatewayFactorial(FactorialRequest { n: 20, mode: ExecMode::Rayon as i32, ..Default::default() })
        );
        let call = Call::parse("offload.v1.Compute.SumOfSquares", Some(r#"{"n": "1000000000", "mode": 1}"#));
        assert_eq!(
            call.expect("valid"),
            Call::ComputeSumOfSquares(SumOfSquaresRequest { n: 1_000_000_000, mode: 1, ..Default::default() })
        );
        let call =
            Call::parse("offload.v1.Gateway/Factorial", Some(r#"{"n": 5, "upstream_wait": "UPSTREAM_WAIT_BLOCKING"}"#));
        let expected = FactorialRequest { n: 5, mode: 0, upstream_wait: UpstreamWait::Blocking as i32 };
        assert_eq!(call.expect("valid"), Call::GatewayFactorial(expected));
        let call = Call::parse("grpc.health.v1.Health/Check", Some(r#"{"service": "offload.v1.Compute"}"#));
        assert_eq!(call.expect("valid"), Call::HealthCheck("offload.v1.Compute".into()));
        assert_eq!(
            Call::parse("offload.v1.Gateway/Factorial", None).expect("valid").method(),
            "offload.v1.Gateway.Factorial"
        );
    }

    #[test]
    fn rejects_what_it_cannot_send() {
        assert!(Call::parse("offload.v1.Gateway/Nope", None).is_err());
        assert!(Call::parse("Factorial", None).is_err());
        assert!(Call::parse("offload.v1.Gateway/Factorial", Some(r#"{"n": -1}"#)).is_err());
        assert!(Call::parse("offload.v1.Gateway/Factorial", Some(r#"{"mode": "FAST"}"#)).is_err());
        assert!(Call::parse("offload.v1.Gateway/Factorial", Some(r#"{"x": 1}"#)).is_err());
        assert!(Call::parse("offload.v1.Gateway/Factorial", Some("[1]")).is_err());
    }
}
