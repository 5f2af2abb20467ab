# The gateway's fixtures (an in-process gateway, its ASGI client, the fixture upstream).
from tests.gateway.conftest import asgi_client, fix_server, issue, relay_gateway, rows, upstream  # noqa: F401
