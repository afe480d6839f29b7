"""A Python grpcio client against the offload gateway: the foreign client the contract must serve.

Usage: client.py GATEWAY_ADDR PROTO_ROOT OUT_DIR
Generates stubs from the .proto (with grpcio-tools' bundled protoc) into OUT_DIR, then checks results, statuses
and health. Prints one line per check and exits non-zero on the first failure.
"""

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_tools import protoc


def main() -> None:
    addr, proto_root, out_dir = sys.argv[1:4]
    rc = protoc.main(["protoc", f"-I{proto_root}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
                      "offload/v1/offload.proto"])
    assert rc == 0, f"protoc failed: {rc}"
    sys.path.insert(0, out_dir)
    from offload.v1 import offload_pb2 as pb
    from offload.v1 import offload_pb2_grpc as rpc

    channel = grpc.insecure_channel(addr)
    gateway = rpc.GatewayStub(channel)
    for name in ["EXEC_MODE_UNSPECIFIED", "EXEC_MODE_INLINE", "EXEC_MODE_SPAWN_BLOCKING", "EXEC_MODE_BLOCK_IN_PLACE",
                 "EXEC_MODE_RAYON", "EXEC_MODE_ADAPTIVE"]:
        mode = pb.ExecMode.Value(name)
        reply = gateway.Factorial(pb.FactorialRequest(n=20, mode=mode), timeout=10)
        assert reply.value == "2432902008176640000", reply
        assert reply.digits == 19
        assert reply.execution.upstream_attempts == 1
        total = gateway.SumOfSquares(pb.SumOfSquaresRequest(n=10**6, mode=mode), timeout=10)
        assert int(total.value) == sum(i * i for i in range(10**6)), total.value
        print(f"ok {name}: Factorial(20) = {reply.value}, served by {reply.execution.served_by}")

    try:
        gateway.Factorial(pb.FactorialRequest(n=2**64 - 1), timeout=10)
        raise AssertionError("n = 2^64-1 was accepted")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
        assert "--max-factorial-n" in e.details(), e.details()
        print(f"ok INVALID_ARGUMENT: {e.details()}")

    try:
        gateway.SumOfSquares(pb.SumOfSquaresRequest(n=10**12, mode=pb.EXEC_MODE_RAYON), timeout=0.3)
        raise AssertionError("a minute-long job beat a 300 ms deadline")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e
        print("ok DEADLINE_EXCEEDED")

    health = health_pb2_grpc.HealthStub(channel)
    for service in ["", "offload.v1.Gateway"]:
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING, (service, status)
        print(f"ok health {service!r}: SERVING")
    print("python client: all checks passed")


if __name__ == "__main__":
    main()
