"""`--tiers dev:30,staging:15,prod:5`: a sandbox fleet, each environment with its tier.

Environments are named after their tier and number (dev-1 ... dev-30, staging-1, ...), so a
fleet selector (`--select tier=dev`, `--select 'name=prod-*'`) reads naturally.
"""

from phasegate.errors import ConfigError

TIER_ORDER = ("dev", "staging", "prod")


def parse_tiers(text: str) -> dict[str, str]:
    """'dev:2,prod:1' -> {'dev-1': 'dev', 'dev-2': 'dev', 'prod-1': 'prod'}, dev first."""
    counts: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        tier, sep, count = part.partition(":")
        if not sep or tier not in TIER_ORDER or not count.isdigit() or int(count) < 1:
            raise ConfigError(
                f"--tiers {text!r}: expected TIER:COUNT[,TIER:COUNT] with TIER one of "
                f"{', '.join(TIER_ORDER)} and COUNT >= 1, e.g. dev:30,staging:15,prod:5"
            )
        if tier in counts:
            raise ConfigError(f"--tiers {text!r}: {tier} is given twice")
        counts[tier] = int(count)
    return {f"{tier}-{n}": tier for tier in TIER_ORDER for n in range(1, counts.get(tier, 0) + 1)}
