"""The bundled sandbox vendor: a real HTTP server on loopback that speaks a vendor's API.

It keeps a real balance that paid jobs consume, so a new user, the tests and the benchmarks can
run the whole flow (check, dispatch, quota failure, classification) end to end without a
vendor account. It speaks as one of several vendors (its *dialect*, ``SandboxServer(vendor=
NAME)``, ``preflight simulate --vendor NAME``); :data:`DIALECTS` maps each name to its meters
and their defaults, balance and job paths, auth header and scheme, and quota failure status.
The account is a set of named meters (exact decimals; None: absent) and what jobs and
``consume`` took from each (``spent``); each dialect renders its bodies from those.

Default vendor (``default``; ``Authorization: Bearer <token>`` required, else 401
``{"error": "unauthorized"}``):

- ``GET /api/open/v1/profile`` -> ``{"user_id": ..., "api_quota_remaining": 988000, "tier": ...,
  "credits": 1200}``. Meters are JSON numbers carrying the exact decimal text (``12.50`` stays
  ``12.50``); a meter that is not set is left out, as during a billing-model migration.
- ``POST /api/open/v1/profile`` ``{"webhookUrl": "https://..."}`` -> 200 with the profile and
  ``webhookUrl``; 422 ``validation_error`` for anything but an https URL of at most 2048
  characters; 400 ``bad_request`` for a body that is not a JSON object. Unknown fields are ignored.
- ``POST /api/open/v1/jobs`` ``{"cost": "5", "meter": "credits"}`` -> 200 and the balance is
  charged, or 402 ``{"error": "insufficient_quota"}`` and nothing is charged.

Other vendors (shapes read from their public docs; a wrong or missing token gets the vendor's
own 401 body). Every job body is ``{"cost": "..."}``, plus ``"meter"`` where there are several
(default: the first meter present); a job that cannot be paid charges nothing and gets the
vendor's quota answer; one that can gets ``{"ok": true, "charged", "meter", "balance"}``.

- ``openrouter`` (Bearer; meters ``limit_remaining`` 50, None = the key has no cap, and
  ``credits`` 100): ``GET /api/v1/key`` -> ``{"data": {"label", "limit", "limit_remaining",
  "limit_reset": null, "usage", "usage_daily", "usage_weekly", "usage_monthly", ...}}`` where
  usage is what the key spent and ``limit`` = remaining + usage (null without a cap);
  ``GET /api/v1/credits`` -> ``{"data": {"total_credits", "total_usage"}}`` (credits =
  total - usage). ``POST /api/v1/chat/completions`` charges the credits and the cap; short ->
  402 ``{"error": {"code": 402, "message": "Insufficient credits. ..."}}``.
- ``elevenlabs`` (``xi-api-key: <token>``; meter ``characters`` 100000, whole numbers):
  ``GET /v1/user/subscription`` -> ``{"tier": "creator", "character_count": C,
  "character_limit": L, "next_character_count_reset_unix": ..., ...}`` with characters =
  L - C (C: spent this period; topup and balance move L). ``POST /v1/text-to-speech/{voice}``
  (cost: ``cost``, else the length of ``text``); short -> **401** ``{"detail": {"status":
  "quota_exceeded", "message": "This request exceeds your quota of L. ..."}}``.
- ``deepgram`` (``Authorization: Token <token>``; meters by unit: ``usd`` 250.00, ``hour``
  absent): ``GET /v1/projects/sandbox-project/balances`` -> ``{"balances": [{"balance_id",
  "amount", "units", "purchase_order_id"}, ...]}``, each meter split over two balances (a
  promotional one up to 200, a paid one); another project is 404 ``NOT_FOUND``.
  ``POST /v1/listen``; short -> 402 ``{"err_code": "INSUFFICIENT_CREDITS", ...}``.
- ``deepseek`` (Bearer; meters by currency: ``usd`` 110.00, ``cny`` absent; the control API
  may set them below 0): ``GET /user/balance`` -> ``{"is_available": <a total above 0>,
  "balance_infos": [{"currency": "USD", "total_balance": "110.00", "granted_balance":
  "10.00", "topped_up_balance": "100.00"}]}`` (amounts as strings). ``POST /chat/completions``;
  short -> 402 ``{"error": {"message": "Insufficient Balance", ...}}``.
- ``custom`` (``X-Api-Key: <token>``; meters ``requests`` 1000, whole, and ``wallet`` 25.00,
  at most 2 places): ``GET /v2/account/balance`` -> ``{"account": {"id": "acct_sandbox",
  "plan": {"quota": Q, "used": U}, "wallet": {"balance_cents": W}}}`` (requests = Q - U,
  wallet = W / 100). ``POST /v2/jobs`` ``{"cost": "3", "meter": "requests"}``; short -> **400**
  ``{"error": "bad_request", "message": "Your credit balance is too low to run this job."}``.

Faults (``POST /_sandbox/faults``, one object or a list, queued FIFO) each answer the next
``count`` vendor requests (``-1``: every request until reset), whatever the dialect's route
or token:

- ``{"status": 500, "headers": {"Retry-After": "1"}, "body": "..."}``: that status (400-599);
- ``{"kind": "malformed", "body": "<html>...", "content_type": "text/html"}``: 200, raw body;
- ``{"kind": "latency", "seconds": 0.5}``: sleep, then answer normally;
- ``{"kind": "drip", "interval": 0.2}``: the normal answer, one byte per ``interval``;
- ``{"kind": "hang"}``: never answer; the connection is closed when the server stops.

Shape (``POST /_sandbox/shape``, merged into the current shape, kept until reset) changes the
balance bodies to simulate schema drift: ``{"as_strings": true}`` (every amount in the body as
a string), ``{"drop": ["credits"]}``, ``{"extra": {"plan": {...}}}`` (extra fields win over
the normal ones). ``drop`` and ``extra`` apply to the top-level object, except for
``openrouter``, where they apply to ``data``. ``extra`` also forces what a body derives:
``{"extra": {"is_available": false}}`` for DeepSeek.

Control API (no auth, JSON, decimals as strings, meters by name; a meter the vendor does not
have is a 400 naming the ones it has): ``GET /_sandbox/state`` (``vendor``, ``balance``,
``spent``, ``requests`` by ``"METHOD path-template"``, faults, shape),
``POST /_sandbox/consume`` ``{"amount": "10", "meter": "credits"}`` (spending by a process
that records nothing; clamped at 0; ``meter`` ``both`` or ``all``: each meter present; no
meter: ``both`` for the default vendor, else the first meter present),
``POST /_sandbox/balance`` ``{"credits": "500", "api_quota_remaining": null}``,
``POST /_sandbox/topup`` ``{"amount": "100", "meter": "credits"}`` (no meter: the first one;
OpenRouter: ``credits``), ``POST /_sandbox/faults``, ``POST /_sandbox/shape``,
``POST /_sandbox/reset`` (faults, shape and request counters; the balance is kept) and, for
``elevenlabs`` only, ``POST /_sandbox/reset_period`` (a new billing period: the count used
back to 0, so the meter is the whole limit again, and the reset date a month on).

Standard library only, so that ``preflight simulate`` works wherever preflight is installed.

Layout, each module importing only the ones listed above it and nothing else of the project:

- :mod:`~preflight.sandbox.protocol`: names, exact decimals, JSON text, replies, input checks;
- :mod:`~preflight.sandbox.dialects`: each vendor's meters, routes, auth and bodies, on an
  account handed to it (no state of its own);
- :mod:`~preflight.sandbox.state`: the account, faults, shape and counters behind one lock;
- :mod:`~preflight.sandbox.vendor_api` and :mod:`~preflight.sandbox.control`: what the two
  APIs answer, on that state;
- :mod:`~preflight.sandbox.server`: the threaded HTTP server, fault timing, the life cycle of
  :class:`SandboxServer` and :func:`serve_forever`.
"""

from preflight.sandbox.dialects import DEFAULT_VENDOR, DIALECTS, VENDORS, Dialect, Meter
from preflight.sandbox.protocol import DEFAULT_TOKEN
from preflight.sandbox.server import UNSET, SandboxServer, serve_forever

__all__ = [
    "DEFAULT_TOKEN",
    "DEFAULT_VENDOR",
    "DIALECTS",
    "UNSET",
    "VENDORS",
    "Dialect",
    "Meter",
    "SandboxServer",
    "serve_forever",
]
