"""A moto server on 127.0.0.1, in a thread of the test process, that ``chalice deploy`` can finish against.

``running_moto_server()`` starts ``moto.server.ThreadedMotoServer`` on a free loopback port,
with two gaps of moto's API Gateway closed for the life of the server (see ``_as_openapi3``),
and stops it afterwards. Processes reach it through ``AWS_ENDPOINT_URL``; this process through
``MotoServer.client``. Nothing here ever talks to real AWS.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto.apigateway.models import APIGatewayBackend
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass(frozen=True)
class MotoServer:
    url: str

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` that talks to this server only."""
        return boto3.client(service, endpoint_url=self.url, region_name=REGION, **FAKE_CREDENTIALS)

    def reset(self) -> None:
        """Forget every resource in every service (moto's own reset API)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200, f"moto reset answered {response.status}"


def _as_openapi3(api_doc: dict[str, Any]) -> dict[str, Any]:
    """Chalice's Swagger 2.0 document, labelled so that moto's importer takes it.

    Why this is needed, and why it is honest:

    - ``APIGatewayBackend.import_rest_api`` reads ``api_doc["info"]["description"]``; Chalice's
      document has no description (it is optional in both Swagger 2.0 and OpenAPI 3), so the
      import dies with a KeyError, which the server answers with a bare 500.
    - ``APIGatewayBackend.put_rest_api``, which the import calls and which a redeploy calls
      directly (``PutRestApi`` mode=overwrite), refuses any document with a ``swagger`` key
      (``InvalidOpenApiDocVersionException``): moto implements only OpenAPI 3. Real API
      Gateway imports Swagger 2.0, which is what Chalice writes.
    - What moto then reads from the document (``info.title``, and per path and method the
      ``responses`` codes and the ``x-amazon-apigateway-integration`` object) is laid out the
      same in both versions, so changing the version label loses nothing moto would use. Its
      schema validation runs only with ``failOnWarnings``, which Chalice does not send.

    The input is not modified: a copy is returned.
    """
    if "swagger" not in api_doc:
        return api_doc
    converted = {key: value for key, value in api_doc.items() if key != "swagger"}
    converted["openapi"] = "3.0.1"
    converted["info"] = {"description": "", **api_doc.get("info", {})}
    return converted


@contextmanager
def running_moto_server() -> Iterator[MotoServer]:
    """A moto server on a free port of 127.0.0.1 that accepts Chalice's REST API; stopped on exit.

    The patches are on moto's backend class in this process, which is where the threaded
    server runs its requests; they are undone when the server stops.
    """
    original_import = APIGatewayBackend.import_rest_api
    original_put = APIGatewayBackend.put_rest_api

    def import_rest_api(self: APIGatewayBackend, api_doc: dict[str, Any], fail_on_warnings: bool) -> Any:
        return original_import(self, _as_openapi3(api_doc), fail_on_warnings)

    def put_rest_api(
        self: APIGatewayBackend,
        function_id: str,
        api_doc: dict[str, Any],
        fail_on_warnings: bool,
        mode: str = "merge",
    ) -> Any:
        return original_put(self, function_id, _as_openapi3(api_doc), fail_on_warnings, mode)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(APIGatewayBackend, "import_rest_api", import_rest_api)
        patch.setattr(APIGatewayBackend, "put_rest_api", put_rest_api)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        moto = MotoServer(f"http://{host}:{port}")
        try:
            yield moto
        finally:
            try:
                moto.reset()  # moto's backends are global to this process: leave nothing behind
            finally:
                server.stop()
                # stop() ends serve_forever() but leaves the listening socket open.
                listener = getattr(server, "_server", None)
                if listener is not None:
                    listener.server_close()
