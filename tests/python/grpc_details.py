"""The gRPC details a grpcio client relies on, checked against compute and the gateway in front of it: server
reflection (grpcio-reflection's client), gzip (every call of this script is gzip-compressed), and the richer error
model (grpc_status reads google.rpc.BadRequest, ErrorInfo and RetryInfo from the status details).

Usage: grpc_details.py COMPUTE_ADDR GATEWAY_ADDR PROTO_ROOT OUT_DIR MAX_FACTORIAL_N
Compute must run with --max-inflight 1 and --max-factorial-n MAX_FACTORIAL_N, the gateway in front of it. Prints
one line per check and exits non-zero on the first failure.
"""

import math
import sys
import time

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from google.rpc import error_details_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from grpc_status import rpc_status
from grpc_tools import protoc

# The services each server must list, and only those.
INFRASTRUCTURE = {"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                  "grpc.reflection.v1alpha.ServerReflection"}

# How often the busy-server check tries to meet the full house before giving up (each try waits 20 ms): the long
# call is admitted within milliseconds on an idle machine, and within seconds on a loaded one.
TRIES = 500


def check_reflection(channel: grpc.Channel, served: str, methods: set) -> None:
    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    assert services == INFRASTRUCTURE | {served}, services
    service = DescriptorPool(database).FindServiceByName(served)
    assert {m.name for m in service.methods} == methods, [m.name for m in service.methods]
    print(f"ok reflection lists {sorted(services)} and describes {served}")


def details_of(error: grpc.RpcError, detail_type):
    """The one detail of `detail_type` in the error's google.rpc.Status."""
    status = rpc_status.from_call(error)
    assert status is not None, f"no google.rpc.Status details on {error.code()}: {error.details()}"
    found = []
    for detail in status.details:
        if detail.Is(detail_type.DESCRIPTOR):
            message = detail_type()
            detail.Unpack(message)
            found.append(message)
    assert len(found) == 1, (detail_type.DESCRIPTOR.full_name, status)
    return found[0]


def refused(call, request) -> grpc.RpcError:
    try:
        call(request, timeout=10)
    except grpc.RpcError as e:
        return e
    raise AssertionError(f"{request} was accepted")


def check_limit_details(name: str, stub, pb, max_factorial_n: int) -> None:
    error = refused(stub.Factorial, pb.FactorialRequest(n=2**64 - 1))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    violation, = details_of(error, error_details_pb2.BadRequest).field_violations
    assert violation.field == "n", violation
    assert f"--max-factorial-n={max_factorial_n}" in violation.description, violation.description
    info = details_of(error, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == ("N_ABOVE_LIMIT", "offload.v1"), info
    assert dict(info.metadata) == {"flag": "--max-factorial-n", "limit": str(max_factorial_n)}, info.metadata
    print(f"ok {name} BadRequest n: {violation.description}")

    error = refused(stub.Factorial, pb.FactorialRequest(n=5, mode=99))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    violation, = details_of(error, error_details_pb2.BadRequest).field_violations
    assert violation.field == "mode", violation
    print(f"ok {name} BadRequest mode: {violation.description}")


def check_gzip(name: str, stub, pb) -> None:
    sys.set_int_max_str_digits(0)
    for n in (20, 20_000):
        reply = stub.Factorial(pb.FactorialRequest(n=n), timeout=30)
        assert reply.value == str(math.factorial(n)), f"Factorial({n}) differs"
    print(f"ok {name} gzip: Factorial(20000) = {len(reply.value)} digits, exact")


def check_retry_info(compute, gateway, pb) -> None:
    """With compute's one slot held by a long call, the next call on the same connection is refused with a retry
    delay, from compute and, passed through unchanged, from the gateway (whose calls share its one connection to
    compute). A call on another connection would wait for the slot instead: compute shares its slots fairly across
    connections."""
    for name, stub in (("compute", compute), ("gateway", gateway)):
        long_call = stub.SumOfSquares.future(pb.SumOfSquaresRequest(n=10**12, mode=pb.EXEC_MODE_RAYON), timeout=60)
        try:
            for _ in range(TRIES):
                try:
                    stub.Factorial(pb.FactorialRequest(n=20), timeout=10)
                except grpc.RpcError as e:
                    error = e
                    break
                time.sleep(0.02)  # Not admitted yet: the long call is still on its way.
            else:
                raise AssertionError(f"{name}: never refused while the long call held compute's slot")
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
            assert "--max-inflight=1" in error.details(), error.details()
            retry = details_of(error, error_details_pb2.RetryInfo)
            delay = retry.retry_delay.ToTimedelta().total_seconds()
            assert 0.001 <= delay <= 30, retry
            print(f"ok {name} RESOURCE_EXHAUSTED with RetryInfo retry_delay={delay * 1000:.1f} ms")
        finally:
            long_call.cancel()


def main() -> None:
    compute_addr, gateway_addr, proto_root, out_dir, max_factorial_n = sys.argv[1:6]
    rc = protoc.main(["protoc", f"-I{proto_root}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
                      "offload/v1/offload.proto"])
    assert rc == 0, f"protoc failed: {rc}"
    sys.path.insert(0, out_dir)
    from offload.v1 import offload_pb2 as pb
    from offload.v1 import offload_pb2_grpc as rpc

    # Every request gzip-compressed; grpcio also accepts gzip replies, which the servers then send.
    compute_channel = grpc.insecure_channel(compute_addr, compression=grpc.Compression.Gzip)
    gateway_channel = grpc.insecure_channel(gateway_addr, compression=grpc.Compression.Gzip)
    compute, gateway = rpc.ComputeStub(compute_channel), rpc.GatewayStub(gateway_channel)

    check_reflection(compute_channel, "offload.v1.Compute", {"Factorial", "SumOfSquares"})
    check_reflection(gateway_channel, "offload.v1.Gateway", {"Factorial", "SumOfSquares"})
    for name, stub in (("compute", compute), ("gateway", gateway)):
        check_gzip(name, stub, pb)
        check_limit_details(name, stub, pb, int(max_factorial_n))
    check_retry_info(compute, gateway, pb)
    print("python grpc details: all checks passed")


if __name__ == "__main__":
    main()
