//! The two methods the gateway forwards, as one trait: how each is called on compute and where its messages carry
//! what the gateway reads and writes, so a single generic request path serves both.

use std::{future::Future, pin::Pin};

use offload_proto::v1::{
    Execution, FactorialRequest, FactorialResponse, SumOfSquaresRequest, SumOfSquaresResponse,
    compute_client::ComputeClient as Generated,
};
use tonic::{Request, Response, Status, codegen::http::uri::PathAndQuery};

use crate::{compute_client::ComputeClient, connection::Connection};

/// A reply on its way from compute.
pub type ReplyFuture<R> = Pin<Box<dyn Future<Output = Result<Response<R>, Status>> + Send>>;

/// A request message the gateway forwards to compute's method of the same name.
pub trait ComputeMethod: prost::Message + Clone + Send + Sync + 'static {
    /// The method's reply message.
    type Reply: prost::Message + Default + Send + Sync + 'static;

    /// The method's name (`Factorial`), for spans and metrics.
    const NAME: &'static str;

    /// The method's path on compute (`/offload.v1.Compute/Factorial`).
    const PATH: &'static str;

    /// Calls the method on `client`.
    fn call(client: ComputeClient, request: Request<Self>) -> ReplyFuture<Self::Reply> {
        match client {
            ComputeClient::Unary(client) => {
                Box::pin(async move { client.call(PathAndQuery::from_static(Self::PATH), request).await })
            }
            ComputeClient::Generated(client) => Self::call_generated(client, request),
        }
    }

    /// Calls the method on tonic's generated client.
    fn call_generated(client: Generated<Connection>, request: Request<Self>) -> ReplyFuture<Self::Reply>;

    /// The gateway-only field saying how to wait for compute (cleared before forwarding).
    fn upstream_wait(&mut self) -> &mut i32;

    /// The request's `n`, for the stall detector's reports.
    fn n(&self) -> u64;

    /// The execution report of a reply.
    fn execution(reply: &Self::Reply) -> Option<&Execution>;

    /// The execution report of a reply, to add the gateway's part to.
    fn execution_mut(reply: &mut Self::Reply) -> &mut Option<Execution>;
}

impl ComputeMethod for FactorialRequest {
    type Reply = FactorialResponse;
    const NAME: &'static str = "Factorial";
    const PATH: &'static str = "/offload.v1.Compute/Factorial";

    fn call_generated(mut client: Generated<Connection>, request: Request<Self>) -> ReplyFuture<Self::Reply> {
        Box::pin(async move { client.factorial(request).await })
    }

    fn upstream_wait(&mut self) -> &mut i32 {
        &mut self.upstream_wait
    }

    fn n(&self) -> u64 {
        self.n
    }

    fn execution(reply: &FactorialResponse) -> Option<&Execution> {
        reply.execution.as_ref()
    }

    fn execution_mut(reply: &mut FactorialResponse) -> &mut Option<Execution> {
        &mut reply.execution
    }
}

impl ComputeMethod for SumOfSquaresRequest {
    type Reply = SumOfSquaresResponse;
    const NAME: &'static str = "SumOfSquares";
    const PATH: &'static str = "/offload.v1.Compute/SumOfSquares";

    fn call_generated(mut client: Generated<Connection>, request: Request<Self>) -> ReplyFuture<Self::Reply> {
        Box::pin(async move { client.sum_of_squares(request).await })
    }

    fn upstream_wait(&mut self) -> &mut i32 {
        &mut self.upstream_wait
    }

    fn n(&self) -> u64 {
        self.n
    }

    fn execution(reply: &SumOfSquaresResponse) -> Option<&Execution> {
        reply.execution.as_ref()
    }

    fn execution_mut(reply: &mut SumOfSquaresResponse) -> &mut Option<Execution> {
        &mut reply.execution
    }
}

#[cfg(test)]
mod tests {
    use offload_proto::service_names;

    use super::*;

    #[test]
    fn each_method_calls_computes_method_of_the_same_name() {
        assert_eq!(FactorialRequest::PATH, format!("/{}/{}", service_names::COMPUTE, FactorialRequest::NAME));
        assert_eq!(SumOfSquaresRequest::PATH, format!("/{}/{}", service_names::COMPUTE, SumOfSquaresRequest::NAME));
    }
}
