"""A gRPC service that is not offload's, for testing `offload-bench load` and `stall` against a foreign server.

Python's `grpc.aio` serves `echo.v1.Echo` (echo/v1/echo.proto: unary, client, server and bidi streaming),
`work.v1.Work` (work/v1/work.proto: the same synchronous work done on the event loop, which blocks it, or in the
loop's executor, which does not), the standard health service and, unless `--no-reflection`, server reflection. It binds 127.0.0.1:0 and prints
`echo-service serving addr=HOST:PORT`; then one line per request message it receives,
`seen {"call": ..., "message": ..., "metadata": ...}`, so a test can check what the load generator sent (its JSON
mapping, its templates) from the server's side.

Usage: python echo_service.py STUBS_DIR [--no-reflection]
"""

import asyncio
import importlib.resources
import json
import os
import sys
import time

from google.protobuf import json_format
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))


def generate_stubs(out):
    """Python stubs for the services' protos, from grpcio-tools' bundled protoc and well-known types."""
    os.makedirs(out, exist_ok=True)
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    code = protoc.main(["protoc", f"-I{HERE}", f"-I{well_known}", f"--python_out={out}",
                        f"--grpc_python_out={out}", "echo/v1/echo.proto", "work/v1/work.proto"])
    if code != 0:
        sys.exit(f"protoc failed with {code}")
    sys.path.insert(0, out)


def main():
    generate_stubs(sys.argv[1])
    reflection_on = "--no-reflection" not in sys.argv[2:]

    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection

    from echo.v1 import echo_pb2, echo_pb2_grpc
    from work.v1 import work_pb2, work_pb2_grpc

    def seen(call, message, context):
        metadata = {k: v for k, v in context.invocation_metadata() if not k.startswith("grpc-")
                    and k not in ("user-agent", "te", "content-type")}
        record = {"call": call, "message": json_format.MessageToDict(message, preserving_proto_field_name=True),
                  "metadata": metadata}
        print("seen " + json.dumps(record, sort_keys=True), flush=True)

    class Echo(echo_pb2_grpc.EchoServicer):
        async def Unary(self, request, context):
            seen("Unary", request, context)
            return echo_pb2.EchoReply(request=request, seen=1)

        async def Collect(self, request_iterator, context):
            count, last = 0, echo_pb2.EchoRequest()
            async for request in request_iterator:
                seen("Collect", request, context)
                count, last = count + 1, request
            return echo_pb2.EchoReply(request=last, seen=count)

        async def Expand(self, request, context):
            seen("Expand", request, context)
            for i in range(request.repeat or 10):
                if request.interval_ms:
                    await asyncio.sleep(request.interval_ms / 1000)
                yield echo_pb2.EchoReply(request=request, seen=i)

        async def Chat(self, request_iterator, context):
            count = 0
            async for request in request_iterator:
                seen("Chat", request, context)
                count += 1
                yield echo_pb2.EchoReply(request=request, seen=count)

    class Work(work_pb2_grpc.WorkServicer):
        # The same synchronous function both ways; only where it runs differs.
        async def Blocking(self, request, context):
            started = time.perf_counter()
            time.sleep(request.ms / 1000)  # On the event loop: every other request waits.
            return work_pb2.WorkReply(took_ms=(time.perf_counter() - started) * 1000)

        async def Offloaded(self, request, context):
            started = time.perf_counter()
            await asyncio.get_running_loop().run_in_executor(None, time.sleep, request.ms / 1000)
            return work_pb2.WorkReply(took_ms=(time.perf_counter() - started) * 1000)

    async def serve():
        server = grpc.aio.server()
        echo_pb2_grpc.add_EchoServicer_to_server(Echo(), server)
        work_pb2_grpc.add_WorkServicer_to_server(Work(), server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        names = ["echo.v1.Echo", "work.v1.Work", health.SERVICE_NAME]
        if reflection_on:
            reflection.enable_server_reflection(names + [reflection.SERVICE_NAME], server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        for name in ("", "echo.v1.Echo", "work.v1.Work"):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        print(f"echo-service serving addr=127.0.0.1:{port} reflection={reflection_on}", flush=True)
        await server.wait_for_termination()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
