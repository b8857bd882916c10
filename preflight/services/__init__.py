"""The application layer: each verb of preflight, once.

Every interface calls these — the Python facade (:mod:`preflight.api`), the CLI, the audit
worker and the HTTP API — with a :class:`~preflight.services.runtime.Runtime` that holds the
settings, the database, the vendor clients and the clock. Services talk to the vendor
outside any database transaction, commit at the edge of the verb, return the typed results
of :mod:`preflight.services.results`, and import no click and no web framework; all SQL is
in :mod:`preflight.db`.
"""
