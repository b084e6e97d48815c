"""The Functions app: a registry of blueprints, nothing else.

Every trigger lives in ``shared/triggers``; every SDK client is built in ``shared/services``.
"""

import azure.functions as func

from shared.api.auth import entra_mode
from shared.observability import configure_telemetry
from shared.triggers.discovery_api import bp as discovery_api
from shared.triggers.http_api import bp as http_api
from shared.triggers.timer import bp as timer
from shared.triggers.worker import bp as worker

BLUEPRINTS = (http_api, discovery_api, timer, worker)

configure_telemetry()

# Function keys checked by the host (default), or Entra ID tokens checked by the app
# (ROTATOR_API_AUTH=entra, shared.api.auth): then the host lets every request through to it.
app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS if entra_mode() else func.AuthLevel.FUNCTION)
for blueprint in BLUEPRINTS:
    app.register_functions(blueprint)
