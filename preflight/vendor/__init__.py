"""The vendor's profile API: the client (:mod:`preflight.vendor.client`) and the reading
of its balance bodies (:mod:`preflight.vendor.profile`), on the hardened transport of
:mod:`preflight.transport`. The names callers use are here, as they always were."""

from __future__ import annotations

from preflight.transport import DEFAULT_POLICY, RetryPolicy, bound_to_deadline
from preflight.vendor.client import VendorClient, build_http_client
from preflight.vendor.profile import METER_NAMES, PROFILE_PATH, Profile, parse_profile, profile_of

__all__ = [
    "DEFAULT_POLICY",
    "METER_NAMES",
    "PROFILE_PATH",
    "Profile",
    "RetryPolicy",
    "VendorClient",
    "bound_to_deadline",
    "build_http_client",
    "parse_profile",
    "profile_of",
]
