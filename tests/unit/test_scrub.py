"""The token scrubber redacts token values, never the product's own words."""

from __future__ import annotations

import pytest

from preflight.secret import REDACTED, contains_secret, scrub

REDACTED_VALUES = [
    # In a header (a header line, a JSON or dict key): whatever follows the scheme.
    ("Authorization: Bearer pft_Q2x9-abc", f"Authorization: Bearer {REDACTED}"),
    ("authorization: bearer abcdefghij", f"authorization: bearer {REDACTED}"),
    ('{"Authorization": "Bearer sk-live-77"}', f'{{"Authorization": "Bearer {REDACTED}"}}'),
    ("{'authorization': 'Bearer token'}", f"{{'authorization': 'Bearer {REDACTED}'}}"),
    ("Authorization=Bearer <token>", f"Authorization=Bearer {REDACTED}"),
    # Anywhere else: a value that looks like a credential.
    ("request failed for Bearer tok-logs-9f8e7d6c5b4a", f"request failed for Bearer {REDACTED}"),
    ("bearer sk-or-v1-0a1b2c3d, then", f"bearer {REDACTED}, then"),
    ("Bearer eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl", f"Bearer {REDACTED}"),
    ("Bearer abcdefghijklmnopqrstuvwxyz", f"Bearer {REDACTED}"),  # too long for a word
    ("Bearer ABCDEFGH", f"Bearer {REDACTED}"),
    ("Bearer mixedCaseValue", f"Bearer {REDACTED}"),
    ("sent BEARER 1234567890 twice", f"sent BEARER {REDACTED} twice"),
]

PROSE = [
    "send an Authorization header with a Bearer token",
    "the bearer token is unknown or revoked",
    "use the Bearer scheme.",
    "Bearer Token: see the docs",
    "a Bearer <token> from preflight token create",
    "every route needs a bearer token (from preflight token create)",
]


@pytest.mark.parametrize(("text", "scrubbed"), REDACTED_VALUES)
def test_token_values_are_redacted(text: str, scrubbed: str) -> None:
    assert scrub(text) == scrubbed
    assert contains_secret(text)


@pytest.mark.parametrize("text", PROSE)
def test_the_products_own_words_are_left_alone(text: str) -> None:
    assert scrub(text) == text
    assert not contains_secret(text)
