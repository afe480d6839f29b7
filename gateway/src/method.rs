//! The two methods the gateway forwards, as one trait: how each is called on compute and where its messages carry
//! what the gateway reads and writes, so a single generic request path serves both.

use std::{future::Future, pin::Pin};

use offload_proto::v1::{Execution, FactorialRequest, FactorialResponse, SumOfSquaresRequest, SumOfSquaresResponse};
use tonic::{Request, Response, Status};

use crate::compute_client::ComputeClient;

/// A reply on its way from compute.
pub type ReplyFuture<R> = Pin<Box<dyn Future<Output = Result<Response<R>, Status>> + Send>>;

/// A request message the gateway forwards to compute's method of the same name.
pub trait ComputeMethod: prost::Message + Clone + Send + Sync + 'static {
    /// The method's reply message.
    type Reply: prost::Message + Default + Send + Sync + 'static;

    /// The method's name (`Factorial`), for spans and metrics.
    const NAME: &'static str;

    /// Calls compute's method of the same name on `client`.
    fn call(client: ComputeClient, request: Request<Self>) -> ReplyFuture<Self::Reply>;

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

    fn call(mut client: ComputeClient, request: Request<Self>) -> ReplyFuture<Self::Reply> {
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

    fn call(mut client: ComputeClient, request: Request<Self>) -> ReplyFuture<Self::Reply> {
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
