"""Does the configured resolver validate DNSSEC? A non-validating resolver never sets the
AD bit, which silently turns DANE off (and leaves REQUIRETLS mail only MTA-STS to find its
MX hosts securely), so `sealgate probe` asks and says so in one line.

Two questions: a signed name must come back with AD set, and a name whose signatures are
deliberately broken must fail with SERVFAIL (a validating resolver refuses to answer it;
one that answers does not validate, whatever AD bits it sets).
"""

from __future__ import annotations

import copy
import enum
from dataclasses import dataclass
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.resolver

from gateway.delivery.mx import EDNS_PAYLOAD

__all__ = ["ResolverCheck", "ResolverVerdict", "check_resolver"]


class ResolverVerdict(enum.Enum):
    VALIDATES = "validates"
    DOES_NOT_VALIDATE = "does-not-validate"
    UNKNOWN = "unknown"  # the resolver could not be asked (timeout, unreachable)


@dataclass(frozen=True)
class ResolverCheck:
    verdict: ResolverVerdict
    detail: str
    signed: str
    bogus: str

    @property
    def line(self) -> str:
        """The one line the probe prints."""
        if self.verdict is ResolverVerdict.VALIDATES:
            return f"validates (AD bit on {self.signed}, SERVFAIL on {self.bogus})"
        if self.verdict is ResolverVerdict.DOES_NOT_VALIDATE:
            return (f"does NOT validate ({self.detail}): DANE is off, and REQUIRETLS mail"
                    " finds MX hosts securely only by MTA-STS")
        return f"could not be checked ({self.detail})"

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict.value, "detail": self.detail, "signed": self.signed,
                "bogus": self.bogus, "line": self.line}


def _asking(resolver: dns.asyncresolver.Resolver) -> dns.asyncresolver.Resolver:
    """A copy that asks for validation (AD, DO) and remembers nothing: the check must
    reach the resolver itself."""
    asking = copy.copy(resolver)
    asking.cache = None
    asking.use_edns(0, dns.flags.DO, EDNS_PAYLOAD)
    asking.flags = dns.flags.RD | dns.flags.AD
    return asking


async def check_resolver(resolver: dns.asyncresolver.Resolver, signed: str,
                         bogus: str) -> ResolverCheck:
    asking = _asking(resolver)
    try:
        answer = await asking.resolve(signed, "SOA", raise_on_no_answer=False)
    except dns.exception.DNSException as exc:  # SERVFAIL too: no answer to judge
        return ResolverCheck(ResolverVerdict.UNKNOWN, f"{signed}: {exc}", signed, bogus)
    if not answer.response.flags & dns.flags.AD:
        return ResolverCheck(ResolverVerdict.DOES_NOT_VALIDATE,
                             f"no AD bit on the signed name {signed}", signed, bogus)
    try:
        await asking.resolve(bogus, "SOA", raise_on_no_answer=False)
    except dns.resolver.NoNameservers:  # every server said SERVFAIL: as it should
        return ResolverCheck(ResolverVerdict.VALIDATES, "", signed, bogus)
    except dns.resolver.NXDOMAIN:
        return ResolverCheck(ResolverVerdict.DOES_NOT_VALIDATE,
                             f"answered the bogus name {bogus} (no such domain)", signed, bogus)
    except dns.exception.DNSException as exc:
        return ResolverCheck(ResolverVerdict.UNKNOWN, f"{bogus}: {exc}", signed, bogus)
    return ResolverCheck(ResolverVerdict.DOES_NOT_VALIDATE,
                         f"answered the bogus name {bogus}", signed, bogus)
