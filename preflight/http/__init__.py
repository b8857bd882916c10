"""The HTTP API (``preflight serve``): an edge beside the CLI, on the same services.

Needs the ``server`` extra (FastAPI, uvicorn). :mod:`preflight.http.problems` is light
(no web framework) so that the remote client can share its table of problem types.
"""
