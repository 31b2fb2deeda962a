"""How a gateway's 401 or 403 reaches people, for the answers no peer of the suite gives (the
others are tried on real gateways: a wrong token on all three, Enterprise Gateway's limit and
refused user in test_enterprise_gateway.py)."""

from __future__ import annotations

import pytest

from jupybot.kernels import GatewayUnavailable, KernelLimitReached
from jupybot.kernels.rest import _refusal


@pytest.mark.parametrize(
    ("code", "reason"),
    [(401, "Unauthorized"), (401, "no reason given"), (403, "Forbidden"), (403, "")],
)
def test_a_wrong_token_is_told_as_credentials(code: int, reason: str) -> None:
    refusal = _refusal(code, reason)
    assert isinstance(refusal, GatewayUnavailable)
    assert "refused jupybot's credentials" in str(refusal)


def test_kernel_gateways_limit_is_told_as_a_limit() -> None:
    refusal = _refusal(403, "Resource Limit")  # KG_MAX_KERNELS reached
    assert isinstance(refusal, KernelLimitReached)
    assert "as many kernels as it allows" in str(refusal)


def test_a_policy_refusal_does_not_show_the_gateways_reason() -> None:
    reason = "User 'root' is not authorized to start kernel 'Python 3'. Ensure KERNEL_USERNAME..."
    refusal = _refusal(403, reason)
    assert isinstance(refusal, GatewayUnavailable)
    assert "refused to start a kernel" in str(refusal) and "root" not in str(refusal)
