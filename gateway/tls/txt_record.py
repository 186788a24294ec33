"""The one TXT record of a policy-announcing name (`_mta-sts.DOMAIN`, `_smtp._tls.DOMAIN`):
its strings are one value (RFC 7208 3.3 style), records that do not start with the
version tag are someone else's and discarded, and more than one left is an error."""

from __future__ import annotations

from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.resolver


@dataclass(frozen=True)
class VersionedTXT:
    """RECORD: the one record found, else None with DETAIL saying why; TEMPFAIL: the look-up
    itself failed (worth trying again), rather than finding none."""

    record: str | None
    detail: str
    tempfail: bool = False


async def versioned_txt(resolver: dns.asyncresolver.Resolver, name: str,
                        prefix: str) -> VersionedTXT:
    try:
        answer = await resolver.resolve(name, "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return VersionedTXT(None, f"no TXT record at {name}")
    except dns.exception.DNSException as exc:
        return VersionedTXT(None, f"TXT lookup for {name} failed: {exc}", tempfail=True)
    texts = [b"".join(r.strings).decode("utf-8", "replace") for r in answer]
    candidates = [t for t in texts if t.startswith(prefix)]
    if len(candidates) != 1:
        return VersionedTXT(None, f"{len(candidates)} {prefix} TXT records at {name}"
                                  " (need exactly one)")
    return VersionedTXT(candidates[0], "")
