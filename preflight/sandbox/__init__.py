"""The bundled sandbox vendor: a real HTTP server on loopback that speaks the vendor's profile API.

It keeps a real balance that paid jobs consume, so a new user, the tests and the benchmarks can
run the whole flow (check, dispatch, 402, classification) end to end without a vendor account.

Vendor API (``Authorization: Bearer <token>`` required, else 401 ``{"error": "unauthorized"}``):

- ``GET /api/open/v1/profile`` -> ``{"user_id": ..., "api_quota_remaining": 988000, "tier": ...,
  "credits": 1200}``. Meters are JSON numbers carrying the exact decimal text (``12.50`` stays
  ``12.50``); a meter that is not set is left out, as during a billing-model migration.
- ``POST /api/open/v1/profile`` ``{"webhookUrl": "https://..."}`` -> 200 with the profile and
  ``webhookUrl``; 422 ``validation_error`` for anything but an https URL of at most 2048
  characters; 400 ``bad_request`` for a body that is not a JSON object. Unknown fields are ignored.
- ``POST /api/open/v1/jobs`` ``{"cost": "5", "meter": "credits"}`` -> 200 and the balance is
  charged, or 402 ``{"error": "insufficient_quota"}`` and nothing is charged.

Faults (``POST /_sandbox/faults``, one object or a list, queued FIFO) each answer the next
``count`` vendor requests (``-1``: every request until reset), whatever their endpoint or token:

- ``{"status": 500, "headers": {"Retry-After": "1"}, "body": "..."}``: that status (400-599);
- ``{"kind": "malformed", "body": "<html>...", "content_type": "text/html"}``: 200, raw body;
- ``{"kind": "latency", "seconds": 0.5}``: sleep, then answer normally;
- ``{"kind": "drip", "interval": 0.2}``: the normal answer, one byte per ``interval``;
- ``{"kind": "hang"}``: never answer; the connection is closed when the server stops.

Shape (``POST /_sandbox/shape``, merged into the current shape, kept until reset):
``{"drop": ["credits"]}``, ``{"as_strings": true}``, ``{"extra": {"plan": {...}}}`` (extra
fields win over the normal ones) simulate schema drift.

Control API (no auth, JSON, decimals as strings): ``GET /_sandbox/state``,
``POST /_sandbox/consume`` ``{"amount": "10", "meter": "credits"|"api_quota_remaining"|"both"}``
(spending by a process that records nothing; clamped at 0), ``POST /_sandbox/balance``
``{"credits": "500", "api_quota_remaining": null}``, ``POST /_sandbox/topup``
``{"amount": "100", "meter": "credits"}``, ``POST /_sandbox/faults``, ``POST /_sandbox/shape``,
``POST /_sandbox/reset`` (faults, shape and request counters; the balance is kept).

Standard library only, so that ``preflight simulate`` works wherever preflight is installed.

Layout, each module importing only the ones listed above it and nothing else of the project:

- :mod:`~preflight.sandbox.protocol`: names, exact decimals, JSON text, replies, input checks;
- :mod:`~preflight.sandbox.state`: the balance, faults, shape and counters behind one lock;
- :mod:`~preflight.sandbox.vendor_api` and :mod:`~preflight.sandbox.control`: what the two
  APIs answer, on that state;
- :mod:`~preflight.sandbox.server`: the threaded HTTP server, fault timing, the life cycle of
  :class:`SandboxServer` and :func:`serve_forever`.
"""

from preflight.sandbox.protocol import DEFAULT_TOKEN
from preflight.sandbox.server import UNSET, SandboxServer, serve_forever

__all__ = ["DEFAULT_TOKEN", "UNSET", "SandboxServer", "serve_forever"]
